#!/usr/bin/env bash
# Regenerates the engine table of bench/README.md: for every engine-loop
# case, wall-clock ns/packet (noisy on a shared machine: read the ratios to
# the `noop` and `parse-tcp4` rows of the same run), instructions/packet
# from callgrind (stable), allocations/packet, and for new-flow cases flows
# per second and heap bytes per flow.
#
#   bench/scripts/engine-figures.sh [PACKETS]     (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
packets=${1:-1000000}
cargo build --release --locked -q -p bench --bin engine-loop
bin=target/release/engine-loop
out=$(mktemp)
"$bin" --case all --packets "$packets" >"$out"
declare -A ins
while IFS=: read -r c n; do ins[$c]=${n% instructions/packet}; done < <(bench/scripts/callgrind.sh)
echo "| case | ns/packet | × parse | instructions/packet | allocs/packet | flows/s | bytes/flow |"
echo "|---|---:|---:|---:|---:|---:|---:|"
awk -v RS= -v parse_ns=0 '
  { delete f; n = split($0, l, "\n"); for (i = 1; i <= n; i++) { split(l[i], kv, ": "); f[kv[1]] = kv[2] } 
    c = f["case"]; ns[c] = f["ns_per_packet"]; al[c] = f["allocs_per_packet"]; fps[c] = f["flows_per_sec"]; bpf[c] = f["bytes_per_flow"]; order[++k] = c }
  END { for (j = 1; j <= k; j++) { c = order[j]; printf "%s\t%s\t%.2f\t%s\t%s\t%s\n", c, ns[c], ns[c] / ns["parse-tcp4"], al[c], (fps[c] ? fps[c] : "-"), (bpf[c] ? bpf[c] : "-") } }' "$out" |
while IFS=$'\t' read -r c ns ratio al fps bpf; do
  printf '| `%s` | %s | %s | %s | %s | %s | %s |\n' "$c" "$ns" "$ratio" "${ins[$c]# }" "$al" "$fps" "$bpf"
done
rm -f "$out"
