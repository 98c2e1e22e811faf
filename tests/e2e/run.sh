#!/usr/bin/env bash
# sluice's end-to-end test (tier 4): two sluiced hosts in network
# namespaces, an IPv6 underlay through a router namespace, guests on TAPs
# with real DHCP clients, ping, iperf3, a boundary to an "internet"
# namespace through SNAT, Geneve checked on the wire by tshark, VPC
# isolation with overlapping addresses, metrics, a daemon restart, and
# multicast (socat to a group; the replication mode seen by tshark).
#
#   tests/e2e/run.sh                 build sluiced (release) and run
#   SLUICED=path tests/e2e/run.sh    use that binary (debug is fine for
#                                    correctness; iperf3 figures want release)
#   KEEP_LOGS=1 tests/e2e/run.sh     keep the log directory even on success
#   E2E_UDP_GSO=1 tests/e2e/run.sh  the hosts' uplinks send super-frames as
#                                    UDP GSO aggregates ([uplink] udp_gso =
#                                    true); unset or 0: cut into datagrams
#   E2E_HOLD=120 tests/e2e/run.sh    keep the topology up that long after the
#                                    checks, to look around (Ctrl-C ends it)
#   SLUICEADM=path tests/e2e/run.sh  the CLI the multicast check uses (default:
#                                    sluiceadm beside $SLUICED)
#
# Needs root (namespaces, veth, TAP) and iproute2; installs what else it
# needs from Debian's packages (busybox for udhcpc, iperf3, tshark, curl,
# ethtool, iputils-ping, jq, python3, socat) when they are missing. Without root
# or `ip` it prints `SKIP: <reason>` and exits 0. Every check prints
# `PASS:` or `FAIL:` with what it saw; the exit status is non-zero if any
# failed. Every wait is bounded, every daemon has a lifetime, and the
# namespaces (and with them the links and TAPs) are removed on exit.
#
# Topology (NS = sl<pid>-<role>; the root namespace is never touched):
#
#   gA1 gA2 gA3 (tapA1..3)         gB1 gB2 gB3 (tapB1..3)
#       |  TAPs made by sluiced        |  TAPs made by sluiced
#     hostA (sluiced, ul0)           hostB (sluiced, ul0)
#   fd00:99::a   \                  /   fd00:99::b
#              ra \                / rb
#                  router (IPv6 forwarding)   d1 <-veth-> d2  (the direct
#                    | rx                                  iperf3 baseline)
#                 boundary (fd00:99::100, boundary.py on TAP gnv0)
#                    | ul1 198.51.100.2
#                 internet (198.51.100.1: ping, HTTP)
#
# Choices, and why:
# - The hosts' underlay address is not configured in their kernels, and
#   IPv6 is disabled on the uplink veth (`disable_ipv6`): sluice owns the
#   address through AF_PACKET, and the host kernel must neither answer nor
#   send ICMP errors for the tunnels it sees. sluice does not answer NDP,
#   so the router has permanent neighbour entries for fd00:99::a and ::b.
# - GRO is off on the uplinks (the AF_PACKET backend's recommendation).
# - hostA's guests use the plain TAP spec: sluiced creates the TAP in
#   hostA's namespace and the test moves it into the guest's namespace,
#   which checks that a moved TAP keeps working (the queue stays bound).
#   hostB's guests give `"netns": "/run/netns/<guest ns>"`: sluiced opens
#   the TAP from inside that namespace, so it is created there and the
#   restarted daemon (check 8) re-attaches to it; a TAP name is looked up
#   in the opener's namespace only, so a moved TAP could not be.
# - The boundary is tests/e2e/boundary.py (a TAP and a UDP socket), not a
#   kernel Geneve device: kernels without CONFIG_GENEVE exist (CI VMs).
# - DHCP is busybox udhcpc with tests/e2e/udhcpc.script.
# - Multicast (check 9): Linux routes no IPv6 multicast without a routing
#   daemon, so the router namespace stands in for an underlay switch that
#   floods the admin-local groups: a tc u32 filter mirrors ff04::/16 from
#   each host's link to the other's. gA3 and gB3 (VPC 7777, addresses set
#   by hand: no DHCP) are made for that check only.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# ns, nx, pass, fail, need, bg, wait_for, stop_pid, start_sluiced, hosts_netns
. "$repo/tests/lib/hosts.sh"

# ---------- prerequisites ----------

if [ "$(id -u)" != 0 ]; then
  echo "SKIP: the end-to-end test needs root (network namespaces, veth, TAP)"
  exit 0
fi
if ! command -v ip >/dev/null 2>&1; then
  echo "SKIP: iproute2 ('ip') is not installed"
  exit 0
fi
if [ ! -c /dev/net/tun ]; then
  echo "SKIP: /dev/net/tun is missing (no TUN/TAP support)"
  exit 0
fi

need busybox busybox iperf3 iperf3 tshark tshark curl curl ethtool ethtool \
  ping iputils-ping jq jq python3 python3 timeout coreutils socat socat

if [ -z "${SLUICED:-}" ]; then
  echo "building sluiced and sluiceadm (cargo build --release --locked -p api --bins)"
  (cd "$repo" && cargo build --release --locked -q -p api --bins) || {
    echo "FAIL: building sluiced"
    exit 1
  }
  SLUICED="$repo/target/release/sluiced"
