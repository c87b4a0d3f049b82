#!/usr/bin/env python3
"""A long-lived TCP connection for the migration test, run in a pod's namespace
(`ip netns exec POD python3 hold.py ...`). Not a test itself.

  hold.py serve --port P --uid U --max-seconds S
      an echo server on P (IPv4 and IPv6) that runs as U after binding; every
      connection gets one line first: {"landed": P, "orig_dst": "ADDR:PORT"}
      (SO_ORIGINAL_DST, null when the connection was not redirected), then
      every line it sends is echoed.
  hold.py connect --to ADDR:PORT --uid U --interval-ms N --max-seconds S
      connects as U, prints the server's first line, then sends a line every
      N ms and prints "ok K" for each echo, "error ..." and exits 1 when the
      connection breaks; exits 0 after S seconds.
"""

import argparse
import ipaddress
import json
import os
import socket
import struct
import sys
import threading
import time

SO_ORIGINAL_DST = 80  # the same number for SOL_IP and SOL_IPV6 (IP6T_SO_ORIGINAL_DST)


def orig_dst(conn):
    fam = conn.family
    try:
        if fam == socket.AF_INET:
            raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port, addr = struct.unpack("!H", raw[2:4])[0], socket.inet_ntop(socket.AF_INET, raw[4:8])
            return f"{addr}:{port}"
        raw = conn.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
        port, addr = struct.unpack("!H", raw[2:4])[0], socket.inet_ntop(socket.AF_INET6, raw[8:24])
        return f"[{addr}]:{port}"
    except OSError:
        return None


def serve(a):
    socks = []
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, a.port))
        s.listen(16)
        socks.append(s)
    if a.ready_file:  # listening already; written while still allowed to
        open(a.ready_file, "w").close()
    os.setgid(a.uid)
    os.setgroups([])
    os.setuid(a.uid)

    def handle(conn):
        with conn:
            first = {"landed": conn.getsockname()[1], "orig_dst": orig_dst(conn)}
            conn.sendall((json.dumps(first) + "\n").encode())
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)

    def accept(s):
        while True:
            conn, _ = s.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    for s in socks:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    time.sleep(a.max_seconds)


def connect(a):
    host, port = a.to.rsplit(":", 1)
    host = host.strip("[]")
    fam = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    os.setgid(a.uid)
    os.setgroups([])
    os.setuid(a.uid)
    # A numeric address, no getaddrinfo: after setuid the interpreter may not
    # be able to import what name resolution needs.
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect((host, int(port)))
    f = s.makefile("rwb", buffering=0)
    print(f.readline().decode().strip(), flush=True)
    deadline = time.monotonic() + a.max_seconds
    k = 0
    while time.monotonic() < deadline:
        k += 1
        try:
            f.write(f"ping {k}\n".encode())
            line = f.readline().decode().strip()
        except OSError as e:
            print(f"error {e}", flush=True)
            return 1
        if line != f"ping {k}":
            print(f"error echo {line!r}", flush=True)
            return 1
        print(f"ok {k}", flush=True)
        time.sleep(a.interval_ms / 1000)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--uid", type=int, required=True)
    s.add_argument("--ready-file")
    s.add_argument("--max-seconds", type=int, default=300)
    c = sub.add_parser("connect")
    c.add_argument("--to", required=True)
    c.add_argument("--uid", type=int, required=True)
    c.add_argument("--interval-ms", type=int, default=100)
    c.add_argument("--max-seconds", type=int, default=300)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a)
        return 0
    return connect(a)


if __name__ == "__main__":
    sys.exit(main())
