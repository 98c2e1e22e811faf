#!/usr/bin/env bash
# Live migration of a port between two sluiced hosts in network namespaces
# (issue 20): guest gA1 streams iperf3 TCP to guest gB1 and holds a
# long-lived TCP session through SNAT to an "internet" namespace (behind
# the boundary); meanwhile `sluiceadm migrate-out` moves gA1's port from
# hostA to hostB (cut-over, export, import, the TAP's queue let go by
# hostA's sluiced and opened by hostB's in the guest's namespace, V2P
# update). Checks: iperf3 exits 0, the session sees no reset and the
# internet side sees the same external address and port before and
# after; the gap is reported (FIGURE lines).
#
#   tests/e2e/migrate.sh                 build sluiced and sluiceadm (debug) and run
#   SLUICED=path SLUICEADM=path tests/e2e/migrate.sh
#   KEEP_LOGS=1 tests/e2e/migrate.sh     keep the log directory
#
# Needs root, iproute2, /dev/net/tun; installs iperf3, curl, jq, python3
# if missing. Without root prints `SKIP: <reason>` (and fails in CI).
#
# Topology (NS = slm<pid>-<role>):
#
#   gA1 (tapA1: its port on hostA, then on hostB)     gB1 (tapB1, hostB)
#     hostA (sluiced, ul0, fd00:99::a) --mgmt veth-- hostB (sluiced, ul0, fd00:99::b)
#              ra \                            / rb      (API 192.168.250.2:7480)
#                   router --rx-- boundary (boundary.py) -- internet 198.51.100.1
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/tests/lib/hosts.sh"

[ "$(id -u)" = 0 ] || skip "the migration test needs root (network namespaces, veth, TAP)"
command -v ip >/dev/null 2>&1 || skip "iproute2 ('ip') is not installed"
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing"
need iperf3 iperf3 curl curl jq jq python3 python3 timeout coreutils

if [ -z "${SLUICED:-}" ] || [ -z "${SLUICEADM:-}" ]; then
  echo "building sluiced and sluiceadm (cargo build --locked -p api --bin sluiced --bin sluiceadm)"
  (cd "$repo" && cargo build --locked -q -p api --bin sluiced --bin sluiceadm) || {
    echo "FAIL: building sluiced"
    exit 1
  }
  SLUICED=${SLUICED:-$repo/target/debug/sluiced}
  SLUICEADM=${SLUICEADM:-$repo/target/debug/sluiceadm}
fi

P="slm$$"
T=$(mktemp -d "/tmp/sluice-migrate.XXXXXX")
t0=$(date +%s)
hosts_trap

# ---------- topology ----------

trap 'echo "FAIL: building the topology, line $LINENO"' ERR
set -e
hosts_netns router hostA hostB boundary internet gA1 gB1 || exit 1
for n in router hostA hostB boundary internet gA1 gB1; do
  nx $n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
done
for n in gA1 gB1; do
  nx $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
MAC_A=02:00:00:99:0a:01 MAC_RA=02:00:00:99:0a:02
MAC_B=02:00:00:99:0b:01 MAC_RB=02:00:00:99:0b:02
ip link add ul0 address $MAC_A netns "$(ns hostA)" type veth peer name ra address $MAC_RA netns "$(ns router)"
ip link add ul0 address $MAC_B netns "$(ns hostB)" type veth peer name rb address $MAC_RB netns "$(ns router)"
ip link add ul0 netns "$(ns boundary)" type veth peer name rx netns "$(ns router)"
ip link add ul1 netns "$(ns boundary)" type veth peer name i0 netns "$(ns internet)"
# The management network: hostA's sluiceadm reaches hostB's API.
ip link add mg0 netns "$(ns hostA)" type veth peer name mg0 netns "$(ns hostB)"
nx hostA ip link set mg0 up
nx hostA ip addr add 192.168.250.1/24 dev mg0
nx hostB ip link set mg0 up
nx hostB ip addr add 192.168.250.2/24 dev mg0
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
set +e
trap - ERR

api() { # api HOST METHOD PATH [JSON]
  local h=$1 m=$2 path=$3 body=${4:-} tok
  tok=$(cat "$T/$h/state/token")
  nx "$h" curl -sS --fail-with-body -m 5 -X "$m" -H "Authorization: Bearer $tok" \
    -H 'Content-Type: application/json' ${body:+--data "$body"} "http://127.0.0.1:7480$path"
}

start_sluiced hostA fd00:99::a $MAC_RA || exit 1
SLUICED_LISTEN=0.0.0.0:7480 start_sluiced hostB fd00:99::b $MAC_RB || exit 1

