# shellcheck shell=bash
# Shared helpers of the namespace tiers (tests/e2e/run.sh, tests/vm/run.sh,
# tests/ovs/run.sh): namespaces as hosts, background
# processes with a lifetime, bounded waits, and sluiced started on an
# AF_PACKET uplink. Source it after setting:
#
#   P        the prefix of every namespace made (e.g. "sl$$")
#   T        the run's directory (logs, configurations, state)
#
# It keeps, for the caller's cleanup (hosts_cleanup, or hosts_trap for the
# whole exit path):
#
#   NSES     namespaces made (hosts_netns)
#   PIDS     background processes started (bg)
#   SPID     sluiced's pid by host (start_sluiced)
#   fails passes   counters of fail and pass
#
# The function names are stable: the tiers call them by name.

NSES=()
PIDS=()
declare -A SPID
fails=0
passes=0
# How long a background process may live at most, seconds.
HOSTS_LIFETIME=${HOSTS_LIFETIME:-300}

# The namespace of role NAME, and a command run in it.
ns() { echo "$P-$1"; }
nx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

pass() { passes=$((passes + 1)); echo "PASS: $*"; }
fail() { fails=$((fails + 1)); echo "FAIL: $*"; }

# skip WHY: a prerequisite is truly absent: says so and exits 0, or in
# CI (CI set) fails instead. A tier may define its own before sourcing.
if ! declare -F skip >/dev/null; then
  skip() {
    if [ -n "${CI:-}" ]; then echo "FAIL: $*"; exit 1; fi
    echo "SKIP: $*"
    exit 0
  }
fi

# need CMD PACKAGE...: installs the Debian packages of missing commands.
# When they cannot be installed: in CI (CI set) the run fails, elsewhere
# it is skipped (exit 0), saying which.
need() {
  local missing=() c p
  while [ $# -gt 0 ]; do
    c=$1 p=$2
    shift 2
    command -v "$c" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local verdict="SKIP" rc=0
  if [ -n "${CI:-}" ]; then verdict="FAIL" rc=1; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$verdict: missing ${missing[*]} and no apt-get to install them"
    exit $rc
  fi
  echo "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 || true
  if ! apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null; then
    echo "$verdict: could not install ${missing[*]}"
    exit $rc
  fi
}

# hosts_netns NAME...: makes the namespaces of these roles, loopback up.
hosts_netns() {
  local n
  for n in "$@"; do
    ip netns add "$(ns "$n")" || { echo "FAIL: ip netns add $(ns "$n")"; return 1; }
    NSES+=("$(ns "$n")")
    nx "$n" ip link set lo up
  done
}

# stop_pid PID: stops one process we started: TERM, up to 5 s, then KILL
# (CONT first: a tier may have stopped it with SIGSTOP).
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -CONT "$pid" 2>/dev/null
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# bg NS|- LOG CMD...: a background process (in namespace NS, or `-` for
# this one) bounded by `timeout` (HOSTS_LIFETIME) as well as by the
# cleanup; sets BGPID.
bg() {
  local n=$1 log=$2
  shift 2
  if [ "$n" = - ]; then
    timeout -s TERM "$HOSTS_LIFETIME" "$@" >"$log" 2>&1 &
  else
    ip netns exec "$(ns "$n")" timeout -s TERM "$HOSTS_LIFETIME" "$@" >"$log" 2>&1 &
  fi
  BGPID=$!
  PIDS+=("$BGPID")
}

# wait_for TRIES SLEEP CMD...: true once CMD succeeds, false after TRIES.
wait_for() {
  local tries=$1 s=$2
  shift 2
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep "$s"
  done
  return 1
}

# start_sluiced HOST ADDRESS NEXT_HOP_MAC: sluiced ($SLUICED) in HOST's
# namespace on its `ul0`, API on 127.0.0.1:7480 (or $SLUICED_LISTEN), state in $T/HOST/state;
# E2E_UDP_GSO=0 turns the uplink's UDP GSO off (`[uplink] udp_gso = false`), =1 writes it on, unset
# leaves sluiced's default (on); waits (10 s at most) for /health. Fails (returns 1, counted) if it does
# not come up.
start_sluiced() {
  local h=$1 addr=$2 nh=$3
  mkdir -p "$T/$h"
  cat >"$T/$h/sluiced.toml" <<EOF
listen = "${SLUICED_LISTEN:-127.0.0.1:7480}"
state_dir = "$T/$h/state"
workers = 1
log_level = "info"

[underlay]
interface = "ul0"
address = "$addr"
next_hop_mac = "$nh"

[uplink]
kind = "af_packet"
EOF
  case "${E2E_UDP_GSO:-}" in
    0) echo "udp_gso = false" >>"$T/$h/sluiced.toml" ;;
    1) echo "udp_gso = true" >>"$T/$h/sluiced.toml" ;;
  esac
  bg "$h" "$T/sluiced-$h.log" "$SLUICED" --config "$T/$h/sluiced.toml"
  SPID[$h]=$BGPID
  if ! wait_for 100 0.1 nx "$h" curl -sf -m 1 http://127.0.0.1:7480/health; then
    fail "sluiced on $h did not come up in 10 s"
    return 1
  fi
}

# hosts_cleanup: stops every background process and removes every
# namespace made (and with them their links and TAPs).
hosts_cleanup() {
  local p n
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  for n in "${NSES[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}

# hosts_trap [DIAGNOSE]: the tier's exit path. On exit, interrupt or
# termination: runs DIAGNOSE (a function; default hosts_log_tails) when a
# check or the script failed, stops and removes what the hosts made, and
# removes $T unless a failure or KEEP_LOGS keeps it (and says where).
hosts_trap() {
  HOSTS_DIAGNOSE=${1:-hosts_log_tails}
  trap hosts_exit EXIT
  trap 'echo "interrupted"; exit 130' INT TERM
}

# hosts_log_tails: the last lines of every log in $T.
hosts_log_tails() {
  local f
  for f in "$T"/*.log; do
    if [ -f "$f" ]; then
      echo "-- tail $f"
      tail -n 20 "$f"
    fi
  done
}

hosts_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$fails" -gt 0 ] || [ "$rc" -ne 0 ]; then "$HOSTS_DIAGNOSE" || true; fi
  hosts_cleanup
  if [ "$fails" -gt 0 ] || [ "$rc" -ne 0 ] || [ -n "${KEEP_LOGS:-}" ]; then
    echo "logs kept in $T"
  else
    rm -rf "$T"
  fi
  exit "$rc"
}
