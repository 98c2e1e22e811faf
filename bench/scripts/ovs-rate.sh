#!/usr/bin/env bash
# One Open vSwitch DPDK-datapath measurement for bench/run.sh (the peer):
# a capture replayed by net_pcap (infinite_rx) into a bridge whose flows
# do PIPELINE, out through a userspace Geneve tunnel to a net_null sink.
# Prints `MPPS <value>` (packets the PMD thread received per second over
# SECS, after the capture's first pass) and `CYCLES <per packet>`.
#
#   bench/scripts/ovs-rate.sh ct-encap|encap|ct-setup FLOWS PCAP SECS DIR PREFIX
#
# ct-encap: ct(table=1); +new: ct(commit) then encap; +est: encap (a VM's
# egress with a stateful firewall). encap: Geneve encap alone.
# ct-setup: ct-encap's flows, for a capture whose every frame opens a
# connection (linerate gen --dir connect): the capture's port is added
# after the flows, and the connection count (dpctl/ct-get-nconns) is
# sampled until the first pass has committed all FLOWS; prints
# `CONNS_PER_S <value>` (the rate between the first and last samples).
#
# ovsdb-server and ovs-vswitchd (Debian openvswitch-switch-dpdk's
# ovs-vswitchd-dpdk) run without systemd from DIR, in a network
# namespace of their own (the tunnel's route and neighbour live there);
# both are stopped and the namespace removed on exit. One PMD thread on
# CPU 1, DPDK without hugepages (--no-huge) and without PCI.
set -uo pipefail
pipeline=$1 flows=$2 pcap=$3 secs=$4 D=$5 prefix=$6
VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
[ -x "$VSWITCHD" ] || { echo "no $VSWITCHD (apt-get install openvswitch-switch-dpdk)"; exit 1; }
rm -rf "$D"
mkdir -p "$D"
NS=slbovs$$
export OVS_RUNDIR=$D OVS_LOGDIR=$D OVS_DBDIR=$D OVS_SYSCONFDIR=$D
cleanup() {
  for p in vswitchd ovsdb; do
    [ -f "$D/$p.pid" ] && kill "$(cat "$D/$p.pid")" 2>/dev/null
  done
  sleep 0.5
  for p in vswitchd ovsdb; do
    [ -f "$D/$p.pid" ] && kill -9 "$(cat "$D/$p.pid")" 2>/dev/null
  done
  ip netns del "$NS" 2>/dev/null
  rm -rf "/var/run/dpdk/$prefix" 2>/dev/null
}
trap cleanup EXIT
ip netns add "$NS" || exit 1
nsx() { ip netns exec "$NS" "$@"; }
vsctl() { ovs-vsctl --db="unix:$D/db.sock" --timeout=60 "$@"; }
appctl() { ovs-appctl -t "$D/vswitchd.ctl" "$@"; }

ovsdb-tool create "$D/conf.db" "$SCHEMA" || exit 1
nsx ovsdb-server "$D/conf.db" --remote="punix:$D/db.sock" --pidfile="$D/ovsdb.pid" \
  --unixctl="$D/ovsdb.ctl" --log-file="$D/ovsdb.log" --detach || exit 1
mem=2048
vsctl --no-wait init
vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true \
  "other_config:dpdk-extra=--no-pci --no-huge --legacy-mem -m $mem --no-shconf --file-prefix $prefix" \
  other_config:dpdk-lcore-mask=0x1 other_config:pmd-cpu-mask=0x2
nsx "$VSWITCHD" "unix:$D/db.sock" --pidfile="$D/vswitchd.pid" --unixctl="$D/vswitchd.ctl" \
  --log-file="$D/vswitchd.log" --detach || { tail -n 5 "$D/vswitchd.log"; exit 1; }