fi
[ -x "$SLUICED" ] || { echo "FAIL: SLUICED=$SLUICED is not an executable"; exit 1; }
SLUICEADM=${SLUICEADM:-$(dirname "$SLUICED")/sluiceadm}
[ -x "$SLUICEADM" ] || { echo "FAIL: SLUICEADM=$SLUICEADM is not an executable"; exit 1; }

# ---------- state, logs, cleanup ----------

P="sl$$"
T=$(mktemp -d "/tmp/sluice-e2e.XXXXXX")
t0=$(date +%s)

diagnostics() {
  local h f
  echo "---- diagnostics (logs in $T) ----"
  for h in hostA hostB; do
    echo "-- $h GET /stats"
    nx "$h" curl -s -m 3 http://127.0.0.1:7480/stats 2>/dev/null | head -c 6000
    echo
  done
  for f in "$T"/*.log; do
    [ -f "$f" ] || continue
    echo "-- tail $f"
    tail -n 25 "$f"
  done
}

hosts_trap diagnostics

# ---------- topology ----------

# Any failure while building it ends the run (the cleanup still runs).
trap 'echo "FAIL: building the topology, line $LINENO"' ERR
set -e

hosts_netns router hostA hostB boundary internet gA1 gA2 gA3 gB1 gB2 gB3 d1 d2 || exit 1
for n in router hostA hostB boundary internet gA1 gA2 gA3 gB1 gB2 gB3 d1 d2; do
  nx $n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
done
# Guests speak IPv4 only: no IPv6 chatter to skew packet counts.
for n in gA1 gA2 gA3 gB1 gB2 gB3; do
  nx $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done

MAC_A=02:00:00:99:0a:01   # hostA ul0
MAC_RA=02:00:00:99:0a:02  # router ra
MAC_B=02:00:00:99:0b:01
MAC_RB=02:00:00:99:0b:02
ip link add ul0 address $MAC_A netns "$(ns hostA)" type veth peer name ra address $MAC_RA netns "$(ns router)"
ip link add ul0 address $MAC_B netns "$(ns hostB)" type veth peer name rb address $MAC_RB netns "$(ns router)"
ip link add ul0 netns "$(ns boundary)" type veth peer name rx netns "$(ns router)"
ip link add ul1 netns "$(ns boundary)" type veth peer name i0 netns "$(ns internet)"
ip link add d1 netns "$(ns d1)" type veth peer name d2 netns "$(ns d2)"

for h in hostA hostB; do
  nx $h sysctl -qw net.ipv6.conf.ul0.disable_ipv6=1
  nx $h ethtool -K ul0 gro off >/dev/null 2>&1 || true
  nx $h ip link set ul0 up
done

nx router sysctl -qw net.ipv6.conf.all.forwarding=1
for i in ra rb rx; do nx router ip link set $i up; done
nx router ip -6 addr add fd00:98::1/64 dev rx nodad
nx router ip -6 route add fd00:99::a/128 dev ra
nx router ip -6 neigh replace fd00:99::a lladdr $MAC_A dev ra nud permanent
nx router ip -6 route add fd00:99::b/128 dev rb
nx router ip -6 neigh replace fd00:99::b lladdr $MAC_B dev rb nud permanent
nx router ip -6 route add fd00:99::100/128 via fd00:98::2 dev rx

nx boundary sysctl -qw net.ipv4.ip_forward=1
nx boundary ip link set ul0 up
nx boundary ip -6 addr add fd00:98::2/64 dev ul0 nodad
nx boundary ip -6 addr add fd00:99::100/128 dev ul0 nodad
nx boundary ip -6 route add default via fd00:98::1 dev ul0
nx boundary ip link set ul1 up
nx boundary ip addr add 198.51.100.2/24 dev ul1
nx internet ip link set i0 up
nx internet ip addr add 198.51.100.1/24 dev i0
nx internet ip route add 203.0.113.0/24 via 198.51.100.2

nx d1 ip link set d1 up
nx d1 ip addr add 192.168.77.1/24 dev d1
nx d2 ip link set d2 up
nx d2 ip addr add 192.168.77.2/24 dev d2

set +e
trap - ERR

# ---------- sluiced ----------

api() { # api HOST METHOD PATH [JSON]: prints the body, fails on non-2xx
  local h=$1 m=$2 path=$3 body=${4:-}
  local tok
  tok=$(cat "$T/$h/state/token")
  if [ -n "$body" ]; then
    nx "$h" curl -sS --fail-with-body -m 5 -X "$m" -H "Authorization: Bearer $tok" \
      -H 'Content-Type: application/json' --data "$body" "http://127.0.0.1:7480$path"
  else
    nx "$h" curl -sS --fail-with-body -m 5 -X "$m" -H "Authorization: Bearer $tok" "http://127.0.0.1:7480$path"
  fi
}

start_sluiced hostA fd00:99::a $MAC_RA || exit 1
start_sluiced hostB fd00:99::b $MAC_RB || exit 1

# vnic NAME VNI LAST MAC TAP [NETNS] [internet]
vnic() {
  local name=$1 vni=$2 last=$3 mac=$4 tap=$5 netns=${6:-} inet=${7:-}
  local guest routes='[]' external='{}'
  if [ -n "$netns" ]; then
    guest=$(jq -nc --arg t "$tap" --arg n "$netns" '{kind:"tap",name:$t,netns:$n}')
  else
    guest=$(jq -nc --arg t "$tap" '{kind:"tap",name:$t}')
  fi
  if [ -n "$inet" ]; then
    routes='[{"dest":"0.0.0.0/0","target":"internet_gateway","class":"system"}]'
    # Each port its own SNAT ports: a host refuses two ports sharing some.
    local first=$((4096 + last * 128))
    external="{\"snat\":[{\"ip\":\"203.0.113.10\",\"first_port\":$first,\"last_port\":$((first + 127))}]}"
  fi
  jq -nc --arg name "$name" --argjson vni "$vni" --arg ip "10.0.0.$last" --arg mac "$mac" \
    --argjson guest "$guest" --argjson routes "$routes" --argjson external "$external" '{
    config: {
      name: $name, guest_mac: $mac, gateway_mac: "a8:40:25:ff:ff:01", vni: $vni,
      ipv4: {addr: $ip, subnet: "10.0.0.0/24", gateway: "10.0.0.1"},
      mtu: 1400,
      dhcp: {dns4: ["10.0.0.2"], domain: "e2e.internal", hostname: $name},
      external: $external, routes: $routes,
      firewall: [
        {direction: "in", priority: 10, action: "allow", protocol: "icmp",
         hosts: {subnet: "10.0.0.0/24"}},
        {direction: "in", priority: 11, action: "allow", protocol: "tcp",
         hosts: {subnet: "10.0.0.0/24"}, ports: {list: [5201]}},
        {direction: "in", priority: 12, action: "allow", protocol: "udp",
         hosts: {subnet: "10.0.0.0/24"}, ports: {list: [5201]}}
      ],
      limits: {flows: 4096}
    },
    guest: $guest }'
}

MAC_GA1=a8:40:25:00:77:05
MAC_GB1=a8:40:25:00:77:06
MAC_GA2=a8:40:25:00:88:05
MAC_GB2=a8:40:25:00:88:06
setup_ok=1
api hostA POST /ports "$(vnic gA1 7777 5 $MAC_GA1 tapA1 '' internet)" >/dev/null || setup_ok=0
api hostA POST /ports "$(vnic gA2 8888 5 $MAC_GA2 tapA2)" >/dev/null || setup_ok=0
api hostB POST /ports "$(vnic gB1 7777 6 $MAC_GB1 tapB1 "/run/netns/$(ns gB1)")" >/dev/null || setup_ok=0
api hostB POST /ports "$(vnic gB2 8888 6 $MAC_GB2 tapB2 "/run/netns/$(ns gB2)")" >/dev/null || setup_ok=0
V2P=$(jq -nc --arg a "$MAC_GA1" --arg b "$MAC_GB1" --arg c "$MAC_GA2" --arg d "$MAC_GB2" '{mappings: [
  {vni: 7777, ip: "10.0.0.5", guest_mac: $a, host: "fd00:99::a"},
  {vni: 7777, ip: "10.0.0.6", guest_mac: $b, host: "fd00:99::b"},
  {vni: 8888, ip: "10.0.0.5", guest_mac: $c, host: "fd00:99::a"},
  {vni: 8888, ip: "10.0.0.6", guest_mac: $d, host: "fd00:99::b"}]}')
V2B='{"routes":[{"vni":7777,"prefix":"0.0.0.0/0","endpoints":["fd00:99::100"]}]}'
for h in hostA hostB; do
  api $h PUT /v2p "$V2P" >/dev/null || setup_ok=0
  api $h PUT /v2b "$V2B" >/dev/null || setup_ok=0
done
if [ "$setup_ok" = 1 ]; then
  pass "setup: 4 ports, V2P (4 mappings) and V2B on both hosts"
else
  fail "setup: programming the hosts (see the curl errors above)"
  exit 1
fi

# hostA's TAPs were made in hostA's namespace: move them to their guests.
# hostB's were made in the guests' namespaces by sluiced itself.
moved_ok=1
for g in A1 A2; do
  nx hostA ip link set tap$g netns "$(ns g$g)" || moved_ok=0
done
# The TAP is the guest's NIC: it carries the port's guest MAC.
declare -A GMAC=([A1]=$MAC_GA1 [B1]=$MAC_GB1 [A2]=$MAC_GA2 [B2]=$MAC_GB2)
for g in A1 A2 B1 B2; do
  nx g$g ip link set tap$g address "${GMAC[$g]}" up || moved_ok=0
done
if [ "$moved_ok" = 1 ]; then
  pass "TAPs: tapA1/tapA2 moved hostA -> guests; tapB1/tapB2 created in gB1/gB2 by sluiced (netns spec)"
else
  fail "TAPs: moving or bringing up the guests' TAPs"
fi

# ---------- the boundary and the internet ----------

bg boundary "$T/boundary.log" python3 "$here/boundary.py" --tap gnv0 --local fd00:99::100 \
  --vni 7777 --lifetime 290 --ready "$T/boundary.ready"
BOUNDARY_PID=$BGPID
if wait_for 50 0.1 test -e "$T/boundary.ready"; then
  nx boundary sysctl -qw net.ipv6.conf.gnv0.disable_ipv6=1
  nx boundary ip link set gnv0 mtu 1400 up
  nx boundary ip route add 203.0.113.10/32 dev gnv0
  # sluice demultiplexes inbound tunnels by (VNI, inner destination MAC):
  # frames to the SNAT address go to gA1's MAC.
  nx boundary ip neigh replace 203.0.113.10 lladdr $MAC_GA1 dev gnv0 nud permanent
else
  fail "boundary: boundary.py did not start"
fi
mkdir -p "$T/www"
echo "hello from the internet" >"$T/www/index.html"
bg internet "$T/http.log" python3 -u -m http.server 80 --bind 198.51.100.1 --directory "$T/www"
wait_for 50 0.1 sh -c "ip netns exec $(ns internet) ss -ltn | grep -q '198.51.100.1:80 '" ||
  fail "internet: the HTTP server did not start"

# ---------- 1. DHCP ----------

declare -A IP=([A1]=10.0.0.5 [B1]=10.0.0.6 [A2]=10.0.0.5 [B2]=10.0.0.6)
for g in A1 B1 A2 B2; do
  out=$(nx g$g timeout 20 busybox udhcpc -i tap$g -f -q -n -t 5 -T 1 -O mtu \
    -s "$here/udhcpc.script" 2>&1)
  lease=$(echo "$out" | grep '^lease ' | tail -n 1)
  have=$(nx g$g ip -4 -o addr show dev tap$g | awk '{print $4}')
  mtu=$(nx g$g cat /sys/class/net/tap$g/mtu)
  if [ "$have" = "${IP[$g]}/24" ] && echo "$lease" | grep -q "router=10.0.0.1"; then
    pass "DHCP g$g: tap$g $have mtu $mtu ($lease)"
  else
    fail "DHCP g$g: wanted ${IP[$g]}/24 via 10.0.0.1, have '$have' mtu $mtu; udhcpc said: $(echo "$out" | tail -n 5 | tr '\n' ' ')"
  fi
done

# ---------- 2. ping ----------

ping_check() { # ping_check GUEST DST WHAT [ping args...]
  local g=$1 dst=$2 what=$3 out
  shift 3
  out=$(nx "$g" ping -c 3 -i 0.2 -W 1 -w 8 "$@" "$dst" 2>&1)
  local rx
  rx=$(echo "$out" | sed -n 's/.* \([0-9]\+\) received.*/\1/p')
  if [ "${rx:-0}" -ge 3 ]; then
    pass "$what: $(echo "$out" | grep -E 'received|rtt' | tr '\n' ' ')"
  else
    fail "$what: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
  fi
}
ping_check gA1 10.0.0.1 "ping gA1 -> gateway 10.0.0.1"
ping_check gA1 10.0.0.6 "ping gA1 -> gB1 10.0.0.6 (VPC 7777, across hosts)"

