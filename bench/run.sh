#!/usr/bin/env bash
# sluice's benchmarks, side by side with their baselines and peers, in one
# run (issue 6). Writes bench/results/latest.json, bench/results/latest.md
# (the tables) and bench/results/mpps-vs-flows.svg (the plot).
#
#   bench/run.sh --quick    one short pass of each part, small sizes, no
#                           callgrind, no Open vSwitch (< 5 min warm)
#   bench/run.sh --full     everything (≈ 15 min on 2 vCPUs)
#
# Parts: engine cases (ns, allocations, flows/s, bytes/flow; callgrind
# instructions in --full), engine scaling with live flows and firewall
# rules, line rate on DPDK virtual devices (sluiced's full VPC egress and
# ingress against dpdk-testpmd io/macswap and OVS-DPDK conntrack + Geneve
# encap on the same devices), connection setup (a SYN per connection
# through sluiced against OVS conntrack committing the same capture), a
# SYN flood (a neighbour vNIC's throughput alone and while another floods
# SYNs into a full flow table), the kernel path (tests/e2e/run.sh: iperf3
# TCP through two sluiced against a direct veth pair), and the
# control plane (V2P mappings and firewall rules per second).
#
# Needs root for DPDK, OVS and the namespaces; installs what it needs from
# Debian's packages (DPDK and testpmd, OVS-DPDK, valgrind). Without root it
# runs the parts that need none and says what it skipped. Everything it
# starts runs on virtual devices or in namespaces it creates, and is
# stopped by the exit trap. Timings are never asserted: each figure is
# reported with its baseline from the same run. The exit status is 1 when
# a part that ran gave no figure (a part skipped for a missing
# prerequisite, or by design in --quick, is only noted).
#
# Environment: PROFILE (cargo profile; default bench-quick for --quick,
# release for --full), BENCH_FLOWS (line-rate flow counts, e.g. "1024
# 65536"), BENCH_SECS (seconds per line-rate measurement), NO_OVS=1,
# NO_E2E=1, BENCH_CONNS (connections in the connection-setup capture;
# default 100000), BENCH_OUT (where the results go; default bench/results).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

mode=quick
case "${1:-}" in
  --quick | "") mode=quick ;;
  --full) mode=full ;;
  -h | --help) sed -n '2,34p' "$0"; exit 0 ;;
  *) echo "usage: bench/run.sh [--quick|--full]" >&2; exit 2 ;;
esac

if [ "$mode" = quick ]; then
  profile=${PROFILE:-bench-quick}
  flows_list=${BENCH_FLOWS:-1024}
  secs=${BENCH_SECS:-2}
  engine_packets=200000
  scale_flows="1 1024 65536"
  scale_rules="10 1000 10000"
  rule_packets=20000
else
  profile=${PROFILE:-release}
  flows_list=${BENCH_FLOWS:-1024 65536 1048576}
  secs=${BENCH_SECS:-4}
  engine_packets=1000000
  scale_flows="1 1024 65536 1048576"
  scale_rules="10 1000 10000"
  rule_packets=100000
fi

# A debug build (PROFILE=dev, scripts/test.sh's smoke pass) is 10-50x
# slower: smaller sizes, same parts.
if [ "$profile" = dev ]; then
  engine_packets=20000
  scale_flows="1 1024"
  scale_rules="10 1000"
  rule_packets=2000
  secs=1
fi

RES=${BENCH_OUT:-$ROOT/bench/results}
mkdir -p "$RES"
RUN=$ROOT/target/bench-run
rm -rf "$RUN"
mkdir -p "$RUN"
DATA=$RUN/data.jsonl # one JSON object per measurement; report.py reads it
: >"$DATA"
record() { echo "$1" >>"$DATA"; }
note() { echo "bench: $*"; record "{\"kind\":\"note\",\"text\":$(printf '%s' "$*" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}"; }
# A part that ran and gave no figure: noted, and the run's exit status is
# 1 (a part skipped by design or for a missing prerequisite is a note).
failures=0
failed() { note "FAILED: $*"; failures=$((failures + 1)); }

# ---------- clean-up of everything started ----------
PIDS=()
NETNS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf /var/run/dpdk/sluicebench$$* /var/run/dpdk/ovsbench$$* 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

is_root=0
[ "$(id -u)" = 0 ] && is_root=1
start=$(date +%s)