vsctl add-br br-phy -- set bridge br-phy datapath_type=netdev other_config:hwaddr=02:00:00:00:00:10 &&
  vsctl add-port br-phy p1 -- set Interface p1 type=dpdk "options:dpdk-devargs=net_null0,no-rx=1" &&
  vsctl add-br br0 -- set bridge br0 datapath_type=netdev &&
  add_p0() {
    vsctl add-port br0 p0 -- set Interface p0 type=dpdk \
      "options:dpdk-devargs=net_pcap0,rx_pcap=$pcap,infinite_rx=1" ofport_request=1
  } &&
  { [ "$pipeline" = ct-setup ] || add_p0; } &&
  vsctl add-port br0 gnv0 -- set Interface gnv0 type=geneve options:remote_ip=fd00:99::bd \
    options:key=7777 ofport_request=2 ||
  { echo "bridge set-up failed"; grep -iE 'err|warn' "$D/vswitchd.log" | tail -n 5; exit 1; }
nsx ip link set br-phy up
nsx ip -6 addr add fd00:99::a/64 dev br-phy nodad
sleep 1
appctl tnl/neigh/set br-phy fd00:99::bd 02:00:00:00:00:20 >/dev/null
ofctl() { ovs-ofctl "$@"; }
case $pipeline in
  ct-encap | ct-setup)
    ofctl add-flows "unix:$D/br0.mgmt" - <<EOF
table=0,priority=10,ip,in_port=1,actions=ct(table=1)
table=1,priority=10,ct_state=+trk+new,ip,actions=ct(commit),output:2
table=1,priority=10,ct_state=+trk+est,ip,actions=output:2
EOF
    ;;
  encap) ofctl add-flow "unix:$D/br0.mgmt" "table=0,priority=10,in_port=1,actions=output:2" ;;
  *) echo "unknown pipeline $pipeline"; exit 2 ;;
esac
ofctl del-flows "unix:$D/br0.mgmt" "table=0,priority=0" 2>/dev/null
if [ "$pipeline" = ct-setup ]; then
  # The capture starts flowing when its port is added: sample from then.
  add_p0 || { echo "adding the capture's port failed"; exit 1; }
  first="" last="" end=$(($(date +%s) + 60))
  while [ "$(date +%s)" -lt $end ]; do
    n=$(appctl dpctl/ct-get-nconns 2>/dev/null | tr -dc '0-9')
    t=$(date +%s.%N)
    [ -z "$n" ] && { sleep 0.01; continue; }
    [ -z "$first" ] && first="$t $n"
    last="$t $n"
    [ "$n" -ge "$flows" ] && break
    sleep 0.01
  done
  echo "samples: first $first, last $last"
  set -- $first $last
  [ $# = 4 ] && [ "$4" -ge "$flows" ] && [ "$2" -lt "$4" ] ||
    { echo "no rate: the connection count did not reach $flows (or the pass ended before the first sample)"; exit 1; }
  awk -v t0="$1" -v n0="$2" -v t1="$3" -v n1="$4" 'BEGIN { printf "CONNS_PER_S %.0f\n", (n1 - n0) / (t1 - t0) }'
  exit 0
fi
# The capture's first pass creates the connections; then measure.
sleep $((2 + flows / 200000))
appctl dpif-netdev/pmd-stats-clear >/dev/null
t0=$(date +%s.%N)
sleep "$secs"
st=$(appctl dpif-netdev/pmd-stats-show)
t1=$(date +%s.%N)
echo "$st" >"$D/pmd-stats.txt"
rx=$(echo "$st" | awk -F: '/packets received/ { gsub(/ /, "", $2); s += $2 } END { print s + 0 }')
cyc=$(echo "$st" | awk -F: '/avg cycles per packet/ { split($2, a, " "); print a[1]; exit }')
tx=$(vsctl get Interface p1 statistics:tx_packets 2>/dev/null)
echo "sink tx_packets (5 s stats): $tx"
awk -v n="$rx" -v a="$t0" -v b="$t1" 'BEGIN { printf "MPPS %.3f\n", n / (b - a) / 1e6 }'
echo "CYCLES ${cyc:-?}"
