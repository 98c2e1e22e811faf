#!/usr/bin/env bash
# Two underlay uplinks per host (issue 19): each host has one veth to
# each of two routers; guest gA streams iperf3 TCP (8 parallel flows) to
# guest gB. Checks: both of hostA's uplinks carry tunnels (the flows are
# spread by their outer hash); `ip link set down` of router r1's link to
# hostA (hostA's ul0 loses its carrier) moves every flow to ul1 (ul0 sends
# nothing more) with no reset and no stream silent for more than a
# second (iperf3 intervals of 0.2 s); the link back up, ul0 carries
# traffic again. hostB keeps sending on both its uplinks: r1 reaches
# hostA through r2 (the link between the routers, a route of higher
# metric that takes over when r1's direct route goes with its link).
#
#   tests/e2e/uplinks.sh                 build sluiced (debug) and run
#   SLUICED=path tests/e2e/uplinks.sh
#   KEEP_LOGS=1 tests/e2e/uplinks.sh     keep the log directory
#
# Needs root, iproute2, /dev/net/tun; installs iperf3, curl, jq if
# missing. Without root prints `SKIP: <reason>` (and fails in CI).
#
# Topology (NS = slu<pid>-<role>), underlay fd00:99::/64 hosts, fd00:97::/64
# between the routers:
#
#   gA (tapA) -- hostA (fd00:99::a) ul0 -- a0 r1 b0 -- ul0 hostB (fd00:99::b) -- gB (tapB)
#                                   ul1 -- a0 r2 b0 -- ul1
#                                          r1 x -- x r2
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/tests/lib/hosts.sh"

[ "$(id -u)" = 0 ] || skip "the uplinks test needs root (network namespaces, veth, TAP)"
command -v ip >/dev/null 2>&1 || skip "iproute2 ('ip') is not installed"
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing"
need iperf3 iperf3 curl curl jq jq timeout coreutils

if [ -z "${SLUICED:-}" ]; then
  echo "building sluiced (cargo build --locked -p api --bin sluiced)"
  (cd "$repo" && cargo build --locked -q -p api --bin sluiced) || {
    echo "FAIL: building sluiced"
    exit 1
  }
  SLUICED=$repo/target/debug/sluiced
fi

P="slu$$"
T=$(mktemp -d "/tmp/sluice-uplinks.XXXXXX")
t0=$(date +%s)
hosts_trap

# ---------- topology ----------

trap 'echo "FAIL: building the topology, line $LINENO"' ERR
set -e
hosts_netns r1 r2 hostA hostB gA gB || exit 1
for n in r1 r2 hostA hostB gA gB; do
  nx $n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
done
for n in gA gB; do
  nx $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
# MAC_<host><uplink>: a host's uplink; MAC_R<router><host>: the router's side.
MAC_A0=02:00:00:97:0a:00 MAC_A1=02:00:00:97:0a:01
MAC_B0=02:00:00:97:0b:00 MAC_B1=02:00:00:97:0b:01
MAC_R1A=02:00:00:97:1a:00 MAC_R1B=02:00:00:97:1b:00
MAC_R2A=02:00:00:97:2a:00 MAC_R2B=02:00:00:97:2b:00
ip link add ul0 address $MAC_A0 netns "$(ns hostA)" type veth peer name a0 address $MAC_R1A netns "$(ns r1)"
ip link add ul1 address $MAC_A1 netns "$(ns hostA)" type veth peer name a0 address $MAC_R2A netns "$(ns r2)"
ip link add ul0 address $MAC_B0 netns "$(ns hostB)" type veth peer name b0 address $MAC_R1B netns "$(ns r1)"
ip link add ul1 address $MAC_B1 netns "$(ns hostB)" type veth peer name b0 address $MAC_R2B netns "$(ns r2)"
ip link add x netns "$(ns r1)" type veth peer name x netns "$(ns r2)"
for h in hostA hostB; do
  for u in ul0 ul1; do
    nx $h sysctl -qw net.ipv6.conf.$u.disable_ipv6=1
    nx $h ethtool -K $u gro off >/dev/null 2>&1 || true
    nx $h ip link set $u up
  done
done
# Each router: a direct route to each host (through the host's uplink
# on it), and one through the other router at a higher metric. A route
# whose link lost its carrier is ignored (ignore_routes_with_linkdown),
# one whose link is down is gone: either way the other takes over.
for r in 1 2; do
  o=$((3 - r))
  nx r$r sysctl -qw net.ipv6.conf.all.forwarding=1
  for i in a0 b0 x; do
    nx r$r ip link set $i up
    nx r$r sysctl -qw net.ipv6.conf.$i.ignore_routes_with_linkdown=1
  done
  nx r$r ip -6 addr add fd00:97::$r/64 dev x nodad
  if [ $r = 1 ]; then ma=$MAC_A0 mb=$MAC_B0; else ma=$MAC_A1 mb=$MAC_B1; fi
  nx r$r ip -6 route add fd00:99::a/128 dev a0 metric 10
  nx r$r ip -6 neigh replace fd00:99::a lladdr $ma dev a0 nud permanent
  nx r$r ip -6 route add fd00:99::b/128 dev b0 metric 10
  nx r$r ip -6 neigh replace fd00:99::b lladdr $mb dev b0 nud permanent
  nx r$r ip -6 route add fd00:99::a/128 via fd00:97::$o dev x metric 100
  nx r$r ip -6 route add fd00:99::b/128 via fd00:97::$o dev x metric 100
