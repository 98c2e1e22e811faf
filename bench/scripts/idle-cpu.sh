#!/usr/bin/env bash
# CPU an idle sluiced uses (issue 15's "idle costs nothing"): the demo
# (a simulated host: the real workers over in-memory wires) with
# 2 workers, grown to 8 ports through the API, then its utime+stime from
# /proc/PID/stat over SECS seconds, per thread.
#
#   bench/scripts/idle-cpu.sh [SECS] [SLUICED]   (default 30, target/debug/sluiced)
#
# Builds the debug binaries when SLUICED is not given. Serves on
# 127.0.0.1:7592 so it does not collide with a demo on the default port.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
bin=${2:-}
if [ -z "$bin" ]; then
  cargo build --locked -q -p api --bin sluiced --bin sluiceadm
  bin=target/debug/sluiced
fi
adm=$(dirname "$bin")/sluiceadm
url=http://127.0.0.1:7592
log=$(mktemp)
"$bin" --listen 127.0.0.1:7592 --workers 2 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 50); do grep -q -- '--token-file' "$log" && break; sleep 0.2; done
tok=$(grep -o -- '--token-file [^ ]*' "$log" | head -1 | cut -d' ' -f2)
n=$("$adm" --url $url list-ports | tail -n +2 | wc -l)
i=20
while [ "$n" -lt 8 ]; do
  printf '{"name":"idle%d","guest_mac":"a8:40:25:00:01:%02x","gateway_mac":"a8:40:25:ff:ff:01","vni":7777,"ipv4":{"addr":"10.0.0.%d","subnet":"10.0.0.0/24","gateway":"10.0.0.1"}}' $i $i $i |
    "$adm" --url $url --token-file "$tok" create-vnic --config - --tap "tap-idle$i" >/dev/null
  i=$((i + 1)); n=$((n + 1))
done
echo "ports: $n, workers: 2"
sleep 2
tck=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "$1"; }
a=$(cpu /proc/$pid/stat)
sleep "$secs"
b=$(cpu /proc/$pid/stat)
echo "utime+stime: $((b - a)) ticks of 1/$tck s over $secs s = $(echo "scale=2; 100 * ($b - $a) / $tck / $secs" | bc) % of one CPU"
for t in /proc/$pid/task/*; do echo "  $(cat "$t/comm"): $(cpu "$t/stat") ticks since start"; done
