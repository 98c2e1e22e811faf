#!/usr/bin/env python3
"""Moves bytes over TCP or UDP and prints what arrived, for tests/ovs/run.sh.

  xfer.py tcp-recv PORT SECS         accept one connection, print "<bytes> <sha256>"
  xfer.py tcp-send HOST PORT FILE    send FILE, print "<bytes> <sha256>"
  xfer.py udp-recv PORT SECS         print "<datagrams> <bytes> <sha256 of them in order>"
                                     after SECS without a datagram
  xfer.py udp-send HOST PORT FILE SIZE [PPS]
                                     FILE in datagrams of SIZE bytes (at most
                                     PPS a second), print the same line

Every wait is bounded; a hash over the bytes in order is the content check.
"""
import hashlib
import socket
import sys
import time


def tcp_recv(port, secs):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1)
    s.settimeout(secs)
    c, _ = s.accept()
    c.settimeout(secs)
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        h.update(b)
        n += len(b)
    print(n, h.hexdigest(), flush=True)


def tcp_send(host, port, path):
    data = open(path, "rb").read()
    c = socket.create_connection((host, port), timeout=10)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    c.settimeout(10)
    while c.recv(65536):
        pass
    print(len(data), hashlib.sha256(data).hexdigest(), flush=True)


def udp_recv(port, secs):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    h, n, count = hashlib.sha256(), 0, 0
    # The first datagram may take a while (the sender starts later).
    s.settimeout(secs * 5)
    try:
        while True:
            b = s.recv(65536)
            h.update(b)
            n += len(b)
            count += 1
            s.settimeout(secs)
    except socket.timeout:
        pass
    print(count, n, h.hexdigest(), flush=True)


def udp_send(host, port, path, size, pps):
    data = open(path, "rb").read()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    h, count = hashlib.sha256(), 0
    gap = 1.0 / pps if pps else 0
    for i in range(0, len(data), size):
        b = data[i : i + size]
        s.sendto(b, (host, port))
        h.update(b)
        count += 1
        if gap:
            time.sleep(gap)
    print(count, len(data), h.hexdigest(), flush=True)


def main(a):
    if a[0] == "tcp-recv":
        tcp_recv(int(a[1]), float(a[2]))
    elif a[0] == "tcp-send":
        tcp_send(a[1], int(a[2]), a[3])
    elif a[0] == "udp-recv":
        udp_recv(int(a[1]), float(a[2]))
    elif a[0] == "udp-send":
        udp_send(a[1], int(a[2]), a[3], int(a[4]), float(a[5]) if len(a) > 5 else 0)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