# ---------- 3. iperf3: overlay, then a direct veth pair ----------

iperf_run() { # iperf_run SERVER_NS CLIENT_NS SERVER_IP -> sets RES="bps bytes" or ""
  local s=$1 c=$2 ip=$3
  RES=""
  bg "$s" "$T/iperf3-$s.log" iperf3 -s -1 -B "$ip"
  wait_for 50 0.1 sh -c "ip netns exec $(ns "$s") ss -ltn | grep -q ':5201 '" || return 0
  nx "$c" timeout 20 iperf3 -c "$ip" -t 3 -J >"$T/iperf3-$c.json" 2>&1 || return 0
  RES=$(jq -r '"\(.end.sum_received.bits_per_second) \(.end.sum_received.bytes)"' "$T/iperf3-$c.json")
}
fmt_gbps() { awk -v b="$1" 'BEGIN { printf "%.2f Gbit/s", b / 1e9 }'; }

iperf_run gB1 gA1 10.0.0.6
ov=$RES
iperf_run d2 d1 192.168.77.2
dv=$RES
ov_bps=${ov%% *} ov_bytes=${ov##* } dv_bps=${dv%% *} dv_bytes=${dv##* }
if [ -n "$ov" ] && awk -v b="$ov_bytes" 'BEGIN { exit !(b > 0) }'; then
  pass "iperf3 gA1 -> gB1 over sluice (3 s): $(fmt_gbps "$ov_bps"), $ov_bytes bytes"
else
  fail "iperf3 gA1 -> gB1 over sluice: no result ($(tail -c 300 "$T/iperf3-gA1.json" 2>/dev/null | tr '\n' ' '))"
fi
if [ -n "$dv" ] && awk -v b="$dv_bytes" 'BEGIN { exit !(b > 0) }'; then
  pass "iperf3 d1 -> d2 over a direct veth pair (3 s): $(fmt_gbps "$dv_bps"), $dv_bytes bytes"
else
  fail "iperf3 direct veth: no result ($(tail -c 300 "$T/iperf3-d1.json" 2>/dev/null | tr '\n' ' '))"
fi
if [ -n "$ov" ] && [ -n "$dv" ]; then
  echo "FIGURE: iperf3 TCP 3 s: sluice overlay $(fmt_gbps "$ov_bps"), direct veth $(fmt_gbps "$dv_bps"), ratio $(awk -v a="$ov_bps" -v b="$dv_bps" 'BEGIN { printf "%.3f", a / b }')"
fi

# UDP packets per second: 64-byte datagrams as fast as iperf3 sends them
# for 3 s, counted where they arrive (the receiving interface's
# rx_packets): iperf3's own report needs its control connection, which a
# flood through the overlay can hold up past any sane timeout.
udp_run() { # udp_run SERVER_NS CLIENT_NS SERVER_IP SERVER_DEV -> sets RES="pps" or ""
  local s=$1 c=$2 ip=$3 dev=$4 before after
  RES=""
  bg "$s" "$T/iperf3u-$s.log" iperf3 -s -1 -B "$ip"
  local srv=$BGPID
  wait_for 50 0.1 sh -c "ip netns exec $(ns "$s") ss -ltn | grep -q ':5201 '" || return 0
  before=$(nx "$s" cat "/sys/class/net/$dev/statistics/rx_packets")
  nx "$c" timeout 8 iperf3 -c "$ip" -u -b 0 -l 64 -t 3 >"$T/iperf3u-$c.log" 2>&1
  sleep 0.5
  after=$(nx "$s" cat "/sys/class/net/$dev/statistics/rx_packets")
  kill "$srv" 2>/dev/null
  RES=$(((after - before) / 3))
}
udp_run gB1 gA1 10.0.0.6 tapB1
ov_pps=$RES
udp_run d2 d1 192.168.77.2 d2
dv_pps=$RES
if [ -n "$ov_pps" ] && [ "$ov_pps" -gt 1000 ]; then
  pass "iperf3 UDP 64-byte gA1 -> gB1 over sluice (3 s): $ov_pps packets/s arrived"
else
  fail "iperf3 UDP over sluice: ${ov_pps:-no} packets/s ($(tail -c 300 "$T/iperf3u-gA1.log" 2>/dev/null | tr '\n' ' '))"
fi
if [ -n "$ov_pps" ] && [ -n "$dv_pps" ] && [ "$dv_pps" -gt 0 ]; then
  echo "FIGURE: iperf3 UDP 64 B 3 s: sluice overlay $ov_pps pps, direct veth $dv_pps pps, ratio $(awk -v a="$ov_pps" -v b="$dv_pps" 'BEGIN { printf "%.3f", a / b }')"
fi

# ---------- 4. internet through SNAT ----------

ping_check gA1 198.51.100.1 "ping gA1 -> internet 198.51.100.1 (SNAT, boundary)"
body=$(nx gA1 curl -s -m 5 http://198.51.100.1/ 2>&1)
seen=$(grep -o '^[0-9.]* - - .*"GET / ' "$T/http.log" | tail -n 1 | awk '{print $1}')
if [ "$body" = "hello from the internet" ] && [ "$seen" = "203.0.113.10" ]; then
  pass "HTTP gA1 -> internet: got the page; the server saw source $seen"
else
  fail "HTTP gA1 -> internet: body '$body', server saw source '${seen:-nothing}'"
fi

# The boundary is done: its counters say whether every tunnel from sluice
# carried the "external" option (class 0xFF59, type 1).
stop_pid "$BOUNDARY_PID"
bstats=$(grep '^boundary:' "$T/boundary.log" | tail -n 1)
decap=$(echo "$bstats" | sed -n 's/.* decap=\([0-9]*\).*/\1/p')
ext=$(echo "$bstats" | sed -n 's/.* external_opt=\([0-9]*\).*/\1/p')
if [ "${decap:-0}" -gt 0 ] && [ "$decap" = "$ext" ]; then
  pass "boundary: every tunnel from hostA carried the external option ($bstats)"
else
  fail "boundary: tunnels from hostA and external options differ ('${bstats:-no counters}')"
fi

# ---------- 5 and 6. Geneve on the wire; isolation of overlapping VPCs ----------

cap() { # cap NS IF FILTER FILE -> starts tshark, waits until it captures
  local n=$1 i=$2 f=$3 file=$4
  bg "$n" "$file.log" tshark -n -i "$i" -f "$f" -a duration:15 -w "$file"
  CAPS+=("$BGPID")
  wait_for 100 0.1 grep -q "Capturing on" "$file.log"
}
CAPS=()
cap router rb "udp port 6081" "$T/rb.pcapng" || fail "tshark on router rb did not start"
cap gB1 tapB1 icmp "$T/tapB1.pcapng" || fail "tshark on gB1 tapB1 did not start"
cap gB2 tapB2 icmp "$T/tapB2.pcapng" || fail "tshark on gB2 tapB2 did not start"
in_packets() { # in_packets HOST PORT: the port's inbound packet counter
  nx "$1" curl -s -m 3 "http://127.0.0.1:7480/ports/$2/stats" | jq -r '.stats.in.packets // "?"'
}
# VPC 8888 (same addresses as 7777) with payload 0x88.., watching gB1's
# counters; then VPC 7777 with payload 0x77.. (shows the captures work).
before_b1=$(in_packets hostB gB1)
ping_check gA2 10.0.0.6 "ping gA2 -> gB2 10.0.0.6 (VPC 8888, same addresses as VPC 7777)" -p 88
after_b1=$(in_packets hostB gB1)
ping_check gA1 10.0.0.6 "ping gA1 -> gB1 (VPC 7777, during capture)" -p 77
sleep 0.5
for p in "${CAPS[@]}"; do stop_pid "$p"; done

# VNI: count pairs, in decimal (tshark prints the field in hex).
vnis=$(tshark -n -r "$T/rb.pcapng" -Y geneve -T fields -e geneve.vni 2>/dev/null |
  while read -r v; do printf '%d\n' "$v"; done | sort | uniq -c | awk '{ printf " %s:%s", $2, $1 }')
for v in 7777 8888; do
  if tshark -n -r "$T/rb.pcapng" -Y "geneve.vni == $v" -T fields -e frame.number 2>/dev/null | grep -q .; then
    pass "Geneve on router rb (toward hostB) with VNI $v (frames by VNI:$vnis)"
  else
    fail "no Geneve with VNI $v on router rb (saw:${vnis:- nothing})"
  fi
done
count() { # count FILE FILTER
  tshark -n -r "$1" -Y "$2" -T fields -e frame.number 2>/dev/null | grep -c .
}
req77='icmp.type == 8 && data.data contains 77:77:77:77'
req88='icmp.type == 8 && data.data contains 88:88:88:88'
b1_77=$(count "$T/tapB1.pcapng" "$req77")
b1_88=$(count "$T/tapB1.pcapng" "$req88")
b2_77=$(count "$T/tapB2.pcapng" "$req77")
b2_88=$(count "$T/tapB2.pcapng" "$req88")
if [ "$b1_77" -ge 3 ] && [ "$b2_88" -ge 3 ] && [ "$b1_88" = 0 ] && [ "$b2_77" = 0 ]; then
  pass "isolation: gB1 saw $b1_77 VPC-7777 echo requests and $b1_88 from VPC 8888; gB2 saw $b2_88 VPC-8888 and $b2_77 from VPC 7777"
else
  fail "isolation: gB1 saw 7777:$b1_77 8888:$b1_88; gB2 saw 7777:$b2_77 8888:$b2_88 (wanted >=3, 0, 0, >=3)"
fi
if [ "$before_b1" != "?" ] && [ "$before_b1" = "$after_b1" ]; then
  pass "isolation: gB1's inbound packet counter unchanged ($before_b1) while gA2 pinged gB2"
else
  fail "isolation: gB1's inbound packet counter went $before_b1 -> $after_b1 while gA2 pinged gB2"
fi

# ---------- 7. metrics ----------

m=$(nx hostA curl -s -m 3 http://127.0.0.1:7480/metrics | grep '^sluice_port_packets_total{port="gA1"')
if echo "$m" | awk '{ s += $NF } END { exit !(s > 0) }'; then
  pass "metrics hostA: $(echo "$m" | tr '\n' ' ')"
else
  fail "metrics hostA: sluice_port_packets_total for gA1: '${m:-absent}'"
fi
# The uplink's UDP GSO (off unless E2E_UDP_GSO=1): hostA sent the iperf3
# stream's super-frames as UDP GSO sends, none refused; off, none. hostB's
# received aggregates are reported, not checked (the kernel decides).
msum() { # msum HOST FAMILY: the sum of FAMILY's lines in HOST's /metrics, or "" if it has none
  nx "$1" curl -s -m 3 http://127.0.0.1:7480/metrics |
    awk -v f="$2" 'index($0, f "{") == 1 { s += $NF; n++ } END { if (n) print s }'
}
gso=$(msum hostA sluice_device_tx_udp_gso_total)
refused=$(msum hostA sluice_device_udp_gso_refused_total)
gro=$(msum hostB sluice_device_udp_gro_frames_total)
grod=$(msum hostB sluice_device_udp_gro_datagrams_total)
seen="hostA tx_udp_gso ${gso:-absent}, udp_gso_refused ${refused:-absent}; hostB udp_gro_frames ${gro:-absent}, udp_gro_datagrams ${grod:-absent}"
if [ "${E2E_UDP_GSO:-0}" != 1 ]; then
  if [ "$gso" = 0 ] && [ "$refused" = 0 ]; then
    pass "metrics: UDP GSO off, no UDP GSO send ($seen)"
  else
    fail "metrics: UDP GSO off but $seen"
  fi
elif [ -n "$gso" ] && [ "$gso" -gt 0 ] && [ "$refused" = 0 ]; then
  pass "metrics: the iperf3 stream went out as UDP GSO sends ($seen)"
else
  fail "metrics: UDP GSO on, expected tx_udp_gso > 0 and udp_gso_refused 0: $seen"
fi

# ---------- 8. restart hostB ----------

pid=${SPID[hostB]}
kill -TERM "$pid"
wait_for 100 0.1 sh -c "! kill -0 $pid" || true
if kill -0 "$pid" 2>/dev/null; then
  fail "restart: sluiced on hostB ignored SIGTERM for 10 s"
  stop_pid "$pid"
else
  wait "$pid"
  rc=$?
  if [ "$rc" = 0 ]; then pass "restart: sluiced on hostB stopped on SIGTERM (status 0)"; else fail "restart: sluiced on hostB exited with status $rc on SIGTERM"; fi
fi
if nx gB1 ip link show tapB1 >/dev/null 2>&1 && ! nx hostB ip link show tapB1 >/dev/null 2>&1; then
  pass "restart: tapB1 persists in gB1 ($(nx gB1 ip -4 -o addr show dev tapB1 | awk '{print $4}'))"
else
  fail "restart: tapB1 is not (only) in gB1 after sluiced stopped"
fi
if start_sluiced hostB fd00:99::b $MAC_RB; then
  ports=$(nx hostB curl -s -m 3 http://127.0.0.1:7480/ports | jq -r '[.[].name] | join(",")')
  if [ "$ports" = "gB1,gB2" ] && ! nx hostB ip link show tapB1 >/dev/null 2>&1; then
    pass "restart: sluiced on hostB restored ports $ports, no TAP re-created in hostB"
  else
    fail "restart: ports after restart '$ports'; tapB1 in hostB: $(nx hostB ip -o link show tapB1 2>&1 | head -c 100)"
  fi
  ping_check gA1 10.0.0.6 "ping gA1 -> gB1 after hostB's sluiced restarted (no new DHCP)"
fi

# ---------- 9. multicast ----------

# gA1 sends UDP datagrams to 239.1.1.1 (VPC 7777, M2P ff04::1:1). gA3
# (hostA, the sender's host) and gB1 (hostB) subscribed; gB3 (hostB, same
# VPC, same firewall) did not; gA2 (VPC 8888) subscribed in its own VPC.
# Every receiver's kernel joins the group (socat), so the only thing
# between a datagram and a receiver is sluice. First with `underlay`
# replication (one datagram to ff04::1:1 on hostA's link), then
# `external` (head-end: unicast Geneve to fd00:99::b).
adm() { # adm HOST ARGS...: sluiceadm against HOST's sluiced
  local h=$1
  shift
  nx "$h" "$SLUICEADM" --url http://127.0.0.1:7480 --token-file "$T/$h/state/token" "$@"
}
MC_GROUP=239.1.1.1 MC_UNDERLAY=ff04::1:1 MC_N=5
MAC_GA3=a8:40:25:00:77:07
MAC_GB3=a8:40:25:00:77:08
mc_ok=1
api hostA POST /ports "$(vnic gA3 7777 7 $MAC_GA3 tapA3)" >/dev/null || mc_ok=0
api hostB POST /ports "$(vnic gB3 7777 8 $MAC_GB3 tapB3 "/run/netns/$(ns gB3)")" >/dev/null || mc_ok=0
nx hostA ip link set tapA3 netns "$(ns gA3)" || mc_ok=0
declare -A MC_MAC=([A3]=$MAC_GA3 [B3]=$MAC_GB3) MC_IP=([A3]=10.0.0.7 [B3]=10.0.0.8)
for g in A3 B3; do
  nx g$g ip link set tap$g address "${MC_MAC[$g]}" mtu 1400 up || mc_ok=0
  nx g$g ip addr add "${MC_IP[$g]}/24" dev tap$g || mc_ok=0
done
for h in hostA hostB; do
  adm $h set-m2p $MC_GROUP $MC_UNDERLAY --vni 7777 >/dev/null || mc_ok=0
done
adm hostA mcast-subscribe gA3 $MC_GROUP >/dev/null || mc_ok=0
adm hostA mcast-subscribe gA2 $MC_GROUP >/dev/null || mc_ok=0
adm hostB mcast-subscribe gB1 $MC_GROUP >/dev/null || mc_ok=0
adm hostA set-mcast-fwd $MC_GROUP fd00:99::b --replication underlay --vni 7777 >/dev/null || mc_ok=0
# The underlay switch: ff04::/16 from one host's link to the other's.
nx router tc qdisc add dev ra ingress || mc_ok=0
nx router tc qdisc add dev rb ingress || mc_ok=0
nx router tc filter add dev ra ingress protocol ipv6 u32 match ip6 dst ff04::/16 \
  action mirred egress mirror dev rb || mc_ok=0
nx router tc filter add dev rb ingress protocol ipv6 u32 match ip6 dst ff04::/16 \
  action mirred egress mirror dev ra || mc_ok=0
if [ "$mc_ok" = 1 ]; then
  pass "multicast setup: gA3 and gB3 (VPC 7777), M2P $MC_GROUP -> $MC_UNDERLAY on both hosts, subscribed gA3 gA2 (hostA) gB1 (hostB), forwarding to fd00:99::b by the underlay group"
else
  fail "multicast setup (see the errors above)"
fi
subs=$(adm hostA --json dump-mcast-subs | jq -r '[.[] | "\(.port):\(.group)"] | join(",")')
if [ "$subs" = "gA2:$MC_GROUP,gA3:$MC_GROUP" ]; then
  pass "multicast: hostA's dump-mcast-subs lists $subs"
else
  fail "multicast: hostA's dump-mcast-subs: '$subs'"
fi
# The uplink holds allmulti (a NIC would otherwise filter the group's
# 33:33:00:01:00:01 out): sluiced's AF_PACKET socket asked for it.
am=$(nx hostB ip -d -o link show ul0 | grep -o 'allmulti [0-9]*' | awk '{print $2}')
if [ "${am:-0}" -ge 1 ]; then
  pass "multicast: hostB's uplink ul0 holds allmulti ($am) while sluiced runs"
else
  fail "multicast: hostB's uplink ul0 allmulti count '${am:-absent}'"
fi

# Receivers: socat joins the group on the guest's TAP and appends every
# datagram (one line each) to a file.
declare -A MC_RX=([gA3]=10.0.0.7 [gB1]=10.0.0.6 [gB3]=10.0.0.8 [gA2]=10.0.0.5)
MC_PIDS=()
for g in gA3 gB1 gB3 gA2; do
  : >"$T/mc-$g.txt"
  bg "$g" "$T/mc-$g.log" socat -u \
    "UDP4-RECV:5201,reuseaddr,ip-add-membership=$MC_GROUP:${MC_RX[$g]}" \
    "OPEN:$T/mc-$g.txt,wronly,append"
  MC_PIDS+=("$BGPID")
done
for g in gA3 gB1 gB3 gA2; do
  wait_for 50 0.1 sh -c "ip netns exec $(ns $g) ss -lun | grep -q ':5201 '" ||
    fail "multicast: socat on $g did not start"
done
CAPS=()
cap router ra "udp port 6081" "$T/mc-ra.pcapng" || fail "tshark on router ra did not start"
mc_send() { # mc_send WORD SPORT: gA1 sends MC_N datagrams "WORD i" from SPORT
  local i
  for i in $(seq "$MC_N"); do
    echo "$1 $i" | nx gA1 timeout 5 socat -u - \
      "UDP4-DATAGRAM:$MC_GROUP:5201,bind=10.0.0.5:$2,reuseaddr,ip-multicast-if=10.0.0.5"
    sleep 0.05
  done
}
# One datagram first that no check counts by its content or port: a
# capture that has just started can miss what comes first (seen once in
# tshark on ra: every guest got datagram 1, the capture did not).
echo "warmup 0" | nx gA1 timeout 5 socat -u - \
  "UDP4-DATAGRAM:$MC_GROUP:5201,bind=10.0.0.5:41000,reuseaddr,ip-multicast-if=10.0.0.5"
sleep 0.3
mc_send underlay 41001
sleep 0.5
adm hostA set-mcast-fwd $MC_GROUP fd00:99::b --replication external --vni 7777 >/dev/null ||
  fail "multicast: set-mcast-fwd --replication external"
mc_send external 41002
sleep 1
for p in "${CAPS[@]}"; do stop_pid "$p"; done
for p in "${MC_PIDS[@]}"; do stop_pid "$p"; done

# What each guest received, by mode.
declare -A MC_WANT=([gA3]=$MC_N [gB1]=$MC_N [gB3]=0 [gA2]=0)
for g in gA3 gB1 gB3 gA2; do
  u=$(grep -c '^underlay ' "$T/mc-$g.txt")
  e=$(grep -c '^external ' "$T/mc-$g.txt")
  want=${MC_WANT[$g]}
  if [ "$u" = "$want" ] && [ "$e" = "$want" ]; then
    pass "multicast: $g received $u of $MC_N (underlay) and $e of $MC_N (external) datagrams (wanted $want each)"
  else
    fail "multicast: $g received $u (underlay) and $e (external) of $MC_N; wanted $want each ($(tr '\n' ' ' <"$T/mc-$g.txt" | head -c 200))"
  fi
done
# The wire toward the router from hostA: by inner source port, where
# each mode's tunnels went.
mc_wire() { # mc_wire SPORT OUTER_DST: tunnels of gA1's datagrams from SPORT to OUTER_DST
  count "$T/mc-ra.pcapng" "geneve && ip.dst == $MC_GROUP && udp.srcport == $1 && ipv6.dst == $2"
}
ug=$(mc_wire 41001 $MC_UNDERLAY) uu=$(mc_wire 41001 fd00:99::b)
eg=$(mc_wire 41002 $MC_UNDERLAY) eu=$(mc_wire 41002 fd00:99::b)
if [ "$ug" = "$MC_N" ] && [ "$uu" = 0 ]; then
  pass "multicast underlay replication: tshark on ra saw $ug Geneve datagrams to $MC_UNDERLAY and $uu unicast to fd00:99::b"
else
  fail "multicast underlay replication: on ra $ug to $MC_UNDERLAY (wanted $MC_N), $uu unicast to fd00:99::b (wanted 0)"
fi
if [ "$eu" = "$MC_N" ] && [ "$eg" = 0 ]; then
  pass "multicast external replication: tshark on ra saw $eu unicast Geneve to fd00:99::b and $eg to $MC_UNDERLAY"
else
  fail "multicast external replication: on ra $eu unicast to fd00:99::b (wanted $MC_N), $eg to $MC_UNDERLAY (wanted 0)"
fi
# hostA's switch counted the same: the group copies and head-end copies
# it sent, and the copies for its local member gA3 (both modes), the
# warm-up datagram included (one more group copy and local copy).
mcs=$(nx hostA curl -s -m 3 http://127.0.0.1:7480/stats |
  jq -r '[.workers[].switch] | "\(map(.mcast_underlay) | add) \(map(.mcast_unicast) | add) \(map(.mcast_local) | add)"' 2>/dev/null)
mc_want="$((MC_N + 1)) $MC_N $((2 * MC_N + 1))"
if [ "$mcs" = "$mc_want" ]; then
  pass "multicast: hostA's switch sent $((MC_N + 1)) group and $MC_N head-end copies, handed $((2 * MC_N + 1)) to gA3 (mcast_underlay mcast_unicast mcast_local: $mcs)"
else
  fail "multicast: hostA's mcast_underlay mcast_unicast mcast_local '${mcs:-?}', wanted '$mc_want'"
fi

# ---------- summary ----------

if [ -n "${E2E_HOLD:-}" ]; then
  # Debugging: keep everything up for E2E_HOLD seconds (at most 600),
  # e.g. `ip netns exec sl<pid>-gA1 ping 10.0.0.6`. Ctrl-C cleans up.
  echo "holding for ${E2E_HOLD} s: namespaces ${NSES[*]}; logs in $T"
  sleep "$(( E2E_HOLD > 600 ? 600 : E2E_HOLD ))"
fi

t1=$(date +%s)
echo "e2e: $passes passed, $fails failed in $((t1 - t0)) s"
[ "$fails" -eq 0 ]
