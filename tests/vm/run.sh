#!/usr/bin/env bash
# sluice's VM test: a real QEMU guest on a vhost-user port.
#
# Two sluiced hosts in network namespaces on an IPv6 underlay veth
# (AF_PACKET uplinks, like tests/e2e/run.sh); host B has a guest
# namespace on a TAP (10.0.0.6); host A gets a vhost-user vNIC made with
# `sluiceadm create-vnic --vhost-user SOCK`, and QEMU boots the guest of
# tests/vm/build-guest.sh on it: the guest asks DHCP for its address
# (10.0.0.5, from sluice's virtual gateway) and pings 10.0.0.6 across the
# hosts through Geneve. Checks:
#   1. the guest printed `SLUICE-VM: PASS` (DHCP address and 3 ping
#      replies) and its port's counters moved;
#   2. QEMU started again on the same socket (the backend went back to
#      listening): the second guest passes too (reconnection);
#   3. a path that exists and is not a socket is refused with a clear
#      message; deleting the vNIC removes its socket;
#   4. client mode surviving a sluiced restart: QEMU listens on the
#      socket (`server=on`), the vNIC is made with
#      `create-vnic --vhost-user-client SOCK --queues 2` (QEMU's
#      `queues=2`, the guest negotiates multiqueue); the guest pings host B's
#      guest once a second; sluiced on host A is stopped and started
#      again, restores the port, reconnects to the running QEMU, and the
#      guest's pings get replies again without touching the VM.
#
#   tests/vm/run.sh                  build sluiced (debug) and run
#   SLUICED=path SLUICEADM=path tests/vm/run.sh
#   KEEP_LOGS=1 tests/vm/run.sh      keep the log directory
#
# Needs root (namespaces, veth, TAP); installs qemu-system-x86 and what
# else it needs from Debian when missing. Without root it prints
# `skipped: needs root (...)` and exits 0. The whole run is bounded
# (TIMEOUT, 210 s by default; each VM boot by 60 s); every process and
# namespace it makes is removed on exit.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
TIMEOUT=${TIMEOUT:-210}
# Background processes live as long as the whole run at most.
HOSTS_LIFETIME=$TIMEOUT
# ns, nx, pass, fail, need, bg, wait_for, stop_pid, start_sluiced, hosts_netns
. "$repo/tests/lib/hosts.sh"

if [ "$(id -u)" != 0 ]; then
  echo "skipped: needs root (network namespaces, veth, TAP)"
  exit 0
fi
for c in ip curl; do
  if ! command -v $c >/dev/null 2>&1; then
    echo "skipped: needs $c"
    exit 0
  fi
done

need qemu-system-x86_64 qemu-system-x86 jq jq cpio cpio modinfo kmod \
  dpkg-deb dpkg timeout coreutils

if [ -z "${SLUICED:-}" ]; then
  echo "building sluiced and sluiceadm (cargo build --locked -p api)"
  (cd "$repo" && cargo build --locked -q -p api --bin sluiced --bin sluiceadm) || {
    echo "FAIL: building sluiced"
    exit 1
  }
  SLUICED="$repo/target/debug/sluiced"
  SLUICEADM="$repo/target/debug/sluiceadm"
fi
SLUICEADM=${SLUICEADM:-$(dirname "$SLUICED")/sluiceadm}
if [ ! -x "$SLUICEADM" ]; then
  echo "building sluiceadm (cargo build --locked -p api --bin sluiceadm)"
  (cd "$repo" && cargo build --locked -q -p api --bin sluiceadm) || {
    echo "FAIL: building sluiceadm"
    exit 1
  }
  SLUICEADM="$repo/target/debug/sluiceadm"
fi

guest=$("$here/build-guest.sh" | tail -n 1) || {
  echo "FAIL: building the guest (tests/vm/build-guest.sh)"
  exit 1
}

P="slvm$$"
T=$(mktemp -d "/tmp/sluice-vm.XXXXXX")
t0=$(date +%s)

