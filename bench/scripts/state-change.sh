#!/usr/bin/env bash
# The time of an unrelated change (one firewall rule added to a port) on a
# host whose state holds N V2P mappings (default 1 000 000): how much of
# the state each change writes. Runs a sluiced on loopback (uplink none,
# the port without a guest device, no root needed) in a temporary state
# directory, loads the mappings in bulk calls of 50 000, then times
# REPEAT rule additions with curl and prints each (with the bytes sluiced
# wrote for it, from /proc/PID/io) and the median.
#
#   bench/scripts/state-change.sh [SLUICED] [N] [REPEAT]
#       SLUICED  a sluiced binary (default: target/debug/sluiced, built)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-}
n=${2:-1000000}
repeat=${3:-9}
if [ -z "$bin" ]; then
  cargo build --locked -q -p api --bin sluiced
  bin=target/debug/sluiced
fi
dir=$(mktemp -d /tmp/sluice-state-change.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/sluiced.toml" <<TOML
listen = "127.0.0.1:$port"
state_dir = "$dir/state"
workers = 1
log_level = "warn"
[underlay]
interface = "lo"
address = "fd00:99::a"
next_hop_mac = "02:00:00:00:00:20"
[uplink]
kind = "none"
[limits]
v2p = $((n + 1000))
TOML
"$bin" --config "$dir/sluiced.toml" >/dev/null 2>"$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
url=http://127.0.0.1:$port
for _ in $(seq 200); do curl -sf "$url/health" >/dev/null && break; sleep 0.1; done
auth="Authorization: Bearer $(cat "$dir/state/token")"
curl -sf -H "$auth" -H 'Content-Type: application/json' -X POST "$url/ports" -d '{
  "config": { "name": "vm1", "guest_mac": "a8:40:25:00:00:05", "gateway_mac": "a8:40:25:ff:ff:01",
    "vni": 7777, "ipv4": { "addr": "10.0.0.5", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1" } },
  "guest": { "kind": "none" } }' >/dev/null
batch=50000
for ((b = 0; b * batch < n; b++)); do
  python3 - "$b" "$batch" "$n" >"$dir/batch.json" <<'PY'
import json, sys
b, size, n = map(int, sys.argv[1:])
first = b * size
ms = []
for i in range(first, min(first + size, n)):
    ms.append({"vni": 100 + i // 60000, "ip": f"10.{(i // 65536) % 256}.{(i // 256) % 256}.{i % 256}",
               "guest_mac": "a8:40:25:00:10:01", "host": "fd00:99::b"})
print(json.dumps({"mappings": ms}))
PY
  curl -sf -H "$auth" -H 'Content-Type: application/json' -X PUT "$url/v2p" --data-binary @"$dir/batch.json" >/dev/null
done
echo "sluiced: $bin; V2P mappings: $(curl -sf "$url/stats" | jq .v2p.entries)"
times=()
for ((i = 0; i < repeat; i++)); do
  before=$(awk '/^wchar/ { print $2 }' /proc/$pid/io)
  t=$(curl -sf -o /dev/null -w '%{time_total}' -H "$auth" -H 'Content-Type: application/json' \
    -X POST "$url/ports/vm1/firewall" \
    -d "{\"direction\":\"in\",\"priority\":$((100 + i)),\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":{\"list\":[$((1000 + i))]}}")
  after=$(awk '/^wchar/ { print $2 }' /proc/$pid/io)
  times+=("$t")
  echo "firewall change $i: ${t}s, $((after - before)) bytes written"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "median of %d: %.4f s\n", NR, a[int((NR + 1) / 2)] }'
