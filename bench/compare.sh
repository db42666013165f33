#!/usr/bin/env bash
# sipbox beside Kamailio 5.6: the same routing behaviour on both proxies,
# driven by SIPp over loopback at fixed rates, proxy CPU per call measured
# from /proc (issue 5). Scenarios:
#   A  stateful relay of INVITE/ACK/BYE to a fixed UAS
#      (sipbox: examples/relay; Kamailio: bench/kamailio/relay.cfg)
#   B  A plus Record-Route, in-dialog requests loose-routed (relay with
#      record_route = "yes"; rr.cfg)
#   C  REGISTER load, registrar save in memory (embedded default route with
#      db_path = ""; register.cfg with usrloc db_mode 0)
#   D  push wake-up: calls to unregistered users are held until the user
#      registers 1 s later, then relayed; both POST a push per held call to
#      a local HTTP receiver (examples/push-wait; push.cfg: http_client,
#      t_suspend/t_continue)
#
# The proxy is pinned to core 0, every SIPp process to core 1. For each
# (scenario, rate, run) both proxies run, one after the other, the order
# alternating between runs; each run starts a fresh proxy. Every run is
# bounded: rate x seconds calls, SIPp -timeout.
#
# usage: bench/compare.sh [--scenarios A,B,C,D] [--rates 200,500,1000,2000]
#                         [--runs 3] [--seconds 10] [--quick] [--no-build]
#                         [--proxies kamailio,sipbox] [--kamailio-args ARGS]
#                         [--instance-reuse N] [--suspend in-place|replay]
#   --seconds N  calls per point = rate x N
#   --quick      one run, rates 200,1000, 5 s (a smoke run, a few minutes)
#   --no-build   use the existing target/release/sipbox and route modules
#   --proxies    measure only one of them (default both)
#   --kamailio-args  more kamailio options, e.g. "-x tlsf -X tlsf" (its
#                faster allocators; the default is the Debian build's qm)
#   --instance-reuse N  sipbox's [limits] instance_reuse (default 1: a fresh
#                route instance per invocation, sipbox's default)
#   --suspend MODE  sipbox's [limits] suspend for scenario D's waiting calls
#                (default in-place; replay keeps no instance while waiting)
# Output: a table on stdout; raw logs, SIPp CSVs, configs, results.csv (every
# run, with the system-time part of its CPU per call in sys_us) and
# compare.png in bench/out/<time>/; the section between the compare markers
# of bench/RESULTS.md is regenerated.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH="$ROOT/bench"
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

SCENARIOS=A,B,C,D
RATES=200,500,1000,2000
RUNS=3
SECS=10
BUILD=1
PROXIES=kamailio,sipbox
KAM_ARGS=""
REUSE=1
SUSPEND=in-place
ARGS="$*"
while [ $# -gt 0 ]; do
    case "$1" in
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        --quick) RUNS=1; RATES=200,1000; SECS=5; shift ;;
        --no-build) BUILD=0; shift ;;
        --proxies) PROXIES=$2; shift 2 ;;
        --kamailio-args) KAM_ARGS=$2; shift 2 ;;
        --instance-reuse) REUSE=$2; shift 2 ;;
        --suspend) SUSPEND=$2; shift 2 ;;
        -h|--help) usage "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in "$RUNS" "$SECS" "$REUSE"; do
    case "$v" in ''|*[!0-9]*|0) echo "--runs, --seconds and --instance-reuse take a positive integer" >&2; exit 2 ;; esac
done
case "$SUSPEND" in in-place|replay) ;; *) echo "--suspend: in-place or replay" >&2; exit 2 ;; esac
case "$SCENARIOS" in *[!ABCD,]*|'') echo "--scenarios: a comma-separated subset of A,B,C,D" >&2; exit 2 ;; esac
case ",$PROXIES," in
    ,kamailio,|,sipbox,|,kamailio,sipbox,|,sipbox,kamailio,) ;;
    *) echo "--proxies: kamailio, sipbox or both" >&2; exit 2 ;;
esac
case "$RATES" in *[!0-9,]*|'') echo "--rates: comma-separated calls per second" >&2; exit 2 ;; esac

# Tools: the Debian packages, installed when missing and we are root.
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v kamailio >/dev/null || need+=(kamailio)
# Scenario D's push (http_client) is in Debian's kamailio-utils-modules.
kamailio_mods=$(kamailio -I 2>/dev/null | sed -n 's/.*Default paths to modules: *//p' || true)
[ -e "${kamailio_mods:-/usr/lib/x86_64-linux-gnu/kamailio/modules}/http_client.so" ] ||
    need+=(kamailio-utils-modules)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