done
set +e
trap - ERR

# start_host HOST ADDRESS NEXT_HOP_UL0 NEXT_HOP_UL1: sluiced with two uplinks.
start_host() {
  local h=$1
  mkdir -p "$T/$h"
  cat >"$T/$h/sluiced.toml" <<EOF
listen = "127.0.0.1:7480"
state_dir = "$T/$h/state"
workers = 1
log_level = "info"

[underlay]
address = "$2"

[[uplinks]]
interface = "ul0"
next_hop_mac = "$3"

[[uplinks]]
interface = "ul1"
next_hop_mac = "$4"

[uplink]
kind = "af_packet"
EOF
  bg "$h" "$T/sluiced-$h.log" "$SLUICED" --config "$T/$h/sluiced.toml"
  SPID[$h]=$BGPID
  if ! wait_for 100 0.1 nx "$h" curl -sf -m 1 http://127.0.0.1:7480/health; then
    fail "sluiced on $h did not come up in 10 s"
    return 1
  fi
}

api() { # api HOST METHOD PATH [JSON]
  local h=$1 m=$2 path=$3 body=${4:-} tok
  tok=$(cat "$T/$h/state/token")
  nx "$h" curl -sS --fail-with-body -m 5 -X "$m" -H "Authorization: Bearer $tok" \
    -H 'Content-Type: application/json' ${body:+--data "$body"} "http://127.0.0.1:7480$path"
}

start_host hostA fd00:99::a $MAC_R1A $MAC_R2A || exit 1
start_host hostB fd00:99::b $MAC_R1B $MAC_R2B || exit 1

MAC_GA=a8:40:25:00:77:05
MAC_GB=a8:40:25:00:77:06
vnic() { # vnic NAME LAST MAC TAP NETNS
  jq -nc --arg name "$1" --arg ip "10.0.0.$2" --arg mac "$3" --arg tap "$4" --arg n "$5" '{
    config: {
      name: $name, guest_mac: $mac, gateway_mac: "a8:40:25:ff:ff:01", vni: 7777,
      ipv4: {addr: $ip, subnet: "10.0.0.0/24", gateway: "10.0.0.1"}, mtu: 1400,
      firewall: [{direction: "in", priority: 11, action: "allow", protocol: "tcp",
                  hosts: {subnet: "10.0.0.0/24"}, ports: {list: [5201]}}],
      limits: {flows: 4096}
    },
    guest: {kind: "tap", name: $tap, netns: $n} }'
}
ok=1
api hostA POST /ports "$(vnic gA 5 $MAC_GA tapA "/run/netns/$(ns gA)")" >/dev/null || ok=0
api hostB POST /ports "$(vnic gB 6 $MAC_GB tapB "/run/netns/$(ns gB)")" >/dev/null || ok=0
V2P=$(jq -nc --arg a "$MAC_GA" --arg b "$MAC_GB" '{mappings: [
  {vni: 7777, ip: "10.0.0.5", guest_mac: $a, host: "fd00:99::a"},
  {vni: 7777, ip: "10.0.0.6", guest_mac: $b, host: "fd00:99::b"}]}')
for h in hostA hostB; do api $h PUT /v2p "$V2P" >/dev/null || ok=0; done
nx gA ip link set tapA address $MAC_GA up || ok=0
nx gA ip addr add 10.0.0.5/24 dev tapA || ok=0
nx gB ip link set tapB address $MAC_GB up || ok=0
nx gB ip addr add 10.0.0.6/24 dev tapB || ok=0
[ "$ok" = 1 ] && pass "setup: two hosts with two uplinks each, gA on hostA, gB on hostB" ||
  { fail "setup"; exit 1; }

u=$(api hostA GET /underlay)
names=$(echo "$u" | jq -r '[.uplinks[] | "\(.name):\(.link_up):\(.in_use)"] | join(",")')
[ "$names" = "ul0:true:true,ul1:true:true" ] && pass "hostA's uplinks: $names" ||
  fail "hostA's uplinks: $u"

# tx of hostA's uplink NAME, from GET /underlay.
tx() { api hostA GET /underlay | jq -r --arg n "$1" '.uplinks[] | select(.name == $n) | .stats.tx'; }

# ---------- iperf3 across a link going down and coming back ----------

SECS=10 DOWN_AT=3 UP_AT=7
bg gB "$T/iperf3-server.log" iperf3 -s -1 -B 10.0.0.6
wait_for 50 0.1 sh -c "ip netns exec $(ns gB) ss -ltn | grep -q ':5201 '" ||
  fail "gB: iperf3 server did not start"
