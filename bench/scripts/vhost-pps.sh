#!/usr/bin/env bash
# vhost-user packets per second: sluice's backend against DPDK's, with the
# same "guest" driving both.
#
# The guest is dpdk-testpmd with `net_virtio_user0,path=SOCK` in txonly
# mode (64-byte frames, one forwarding core); the backend echoes every
# frame back into the guest's receive queue:
#   (a) sluice: vmm-net's example `vhost-echo` (rx_burst -> tx_burst on one
#       VhostUser device, the worker loop without a port);
#   (b) DPDK: dpdk-testpmd `--vdev net_vhost0,iface=SOCK` in io forwarding
#       (one port: what it receives goes back out).
# The figure is the guest's transmit rate (the backend drains its TX ring
# at that rate), median of the per-second samples; the ratio a/b is what
# counts (PEERS.md: this machine is noisy). Each backend polls on CPU 1,
# the guest's forwarding core on CPU 0 (two busy pollers on one CPU
# measure the scheduler, not the code).
#
#   bench/scripts/vhost-pps.sh [SECONDS]      (root: reserves hugepages)
#
# Needs root (virtio-user needs real hugepages: 2 MB pages are reserved
# for the run and the previous count restored after) and dpdk-testpmd
# (scripts/install-dpdk.sh --tools).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
secs=${1:-10}

if [ "$(id -u)" != 0 ]; then
  echo "skipped: needs root (hugepages for DPDK's virtio-user)"
  exit 0
fi
command -v dpdk-testpmd >/dev/null 2>&1 || "$repo/scripts/install-dpdk.sh" --tools
command -v dpdk-testpmd >/dev/null 2>&1 || { echo "FAIL: no dpdk-testpmd"; exit 1; }

(cd "$repo" && cargo build --release --locked -q -p vmm-net --example vhost-echo)
echo_bin="$repo/target/release/examples/vhost-echo"

T=$(mktemp -d /tmp/sluice-vhost-pps.XXXXXX)
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
hp_before=$(cat "$hp")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  umount "$T/huge" 2>/dev/null || true
  echo "$hp_before" >"$hp"
  rm -rf "$T"
}
trap cleanup EXIT
echo $((hp_before + 1024)) >"$hp"
mkdir -p "$T/huge"
mount -t hugetlbfs nodev "$T/huge"

guest() { # guest SOCK LOG: testpmd as the VM, txonly, for $secs s
  timeout -s INT $((secs + 5)) dpdk-testpmd -l 0-1 --main-lcore 1 -n 1 --no-pci --single-file-segments \
    --huge-dir "$T/huge" -m 512 --file-prefix "g$$" \
    --vdev "net_virtio_user0,path=$1,queues=1,queue_size=1024" -- \
    --forward-mode=txonly --txpkts=64 --stats-period 1 --rxd=1024 --txd=1024 \
    --nb-cores=1 >"$2" 2>&1 || true
}
rate() { # median Tx-pps of a testpmd log (one sample per second, first dropped)
  grep -a 'Tx-pps:' "$1" | awk '{print $2}' | tail -n +2 | sort -n |
    awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print 0}'
}

# (a) sluice
taskset -c 1 "$echo_bin" "$T/a.sock" $((secs + 10)) >"$T/echo.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$T/a.sock" ] && break; sleep 0.1; done
guest "$T/a.sock" "$T/guest-a.log"
kill "${PIDS[-1]}" 2>/dev/null || true
a=$(rate "$T/guest-a.log")

# (b) DPDK's vhost backend
timeout -s INT $((secs + 15)) dpdk-testpmd -l 0-1 --main-lcore 0 -n 1 --no-pci --single-file-segments \
  --huge-dir "$T/huge" -m 512 --file-prefix "h$$" \
  --vdev "net_vhost0,iface=$T/b.sock,queues=1" -- \
  --forward-mode=io --stats-period 1 --nb-cores=1 >"$T/host-b.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$T/b.sock" ] && break; sleep 0.1; done
guest "$T/b.sock" "$T/guest-b.log"
kill -INT "${PIDS[-1]}" 2>/dev/null || true
b=$(rate "$T/guest-b.log")

echo "guest tx (Mpps, median of ${secs} 1-s samples): sluice vhost-echo $(awk -v x="$a" 'BEGIN{printf "%.2f", x/1e6}')," \
  "testpmd net_vhost io $(awk -v x="$b" 'BEGIN{printf "%.2f", x/1e6}')"
awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "ratio sluice/testpmd: %.2f\n", a/b; else print "ratio: n/a (no baseline figure)" }'
echo "sluice side (last second): $(grep '^rx-pps' "$T/echo.log" | tail -n 2 | head -n 1 | cut -d'(' -f1)"
