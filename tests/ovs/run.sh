#!/usr/bin/env bash
# The Open vSwitch interop tier: sluice against an independent Geneve
# implementation. Host A is one sluiced (AF_PACKET uplink, a guest on a
# TAP); host B is Open vSwitch's userspace datapath (datapath_type=netdev,
# a `geneve` port with remote_ip and key), its guest behind the OVS
# bridge. Both in network namespaces; the root namespace is never touched.
#
#   tests/ovs/run.sh                 build sluiced (debug) and run
#   SLUICED=path tests/ovs/run.sh    use that binary
#   KEEP_LOGS=1 tests/ovs/run.sh     keep the log directory even on success
#
# Checks (each prints PASS: or FAIL: with what it saw; the exit status is
# non-zero if any failed): ping both ways, IPv4 and IPv6; TCP and UDP both ways with the
# content's SHA-256 compared; OVS sending Geneve control packets (the O
# bit, `set_field:oam->tun_flags`) that the guest must not see, counted
# as `geneve_control` (RFC 8926 §3.4); OVS's outer UDP checksums verified
# by sluice in software (`csum_verified_sw`, no `outer_udp_checksum`);
# the uplink socket's own drops (`socket_drops`) in /metrics after a
# bounded burst sent while sluiced is stopped.
#
# Needs root, iproute2, Debian's openvswitch-switch (installed with
# apt-get when missing), python3, curl, jq, ethtool. Without them it
# prints `SKIP: <reason>` and exits 0 — except with `CI` set, where it
# fails. Every wait is bounded; ovsdb-server, ovs-vswitchd and sluiced are
# started by this script with their own files in a temp dir (no systemd,
# no system database) and stopped, and the namespaces removed, on exit.
#
# Topology:
#
#   gA1 10.0.0.5 (tapA1)                     gB1 10.0.0.6 (eth0)
#        | TAP made by sluiced                    | veth
#   hostA: sluiced, ul0 ----- veth ----- ulb : hostB: ovs-vswitchd
#          fd00:99::a (AF_PACKET)               br-phy fd00:99::b [ulb]
#                                               br-int [gnv0 geneve, vgb]
#
# What OVS needs to talk to sluice, and why:
# - Static neighbours both ways: sluice answers no NDP for its underlay
#   address, so OVS gets fd00:99::a's MAC from `ovs-appctl tnl/neigh/set`
#   (OVS's userspace tunnels keep their own neighbour table), and
#   sluiced's `next_hop_mac` is br-phy's fixed MAC. OVS's tunnel route
#   comes from the kernel route of br-phy's address (`ovs/route/show`).
# - gB1 has a static ARP entry for 10.0.0.5: an ARP broadcast through the
#   tunnel is for no port on host A (sluice demultiplexes by VNI and inner
#   destination MAC: `unknown_port`); sluice's gateway answers ARP only
#   for its own guests.
# - An FDB entry on br-int for gA1's MAC toward gnv0: sluice's router
#   rewrites the inner source MAC to the virtual gateway's, so OVS's
#   NORMAL action never learns gA1's MAC from the tunnel (without it, OVS
#   floods, which with one other port happens to work).
# - `ethtool -K eth0 tx off` in gB1: OVS's netdev datapath reads the veth
#   with AF_PACKET and does not complete partial checksums, so the guest
#   must fill them in itself. `rx off` on host A's ul0: a veth otherwise
#   marks every frame from its peer as checksum-verified, and sluice would
#   rightly believe it; off, sluice verifies OVS's outer checksums itself.
# - `options:csum=true` on the Geneve port: OVS's IPv6 tunnels fill the
#   outer UDP checksum (sluice refuses zero ones by default, RFC 6936).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

in_ci() { [ -n "${CI:-}" ] && [ "${CI}" != "false" ] && [ "${CI}" != 0 ]; }
skip() {
  if in_ci; then
    echo "FAIL: the OVS interop tier cannot run in CI: $*"
    exit 1
  fi
  echo "SKIP: $*"
  exit 0
}

# ---------- prerequisites ----------

[ "$(id -u)" = 0 ] || skip "the OVS interop tier needs root (network namespaces, veth, TAP)"
command -v ip >/dev/null 2>&1 || skip "iproute2 ('ip') is not installed"
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing (no TUN/TAP support)"

# need, ns, nx, pass, fail, stop_pid, bg, wait_for, hosts_cleanup. Its
# `need` fails in CI and skips elsewhere, as `skip` above does.
HOSTS_LIFETIME=240
. "$repo/tests/lib/hosts.sh"
need ovs-vswitchd openvswitch-switch ovsdb-tool openvswitch-switch curl curl jq jq \
  ethtool ethtool ping iputils-ping python3 python3 timeout coreutils

