#!/usr/bin/env bash
# REGISTER throughput with durable answers (issue 17 item 7: the 200 waits for
# the redb commit). SIPp sends COUNT REGISTERs, each a new AOR, with LIMIT
# outstanding at most, to BINARY serving on 127.0.0.1:25060 with a fresh
# location database in a scratch directory; prints the wall time and rate.
#   bench/register_durability.sh BINARY [COUNT] [LIMIT] [EXTRA_TOML]
# Compare two binaries in the same run (the machine is noisy), e.g. one built
# before the change: EXTRA_TOML lets the newer one get tables the older lacks.
set -euo pipefail
bin=$(realpath "$1"); count=${2:-4000}; limit=${3:-400}; extra=${4:-}
scenario=$(realpath "$(dirname "$0")/../tests/sipp/register.xml")
dir=$(mktemp -d); trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
cd "$dir"
python3 -c "
print('SEQUENTIAL')
for i in range($count): print(f'rb{i:06d};')" > users.csv
printf '[server]\nlisten=["udp:127.0.0.1:25060"]\n[mi]\nhttp=""\nudp=""\n[location]\ndb_path="loc.redb"\nmax_contacts=0\n%b' "$extra" > sipbox.toml
"$bin" run --config sipbox.toml > server.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q serving server.log && break; sleep 0.1; done
start=$(date +%s.%N)
sipp -sf "$scenario" -inf users.csv -key contact_host 127.0.0.1 -key contact_port 25070 -key expires 3600 \
    127.0.0.1:25060 -i 127.0.0.1 -p 25071 -m "$count" -r 10000 -l "$limit" -nostdin -timeout 120 >/dev/null 2>&1 || true
end=$(date +%s.%N)
python3 -c "d=$end-$start; print('%d REGISTERs, %d outstanding: %.2f s, %.0f/s' % ($count, $limit, d, $count/d))"