cleanup() {
  local rc=$? f
  trap - EXIT INT TERM
  [ "$fails" -gt 0 ] && rc=1
  if [ "$rc" -ne 0 ]; then
    for f in "$T"/*.log; do
      [ -f "$f" ] || continue
      echo "-- tail $f"
      tail -n 30 "$f"
    done
  fi
  hosts_cleanup
  if [ "$rc" -ne 0 ] || [ -n "${KEEP_LOGS:-}" ]; then
    echo "logs kept in $T"
  else
    rm -rf "$T"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM
# The whole run is bounded.
# The watchdog takes its sleep down with it when the cleanup stops it: an
# orphaned sleep would hold the caller's pipe (and CI) open for TIMEOUT.
(
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$TIMEOUT" &
  nap=$!
  wait "$nap" && echo "FAIL: the VM test ran over ${TIMEOUT} s" && kill -TERM $$
) &
PIDS+=($!)

# ---------- topology ----------

trap 'echo "FAIL: building the topology, line $LINENO"' ERR
set -e
hosts_netns hostA hostB gB
nx gB sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
MAC_A=02:00:00:98:0a:01
MAC_B=02:00:00:98:0b:01
ip link add ul0 address $MAC_A netns "$(ns hostA)" type veth peer name ul0 address $MAC_B netns "$(ns hostB)"
for h in hostA hostB; do
  nx $h sysctl -qw net.ipv6.conf.ul0.disable_ipv6=1
  nx $h ethtool -K ul0 gro off >/dev/null 2>&1 || true
  nx $h ip link set ul0 up
done
set +e
trap - ERR

start_sluiced hostA fd00:99::a $MAC_B || exit 1
start_sluiced hostB fd00:99::b $MAC_A || exit 1

adm() { # adm HOST ARGS...
  local h=$1
  shift
  nx "$h" "$SLUICEADM" --url http://127.0.0.1:7480 --token-file "$T/$h/state/token" "$@"
}

MAC_GA=a8:40:25:00:77:05
MAC_GB=a8:40:25:00:77:06
vnic_config() { # name last-octet mac
  jq -nc --arg name "$1" --arg ip "10.0.0.$2" --arg mac "$3" '{
    name: $name, guest_mac: $mac, gateway_mac: "a8:40:25:ff:ff:01", vni: 7777,
    ipv4: {addr: $ip, subnet: "10.0.0.0/24", gateway: "10.0.0.1"},
    mtu: 1400, dhcp: {hostname: $name},
    firewall: [{direction: "in", priority: 10, action: "allow", protocol: "icmp",
                hosts: {subnet: "10.0.0.0/24"}}],
    limits: {flows: 1024}}'
}
vnic_config vm 5 $MAC_GA >"$T/vm.json"
vnic_config gB 6 $MAC_GB >"$T/gB.json"
SOCK="$T/vm.sock"
V2P=$(jq -nc --arg a $MAC_GA --arg b $MAC_GB '{mappings: [
  {vni: 7777, ip: "10.0.0.5", guest_mac: $a, host: "fd00:99::a"},
  {vni: 7777, ip: "10.0.0.6", guest_mac: $b, host: "fd00:99::b"}]}')
setup=1
adm hostA create-vnic --config "$T/vm.json" --vhost-user "$SOCK" >"$T/create.out" 2>&1 || setup=0
adm hostB create-vnic --config "$T/gB.json" --tap tapB --netns "/run/netns/$(ns gB)" >>"$T/create.out" 2>&1 || setup=0
for h in hostA hostB; do
  nx $h curl -sS --fail-with-body -m 5 -X PUT -H "Authorization: Bearer $(cat "$T/$h/state/token")" \
    -H 'Content-Type: application/json' --data "$V2P" http://127.0.0.1:7480/v2p >/dev/null || setup=0
done
if [ "$setup" = 1 ] && [ -S "$SOCK" ]; then
  pass "setup: vhost-user vNIC 'vm' on host A ($SOCK is a socket), TAP guest gB on host B, V2P"
else
  fail "setup: $(tr '\n' ' ' <"$T/create.out")"
  exit 1
fi
nx gB ip link set tapB address $MAC_GB up
nx gB ip addr add 10.0.0.6/24 dev tapB
nx gB ip route add default via 10.0.0.1 dev tapB

# ---------- the VM ----------

# Frames the port took from the guest and gave it (`sluiceadm --json stats`).
RXQ='.stats.out.packets'
TXQ='.stats.in.packets'

boot() { # boot N: boots the guest on $SOCK, waits for its verdict
  local log="$T/vm$1.log"
  bg - "$log" qemu-system-x86_64 -machine pc,memory-backend=mem -m 256M \
    -object memory-backend-memfd,id=mem,size=256M,share=on \
    -chardev socket,id=c0,path="$SOCK" \
    -netdev vhost-user,id=n0,chardev=c0 \
    -device virtio-net-pci,netdev=n0,mac=$MAC_GA,vectors=0,romfile= \
    -nodefaults -nographic -serial mon:stdio -no-reboot \
    -kernel "$guest/vmlinuz" -initrd "$guest/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 sluice.ping=10.0.0.6"
  local qpid=$BGPID
  for _ in $(seq 600); do
    grep -q 'SLUICE-VM: \(PASS\|FAIL\)' "$log" 2>/dev/null && break
    kill -0 "$qpid" 2>/dev/null || break
    sleep 0.1
  done
  # The guest powers off after its verdict; give QEMU a moment to exit.
  wait_for 50 0.1 sh -c "! kill -0 $qpid 2>/dev/null"
  stop_pid "$qpid"
  VERDICT=$(grep -ao 'SLUICE-VM: .*' "$log" | tr -d '\r' | tr '\n' ' ')
  grep -aq 'SLUICE-VM: PASS' "$log"
}

before=$(adm hostA --json stats vm 2>/dev/null)
if boot 1; then
  pass "VM 1 (QEMU on vhost-user): $VERDICT"
else
  fail "VM 1: ${VERDICT:-no verdict on the console}"
fi
after=$(adm hostA --json stats vm 2>/dev/null)
echo "$before" >"$T/stats-before.json"
echo "$after" >"$T/stats-after.json"
# The port's counters of frames from and to the guest moved.
rx_b=$(echo "$before" | jq "$RXQ" 2>/dev/null) rx_a=$(echo "$after" | jq "$RXQ" 2>/dev/null)
tx_b=$(echo "$before" | jq "$TXQ" 2>/dev/null) tx_a=$(echo "$after" | jq "$TXQ" 2>/dev/null)
if [ "${rx_a:-0}" -gt "${rx_b:-0}" ] && [ "${tx_a:-0}" -gt "${tx_b:-0}" ]; then
  pass "port 'vm' counters moved: from the guest $rx_b -> $rx_a, to the guest $tx_b -> $tx_a"
else
  fail "port 'vm' counters: from the guest '$rx_b' -> '$rx_a', to the guest '$tx_b' -> '$tx_a'"
fi

# ---------- 2. reconnection: a second QEMU on the same socket ----------

if boot 2; then
  pass "VM 2 (a new QEMU on the same socket: the backend listened again): $VERDICT"
else
  fail "VM 2 (reconnection): ${VERDICT:-no verdict on the console}"
fi

# ---------- 3. bad paths, deletion ----------

touch "$T/not-a-socket"
vnic_config vm2 7 a8:40:25:00:77:07 >"$T/vm2.json"
out=$(adm hostA create-vnic --config "$T/vm2.json" --vhost-user "$T/not-a-socket" 2>&1)
if [ $? -ne 0 ] && echo "$out" | grep -q "not a socket"; then
  pass "a regular file as the socket path is refused: $(echo "$out" | head -n 1)"
else
  fail "a regular file as the socket path: wanted an error saying 'not a socket', got: $out"
fi
if adm hostA delete-vnic vm >/dev/null 2>&1 && [ ! -e "$SOCK" ]; then
  pass "delete-vnic removed the socket"
else
  fail "delete-vnic: the socket $SOCK is still there (or the delete failed)"
fi

# ---------- 4. client mode across a sluiced restart ----------

CSOCK="$T/qemu-vm.sock"
replies() { grep -ac 'bytes from 10.0.0.6' "$T/vm3.log" 2>/dev/null || echo 0; }
bg - "$T/vm3.log" qemu-system-x86_64 -machine pc,memory-backend=mem -m 256M \
  -object memory-backend-memfd,id=mem,size=256M,share=on \
  -chardev socket,id=c0,path="$CSOCK",server=on \
  -netdev vhost-user,id=n0,chardev=c0,queues=2 \
  -device virtio-net-pci,netdev=n0,mac=$MAC_GA,mq=on,vectors=0,romfile= \
  -nodefaults -nographic -serial mon:stdio -no-reboot \
  -kernel "$guest/vmlinuz" -initrd "$guest/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 sluice.ping=10.0.0.6 sluice.stay=60"
QPID=$BGPID
if wait_for 100 0.1 test -S "$CSOCK" &&
  adm hostA create-vnic --config "$T/vm.json" --vhost-user-client "$CSOCK" --queues 2 >"$T/create3.out" 2>&1 &&
  wait_for 600 0.1 sh -c "[ \$(grep -ac 'bytes from 10.0.0.6' '$T/vm3.log') -ge 2 ]"; then
  pass "VM 3 (QEMU listens, sluice connects: --vhost-user-client, 2 queue pairs): $(grep -ao 'SLUICE-VM: PASS.*' "$T/vm3.log" | tr -d '\r')"
  stop_pid "${SPID[hostA]}"
  down=$(replies)
  sleep 2
  start_sluiced hostA fd00:99::a $MAC_B || exit 1
  restarted=$(replies)
  if wait_for 200 0.1 sh -c "[ \$(grep -ac 'bytes from 10.0.0.6' '$T/vm3.log') -ge $((restarted + 3)) ]"; then
    pass "sluiced restarted: it restored the port and reconnected to the running QEMU; the guest's pings get replies again ($down replies before the stop, $(replies) now)"
  else
    fail "after the sluiced restart the guest got no new replies ($down before the stop, $restarted at the restart, $(replies) now): $(adm hostA list-ports 2>&1 | tr '\n' ' ')"
  fi
  if [ -S "$CSOCK" ] && adm hostA delete-vnic vm >/dev/null 2>&1 && [ -S "$CSOCK" ]; then
    pass "delete-vnic of a client port leaves QEMU's socket alone"
  else
    fail "client port: QEMU's socket $CSOCK is gone, or the delete failed"
  fi
else
  fail "VM 3 (client mode): $(tr '\n' ' ' <"$T/create3.out" 2>/dev/null) $(grep -ao 'SLUICE-VM: .*' "$T/vm3.log" | tr -d '\r' | tr '\n' ' ')"
fi
stop_pid "$QPID"

echo "vm test: $(($(date +%s) - t0)) s, $fails failed"
[ "$fails" -eq 0 ]