command -v taskset >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${need[*]}..." >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    else
        echo "missing packages: ${need[*]} (apt-get install ${need[*]})" >&2
        exit 1
    fi
fi
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores: the proxy on one, SIPp on the other" >&2; exit 1; }
PROXY_PIN=(taskset -c 0)
SIPP_PIN=(taskset -c 1)
HZ=$(getconf CLK_TCK)

WITH_SIPBOX=0
case ",$PROXIES," in *,sipbox,*) WITH_SIPBOX=1 ;; esac
if [ "$BUILD" = 1 ] && [ "$WITH_SIPBOX" = 1 ]; then
    echo "building release (cargo build --release -p sipbox, route modules included)..." >&2
    (cd "$ROOT" && cargo build --release -p sipbox >&2)
fi
BIN="$ROOT/target/release/sipbox"
WASM="$ROOT/target/wasm-routes/wasm32-wasip2/release"
if [ "$WITH_SIPBOX" = 1 ]; then
    [ -x "$BIN" ] || { echo "no $BIN (run without --no-build)" >&2; exit 1; }
    for m in relay push_wait; do
        [ -f "$WASM/$m.wasm" ] || { echo "no $WASM/$m.wasm (run without --no-build)" >&2; exit 1; }
    done
fi

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$BENCH/out/$STAMP"
mkdir -p "$OUT"
RESULTS="$OUT/results.csv"
echo "scenario;rate;run;proxy;calls;ok;failed;retrans;cpu_us;p50_ms;p99_ms;held;sipp_busy;proxy_busy;wall_s;achieved_cps;sys_us" > "$RESULTS"

# Everything started, so that an interrupted run leaves nothing behind:
# proxy and push receiver process groups, SIPp pids.
GROUPS_STARTED=()
SIPP_PIDS=()
cleanup() {
    local p
    for p in "${SIPP_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${GROUPS_STARTED[@]}"; do stop_group "$p"; done
}
trap cleanup EXIT
trap 'echo "compare.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

now() { date +%s.%N; }
# CPU seconds of this shell's waited-for children (the SIPp processes of a
# point, including killed ones), from `times`, which must run in this shell
# (not in a $(...) subshell): `times > FILE; children_cpu FILE`.
children_cpu() {
    tail -1 "$1" | awk '{
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%.3f\n", t }'
}

# Kamailio with bench/kamailio/CFG, @PORT@, @NEXT_HOP@ and @PUSH_URL@ substituted.
start_kamailio() {  # start_kamailio DIR CFG PORT NEXT_HOP [PUSH_URL]
    sed -e "s/@PORT@/$3/g" -e "s/@NEXT_HOP@/$4/g" -e "s|@PUSH_URL@|${5:-}|g" \
        "$BENCH/kamailio/$2.cfg" > "$1/kamailio.cfg"
    # shellcheck disable=SC2086
    start_group "$1/kamailio.log" "${PROXY_PIN[@]}" kamailio -DD -E -f "$1/kamailio.cfg" -m 512 -M 32 $KAM_ARGS
}