MAC_GA1=a8:40:25:00:77:05
MAC_GB1=a8:40:25:00:77:06
vnic() { # vnic NAME LAST MAC TAP NETNS [internet]
  local routes='[]' external='{}'
  if [ -n "${6:-}" ]; then
    routes='[{"dest":"0.0.0.0/0","target":"internet_gateway","class":"system"}]'
    external='{"snat":[{"ip":"203.0.113.10","first_port":4096,"last_port":4223}]}'
  fi
  jq -nc --arg name "$1" --arg ip "10.0.0.$2" --arg mac "$3" --arg tap "$4" --arg n "$5" \
    --argjson routes "$routes" --argjson external "$external" '{
    config: {
      name: $name, guest_mac: $mac, gateway_mac: "a8:40:25:ff:ff:01", vni: 7777,
      ipv4: {addr: $ip, subnet: "10.0.0.0/24", gateway: "10.0.0.1"}, mtu: 1400,
      external: $external, routes: $routes,
      firewall: [{direction: "in", priority: 11, action: "allow", protocol: "tcp",
                  hosts: {subnet: "10.0.0.0/24"}, ports: {list: [5201]}}],
      limits: {flows: 4096}
    },
    guest: {kind: "tap", name: $tap, netns: $n} }'
}
ok=1
api hostA POST /ports "$(vnic gA1 5 $MAC_GA1 tapA1 "/run/netns/$(ns gA1)" internet)" >/dev/null || ok=0
api hostB POST /ports "$(vnic gB1 6 $MAC_GB1 tapB1 "/run/netns/$(ns gB1)")" >/dev/null || ok=0
V2P=$(jq -nc --arg a "$MAC_GA1" --arg b "$MAC_GB1" '{mappings: [
  {vni: 7777, ip: "10.0.0.5", guest_mac: $a, host: "fd00:99::a"},
  {vni: 7777, ip: "10.0.0.6", guest_mac: $b, host: "fd00:99::b"}]}')
V2B='{"routes":[{"vni":7777,"prefix":"0.0.0.0/0","endpoints":["fd00:99::100"]}]}'
for h in hostA hostB; do
  api $h PUT /v2p "$V2P" >/dev/null || ok=0
  api $h PUT /v2b "$V2B" >/dev/null || ok=0
done
nx gA1 ip link set tapA1 address $MAC_GA1 up || ok=0
nx gA1 ip addr add 10.0.0.5/24 dev tapA1 || ok=0
nx gA1 ip route add default via 10.0.0.1 || ok=0
nx gB1 ip link set tapB1 address $MAC_GB1 up || ok=0
nx gB1 ip addr add 10.0.0.6/24 dev tapB1 || ok=0
[ "$ok" = 1 ] && pass "setup: gA1 on hostA (SNAT), gB1 on hostB, V2P and V2B on both" ||
  { fail "setup"; exit 1; }

bg boundary "$T/boundary.log" python3 "$here/boundary.py" --tap gnv0 --local fd00:99::100 \
  --vni 7777 --lifetime 200 --ready "$T/boundary.ready"
if wait_for 50 0.1 test -e "$T/boundary.ready"; then
  nx boundary sysctl -qw net.ipv6.conf.gnv0.disable_ipv6=1
  nx boundary ip link set gnv0 mtu 1400 up
  nx boundary ip route add 203.0.113.10/32 dev gnv0
  nx boundary ip neigh replace 203.0.113.10 lladdr $MAC_GA1 dev gnv0 nud permanent
else
  fail "boundary: boundary.py did not start"
fi

# ---------- the two connections ----------

# The "SSH-like" session: the internet side echoes each line and logs the
# peer (address:port) it came from; the guest sends a line every 50 ms for
# SESSION_SECS, fails on any error or reset, and reports the longest wait
# for an echo (the gap it saw).
SESSION_SECS=14
cat >"$T/server.py" <<'EOF'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.51.100.1", 2222)); s.listen(4); s.settimeout(60)
c, peer = s.accept(); f = c.makefile("rwb")
for line in f:
    print("%s:%d" % peer, flush=True)
    f.write(line); f.flush()
EOF
cat >"$T/client.py" <<'EOF'
import socket, sys, time
secs = float(sys.argv[1])
c = socket.create_connection(("198.51.100.1", 2222), timeout=10)
c.settimeout(10)
f = c.makefile("rwb")
end = time.monotonic() + secs; n = 0; gap = 0.0
while time.monotonic() < end:
    t = time.monotonic()
    f.write(b"line %d\n" % n); f.flush()
    got = f.readline()
    if got != b"line %d\n" % n:
        print("session: bad echo %r" % got); sys.exit(1)
    gap = max(gap, time.monotonic() - t); n += 1
    time.sleep(0.05)
print("session: lines=%d max_gap_ms=%.1f" % (n, gap * 1000))
EOF
bg internet "$T/session-server.log" python3 -u "$T/server.py"
wait_for 50 0.1 sh -c "ip netns exec $(ns internet) ss -ltn | grep -q '198.51.100.1:2222 '" ||
  fail "internet: the session server did not start"
bg gB1 "$T/iperf3-server.log" iperf3 -s -1 -B 10.0.0.6
wait_for 50 0.1 sh -c "ip netns exec $(ns gB1) ss -ltn | grep -q ':5201 '" ||
  fail "gB1: iperf3 server did not start"

