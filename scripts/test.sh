#!/usr/bin/env bash
# Runs every test tier sluice has, from fast to real. This is the README's
# test command and what CI runs (.ci/run).
#
#   scripts/test.sh            all tiers
#   scripts/test.sh --fast     checks and `cargo test` only (installs nothing)
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
if [ "$fast" = 0 ] && [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing ${need_pkgs[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
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
  # Later tiers (DPDK) are added by the issues that build them: they
  # live in tests/ and are called from here.
fi

step "unit, scenario and regression tests (cargo test)"
status=0
cargo test --workspace --locked 2>&1 | tee target/cargo-test.log || status=$?
summary

if [ "$fast" = 0 ]; then
  # Two sluiced in network namespaces with real guests (root; says SKIP
  # and passes without it). Builds the release sluiced it runs.
  step "end to end in network namespaces (tests/e2e/run.sh)"
  tests/e2e/run.sh || status=1
fi
exit "$status"