# sipbox with a generated sipbox.toml: MODULE ("" = embedded default route)
# and [routes.vars] lines.
start_sipbox() {  # start_sipbox DIR PORT MODULE VARS
    cat > "$1/sipbox.toml" <<EOT
[server]
listen = ["udp:127.0.0.1:$2"]
# Warnings only: a logging proxy would measure its logger.
log = "warn"

[routes]
${3:+module = \"$3\"}

[routes.vars]
$4

[location]
# In memory, as Kamailio's usrloc db_mode 0.
db_path = ""
min_expires = 60
max_expires = 3600

[limits]
# Scenario D holds rate x 1 s calls, each a suspended route instance. Not
# more: each pool slot costs 2 memory mappings at start and each live
# instance about 4 more, and Linux's vm.max_map_count is 65530 (30000
# slots ran out of mappings with 4000 calls held: ENOMEM traps, then abort).
max_instances = 8000
instance_reuse = $REUSE
suspend = "$SUSPEND"

[mi]
# Off: nothing to manage during a measurement, and no fixed ports taken.
http = ""
udp = ""
EOT
    RUST_LOG=warn start_group "$1/sipbox.log" "${PROXY_PIN[@]}" "$BIN" run --config "$1/sipbox.toml"
}

# A SIPp process on core 1 in the background; sets SIPP_PID. Per-second
# statistics go to NAME.csv, per-call response times to NAME_*_rtt.csv.
start_sipp() {  # start_sipp DIR NAME SIPP-ARGS...
    local dir=$1 name=$2
    shift 2
    # -abortunexp off: with several proxy workers a 180 may overtake the 200
    # (Kamailio children=2, sipbox's threads); SIPp then ignores the late
    # 180 instead of failing the call.
    (cd "$dir" && exec "${SIPP_PIN[@]}" sipp "$@" -nostdin -default_behaviors all,-abortunexp \
        -trace_stat -stf "$name.csv" -fd 1 \
        -trace_err -error_file "$name-errors.log" > "$name.out" 2>&1) &
    SIPP_PID=$!
    SIPP_PIDS+=("$SIPP_PID")
}

# Waits for PID to exit within S seconds, then kills it; its exit code.
reap() {  # reap PID S
    local i rc=0
    for i in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || rc=$?
    return $rc
}

# One measurement: SCENARIO at RATE with PROXY (kamailio|sipbox); appends a
# row to results.csv.
run_point() {  # run_point SCENARIO RATE RUN PROXY
    local scen=$1 rate=$2 run=$3 proxy=$4
    local dir="$OUT/$scen-$rate-r$run-$proxy"
    local calls=$((rate * SECS)) limit=$((SECS + 60))
    local pport uas_port uac_port reg_port http_port pgid push_pg="" uas_pid="" reg_pid="" uac_pid
    mkdir -p "$dir"
    pport=$(free_port); uas_port=$(free_port); uac_port=$(free_port); reg_port=$(free_port)
    users_csv "$dir/users.csv" "u$scen" "$calls"

    case "$scen:$proxy" in
        A:kamailio) start_kamailio "$dir" relay "$pport" "127.0.0.1:$uas_port" ;;
        B:kamailio) start_kamailio "$dir" rr "$pport" "127.0.0.1:$uas_port" ;;
        C:kamailio) start_kamailio "$dir" register "$pport" "" ;;
        A:sipbox) start_sipbox "$dir" "$pport" "$WASM/relay.wasm" "next_hop = \"127.0.0.1:$uas_port\"" ;;
        B:sipbox) start_sipbox "$dir" "$pport" "$WASM/relay.wasm" \
            "next_hop = \"127.0.0.1:$uas_port\"
record_route = \"yes\"" ;;
        C:sipbox) start_sipbox "$dir" "$pport" "" "" ;;
        D:*)
            # Both proxies POST a push per held call to the same receiver.
            http_port=$(free_port)
            start_group "$dir/push-receiver.log" "${SIPP_PIN[@]}" python3 "$BENCH/push_receiver.py" "$http_port"
            push_pg=$STARTED_PID
            GROUPS_STARTED+=("$push_pg")
            wait_port "$http_port" "$push_pg" 10 || { echo "push receiver did not start" >&2; exit 1; }
            if [ "$proxy" = kamailio ]; then
                start_kamailio "$dir" push "$pport" "" "http://127.0.0.1:$http_port/push"
            else
                start_sipbox "$dir" "$pport" "$WASM/push_wait.wasm" \
                    "push_url = \"http://127.0.0.1:$http_port/push\"
