#!/usr/bin/env bash
# Runs every test tier sluice has, from fast to real. This is the README's
# test command and what CI runs (.ci/run).
#
#   scripts/test.sh            all tiers
#   scripts/test.sh --fast     checks and `cargo test` only (installs only what building needs)
#
# Tiers that need something this machine lacks (root, a Debian package)
# install it when they can and say plainly why they skip when they cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0
[ "${1:-}" = "--fast" ] && fast=1

step() { printf '\n== %s\n' "$*"; }

# Prerequisites of the real tiers, from Debian's packages. Installed only
# when missing and only as root (CI runs as root); otherwise the tests
# that need them say why they skip.
need_pkgs=()
command -v tshark >/dev/null 2>&1 || need_pkgs+=(tshark)
# `sluiceadm top`'s tests (api/tests/api/top.rs): traffic and a terminal.
for t in iperf3 tmux python3; do
  command -v "$t" >/dev/null 2>&1 || need_pkgs+=("$t")
done
# The fleet tier (api built with `--features fleet`) starts a real etcd and
# builds etcd-client, which compiles etcd's protobuf definitions (protoc,
# and the well-known types from libprotobuf-dev).
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/descriptor.proto ] || need_pkgs+=(libprotobuf-dev)
if [ "$fast" = 0 ] && [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing ${need_pkgs[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "note: ${need_pkgs[*]} not installed and not root: the tests that need them will say they skip"
  fi
fi

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

mkdir -p target
summary() {
  # One line for CI readers: every `cargo test` binary's results added up.
  grep -E '^test result:' target/cargo-test.log | awk '
    { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
    END { printf "totals: %d passed, %d failed, %d skipped\n", p, f, s }'
}

if [ "$fast" = 0 ]; then
  step "engine-loop smoke run (the benchmark binary still runs; no timing asserted)"
  cargo run --release --locked -q -p bench --bin engine-loop -- --case all --packets 20000 >target/engine-loop-smoke.txt
  grep -c '^case:' target/engine-loop-smoke.txt | xargs printf '%s cases ran\n'
  # The sluiced demo (the README's first command) runs in `cargo test`
  # (api/tests/api/daemon.rs), in a debug build.
fi

step "unit, scenario, API, CLI and regression tests (cargo test)"
status=0
# Tests that need root (TAP, AF_PACKET, namespaces) run when we are root
# and print "skipped: needs root (...)" otherwise.
cargo test --workspace --locked 2>&1 | tee target/cargo-test.log || status=$?

if [ "$fast" = 0 ]; then
  step "DPDK uplink (vmm-net --features dpdk, on DPDK's virtual devices)"
  if scripts/install-dpdk.sh; then
    cargo clippy -p vmm-net -p dpdk-sys -p api --all-targets --features vmm-net/dpdk,api/dpdk --locked -- -D warnings
    cargo test -p vmm-net --features dpdk --locked --test dpdk 2>&1 | tee -a target/cargo-test.log || status=$?
  elif [ -n "${CI:-}" ]; then
    echo "FAIL: the DPDK tier cannot install DPDK in CI"
    status=1
  else
    echo "skipped: DPDK tier (DPDK is not installed and this is not root; see scripts/install-dpdk.sh)"
  fi

  step "fleet mode (api --features fleet, against a real etcd)"
  if command -v protoc >/dev/null 2>&1 && [ -e /usr/include/google/protobuf/descriptor.proto ]; then
    cargo clippy -p api --all-targets --features fleet --locked -- -D warnings
    # Without etcd the tests say they skip (and fail when CI is set).
    cargo test -p api --features fleet --locked --test api fleet 2>&1 | tee -a target/cargo-test.log || status=$?
  elif [ -n "${CI:-}" ]; then
    echo "FAIL: the fleet tier cannot build: protoc or libprotobuf-dev is missing in CI"
    status=1
  else
    echo "skipped: fleet tier (protoc or libprotobuf-dev missing and this is not root; apt-get install protobuf-compiler libprotobuf-dev)"
  fi

  step "benchmarks: bench/run.sh --quick, one short pass (debug build; no timing asserted)"
  if [ "$(id -u)" = 0 ] && scripts/install-dpdk.sh --tools >/dev/null 2>&1; then
    # The debug build `cargo test` made, with api/dpdk: the tier checks
    # that every part of the benchmark still runs, not its figures.
    PROFILE=dev BENCH_OUT=target/bench-smoke bench/run.sh --quick 2>&1 | tee target/bench-smoke.log ||
      { echo "FAIL: bench/run.sh --quick"; status=1; }
  elif [ -n "${CI:-}" ]; then
    echo "FAIL: the benchmark tier needs root and DPDK in CI"
    status=1
  else
    echo "skipped: benchmark tier (bench/run.sh --quick needs root and DPDK)"
  fi

  step "soak: mixed traffic, flows churning, rules replaced every second (SOAK_SECS=${SOAK_SECS:-60})"
  # In process (simulated host, real workers and API); no root needed.
  SOAK_SECS=${SOAK_SECS:-60} cargo test -p sluice-tests --locked --test robust soak -- --nocapture 2>&1 |
    tee target/soak.log | grep -E '^soak|^test result|panicked' || status=$?
  grep -q '^test result: ok. 1 passed' target/soak.log || status=1
  grep '^test result:' target/soak.log >>target/cargo-test.log || true

  step "API under load: 2 000 idle connections and 50 bodies without a token against one sluiced (about 30 s)"
  # Loopback only; prints sluiced's RSS and descriptors (bench/README.md).
  cargo test -p api --locked --test api load -- --ignored --nocapture 2>&1 |
    tee target/api-load.log | grep -E -A3 '^load|^test result|panicked' || status=$?
  grep -q '^test result: ok. 1 passed' target/api-load.log || status=1
  grep '^test result:' target/api-load.log >>target/cargo-test.log || true

  step "fuzz smoke: every target ${FUZZ_SMOKE_SECS:-5} s (fuzz/run.sh; the long runs: fuzz/README.md)"
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
      echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
      cargo install cargo-fuzz --locked -q || status=1
    fi
    # A crash saves its input under tests/fuzz_regression/cases and fails
    # the run; the case then replays in `cargo test`.
    # Unoptimised (FUZZ_DEV): the optimised AddressSanitizer build of the
    # control plane alone takes longer than the whole smoke may.
    if ! FUZZ_DEV=1 fuzz/run.sh "${FUZZ_SMOKE_SECS:-5}" 2>&1 | tee target/fuzz-smoke.log; then
      echo "FAIL: fuzz smoke (see target/fuzz-smoke.log)"
      status=1
    fi
  else
    echo "skipped: fuzz smoke (no nightly toolchain: cargo-fuzz needs one; rustup toolchain install nightly)"
  fi

  # root_tier LOG WHAT CMD...: a tier that needs root (network namespaces,
  # TAP devices); its PASS/FAIL lines are counted with the other tests.
  # Not root: it fails in CI and is skipped, saying so, elsewhere.
  root_tier() {
    local log=$1 what=$2
    shift 2
    if [ "$(id -u)" = 0 ]; then
      "$@" 2>&1 | tee "$log" || status=$?
      printf 'test result: ok. %d passed; %d failed; 0 ignored\n' \
        "$(grep -c '^PASS' "$log" || true)" "$(grep -c '^FAIL' "$log" || true)" >>target/cargo-test.log
    elif [ -n "${CI:-}" ]; then
      echo "FAIL: the $what needs root in CI"
      status=1
    else
      echo "skipped: $what (needs root for network namespaces and TAP devices)"
    fi
  }

  # Each runs the debug sluiced `cargo test` just built: correctness only
  # (the throughput figures for bench/README.md come from release builds).
  step "end to end: two hosts, guests on TAP, in network namespaces (tests/e2e/run.sh)"
  root_tier target/e2e.log "end-to-end tier" env SLUICED=target/debug/sluiced SLUICEADM=target/debug/sluiceadm tests/e2e/run.sh

  step "live migration: a port moves between two hosts with iperf3 and a SNAT'd session running (tests/e2e/migrate.sh)"
  root_tier target/migrate.log "migration tier" \
    env SLUICED=target/debug/sluiced SLUICEADM=target/debug/sluiceadm tests/e2e/migrate.sh

  step "two underlay uplinks: iperf3 across one router's link going down and up (tests/e2e/uplinks.sh)"
  root_tier target/uplinks.log "uplinks tier" env SLUICED=target/debug/sluiced tests/e2e/uplinks.sh

  # Installs openvswitch-switch when missing; in CI, not being able to run
  # fails the tier (the script says why).
  step "OVS interop: Open vSwitch's userspace datapath as the peer host (tests/ovs/run.sh)"
  root_tier target/ovs.log "OVS interop tier" env SLUICED=target/debug/sluiced tests/ovs/run.sh

  # Installs qemu-system-x86 when missing (in CI a failed install fails
  # the tier); the guest is cached under target/vm/.
  step "VM: a QEMU guest on a vhost-user port, DHCP and ping across hosts (tests/vm/run.sh)"
  root_tier target/vm.log "VM tier" \
    env SLUICED=target/debug/sluiced SLUICEADM=target/debug/sluiceadm tests/vm/run.sh
fi
summary
exit "$status"
