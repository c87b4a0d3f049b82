#!/usr/bin/env python3
"""The data-plane benchmark's three programs (bench/report.py runs them inside
namespaces it made; traffic only on 198.18.0.0/15):

  dataplane_stub.py app PORT                 echoes 64-byte messages, first byte 'A'
  dataplane_stub.py proxy PORT fixed|redirect|tproxy
        a stub sidecar: accepts, finds where the connection was going
        (redirect: SO_ORIGINAL_DST; tproxy: the accepted socket's own address;
        fixed: port 8080) and relays each message to the app on 127.0.0.1 at
        that port, marking the answer's first byte 'P'
  dataplane_stub.py client IP:PORT:MARK,... CONNS REQS
        per target, CONNS new connections with one request each, and REQS
        requests on ten open connections (in turn), the targets interleaved in blocks of
        10; checks each answer's mark (a captured connection that missed the
        proxy is an error); prints JSON [{conn_ms, req_ms, errors}, ...]

Servers print "ready" when listening and exit after 15 minutes at most."""

import json
import signal
import socket
import struct
import sys
import threading
import time

MSG = 64
SO_ORIGINAL_DST = 80
IP_TRANSPARENT = 19


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve(port, handler, transparent=False):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if transparent:
        ls.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(512)
    signal.alarm(900)
    print("ready", flush=True)
    while True:
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def app(c):
    with c:
        while True:
            m = recv_exact(c, MSG)
            if m is None:
                return
            c.sendall(b"A" + m[1:])


def proxy(mode):
    def handle(c):
        with c:
            if mode == "redirect":
                raw = c.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
                port = struct.unpack("!H", raw[2:4])[0]
            elif mode == "tproxy":
                port = c.getsockname()[1]
            else:
                port = 8080
            u = socket.create_connection(("127.0.0.1", port), timeout=5)
            u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with u:
                while True:
                    m = recv_exact(c, MSG)
                    if m is None:
                        return
                    u.sendall(m)
                    r = recv_exact(u, MSG)
                    if r is None:
                        return
                    c.sendall(b"P" + r[1:])
    return handle


def client(spec, conns, reqs):
    targets = []
    for t in spec.split(","):
        ip, port, mark = t.split(":")
        targets.append(((ip, int(port)), mark.encode()))
    res = [{"conn_ms": [], "req_ms": [], "errors": 0} for _ in targets]
    msg = b"x" * MSG
    deadline = time.monotonic() + 600

    def one_conn(addr, mark):
        t0 = time.perf_counter()
        s = socket.create_connection(addr, timeout=2)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(msg)
        r = recv_exact(s, MSG)
        s.close()
        d = (time.perf_counter() - t0) * 1000
        return d if r is not None and r[:1] == mark else None

    block = 10
    for start in range(0, conns, block):
        for k, (addr, mark) in enumerate(targets):
            for _ in range(min(block, conns - start)):
                if time.monotonic() > deadline:
                    res[k]["errors"] += 1
                    continue
                try:
                    d = one_conn(addr, mark)
                except OSError:
                    d = None
                if d is None:
                    res[k]["errors"] += 1
                else:
                    res[k]["conn_ms"].append(d)
    # Ten open connections per target, used in turn: one connection's thread
    # placement must not decide a row.
    open_socks = []
    for addr, _ in targets:
        conns_k = []
        for _ in range(10):
            s = socket.create_connection(addr, timeout=2)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns_k.append(s)
        open_socks.append(conns_k)
    for start in range(0, reqs, block):
        for k, ((addr, mark), socks) in enumerate(zip(targets, open_socks)):
            for i in range(min(block, reqs - start)):
                s = socks[(start + i) % len(socks)]
                t0 = time.perf_counter()
                s.sendall(msg)
                r = recv_exact(s, MSG)
                d = (time.perf_counter() - t0) * 1000
                if r is None or r[:1] != mark:
                    res[k]["errors"] += 1
                else:
                    res[k]["req_ms"].append(d)
    for socks in open_socks:
        for s in socks:
            s.close()
    print(json.dumps(res))


def main():
    what = sys.argv[1]
    if what == "app":
        serve(int(sys.argv[2]), app)
    elif what == "proxy":
        serve(int(sys.argv[2]), proxy(sys.argv[3]), transparent=sys.argv[3] == "tproxy")
    elif what == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(f"unknown program {what}")


if __name__ == "__main__":
    main()