bg gA1 "$T/session-client.log" python3 -u "$T/client.py" $SESSION_SECS
SESSION_PID=$BGPID
bg gA1 "$T/iperf3-client.json" iperf3 -c 10.0.0.6 -t 12 -i 0.5 -J
IPERF_PID=$BGPID
sleep 4

# ---------- the migration ----------

before_peer=$(tail -n 1 "$T/session-server.log")
TOKB=$T/hostB/state/token
mig=$(nx hostA "$SLUICEADM" --json --token-file "$T/hostA/state/token" migrate-out gA1 \
  --to http://192.168.250.2:7480 --target-underlay fd00:99::b --to-token-file "$TOKB" \
  --tap tapA1 --netns "/run/netns/$(ns gA1)" --grace 20 2>&1)
rc=$?
echo "$mig" >"$T/migrate-out.json"
if [ $rc = 0 ] && [ "$(echo "$mig" | jq -r .flows_refused)" = 0 ]; then
  pass "migrate-out gA1 hostA -> hostB: $(echo "$mig" | jq -c '{flows_exported, flows_imported, gap_ms}')"
else
  fail "migrate-out: rc $rc: $mig"
fi
ports_b=$(nx hostB curl -s -m 3 http://127.0.0.1:7480/ports | jq -r '[.[].name] | join(",")')
[ "$ports_b" = "gA1,gB1" ] && pass "hostB has ports $ports_b" || fail "hostB ports: $ports_b"

# ---------- both connections carry on ----------

for p in $IPERF_PID $SESSION_PID; do
  for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
wait "$IPERF_PID"; irc=$?
wait "$SESSION_PID"; src=$?
ierr=$(jq -r '.error // empty' "$T/iperf3-client.json" 2>/dev/null)
ibytes=$(jq -r '.end.sum_received.bytes // 0' "$T/iperf3-client.json" 2>/dev/null)
if [ "$irc" = 0 ] && [ -z "$ierr" ] && [ "${ibytes:-0}" -gt 0 ]; then
  pass "iperf3 gA1 -> gB1 across the migration: exit 0, $ibytes bytes received"
else
  fail "iperf3 across the migration: exit $irc, error '$ierr'"
fi
# The longest stretch of iperf3 intervals with (almost) nothing sent.
igap=$(jq -r '[.intervals[] | .sum | select(.bytes < 1000) | .seconds] | add // 0' "$T/iperf3-client.json" 2>/dev/null)
after_peer=$(tail -n 1 "$T/session-server.log")
peers=$(sort -u "$T/session-server.log" | tr '\n' ' ')
if [ "$src" = 0 ] && [ "$(sort -u "$T/session-server.log" | wc -l)" = 1 ] &&
  [ "$before_peer" = "$after_peer" ]; then
  pass "SNAT'd session across the migration: no reset; the internet saw one peer, $after_peer ($(cat "$T/session-client.log"))"
else
  fail "SNAT'd session: client exit $src ($(tail -n 2 "$T/session-client.log" | tr '\n' ' ')); peers seen: $peers"
fi
st=$(api hostA GET /ports/gA1/migration/status 2>/dev/null)
if [ -n "$st" ]; then
  echo "hostA's cut-over: $(echo "$st" | jq -c '{forwarded, forward_dropped, guest_dropped}')"
fi
# The guest's traffic runs through hostB's port now: it counted more
# outbound packets than the document brought from hostA.
exported=$(echo "$mig" | jq -r '.flows_exported // 0')
b_out=$(nx hostB curl -s -m 3 http://127.0.0.1:7480/ports/gA1/stats | jq -r '.stats.out.packets // 0')
b_hits=$(nx hostB curl -s -m 3 http://127.0.0.1:7480/ports/gA1/stats | jq -r '.stats.out.uft_hits // 0')
a_left=$(api hostA GET /ports/gA1/stats 2>/dev/null | jq -r '.stats.out.packets // 0')
if [ "${b_out:-0}" -gt "${a_left:-0}" ] && [ "$exported" -gt 0 ]; then
  pass "hostB's gA1 forwards the guest now: out packets $b_out (hostA's count at cut-over ${a_left}), UFT hits $b_hits"
else
  fail "hostB's gA1: out packets ${b_out:-?}, hostA's ${a_left:-?}"
fi
sgap=$(sed -n 's/.*max_gap_ms=\([0-9.]*\).*/\1/p' "$T/session-client.log")
echo "FIGURE: migration gap: control plane $(echo "$mig" | jq -r '.gap_ms // "?"') ms (cut-over $(echo "$mig" | jq -r '.cut_over_ms // "?"'), import $(echo "$mig" | jq -r '.import_ms // "?"'), V2P $(echo "$mig" | jq -r '.v2p_ms // "?"')); SNAT'd session longest echo wait ${sgap:-?} ms; iperf3 seconds with < 1000 bytes: ${igap:-?}"

t1=$(date +%s)
echo "migrate: $passes passed, $fails failed in $((t1 - t0)) s"
[ "$fails" -eq 0 ]
