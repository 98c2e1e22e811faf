#!/usr/bin/env python3
"""A minimal Geneve boundary for the namespace end-to-end test.

The test kernel may lack the Geneve driver (CONFIG_GENEVE), so the
boundary's tunnel end is this program: a TAP (`--tap`, its kernel side
routes to the "internet") joined to a UDP socket on [--local]:6081.

- Tunnel -> TAP: checks the Geneve version and protocol (0x6558, Ethernet),
  takes the VNI and skips the options (sluice marks internet traffic with
  a non-critical option of class 0xFF59, type 1: counted, not required).
  sluice addresses an internet frame to its gateway's own MAC (a routed
  hop, see overlay/src/layer.rs `Encapsulate`), which the boundary's
  kernel would not take as its own: the inner destination MAC is
  rewritten to the TAP's. The inner IPv4 source is learned: (address ->
  VNI, tunnel source host).
- TAP -> tunnel: a frame to a learned inner IPv4 destination is sent to
  the host that address was last seen from, with its VNI and no options.
  The inner destination MAC is whatever the kernel's neighbour entry says
  (the test adds a permanent one: the SNAT address -> the guest's MAC,
  which is what sluice's switch demultiplexes by). Unknown destinations
  and non-IPv4 frames are dropped and counted.

Runs until SIGTERM or `--lifetime` seconds; prints its counters to stderr
when it stops (and every `--report` seconds).
"""

import argparse
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
GENEVE_PORT = 6081
ETH_P_TEB = 0x6558


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    ifr = struct.pack("16sH14x", name.encode(), IFF_TAP | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


def mac_of(name):
    with open(f"/sys/class/net/{name}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tap", required=True)
    ap.add_argument("--local", required=True, help="underlay IPv6 address to bind")
    ap.add_argument("--vni", type=int, action="append", default=[],
                    help="accept only these VNIs (repeatable; default: any)")
    ap.add_argument("--lifetime", type=float, default=300.0)
    ap.add_argument("--ready", help="file to create once listening")
    args = ap.parse_args()

    tap = open_tap(args.tap)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind((args.local, GENEVE_PORT))
    sock.setblocking(False)
    stats = dict(decap=0, encap=0, external_opt=0, bad_geneve=0, wrong_vni=0,
                 unknown_dst=0, not_ipv4=0, tx_err=0)
    learned = {}  # inner IPv4 (bytes) -> (vni, host)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    if args.ready:
        open(args.ready, "w").close()
    deadline = time.monotonic() + args.lifetime
    tap_mac = None

    while not stop and time.monotonic() < deadline:
        try:
            r, _, _ = select.select([sock, tap], [], [], 0.5)
        except InterruptedError:
            continue
        if sock in r:
            while True:
                try:
                    data, peer = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if len(data) < 8 + 14:
                    stats["bad_geneve"] += 1
                    continue
                ver_optlen, flags, proto = struct.unpack("!BBH", data[:4])
                optlen = (ver_optlen & 0x3F) * 4
                if ver_optlen >> 6 != 0 or proto != ETH_P_TEB or flags & 0x40:
                    # version, protocol, or a critical option we cannot know
                    stats["bad_geneve"] += 1
                    continue
                vni = int.from_bytes(data[4:7], "big")
                if args.vni and vni not in args.vni:
                    stats["wrong_vni"] += 1
                    continue
                opts = data[8:8 + optlen]
                i = 0
                while i + 4 <= len(opts):
                    cls, typ, ln = struct.unpack("!HBB", opts[i:i + 4])
                    if cls == 0xFF59 and typ & 0x7F == 1:
                        stats["external_opt"] += 1
                    i += 4 + (ln & 0x1F) * 4
                frame = bytearray(data[8 + optlen:])
                if tap_mac is None:
                    tap_mac = mac_of(args.tap)
                frame[0:6] = tap_mac
                if frame[12:14] == b"\x08\x00" and len(frame) >= 34:
                    learned[bytes(frame[26:30])] = (vni, peer[0])
                try:
                    os.write(tap, frame)
                    stats["decap"] += 1
                except OSError:
                    stats["tx_err"] += 1
        if tap in r:
            while True:
                try:
                    frame = os.read(tap, 65535)
                except BlockingIOError:
                    break
                if frame[12:14] != b"\x08\x00" or len(frame) < 34:
                    stats["not_ipv4"] += 1
                    continue
                dst = learned.get(bytes(frame[30:34]))
                if dst is None:
                    stats["unknown_dst"] += 1
                    continue
                vni, host = dst
                hdr = struct.pack("!BBH", 0, 0, ETH_P_TEB) + vni.to_bytes(3, "big") + b"\0"
                try:
                    sock.sendto(hdr + frame, (host, GENEVE_PORT))
                    stats["encap"] += 1
                except OSError:
                    stats["tx_err"] += 1
    print("boundary: " + " ".join(f"{k}={v}" for k, v in stats.items()),
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