bg gA "$T/iperf3-client.json" iperf3 -c 10.0.0.6 -t $SECS -i 0.2 -P 8 -J
IPERF_PID=$BGPID
sleep $DOWN_AT
t_before=("$(tx ul0)" "$(tx ul1)")
nx r1 ip link set a0 down
t_down=$(date +%s.%N)
# Within a second of the link going down ul0 sends nothing more.
sleep 1
t_settled=("$(tx ul0)" "$(tx ul1)")
sleep $((UP_AT - DOWN_AT - 1))
t_up_start=("$(tx ul0)" "$(tx ul1)")
state_down=$(api hostA GET /underlay | jq -c '[.uplinks[] | {name, link_up, live: (.link_up and .in_use)}]')
nx r1 ip link set a0 up
for _ in $(seq 200); do kill -0 "$IPERF_PID" 2>/dev/null || break; sleep 0.1; done
wait "$IPERF_PID"; irc=$?
t_end=("$(tx ul0)" "$(tx ul1)")
echo "hostA uplink tx (ul0 ul1): before ${t_before[*]}, 1 s after down ${t_settled[*]}, before up ${t_up_start[*]}, end ${t_end[*]}"
echo "hostA while down: $state_down"

if [ "${t_before[0]:-0}" -gt 0 ] && [ "${t_before[1]:-0}" -gt 0 ]; then
  pass "both uplinks carried tunnels before: ul0 ${t_before[0]}, ul1 ${t_before[1]}"
else
  fail "before the link went down: ul0 tx ${t_before[0]:-?}, ul1 tx ${t_before[1]:-?}"
fi
if [ "${t_up_start[0]:-x}" = "${t_settled[0]:-y}" ] && [ "${t_up_start[1]:-0}" -gt "${t_settled[1]:-0}" ]; then
  pass "with r1's link down only ul1 carried tunnels: ul0 +0, ul1 +$((t_up_start[1] - t_settled[1]))"
else
  fail "while down: ul0 ${t_settled[0]:-?} -> ${t_up_start[0]:-?}, ul1 ${t_settled[1]:-?} -> ${t_up_start[1]:-?}"
fi
echo "$state_down" | jq -e '.[0].link_up == false and .[1].live == true' >/dev/null &&
  pass "hostA saw ul0's carrier go: $state_down" || fail "hostA's view while down: $state_down"
if [ "${t_end[0]:-0}" -gt "${t_up_start[0]:-0}" ]; then
  pass "ul0's flows came back with its link: ul0 +$((t_end[0] - t_up_start[0]))"
else
  fail "after the link came back: ul0 ${t_up_start[0]:-?} -> ${t_end[0]:-?}"
fi

J=$T/iperf3-client.json
ierr=$(jq -r '.error // empty' "$J" 2>/dev/null)
ibytes=$(jq -r '.end.sum_received.bytes // 0' "$J" 2>/dev/null)
if [ "$irc" = 0 ] && [ -z "$ierr" ] && [ "${ibytes:-0}" -gt 0 ]; then
  pass "iperf3 gA -> gB (8 flows) across the link going down and up: exit 0, no reset, $ibytes bytes"
else
  fail "iperf3: exit $irc, error '$ierr'"
fi
# Every stream's longest run of 0.2 s intervals without a byte.
gaps=$(jq -r '[.intervals as $iv | range(0; ($iv[0].streams | length)) as $s |
  reduce $iv[] as $i ({run: 0, max: 0};
    if $i.streams[$s].bytes == 0 then .run += $i.streams[$s].seconds | .max = ([.max, .run] | max)
    else .run = 0 end) | .max] | map(. * 1000 | round)' "$J" 2>/dev/null)
worst=$(echo "$gaps" | jq -r 'max // "?"')
if [ "$worst" != "?" ] && [ "$worst" -le 1000 ]; then
  pass "no stream was silent for more than a second: longest ${worst} ms (per stream: $(echo "$gaps" | jq -c .))"
else
  fail "longest silent stretch of a stream: ${worst} ms ($gaps)"
fi
echo "FIGURE: uplink failover: longest silent stretch of a TCP stream ${worst} ms (0.2 s intervals)"
for h in hostA hostB; do
  echo "$h: $(api $h GET /underlay | jq -c '[.uplinks[] | {name, link_up, rx: .stats.rx, tx: .stats.tx, rewritten: .stats.rewritten, downs: .stats.link_downs, ups: .stats.link_ups}]')"
done
m=$(nx hostA curl -s -m 3 http://127.0.0.1:7480/metrics | grep -c '^sluice_uplink_frames_total{uplink="ul[01]"')
[ "$m" = 12 ] && pass "/metrics: 12 sluice_uplink_frames_total lines (2 uplinks x 6 kinds)" ||
  fail "/metrics: $m sluice_uplink_frames_total lines"

t1=$(date +%s)
echo "uplinks: $passes passed, $fails failed in $((t1 - t0)) s"
[ "$fails" -eq 0 ]