push_timeout = \"30\""
            fi ;;
    esac
    pgid=$STARTED_PID
    GROUPS_STARTED+=("$pgid")
    if ! wait_port "$pport" "$pgid" 60; then
        echo "$proxy did not bind 127.0.0.1:$pport; its log:" >&2
        tail -20 "$dir/$proxy.log" >&2
        exit 1
    fi
    # Kamailio binds before it forks its workers: let them come up.
    [ "$proxy" = kamailio ] && sleep 1

    local uas_xml="$ROOT/tests/sipp/uas_rr.xml" uac_xml="$BENCH/sipp/uac_rr.xml"
    local reg_xml="$ROOT/tests/sipp/register.xml" run_s=$((SECS + 30))
    if [ "$scen" = A ] || [ "$scen" = B ] || [ "$scen" = D ]; then
        echo "SEQUENTIAL" > "$dir/callee.csv"
        echo "bob;" >> "$dir/callee.csv"
        start_sipp "$dir" uas -sf "$uas_xml" -i 127.0.0.1 -p "$uas_port" -m "$calls" -timeout "${limit}s"
        uas_pid=$SIPP_PID
        wait_port "$uas_port" "$uas_pid" 10 || { echo "SIPp UAS did not start: $dir/uas.out" >&2; exit 1; }
    fi

    local cpu0 sys0 sipp0 t0 cpu1 sys1 sipp1 t1 uac_rc=0
    times > "$dir/times0"
    read -r cpu0 sys0 < <(pgrp_ticks "$pgid"); sipp0=$(children_cpu "$dir/times0"); t0=$(now)
    case "$scen" in
        A|B)
            start_sipp "$dir" uac -sf "$uac_xml" -inf "$dir/callee.csv" -i 127.0.0.1 -p "$uac_port" \
                "127.0.0.1:$pport" -r "$rate" -m "$calls" -timeout "${run_s}s" -timeout_error \
                -trace_rtt -rtt_freq 100
            uac_pid=$SIPP_PID ;;
        C)
            start_sipp "$dir" uac -sf "$reg_xml" -inf "$dir/users.csv" -i 127.0.0.1 -p "$uac_port" \
                "127.0.0.1:$pport" -r "$rate" -m "$calls" -timeout "${run_s}s" -timeout_error \
                -key contact_host 127.0.0.1 -key contact_port "$uas_port" -key expires 3600 \
                -trace_rtt -rtt_freq 100
            uac_pid=$SIPP_PID ;;
        D)
            # Callers first; each user's device registers (Contact: the UAS)
            # one second after its call, at the same rate. No cap on calls in
            # progress (-l): about rate x 1 s are held at any time.
            start_sipp "$dir" uac -sf "$uac_xml" -inf "$dir/users.csv" -i 127.0.0.1 -p "$uac_port" \
                "127.0.0.1:$pport" -r "$rate" -m "$calls" -timeout "$((run_s + 30))s" -timeout_error \
                -l "$calls" -trace_rtt -rtt_freq 100
            uac_pid=$SIPP_PID
            sleep 1
            start_sipp "$dir" reg -sf "$reg_xml" -inf "$dir/users.csv" -i 127.0.0.1 -p "$reg_port" \
                "127.0.0.1:$pport" -r "$rate" -m "$calls" -timeout "${run_s}s" -timeout_error \
                -key contact_host 127.0.0.1 -key contact_port "$uas_port" -key expires 3600
            reg_pid=$SIPP_PID ;;
    esac
    reap "$uac_pid" "$((run_s + 60))" || uac_rc=$?
    t1=$(now)
    [ -z "$reg_pid" ] || reap "$reg_pid" 10 || true
    # The UAS ends by itself after its last BYE (-m); it is killed when
    # calls failed.
    [ -z "$uas_pid" ] || reap "$uas_pid" 5 || true
    times > "$dir/times1"
    read -r cpu1 sys1 < <(pgrp_ticks "$pgid"); sipp1=$(children_cpu "$dir/times1")
    if ! alive "$pgid"; then
        # Its CPU time left with it: no per-call figure for this point.
        echo "  $proxy died during the run; see $dir/$proxy.log" >&2
        cpu1=nan
    fi
    SIPP_PIDS=()
    stop_group "$pgid"
    [ -z "$push_pg" ] || stop_group "$push_pg"
    GROUPS_STARTED=()

    local ok failed retrans held p50 p99 achieved
    ok=$(stat_col "$dir/uac.csv" "SuccessfulCall(C)")
    failed=$(stat_col "$dir/uac.csv" "FailedCall(C)")
    retrans=0
    for f in "$dir/uac.csv" "$dir/uas.csv" "$dir/reg.csv"; do
        [ -s "$f" ] || continue
        r=$(stat_col "$f" "Retransmissions(C)")
        [ "$r" = "?" ] || retrans=$((retrans + r))
    done
    held=-
    [ "$scen" = D ] && held=$(stat_max "$dir/uac.csv" "CurrentCall")
    read -r p50 p99 < <(rtt_percentiles "$dir"/*_rtt.csv)
    # The caller's mean rate while it was creating its calls: below the
    # target, SIPp (or the proxy holding it back) did not reach the rate.
    achieved=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "TotalCallCreated") c = i; if ($i == "CallRate(C)") r = i }; next }
        c && $c + 0 >= n && !done { print $r + 0; done = 1 } END { if (!done) print "nan" }' n="$calls" "$dir/uac.csv")
    awk -v s="$scen" -v r="$rate" -v n="$run" -v p="$proxy" -v c="$calls" -v ok="$ok" -v f="$failed" \
        -v rt="$retrans" -v t_0="$cpu0" -v t_1="$cpu1" -v hz="$HZ" -v p50="$p50" -v p99="$p99" -v h="$held" \
        -v s0="$sipp0" -v s1="$sipp1" -v t0="$t0" -v t1="$t1" -v ach="$achieved" -v secs="$SECS" \
        -v k_0="$sys0" -v k_1="$sys1" 'BEGIN {
            # Busy = CPU over the offered load'"'"'s duration (calls / rate): a
            # core that fell behind shows more than 1, however long the
            # stragglers took afterwards.
            wall = t1 - t0
            dead = (t_1 == "nan")
            cpu = dead ? 0 : (t_1 - t_0) / hz
            per = (ok + 0 > 0 && !dead) ? sprintf("%.1f", cpu * 1e6 / ok) : "nan"
            sys = (ok + 0 > 0 && !dead) ? sprintf("%.1f", (k_1 - k_0) / hz * 1e6 / ok) : "nan"
            printf "%s;%s;%s;%s;%s;%s;%s;%s;%s;%s;%s;%s;%.2f;%.2f;%.1f;%s;%s\n", s, r, n, p, c, ok, f, rt, per,
                p50, p99, h, (s1 - s0) / secs, cpu / secs, wall, ach, sys
        }' >> "$RESULTS"
    tail -1 "$RESULTS" | awk -F';' '{ printf "  %s %5s cps run %s %-8s ok %s/%s failed %s retrans %s cpu %s us/call (system %s) p50/p99 %s/%s ms\n",
        $1, $2, $3, $4, $6, $5, $7, $8, $9, $17, $10, $11 }' >&2
    [ "$uac_rc" = 0 ] || echo "  (SIPp exit code $uac_rc; see $dir/uac-errors.log)" >&2
}

IFS=',' read -r -a SCEN_LIST <<< "$SCENARIOS"
IFS=',' read -r -a RATE_LIST <<< "$RATES"
echo "results in $OUT" >&2
for scen in "${SCEN_LIST[@]}"; do
    for rate in "${RATE_LIST[@]}"; do
        for run in $(seq "$RUNS"); do
            # Alternate which proxy goes first, so neither always gets the
            # warmer (or the busier) half of the machine's time.
            if [ $((run % 2)) = 1 ]; then order="kamailio sipbox"; else order="sipbox kamailio"; fi
            for proxy in $order; do
                case ",$PROXIES," in *",$proxy,"*) run_point "$scen" "$rate" "$run" "$proxy" ;; esac
            done
        done
    done
done

# Versions and machine, for the report.
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine=$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
    echo "kamailio=$(kamailio -v 2>/dev/null | sed -n 's/^version: kamailio \([^ ]*\).*/\1/p' | head -1)"
    echo "sipp=$(sipp -v 2>&1 | sed -n 's/^ *SIPp \(v[^ ,-]*\).*/\1/p' | head -1)"
    # "+changes": built from a tree with uncommitted changes to the server or route code.
    rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')
    if [ "$rev" != '?' ] && ! (cd "$ROOT" && git diff --quiet HEAD -- host guest-sdk examples wit 2>/dev/null); then
        rev="$rev+changes"
    fi
    echo "sipbox=$("$BIN" --version 2>/dev/null || echo '?') ($rev)"
    echo "command=bench/compare.sh $ARGS"
    echo "kamailio_cmd=kamailio -DD -E -f CFG -m 512 -M 32${KAM_ARGS:+ $KAM_ARGS}"
    echo "sipbox_limits=instance_reuse = $REUSE, suspend = $SUSPEND"
    echo "runs=$RUNS"
    echo "seconds=$SECS"
} > "$OUT/meta.txt"
python3 "$BENCH/report.py" "$OUT" "$BENCH/RESULTS.md"
(cd "$OUT" && gnuplot -e "outdir='$OUT'" "$BENCH/plot.gp") 2> "$OUT/gnuplot.log" \
    && echo "plot: $OUT/compare.png" >&2 || echo "gnuplot failed: $OUT/gnuplot.log" >&2
echo "details: $OUT" >&2
