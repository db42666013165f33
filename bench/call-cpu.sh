#!/usr/bin/env bash
# Proxy CPU cost per call: SIPp UAC -> sipbox (release, default route) -> SIPp UAS,
# the whole call (INVITE/180/200/ACK/BYE/200, Record-Routed) at fixed rates.
#
# The metric is the proxy's CPU time (utime + stime of the whole process, from
# /proc/PID/stat) per successful call, which does not depend on how fast the
# generator is; failed calls and SIPp retransmissions say whether the rate was
# sustainable. The proxy is pinned to core 0 and both SIPp processes to core 1
# when taskset exists. Loopback only; every run is bounded (-m, -timeout).
#
# usage: bench/call-cpu.sh [--rate 200[,500,...]] [--calls 3000] [--users 100] [--no-build]
#   --rate   calls per second; a comma-separated list runs one row per rate
#   --calls  calls per rate (default 3000)
#   --users  registered users the calls are spread over (default 100)
#   --no-build  use the existing target/release/sipbox
# Output: a table on stdout; logs, configs and SIPp statistics in bench/out/<time>/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# usage, free_port, port_in_use, cpu_ticks, stat_col
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

RATES=200
CALLS=3000
USERS=100
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATES=$2; shift 2 ;;
        --calls) CALLS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v sipp >/dev/null || { echo "sipp is missing: apt-get install sip-tester" >&2; exit 1; }
PROXY_PIN=()
SIPP_PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PROXY_PIN=(taskset -c 0)
    SIPP_PIN=(taskset -c 1)
fi
TICKS=$(getconf CLK_TCK)

OUT="$ROOT/bench/out/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"

if [ "$BUILD" = 1 ]; then
    echo "building release (cargo build --release -p sipbox)..." >&2
    (cd "$ROOT" && cargo build --release -p sipbox >&2)
fi
BIN="$ROOT/target/release/sipbox"
[ -x "$BIN" ] || { echo "no $BIN (run without --no-build)" >&2; exit 1; }

SERVER_PID=""
UAS_PID=""
cleanup() {
    if [ -n "$UAS_PID" ]; then kill "$UAS_PID" 2>/dev/null || true; fi
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

PROXY_PORT=$(free_port)
UAS_PORT=$(free_port)
UAC_PORT=$(free_port)

cat > "$OUT/sipbox.toml" <<EOT
[server]
listen = ["udp:127.0.0.1:$PROXY_PORT"]

[routes]
# module omitted: the embedded default route

[location]
db_path = "$OUT/location.redb"
min_expires = 60
max_expires = 3600

[mi]
# off: nothing to manage during a measurement, and its ports stay free
http = ""
udp = ""
EOT

# Warnings only: a logging proxy would measure its logger.
RUST_LOG=${RUST_LOG:-warn} "${PROXY_PIN[@]}" "$BIN" run --config "$OUT/sipbox.toml" 2> "$OUT/sipbox.log" &
SERVER_PID=$!
for _ in $(seq 300); do
    port_in_use "$PROXY_PORT" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "sipbox exited:" >&2; cat "$OUT/sipbox.log" >&2; exit 1; }
    sleep 0.1
done
port_in_use "$PROXY_PORT" || { echo "sipbox did not bind port $PROXY_PORT in 30 s" >&2; exit 1; }

# Users and the UAC scenario that calls them ([field0] instead of -s).
{ echo SEQUENTIAL; for i in $(seq 0 $((USERS - 1))); do printf 'bench%05d;\n' "$i"; done; } > "$OUT/users.csv"
sed 's/\[service\]/[field0]/g' "$ROOT/tests/sipp/uac_call.xml" > "$OUT/uac_call_users.xml"

# Register every user with the UAS's address, from the UAS's own port.
"${SIPP_PIN[@]}" sipp -sf "$ROOT/tests/sipp/register.xml" -inf "$OUT/users.csv" \
    -key contact_host 127.0.0.1 -key contact_port "$UAS_PORT" -key expires 3600 \
    -i 127.0.0.1 -p "$UAS_PORT" 127.0.0.1:"$PROXY_PORT" -m "$USERS" -r 500 \
    -nostdin -timeout 60s -timeout_error -trace_err -error_file "$OUT/register-errors.log" \
    > "$OUT/register.out" 2>&1 || { echo "registration failed, see $OUT/register-errors.log" >&2; exit 1; }

printf '%8s %8s %8s %8s %10s %12s %14s\n' "rate" "calls" "ok" "failed" "retrans" "proxy_cpu_s" "cpu_us/call"
IFS=',' read -r -a RATE_LIST <<< "$RATES"
for RATE in "${RATE_LIST[@]}"; do
    LIMIT=$(( CALLS / RATE + 60 ))
    "${SIPP_PIN[@]}" sipp -sf "$ROOT/tests/sipp/uas_rr.xml" -i 127.0.0.1 -p "$UAS_PORT" -m "$CALLS" \
        -nostdin -timeout "$((LIMIT + 10))s" -trace_err -error_file "$OUT/uas-$RATE-errors.log" \
        > "$OUT/uas-$RATE.out" 2>&1 &
    UAS_PID=$!
    for _ in $(seq 100); do port_in_use "$UAS_PORT" && break; sleep 0.05; done

    before=$(cpu_ticks "$SERVER_PID")
    uac_rc=0
    "${SIPP_PIN[@]}" sipp -sf "$OUT/uac_call_users.xml" -inf "$OUT/users.csv" \
        -i 127.0.0.1 -p "$UAC_PORT" 127.0.0.1:"$PROXY_PORT" -r "$RATE" -m "$CALLS" \
        -nostdin -timeout "${LIMIT}s" -timeout_error \
        -trace_stat -stf "$OUT/uac-$RATE.csv" -fd 1 -trace_err -error_file "$OUT/uac-$RATE-errors.log" \
        > "$OUT/uac-$RATE.out" 2>&1 || uac_rc=$?
    after=$(cpu_ticks "$SERVER_PID")
    kill "$UAS_PID" 2>/dev/null || true
    wait "$UAS_PID" 2>/dev/null || true
    UAS_PID=""

    ok=$(stat_col "$OUT/uac-$RATE.csv" "SuccessfulCall(C)")
    failed=$(stat_col "$OUT/uac-$RATE.csv" "FailedCall(C)")
    retrans=$(stat_col "$OUT/uac-$RATE.csv" "Retransmissions(C)")
    awk -v r="$RATE" -v c="$CALLS" -v ok="$ok" -v f="$failed" -v rt="$retrans" \
        -v ticks=$((after - before)) -v hz="$TICKS" 'BEGIN {
            cpu = ticks / hz
            per = (ok + 0 > 0) ? sprintf("%.1f", cpu * 1e6 / ok) : "n/a"
            printf "%8s %8s %8s %8s %10s %12.2f %14s\n", r, c, ok, f, rt, cpu, per
        }'
    [ "$uac_rc" = 0 ] || echo "  (sipp exit code $uac_rc at $RATE cps; see $OUT/uac-$RATE-errors.log)" >&2
done
echo "details: $OUT" >&2
