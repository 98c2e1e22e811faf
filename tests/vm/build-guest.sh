#!/usr/bin/env bash
# Builds the test VM for tests/vm/run.sh from Debian's packages, cached
# under target/vm/: the kernel of `linux-image-amd64` (`apt-get download`,
# `dpkg-deb -x`) and an initramfs (cpio + gzip) with busybox-static, the
# virtio-net modules (virtio_net, virtio_pci and what modules.dep says
# they need), tests/vm/init as /init and tests/e2e/udhcpc.script.
#
#   tests/vm/build-guest.sh        prints the directory holding vmlinuz
#                                  and initrd.gz (last line of output)
#
# Needs apt-get (to download packages), dpkg-deb, modinfo (kmod), cpio
# and gzip. Rebuilds the initramfs when tests/vm/init changes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$repo/target/vm"
mkdir -p "$out"
cd "$out"

if [ ! -f vmlinuz ] || [ ! -d kmods ]; then
  echo "downloading the kernel package (apt-get download)" >&2
  rm -rf dl && mkdir dl
  meta=linux-image-amd64
  pkg=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
  if [ -z "$pkg" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(apt-cache depends "$meta" | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
  fi
  [ -n "$pkg" ] || { echo "no kernel package behind $meta" >&2; exit 1; }
  (cd dl && apt-get download "$pkg" >/dev/null)
  rm -rf kpkg && mkdir kpkg
  dpkg-deb -x dl/*.deb kpkg
  kver=$(ls kpkg/lib/modules | head -n 1)
  cp "kpkg/boot/vmlinuz-$kver" vmlinuz.tmp
  # Keep only the modules the guest needs, with what they depend on (the
  # package has no modules.dep: `modinfo -F depends` says).
  rm -rf kmods && mkdir -p "kmods/$kver"
  mdir="kpkg/lib/modules/$kver/kernel"
  declare -A seen=()
  add() { # depth-first, dependencies first
    local m=$1 f d
    [ -n "${seen[$m]:-}" ] && return 0
    seen[$m]=1
    f=$(find "$mdir" -name "$m.ko*" | head -n 1)
    [ -n "$f" ] || return 0 # built in
    for d in $(modinfo -F depends "$f" | tr ',' ' '); do add "$d"; done
    case "$f" in
      *.ko.xz) xz -dc "$f" >"kmods/$kver/$m.ko" ;;
      *.ko.zst) zstd -qdc "$f" >"kmods/$kver/$m.ko" ;;
      *) cp "$f" "kmods/$kver/$m.ko" ;;
    esac
    echo "$m.ko" >>"kmods/$kver/load-order"
  }
  for m in virtio_pci virtio_net; do add "$m"; done
  rm -rf kpkg dl
  mv vmlinuz.tmp vmlinuz
fi

# busybox-static from its package (whatever busybox the host has).
if [ ! -f busybox ]; then
  rm -rf dl && mkdir dl
  (cd dl && apt-get download busybox-static >/dev/null)
  dpkg-deb -x dl/busybox-static_*.deb dl/x
  cp dl/x/bin/busybox busybox.tmp
  rm -rf dl
  mv busybox.tmp busybox
fi
bb="$out/busybox"

stamp=$(cat "$here/init" "$here/../e2e/udhcpc.script" "$bb" "$here/build-guest.sh" | sha256sum | cut -c1-16)
if [ ! -f initrd.gz ] || [ "$(cat initrd.stamp 2>/dev/null)" != "$stamp" ]; then
  echo "building the initramfs" >&2
  rm -rf root && mkdir -p root/bin root/sbin root/proc root/sys root/dev root/etc root/tmp root/lib/modules
  cp "$bb" root/bin/busybox
  for a in sh mount insmod ip udhcpc ping poweroff cat echo sleep ifconfig route grep sed awk reboot; do
    ln -s busybox "root/bin/$a"
  done
  cp -r kmods/* root/lib/modules/
  cp "$here/init" root/init
  cp "$here/../e2e/udhcpc.script" root/etc/udhcpc.script
  chmod +x root/init root/etc/udhcpc.script
  (cd root && find . | cpio -o -H newc --quiet | gzip -1) >initrd.gz.tmp
  mv initrd.gz.tmp initrd.gz
  echo "$stamp" >initrd.stamp
  rm -rf root
fi
echo "$out"