# ---------- prerequisites ----------
have_dpdk=0
if scripts/install-dpdk.sh --tools >/dev/null 2>&1; then
  have_dpdk=1
else
  note "DPDK parts skipped: DPDK is not installed and cannot be (needs root and apt-get)"
fi
apt_need() { # apt_need PACKAGE... : installs the missing ones when root
  local miss=()
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || miss+=("$p")
  done
  [ ${#miss[@]} -eq 0 ] && return 0
  [ $is_root = 1 ] || return 1
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${miss[@]}" >/dev/null 2>&1 ||
    { apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${miss[@]}" >/dev/null 2>&1; }
}
[ "$mode" = full ] && { apt_need valgrind || note "callgrind skipped: valgrind missing"; }

# ---------- build ----------
features=()
[ $have_dpdk = 1 ] && features=(--features api/dpdk)
echo "bench: building ($profile${features:+, api/dpdk})"
if ! cargo build --profile "$profile" --locked -q "${features[@]}" -p api --bin sluiced \
  -p bench --bin engine-loop --bin linerate --bin control-plane; then
  echo "bench: build failed" >&2
  exit 1
fi
BIN=$ROOT/target/$profile
[ "$profile" = dev ] && BIN=$ROOT/target/debug

# ---------- 1. engine cases ----------
kv_json() { # kv_json KIND < name: value lines -> one JSON object per blank-line block
  python3 -c '
import json, sys
kind = sys.argv[1]
for block in sys.stdin.read().strip().split("\n\n"):
    d = {"kind": kind}
    for line in block.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            try:
                v = float(v) if "." in v else int(v)
            except ValueError:
                pass
            d[k] = v
    print(json.dumps(d))' "$1"
}
echo "bench: engine cases ($engine_packets packets each)"
"$BIN/engine-loop" --case all --packets "$engine_packets" | kv_json engine >>"$DATA"

if [ "$mode" = full ] && command -v valgrind >/dev/null; then
  echo "bench: callgrind (instructions per packet: 60 000 minus 20 000 packets)"
  # valgrind 3.19 cannot run AVX-512: this build has no target-cpu=native.
  for c in noop parse-tcp4 uft-out-tcp4 uft-in-tcp4 uft-out-tcp6 uft-in-tcp6 new-flow-out-udp4 new-flow-out-udp6 vpc-out-tcp4 vpc-in-tcp4 vpc-snat-out-tcp4; do
    n=()
    for p in 20000 60000; do
      valgrind --tool=callgrind --callgrind-out-file="$RUN/cg.out" "$BIN/engine-loop" --case "$c" --packets $p >/dev/null 2>&1
      n+=("$(awk '/^summary:/ { print $2 }' "$RUN/cg.out")")
    done
    record "$(awk -v c="$c" -v a="${n[0]}" -v b="${n[1]}" 'BEGIN { printf "{\"kind\":\"callgrind\",\"case\":\"%s\",\"instructions_per_packet\":%.0f}", c, (b - a) / 40000 }')"
  done
fi

# ---------- 2. engine scaling: live flows, firewall rules ----------
echo "bench: engine scaling (flows: $scale_flows; rules: $scale_rules)"
for f in $scale_flows; do
  "$BIN/engine-loop" --case uft-out-udp4-flows --flows "$f" --packets "$engine_packets" | kv_json scale-flows >>"$DATA"
done
for r in $scale_rules; do
  "$BIN/engine-loop" --case new-flow-out-udp4-rules --rules "$r" --packets "$rule_packets" | kv_json scale-rules >>"$DATA"
done

# ---------- 3. line rate on DPDK virtual devices ----------
mbufs_for() { echo $(($1 + 4096)); }
mem_for() { # EAL memory (MB, no hugepages) for two pools of FLOWS mbufs
  # (an mbuf with sluiced's default 2176-byte data room takes ~2.5 KB)
  local m=$((($1 + 4096) * 2 * 2600 / 1048576 + 512))
  echo $m
}
api_port=$((20000 + $$ % 20000))

sluiced_rate() { # sluiced_rate DIR FLOWS PCAP [FLOOD_PCAP]   (DIR: egress | ingress | connect | neighbour)
  # neighbour: vm2 replays PCAP (FLOWS flows) on net_pcap1; with
  # FLOOD_PCAP, vm1 floods its SYNs on net_pcap0 into a 4 096-flow table.
  local dir=$1 flows=$2 pcap=$3 flood=${4:-} d=$RUN/sluiced-$1-$2${4:+-flood}
  mkdir -p "$d"
  # mem_flows sizes EAL memory (two pools of that many mbufs), mbuf_flows
  # each pool (one per DPDK port)
  local src sink guest uplink vdevs mem_flows=$flows mbuf_flows=$flows
  local setup_args=(--flows "$flows")
  if [ "$dir" = neighbour ]; then
    sink=net_null0 uplink=net_null0
    vdevs="\"--vdev\", \"net_pcap1,rx_pcap=$pcap,infinite_rx=1\""
    setup_args=(--neighbour-port net_pcap1 --neighbour-flows "$flows")
    if [ -n "$flood" ]; then
      vdevs="$vdevs, \"--vdev\", \"net_pcap0,rx_pcap=$flood,infinite_rx=1\""
      mem_flows=$((conns * 2)) mbuf_flows=$conns
      setup_args+=(--guest-port net_pcap0 --flows "$conns" --vm1-flow-limit 4096)
    else
      setup_args+=(--no-vm1)
    fi
  elif [ "$dir" != ingress ]; then
    src=net_pcap0 sink=net_null0 guest=net_pcap0 uplink=net_null0
  else
    src=net_pcap0 sink=net_null0 guest=net_null0 uplink=net_pcap0
  fi
  [ "$dir" = neighbour ] || {
    vdevs="\"--vdev\", \"$src,rx_pcap=$pcap,infinite_rx=1\""
    setup_args+=(--guest-port "$guest")
  }
  cat >"$d/sluiced.toml" <<EOF
listen = "127.0.0.1:$api_port"
state_dir = "$d/state"
workers = 1
log_level = "warn"

[underlay]
interface = "dpdk"
address = "fd00:99::a"
next_hop_mac = "02:00:00:00:00:20"
mac = "02:00:00:00:00:10"

[uplink]
kind = "dpdk"
eal_args = ["-l", "1", "--no-huge", "--no-pci", "--no-shconf", "-m", "$(mem_for "$mem_flows")", "--file-prefix", "sluicebench$$", $vdevs, "--vdev", "$sink,no-rx=1"]
port = "$uplink"
mbufs = $(mbufs_for "$mbuf_flows")
EOF
  "$BIN/sluiced" --config "$d/sluiced.toml" >"$d/sluiced.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local url=http://127.0.0.1:$api_port ok=0
  for _ in $(seq 1 100); do
    if curl -sf "$url/health" >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  local out=""
  if [ $ok = 1 ] &&
    "$BIN/linerate" setup --url "$url" --token-file "$d/state/token" "${setup_args[@]}" >"$d/setup.log" 2>&1; then
    if [ "$dir" = connect ]; then
      out=$("$BIN/linerate" conn-rate --url "$url" --token-file "$d/state/token" --flows "$flows" 2>>"$d/setup.log")
    else
      out=$("$BIN/linerate" measure --url "$url" --dir "$dir" --warm-flows "$flows" --secs "$secs" 2>>"$d/setup.log")
    fi
  fi
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if [ -n "$out" ] && [ "$dir" = neighbour ]; then
    local who=sluice-neighbour${flood:+-flooded}
    record "$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); d.update(kind="flood", who="'"$who"'", flows='"$flows"'); print(json.dumps(d))')"
    local what=alone
    [ -n "$flood" ] && what="during the SYN flood"
    echo "bench:   vm2 $what, $flows flows: $out"
  elif [ -n "$out" ] && [ "$dir" = connect ]; then
    record "$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); d.update(kind="connrate", who="sluice", flows='"$flows"'); print(json.dumps(d))')"
    echo "bench:   sluice connection setup, $flows connections: $out"
  elif [ -n "$out" ]; then
    record "$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); d.update(kind="linerate", who="sluice-"+d["dir"], flows='"$flows"'); print(json.dumps(d))')"
    echo "bench:   sluice $dir, $flows flows: $out"
  else
    failed "sluice $dir at $flows flows: $(tail -n 3 "$d/sluiced.log" "$d/setup.log" 2>/dev/null | tr '\n' ' ')"
  fi
}

testpmd_rate() { # testpmd_rate MODE FLOWS PCAP
  local mode=$1 flows=$2 pcap=$3 log=$RUN/testpmd-$1-$2.log
  local t=$((secs + 3))
  timeout -s INT $((t + 20)) dpdk-testpmd -l 0-1 --no-huge --no-pci --no-shconf -m "$(mem_for "$flows")" \
    --file-prefix "sluicebench$$" \
    --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev "net_null0,no-rx=1" -- \
    --forward-mode="$mode" --stats-period 1 --total-num-mbufs "$(mbufs_for "$flows")" --mbuf-size=512 \
    </dev/null >"$log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  # Wait for the replay to load, then let it run.
  for _ in $(seq 1 600); do grep -q "Tx-pps" "$log" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  sleep "$t"
  kill -INT "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  # Port 1 (the net_null sink) Tx-pps, the median of the last samples.
  local mpps
  mpps=$(awk '/statistics for port 1/ { p1 = 1 } /statistics for port 0/ { p1 = 0 } p1 && /Tx-pps:/ { print $2 }' "$log" |
    tail -n "$secs" | sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.3f", a[int((NR + 1) / 2)] / 1e6 }')
  if [ -n "$mpps" ]; then
    record "{\"kind\":\"linerate\",\"who\":\"testpmd-$mode\",\"flows\":$flows,\"mpps\":$mpps}"
    echo "bench:   testpmd $mode, $flows flows: $mpps Mpps"
  else
    failed "testpmd $mode at $flows flows: no figure ($(tail -n 3 "$log" | tr '\n' ' '))"
  fi
}

ovs_rate() { # ovs_rate PIPELINE FLOWS PCAP   (PIPELINE: ct-encap | encap)
  bench/scripts/ovs-rate.sh "$1" "$2" "$3" "$secs" "$RUN/ovs-$1-$2" "ovsbench$$" >"$RUN/ovs-$1-$2.out" 2>&1
  local out
  out=$(grep '^MPPS ' "$RUN/ovs-$1-$2.out" | awk '{ print $2 }')
  if [ -n "$out" ]; then
    record "{\"kind\":\"linerate\",\"who\":\"ovs-$1\",\"flows\":$2,\"mpps\":$out}"
    echo "bench:   OVS $1, $2 flows: $out Mpps"
  else
    failed "OVS $1 at $2 flows: no figure ($(tail -n 3 "$RUN/ovs-$1-$2.out" | tr '\n' ' '))"
  fi
}

if [ $have_dpdk = 1 ] && [ $is_root = 1 ]; then
  run_ovs=0
  if [ "$mode" = full ] && [ -z "${NO_OVS:-}" ]; then
    if apt_need openvswitch-switch-dpdk && [ -x /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk ]; then
      run_ovs=1
    else
      note "OVS skipped: openvswitch-switch-dpdk could not be installed"
    fi
  elif [ "$mode" = quick ]; then
    note "OVS skipped in --quick (starting OVS-DPDK per flow count takes too long); see --full"
  fi
  for f in $flows_list; do
    echo "bench: line rate, $f flows ($secs s each)"
    "$BIN/linerate" gen --dir egress --flows "$f" --out "$RUN/egress-$f.pcap"
    "$BIN/linerate" gen --dir ingress --flows "$f" --out "$RUN/ingress-$f.pcap"
    testpmd_rate io "$f" "$RUN/egress-$f.pcap"
    testpmd_rate macswap "$f" "$RUN/egress-$f.pcap"
    sluiced_rate egress "$f" "$RUN/egress-$f.pcap"
    sluiced_rate ingress "$f" "$RUN/ingress-$f.pcap"
    if [ $run_ovs = 1 ] && [ "$f" -gt 200000 ]; then
      note "OVS at $f flows not measured: OVS sizes its mbuf pool itself (256 Ki mbufs at most), and net_pcap's infinite_rx must hold the whole $f-frame capture in it"
    elif [ $run_ovs = 1 ]; then
      ovs_rate ct-encap "$f" "$RUN/egress-$f.pcap"
      [ "$f" = "$(echo "$flows_list" | awk '{ print $1 }')" ] && ovs_rate encap "$f" "$RUN/egress-$f.pcap"
    fi
    rm -f "$RUN/egress-$f.pcap" "$RUN/ingress-$f.pcap"
  done
  # Connection setup: a capture of SYNs, each a new connection through the
  # whole VPC egress (firewall state, SNAT, Geneve), against OVS's
  # conntrack committing the same connections.
  conns=${BENCH_CONNS:-100000}
  [ "$profile" = dev ] && conns=20000
  echo "bench: connection setup, $conns connections"
  "$BIN/linerate" gen --dir connect --flows "$conns" --out "$RUN/connect-$conns.pcap"
  sluiced_rate connect "$conns" "$RUN/connect-$conns.pcap"
  if [ $run_ovs = 1 ]; then
    bench/scripts/ovs-rate.sh ct-setup "$conns" "$RUN/connect-$conns.pcap" "$secs" "$RUN/ovs-ct-setup" "ovsbench$$" >"$RUN/ovs-ct-setup.out" 2>&1
    out=$(grep '^CONNS_PER_S ' "$RUN/ovs-ct-setup.out" | awk '{ print $2 }')
    if [ -n "$out" ]; then
      record "{\"kind\":\"connrate\",\"who\":\"ovs\",\"flows\":$conns,\"conns_per_s\":$out}"
      echo "bench:   OVS connection setup, $conns connections: $out/s"
    else
      failed "OVS connection setup: no figure ($(tail -n 3 "$RUN/ovs-ct-setup.out" | tr '\n' ' '))"
    fi
  fi
  # The SYN flood: vm2's established flows alone, then while vm1 floods
  # SYNs into a full table (every SYN a new flow evicting a half-open one).
  echo "bench: SYN flood, vm2's 1024 flows with and without vm1's flood"
  "$BIN/linerate" gen --dir neighbour --flows 1024 --out "$RUN/neighbour-1024.pcap"
  sluiced_rate neighbour 1024 "$RUN/neighbour-1024.pcap"
  sluiced_rate neighbour 1024 "$RUN/neighbour-1024.pcap" "$RUN/connect-$conns.pcap"
  rm -f "$RUN/connect-$conns.pcap" "$RUN/neighbour-1024.pcap"
else
  note "line rate skipped: needs root and DPDK"
fi

# ---------- 4. kernel path: two sluiced over AF_PACKET, TAP guests ----------
if [ "$mode" = full ] && [ $is_root = 1 ] && [ -z "${NO_E2E:-}" ]; then
  echo "bench: kernel path (tests/e2e/run.sh, iperf3 TCP)"
  SLUICED=$BIN/sluiced tests/e2e/run.sh >"$RUN/e2e.log" 2>&1 || true
  grep '^FIGURE:' "$RUN/e2e.log" | while read -r l; do
    record "{\"kind\":\"kernel\",\"line\":$(printf '%s' "${l#FIGURE: }" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}"
    echo "bench:   ${l#FIGURE: }"
  done
  grep -q '^FIGURE:' "$RUN/e2e.log" || failed "kernel path: no figure (see $RUN/e2e.log)"
elif [ "$mode" = quick ]; then
  note "kernel path skipped in --quick (tests/e2e/run.sh is its own test tier); see --full"
fi

# ---------- 5. control plane ----------
echo "bench: control plane"
if [ "$profile" = dev ]; then
  cp_args=(--v2p 2000 --rules 100 --rounds 1)
elif [ "$mode" = quick ]; then
  cp_args=(--v2p 20000 --rules 1000 --rounds 1)
else
  cp_args=(--v2p 100000 --rules 10000 --rounds 3)
fi
"$BIN/control-plane" "${cp_args[@]}" >"$RUN/control-plane.out" 2>&1 &&
  kv_json control-plane <"$RUN/control-plane.out" >>"$DATA" ||
  failed "control plane ($(tail -n 2 "$RUN/control-plane.out" | tr '\n' ' '))"

# ---------- report ----------
record "{\"kind\":\"run\",\"mode\":\"$mode\",\"profile\":\"$profile\",\"seconds\":$(($(date +%s) - start)),\"date\":\"$(date -u +%Y-%m-%dT%H:%MZ)\",\"nproc\":$(nproc)}"
python3 bench/scripts/report.py "$DATA" "$RES"
echo "bench: done in $(($(date +%s) - start)) s; results in bench/results/ (latest.json, latest.md, mpps-vs-flows.svg)"
if [ "$failures" -gt 0 ]; then
  echo "bench: $failures part(s) gave no figure (see the FAILED notes above)" >&2
  exit 1
fi
