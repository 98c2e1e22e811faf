#!/usr/bin/env bash
# Installs what the DPDK uplink (vmm-net's `dpdk` feature, dpdk-sys) needs
# to build and run its tests, from Debian's packages:
#
#   libdpdk-dev   DPDK >= 22.11 headers, libraries and libdpdk.pc; pulls in
#                 the drivers (net_null, net_ring, net_pcap, NICs) as
#                 plugins that rte_eal_init loads
#   dpdk          DPDK's runtime and tools (dpdk-devbind.py, hugepages)
#   libclang-dev  libclang, which bindgen loads to read the headers
#   pkg-config, gcc   to find DPDK and compile dpdk-sys's C shim
#
# Idempotent: installs only what is missing, and does nothing (exit 0)
# when everything is there. Needs root (and apt-get) when something is
# missing; otherwise it says what to install and exits 1.
#
#   scripts/install-dpdk.sh            the build and test prerequisites
#   scripts/install-dpdk.sh --tools    also dpdk-dev (dpdk-testpmd), to
#                                      compare rates with DPDK's own tool
set -euo pipefail

pkgs=(libdpdk-dev dpdk libclang-dev pkg-config gcc)
[ "${1:-}" = "--tools" ] && pkgs+=(dpdk-dev)

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "DPDK prerequisites present: DPDK $(pkg-config --modversion libdpdk)"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "DPDK $(pkg-config --modversion libdpdk) installed"