if [ -z "${SLUICED:-}" ]; then
  echo "building sluiced (cargo build --locked -p api --bin sluiced)"
  (cd "$repo" && cargo build --locked -q -p api --bin sluiced) || {
    echo "FAIL: building sluiced"
    exit 1
  }
  SLUICED="$repo/target/debug/sluiced"
fi
[ -x "$SLUICED" ] || { echo "FAIL: SLUICED=$SLUICED is not an executable"; exit 1; }

# ---------- state, logs, cleanup ----------

P="so$$"
T=$(mktemp -d "/tmp/sluice-ovs.XXXXXX")
OVS_DB="unix:$T/ovs/db.sock"
vsctl() { nx hostB ovs-vsctl --db="$OVS_DB" --timeout=10 "$@"; }
appctl() { nx hostB ovs-appctl -t "$T/ovs/vswitchd.ctl" "$@"; }
ofctl() { nx hostB ovs-ofctl "$@"; }

diagnostics() {
  local f
  echo "---- diagnostics (logs in $T) ----"
  nx hostA curl -s -m 3 http://127.0.0.1:7480/stats 2>/dev/null | head -c 4000
  echo
  vsctl show 2>/dev/null
  ofctl dump-flows br-int 2>/dev/null
  appctl ovs/route/show 2>/dev/null | grep -v '^Cached' | head -20
  appctl tnl/neigh/show 2>/dev/null
  for f in "$T"/*.log "$T"/ovs/*.log; do
    [ -f "$f" ] || continue
    echo "-- tail $f"
    tail -n 20 "$f"
  done
}

hosts_trap diagnostics

# ---------- topology ----------

trap 'echo "FAIL: building the topology, line $LINENO"' ERR
set -e

for n in hostA hostB gA1 gB1; do
  ip netns add "$(ns $n)"
  NSES+=("$(ns $n)")
  nx $n ip link set lo up
  nx $n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
done
# The guests speak IPv6 too, without router solicitations.
for n in gA1 gB1; do
  nx $n sysctl -qw net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.default.router_solicitations=0
done

MAC_A=02:00:00:99:0a:01   # hostA ul0 (sluice's underlay NIC)
MAC_B=02:00:00:99:0b:01   # hostB ulb (br-phy's physical port)
MAC_BP=02:00:00:99:0b:02  # hostB br-phy (OVS's tunnel endpoint)
MAC_GA1=a8:40:25:00:77:05
MAC_GB1=a8:40:25:00:77:06
GW_MAC=a8:40:25:ff:ff:01

ip link add ul0 address $MAC_A netns "$(ns hostA)" type veth peer name ulb address $MAC_B netns "$(ns hostB)"
ip link add eth0 address $MAC_GB1 netns "$(ns gB1)" type veth peer name vgb netns "$(ns hostB)"

# Host A: sluice owns fd00:99::a; its kernel must neither answer nor send
# ICMP errors for the tunnels, so no IPv6 on ul0; GRO off (AF_PACKET).
nx hostA sysctl -qw net.ipv6.conf.ul0.disable_ipv6=1
nx hostA ethtool -K ul0 gro off rx off >/dev/null 2>&1 || true
nx hostA ip link set ul0 up
nx hostB ip link set ulb up
nx hostB ip link set vgb up
nx gB1 ip link set eth0 mtu 1400 up
nx gB1 ethtool -K eth0 tx off >/dev/null 2>&1 || true
nx gB1 ip addr add 10.0.0.6/24 dev eth0
nx gB1 ip neigh replace 10.0.0.5 lladdr $MAC_GA1 dev eth0 nud permanent
nx gB1 ip -6 addr add fd00:10::6/64 dev eth0 nodad
nx gB1 ip -6 neigh replace fd00:10::5 lladdr $MAC_GA1 dev eth0 nud permanent

set +e
trap - ERR

# ---------- Open vSwitch on host B ----------

mkdir -p "$T/ovs"
export OVS_RUNDIR="$T/ovs" OVS_LOGDIR="$T/ovs" OVS_DBDIR="$T/ovs" OVS_SYSCONFDIR="$T/ovs"
ovsdb-tool create "$T/ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema >/dev/null || {
  fail "ovsdb-tool create"
  exit 1
}
bg hostB "$T/ovsdb-server.log" ovsdb-server "$T/ovs/conf.db" --remote="punix:$T/ovs/db.sock" \
  --unixctl="$T/ovs/ovsdb.ctl" --pidfile="$T/ovs/ovsdb-server.pid" --log-file="$T/ovs/ovsdb-server.log"
wait_for 50 0.1 test -S "$T/ovs/db.sock" || { fail "ovsdb-server did not start"; exit 1; }
vsctl --no-wait init
bg hostB "$T/ovs-vswitchd.log" ovs-vswitchd "$OVS_DB" --unixctl="$T/ovs/vswitchd.ctl" \
  --pidfile="$T/ovs/ovs-vswitchd.pid" --log-file="$T/ovs/ovs-vswitchd.log" --disable-system
wait_for 50 0.1 test -S "$T/ovs/vswitchd.ctl" || { fail "ovs-vswitchd did not start"; exit 1; }

ovs_ok=1
vsctl add-br br-phy -- set bridge br-phy datapath_type=netdev other-config:hwaddr=$MAC_BP \
  -- add-port br-phy ulb || ovs_ok=0
vsctl add-br br-int -- set bridge br-int datapath_type=netdev \
  -- add-port br-int vgb \
  -- add-port br-int gnv0 -- set interface gnv0 type=geneve \
  options:remote_ip=fd00:99::a options:key=7777 options:csum=true || ovs_ok=0
wait_for 50 0.1 nx hostB ip link show br-phy || ovs_ok=0
nx hostB ip link set br-phy up
nx hostB ip -6 addr add fd00:99::b/64 dev br-phy nodad || ovs_ok=0
# OVS's own route and neighbour tables for its tunnels.
appctl ovs/route/add fd00:99::a/128 br-phy >/dev/null || ovs_ok=0
appctl tnl/neigh/set br-phy fd00:99::a $MAC_A >/dev/null || ovs_ok=0
appctl fdb/add br-int gnv0 0 $MAC_GA1 >/dev/null 2>&1 || echo "note: ovs-appctl fdb/add failed (OVS floods instead)"
# The O bit on UDP to port 9999 from the guest: OVS sends those as
# Geneve control packets, which sluice must never hand to its guest.
ofctl -O OpenFlow15 add-flow br-int \
  "priority=100,in_port=vgb,udp,tp_dst=9999,actions=set_field:oam->tun_flags,output:gnv0" || ovs_ok=0
if [ "$ovs_ok" = 1 ]; then
  pass "OVS: userspace datapath up (br-phy with ulb at fd00:99::b, br-int with geneve gnv0 -> fd00:99::a key 7777, $(ovs-vswitchd --version | head -n 1))"
else
  fail "OVS: setting up the bridges (see the errors above)"
  exit 1
fi

# ---------- sluiced on host A ----------

mkdir -p "$T/hostA"
cat >"$T/hostA/sluiced.toml" <<EOF
listen = "127.0.0.1:7480"
state_dir = "$T/hostA/state"
workers = 1
log_level = "info"

[underlay]
interface = "ul0"
address = "fd00:99::a"
next_hop_mac = "$MAC_BP"

[uplink]
kind = "af_packet"
# Small on purpose: the burst check below overflows it.
rcvbuf = 262144
EOF
bg hostA "$T/sluiced.log" "$SLUICED" --config "$T/hostA/sluiced.toml"
SLUICED_WRAPPER=$BGPID
wait_for 100 0.1 nx hostA curl -sf -m 1 http://127.0.0.1:7480/health || {
  fail "sluiced did not come up in 10 s"
  exit 1
}

api() { # api METHOD PATH [JSON]
  local m=$1 path=$2 body=${3:-} tok
  tok=$(cat "$T/hostA/state/token")
  if [ -n "$body" ]; then
    nx hostA curl -sS --fail-with-body -m 5 -X "$m" -H "Authorization: Bearer $tok" \
      -H 'Content-Type: application/json' --data "$body" "http://127.0.0.1:7480$path"
  else
    nx hostA curl -sS --fail-with-body -m 5 -X "$m" -H "Authorization: Bearer $tok" "http://127.0.0.1:7480$path"
  fi
}

VNIC=$(jq -nc --arg mac "$MAC_GA1" --arg gw "$GW_MAC" '{
  config: {
    name: "gA1", guest_mac: $mac, gateway_mac: $gw, vni: 7777,
    ipv4: {addr: "10.0.0.5", subnet: "10.0.0.0/24", gateway: "10.0.0.1"},
    ipv6: {addr: "fd00:10::5", subnet: "fd00:10::/64", gateway: "fd00:10::1"},
    mtu: 1400,
    firewall: [
      {direction: "in", priority: 10, action: "allow", protocol: "icmp", hosts: {subnet: "10.0.0.0/24"}},
      {direction: "in", priority: 13, action: "allow", protocol: "icmp6", hosts: {subnet: "fd00:10::/64"}},
      {direction: "in", priority: 11, action: "allow", protocol: "tcp", hosts: {subnet: "10.0.0.0/24"}},
      {direction: "in", priority: 12, action: "allow", protocol: "udp", hosts: {subnet: "10.0.0.0/24"}}
    ],
    limits: {flows: 4096}
  },
  guest: {kind: "tap", name: "tapA1"} }')
V2P=$(jq -nc --arg a "$MAC_GA1" --arg b "$MAC_GB1" '{mappings: [
  {vni: 7777, ip: "10.0.0.5", guest_mac: $a, host: "fd00:99::a"},
  {vni: 7777, ip: "10.0.0.6", guest_mac: $b, host: "fd00:99::b"},
  {vni: 7777, ip: "fd00:10::5", guest_mac: $a, host: "fd00:99::a"},
  {vni: 7777, ip: "fd00:10::6", guest_mac: $b, host: "fd00:99::b"}]}')
if api POST /ports "$VNIC" >/dev/null && api PUT /v2p "$V2P" >/dev/null &&
  nx hostA ip link set tapA1 netns "$(ns gA1)"; then
  nx gA1 ip link set tapA1 address $MAC_GA1 mtu 1400 up
  nx gA1 ip addr add 10.0.0.5/24 dev tapA1
  nx gA1 ip route add default via 10.0.0.1
  nx gA1 ip -6 addr add fd00:10::5/64 dev tapA1 nodad
  # Off-host VPC neighbours are reached through the virtual gateway.
  nx gA1 ip -6 neigh replace fd00:10::6 lladdr $GW_MAC dev tapA1 nud permanent
  pass "sluiced: port gA1 (VNI 7777, 10.0.0.5, fd00:10::5) and V2P for gB1 (10.0.0.6, fd00:10::6) on fd00:99::b"
else
  fail "sluiced: programming host A"
  exit 1
fi

stats() { api GET /stats; }
switch_drop() { # the switch's count of a drop reason, all workers
  stats | jq --arg r "$1" '[.workers[].drops[] | select(.reason == $r) | .count] | add // 0'
}
switch_counter() {
  stats | jq --arg k "$1" '[.workers[].switch[$k]] | add // 0'
}

# ---------- 1. ping ----------

# The first packets also settle OVS's and sluice's flow caches.
nx gB1 ping -c 1 -W 2 10.0.0.5 >/dev/null 2>&1
for dir in "gB1 10.0.0.5" "gA1 10.0.0.6" "gB1 fd00:10::5" "gA1 fd00:10::6"; do
  set -- $dir
  out=$(nx "$1" ping -c 3 -i 0.2 -W 2 "$2" 2>&1)
  if echo "$out" | grep -q ' 0% packet loss'; then
    pass "ping $1 -> $2: $(echo "$out" | grep -o '[0-9]* received')"
  else
    fail "ping $1 -> $2: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
  fi
done

# ---------- 2. TCP and UDP, both ways, content checked ----------

head -c $((1024 * 1024)) /dev/urandom >"$T/tcp.bin"
head -c $((300 * 1000)) /dev/urandom >"$T/udp.bin"
xfer() { python3 "$here/xfer.py" "$@"; }

for dir in "gB1 gA1 10.0.0.5" "gA1 gB1 10.0.0.6"; do
  set -- $dir
  from=$1 to=$2 addr=$3
  nx "$to" timeout 30 python3 "$here/xfer.py" tcp-recv 5201 10 >"$T/tcp-$to.out" 2>&1 &
  r=$!
  wait_for 50 0.1 sh -c "ip netns exec $(ns "$to") ss -ltn | grep -q ':5201 '"
  sent=$(nx "$from" timeout 30 python3 "$here/xfer.py" tcp-send "$addr" 5201 "$T/tcp.bin" 2>&1)
  wait "$r"
  got=$(cat "$T/tcp-$to.out")
  if [ -n "$got" ] && [ "$got" = "$sent" ]; then
    pass "TCP $from -> $to: 1 MiB, same SHA-256 ($got)"
  else
    fail "TCP $from -> $to: sent '$sent', received '$got'"
  fi

  nx "$to" timeout 30 python3 "$here/xfer.py" udp-recv 5202 2 >"$T/udp-$to.out" 2>&1 &
  r=$!
  wait_for 50 0.1 sh -c "ip netns exec $(ns "$to") ss -lun | grep -q ':5202 '"
  # Paced (2000/s): this check is about content, not about loss.
  sent=$(nx "$from" timeout 30 python3 "$here/xfer.py" udp-send "$addr" 5202 "$T/udp.bin" 1000 2000 2>&1)
  wait "$r"
  got=$(cat "$T/udp-$to.out")
  if [ -n "$got" ] && [ "$got" = "$sent" ]; then
    pass "UDP $from -> $to: 300 datagrams of 1000 bytes, all there, same SHA-256"
  else
    fail "UDP $from -> $to: sent '$sent', received '$got'"
  fi
done

# ---------- 3. Geneve control packets never reach the guest ----------

ctl0=$(switch_drop geneve_control)
head -c 5000 /dev/urandom >"$T/oam.bin"
nx gA1 timeout 30 python3 "$here/xfer.py" udp-recv 9999 2 >"$T/oam.out" 2>&1 &
r1=$!
nx gA1 timeout 30 python3 "$here/xfer.py" udp-recv 9998 2 >"$T/plain.out" 2>&1 &
r2=$!
wait_for 50 0.1 sh -c "ip netns exec $(ns gA1) ss -lun | grep -q ':9998 '"
nx gB1 python3 "$here/xfer.py" udp-send 10.0.0.5 9999 "$T/oam.bin" 1000 100 >/dev/null
nx gB1 python3 "$here/xfer.py" udp-send 10.0.0.5 9998 "$T/oam.bin" 1000 100 >/dev/null
wait "$r1" "$r2"
ctl1=$(switch_drop geneve_control)
oam=$(cut -d' ' -f1 "$T/oam.out")
plain=$(cut -d' ' -f1 "$T/plain.out")
if [ "$oam" = 0 ] && [ $((ctl1 - ctl0)) = 5 ] && [ "$plain" = 5 ]; then
  pass "OAM: 5 control packets (O bit, set by OVS) dropped as geneve_control, none reached gA1; the same 5 without the O bit did"
else
  fail "OAM: gA1 got '$oam' control datagrams (want 0), geneve_control moved by $((ctl1 - ctl0)) (want 5), plain ones got '$plain' (want 5)"
fi

# ---------- 4. sluice verified OVS's outer checksums ----------

sw=$(switch_counter csum_verified_sw)
bad=$(switch_drop outer_udp_checksum)
if [ "${sw:-0}" -gt 0 ] && [ "$bad" = 0 ]; then
  pass "checksums: $sw outer UDP checksums from OVS verified in software, none bad"
else
  fail "checksums: csum_verified_sw '$sw' (want > 0), outer_udp_checksum '$bad' (want 0)"
fi

# ---------- 5. the uplink socket's own drops are visible ----------

# A bounded burst while sluiced is stopped (SIGSTOP): what its 256 KiB
# receive buffer cannot hold, the kernel drops, and sluice must show it.
SLUICED_PID=$(pgrep -P "$SLUICED_WRAPPER" -x sluiced | head -n 1)
metric() {
  nx hostA curl -s -m 3 http://127.0.0.1:7480/metrics |
    awk -v k="$1" 'index($0, k) == 1 { print $2 }'
}
key='sluice_device_drops_total{worker="0",device="uplink",reason="socket_drops"}'
d0=$(metric "$key")
if [ -n "$SLUICED_PID" ] && [ -n "$d0" ]; then
  head -c $((3000 * 1000)) /dev/urandom >"$T/flood.bin"
  kill -STOP "$SLUICED_PID"
  nx gB1 timeout 30 python3 "$here/xfer.py" udp-send 10.0.0.5 5203 "$T/flood.bin" 1000 >"$T/flood.out" 2>&1
  sleep 0.5
  kill -CONT "$SLUICED_PID"
  sleep 0.5
  d1=$(metric "$key")
  if [ -n "$d1" ] && [ "$d1" -gt "$d0" ]; then
    pass "socket drops: $((d1 - d0)) frames the kernel dropped while sluiced was stopped, in /metrics ($key)"
  else
    fail "socket drops: $key went from '$d0' to '$d1' after a 3000-frame burst"
  fi
else
  fail "socket drops: no sluiced pid ('$SLUICED_PID') or no $key in /metrics ('$d0')"
fi

echo "ovs interop: $passes passed, $fails failed"
[ "$fails" = 0 ]
