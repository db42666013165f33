#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 120) on its committed corpus
# (corpus/<target>), failing on the first crash, panic or timeout (docs/FUZZING.md).
#   host/fuzz/run.sh [SECONDS]              all targets
#   TARGETS="parse edit" host/fuzz/run.sh 600
#   FUZZ_CORPUS_OUT=/tmp/found host/fuzz/run.sh   keep the new inputs (default: a scratch dir)
# Needs rustup; installs a nightly toolchain and cargo-fuzz when missing. Crashes are written
# to host/fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-120}"
targets="${TARGETS:-parse uri headers framing edit}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# No sanitizer: the SIP code has no `unsafe`, and without AddressSanitizer both the build and
# every execution are several times faster. `-a`: optimised, with debug assertions and
# overflow checks on. The crate does not link wasmtime, so this build is short.
flags=(--sanitizer none --debug-assertions)
start=$(date +%s)
cargo "+$toolchain" fuzz build "${flags[@]}"
echo "fuzz: built in $(( $(date +%s) - start )) s"

if [ -n "${FUZZ_CORPUS_OUT:-}" ]; then
    out="$FUZZ_CORPUS_OUT"
else
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi
for t in $targets; do
    mkdir -p "$out/$t" "artifacts/$t"
    echo "fuzz: $t for ${secs} s"
    t0=$(date +%s)
    # New inputs go to $out/$t (the first directory); the committed corpus is only read.
    # One process (no -jobs/-workers): the machine's other work keeps its cores.
    if ! cargo "+$toolchain" fuzz run "${flags[@]}" "$t" "$out/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$out/$t.log" 2>&1; then
        tail -n 60 "$out/$t.log"
        echo "fuzz: $t FAILED (input in host/fuzz/artifacts/$t/)"
        exit 1
    fi
    execs=$(grep -E '^stat::number_of_executed_units' "$out/$t.log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "$out/$t.log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
    echo "fuzz: $t ok: ${execs:-?} executions, ${cov:-no cov line}, $(( $(date +%s) - t0 )) s"
done
echo "fuzz: all targets passed in $(( $(date +%s) - start )) s"
