#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 120) on its committed corpus
# (corpus/<target>), failing on the first crash, panic, leak or timeout.
#   host/fuzz/run.sh [SECONDS]          all targets
#   TARGETS="parse edit" host/fuzz/run.sh 600
# Needs a nightly toolchain; installs cargo-fuzz if missing. New inputs libFuzzer finds go
# to a scratch copy of the corpus (the committed corpus is not changed); crashes are
# written to artifacts/<target>/ (see docs/FUZZING.md for reproducing and minimising).
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

# -O: optimised with debug assertions (overflow checks) kept on, as in the fuzzed code's
# debug builds. The crate does not link wasmtime, so this build takes well under a minute.
start=$(date +%s)
cargo "+$toolchain" fuzz build -O
echo "fuzz: built in $(( $(date +%s) - start )) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in $targets; do
    mkdir -p "$scratch/$t" "artifacts/$t"
    echo "fuzz: $t for ${secs} s"
    t0=$(date +%s)
    # Output goes to a log; on failure its tail (the crash and the input's path) is shown.
    if ! cargo "+$toolchain" fuzz run -O "$t" "$scratch/$t" corpus/"$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log"
        echo "fuzz: $t FAILED (input in host/fuzz/artifacts/$t/)"
        exit 1
    fi
    stats=$(grep -E '^stat::number_of_executed_units' "$scratch/$t.log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "$scratch/$t.log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
    echo "fuzz: $t ok: ${stats:-?} executions, ${cov:-no cov line}, $(( $(date +%s) - t0 )) s"
done
echo "fuzz: all targets passed in $(( $(date +%s) - start )) s"
