#!/usr/bin/env bash
# Instructions per packet for engine-loop cases, from valgrind's callgrind:
# run each case at two packet counts and take the difference, which cancels
# start-up and set-up. Repeatable whatever else the machine is doing.
#
#   bench/scripts/callgrind.sh [--flow-logs] [CASE ...]      (default: every case)
#
# --flow-logs: the port logs flows (engine-loop --flow-logs).
set -euo pipefail
extra=()
if [ "${1:-}" = "--flow-logs" ]; then extra=(--flow-logs); shift; fi
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --locked -q -p bench --bin engine-loop
bin=target/release/engine-loop
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(noop parse-tcp4 uft-out-tcp4 uft-in-tcp4 uft-out-tcp6 uft-in-tcp6 new-flow-out-udp4 new-flow-out-udp6 vpc-out-tcp4 vpc-in-tcp4 vpc-snat-out-tcp4)
lo=20000; hi=60000
count() {
  local out; out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --case "$1" --packets "$2" "${extra[@]}" >/dev/null 2>&1
  awk '/^summary:/ { print $2 }' "$out"
  rm -f "$out"
}
for c in "${cases[@]}"; do
  a=$(count "$c" $lo); b=$(count "$c" $hi)
  awk -v c="$c" -v a="$a" -v b="$b" -v n=$((hi - lo)) 'BEGIN { printf "%s: %.0f instructions/packet\n", c, (b - a) / n }'
done
