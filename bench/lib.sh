# Helpers shared by the benchmark scripts (sourced, not run): --help from a
# script's header, loopback ports, CPU time from /proc, SIPp statistics, and
# processes started in their own process group so that a proxy and every
# process it forks are measured and stopped together.

# A loopback port free for UDP and TCP, below the ephemeral range, never
# handed out before by this script.
used_ports=" "
port_in_use() {  # port_in_use PORT: is it in the kernel's UDP or TCP tables?
    local hex
    hex=$(printf ':%04X ' "$1")
    grep -q -- "$hex" /proc/net/udp /proc/net/tcp 2>/dev/null
}
free_port() {
    local p tries=0
    while [ $tries -lt 1000 ]; do
        p=$((20000 + RANDOM % 12000))
        tries=$((tries + 1))
        case "$used_ports" in *" $p "*) continue ;; esac
        port_in_use "$p" && continue
        used_ports="$used_ports$p "
        echo "$p"
        return 0
    done
    echo "no free port" >&2
    return 1
}

# utime + stime of PID, in clock ticks. Fields after the ")" that ends comm:
# 1 = state (field 3), so utime (field 14) is 12 and stime (field 15) is 13.
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat")
    echo "${stat##*) }" | awk '{ print $12 + $13 }'
}

# utime + stime summed over every live process of process group PGID (a
# Kamailio main process and its forked children; sipbox's threads are in its
# own line), then stime alone: on loopback the kernel's send and receive
# path, which both proxies pay, and sipbox's page faults and route-instance
# slot resets (PAGEMAP_SCAN). After comm: pgrp
# (field 5) is the 3rd field, utime the 12th, stime the 13th.
# cat, not awk FILES: a process may exit between the glob and the read, and
# cat carries on where mawk would stop.
pgrp_ticks() {  # pgrp_ticks PGID -> "TOTAL SYSTEM"
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v pg="$1" '{ sub(/^.*\) /, ""); if ($3 == pg) { t += $12 + $13; k += $13 } } END { print t + 0, k + 0 }'
}

# Whether PID runs: neither gone nor a zombie (a dead child of ours stays
# one, and answers kill -0, until it is waited for).
alive() {  # alive PID
    local state
    state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# One column of the last row of a SIPp -trace_stat CSV, by header name.
stat_col() {  # stat_col FILE NAME
    [ -s "$1" ] || { echo "?"; return; }
    awk -F';' -v name="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
        { last = $col }
        END { print (col ? last + 0 : "?") }' "$1"
}

# The largest value of a column over all rows of a SIPp -trace_stat CSV.
stat_max() {  # stat_max FILE NAME
    [ -s "$1" ] || { echo "?"; return; }
    awk -F';' -v name="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
        col && $col + 0 > max { max = $col + 0 }
        END { print (col ? max + 0 : "?") }' "$1"
}

# p50 and p99 (ms, "P50 P99") of the response times in SIPp -trace_rtt files
# (lines "date_ms;response_time_ms;rtd_no").
rtt_percentiles() {  # rtt_percentiles FILE...
    { cat "$@" 2>/dev/null || true; } | awk -F';' '$2 ~ /^[0-9.]+$/ { print $2 }' | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "? ?"; exit }
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99 + 0.999); if (i99 > NR) i99 = NR
            printf "%.1f %.1f\n", v[i50], v[i99]
        }'
}

# Starts a command in a new session (its own process group, whose id is its
# pid), pinned with the given taskset prefix; sets STARTED_PID. Used for
# the proxies, so that group_ticks and stop_group see every child.
start_group() {  # start_group LOGFILE CMD...
    local log=$1
    shift
    setsid "$@" > "$log" 2>&1 &
    STARTED_PID=$!
}

# SIGTERM to the whole process group, SIGKILL after 10 s.
stop_group() {  # stop_group PGID
    local pgid=$1
    [ -n "$pgid" ] || return 0
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 -- "-$pgid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    wait "$pgid" 2>/dev/null || true
}

# Waits until PORT is bound while PID lives; false after TIMEOUT_S seconds or
# when PID exits.
wait_port() {  # wait_port PORT PID TIMEOUT_S
    local i
    for i in $(seq $(($3 * 10))); do
        port_in_use "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# A users CSV for SIPp -inf: N users PREFIX000000.. read in order.
users_csv() {  # users_csv FILE PREFIX N
    { echo SEQUENTIAL; seq -f "$2%06g;" 0 $(($3 - 1)); } > "$1"
}

# A script's --help: its header comment, from line 2 to the first line that
# is not a comment, so the help never drifts from the header.
usage() {  # usage SCRIPT
    awk 'NR > 1 { if (!/^#/) exit; print }' "$1"
}
