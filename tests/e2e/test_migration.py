#!/usr/bin/env python3
"""Migration between the packet filters on live pods (issue 10): legacy ->
nftables -> legacy, through `weir apply --backend` and through weir-cni ADD
with `backend` in the CNI config's capture object.

Two CNI pods (bridge + host-local) and a peer:
  app    a stub sidecar (weir-probe on 15001 and 15006 as uid 1337), a server on 8080;
  lived  an echo "sidecar" on 15001 (tests/e2e/hold.py, uid 1337) and, opened
         after the first apply, two long-lived connections of the app (uid 1000)
         to peer:7070 over IPv4 and IPv6, redirected to it.
After every step, for both families: app -> peer:8080 lands on 15001 with
SO_ORIGINAL_DST peer:8080; peer -> app:8080 lands on 15006 with app:8080; the
proxy's own connection goes straight to the peer; the long-lived connections
still echo; `weir check --backend B` (and CNI CHECK after an ADD) passes; weir's
rules are in the backend B and nothing of weir's is in the other
(iptables-legacy-save has no WEIR_ chain, or there is no table inet weir).
Then mixed state: weir rules planted in the other backend too (`weir plan`
through iptables-legacy-restore --noflush, or `weir plan --backend nftables`
through nft -f) make `weir check` fail naming both backends; `weir clean`
(app) and weir-cni DEL (lived) remove both.

Switches backends itself, so it clears WEIR_TEST_UNAVAILABLE_BACKEND and is
not in WEIR_E2E_NFT. Exit 77 when not root or the binaries or tools are missing.
"""

import json
import os
import shutil
import sys
import time

from checks import check, finish, testbed, Testbed, weir, SOURCE_DIR  # noqa: E402

OUT, IN, PROXY = 15001, 15006, 1337
APP_UID = 1000
ANNOTATIONS_CAP = "io.kubernetes.cri.pod-annotations"
HOLD = os.path.join(SOURCE_DIR, "tests", "e2e", "hold.py")
STEPS = [("weir apply", "iptables"), ("weir apply", "nftables"), ("weir apply", "iptables"),
         ("weir-cni ADD", "nftables"), ("weir-cni ADD", "iptables"), ("weir-cni ADD", "nftables")]


def weir_conf(**capture):
    return {"type": "weir-cni", "capabilities": {ANNOTATIONS_CAP: True}, "capture": capture}


def install(tb, how, backend, pod):
    """One step on one pod; True when it succeeded."""
    if how == "weir apply":
        cp = weir("apply", "--netns", pod.netns, "--backend", backend)
        check(f"{pod.name}: weir apply --backend {backend}", cp.returncode == 0, cp.stdout + cp.stderr)
        return cp.returncode == 0
    calls = tb.cni_chain("ADD", [weir_conf(backend=backend)], pod=pod, cache=False, prev_result=pod.cni_result)
    check(f"{pod.name}: weir-cni ADD with capture.backend {backend}", calls and calls[0].ok, calls)
    if not (calls and calls[0].ok):
        return False
    calls = tb.cni_chain("CHECK", [weir_conf(backend=backend)], pod=pod)
    check(f"{pod.name}: weir-cni CHECK after ADD ({backend})", calls and calls[0].ok, calls)
    return True


def traffic(tb, app, peer, what):
    for fam in (4, 6):
        r = tb.connect(app, peer.addr(8080, fam), uid=APP_UID, gid=APP_UID)
        check(f"{what}: IPv{fam} app -> peer:8080 lands on {OUT}, SO_ORIGINAL_DST peer:8080",
              r.get("landed") == OUT and r.get("orig_dst") == peer.addr(8080, fam), r)
        r = tb.connect(peer, app.addr(8080, fam))
        check(f"{what}: IPv{fam} peer -> app:8080 lands on {IN}, SO_ORIGINAL_DST app:8080",
              r.get("landed") == IN and r.get("orig_dst") == app.addr(8080, fam), r)
        r = tb.connect(app, peer.addr(8080, fam), uid=PROXY, gid=PROXY)
        check(f"{what}: IPv{fam} the proxy's own connection goes straight to the peer",
              r.get("landed") == 8080 and r.get("orig_dst") is None, r)


def oks(proc):
    return sum(1 for ln in proc.output().splitlines() if ln.startswith("ok "))


def still_echoing(holds, what):
    for fam, proc in holds:
        before = oks(proc)
        deadline = time.monotonic() + 5
        while oks(proc) < before + 2 and proc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        check(f"{what}: the IPv{fam} connection opened before the switch still echoes",
              oks(proc) >= before + 2 and "error" not in proc.output(), proc.output()[-500:])


def only_in(tb, pod, backend, what):
    other = testbed.other_backend(backend)
    check(f"{what}: {pod.name} has weir's rules in {backend}", tb.weir_installed(pod, backend),
          tb.weir_rules(pod, backend))
    left = tb.weir_leftovers(pod, other)
    check(f"{what}: {pod.name} has nothing of weir's in {other}", left == "", left)


def plant(tb, pod, backend):
    """weir's default rules written into `backend` behind weir's back."""
    if backend == "iptables":
        plan = weir("plan", "--ip-families", "ipv4").stdout
        a = tb.exec(pod, ["iptables-legacy-restore", "--noflush"], input=plan)
        plan6 = weir("plan", "--ip-families", "ipv6").stdout
        b = tb.exec(pod, ["ip6tables-legacy-restore", "--noflush"], input=plan6)
        ok = a.returncode == 0 and b.returncode == 0
        check(f"{pod.name}: weir plan planted into legacy iptables", ok, a.stderr + b.stderr)
        return ok
    plan = weir("plan", "--backend", "nftables").stdout
    a = tb.exec(pod, ["nft", "-f", "-"], input=plan)
    check(f"{pod.name}: weir plan --backend nftables planted with nft -f", a.returncode == 0, a.stderr)
    return a.returncode == 0


def mixed_state(tb, pod, installed, what):
    other = testbed.other_backend(installed)
    if not plant(tb, pod, other):
        return
    check(f"{what}: weir rules now in both backends",
          tb.weir_installed(pod, "iptables") and tb.weir_installed(pod, "nftables"))
    for b in (installed, other):
        cp = weir("check", "--netns", pod.netns, "--backend", b)
        out = (cp.stdout + cp.stderr).lower()
        check(f"{what}: weir check --backend {b} reports drift naming both backends",
              cp.returncode == 1 and "iptables" in out and "nftables" in out, f"exit {cp.returncode}: {out}")


def main():
    testbed.require_root()
    for b in ("weir", "weir-cni", "weir-probe"):
        if not os.access(os.path.join(testbed.bin_dir(), b), os.X_OK):
            print(f"SKIP: {b} not built in {testbed.bin_dir()}", file=sys.stderr)
            return 77
    for t in ("nft", "iptables-legacy-restore", "ip6tables-legacy-restore"):
        if shutil.which(t) is None:
            print(f"SKIP: {t} not found", file=sys.stderr)
            return 77
    if not os.access("/usr/lib/cni/bridge", os.X_OK):
        print("SKIP: /usr/lib/cni/bridge missing (install containernetworking-plugins)", file=sys.stderr)
        return 77
    # This test picks each backend itself; the switch that hides one would refuse it.
    os.environ.pop("WEIR_TEST_UNAVAILABLE_BACKEND", None)

    t0 = time.monotonic()
    with Testbed(role="migr") as tb:
        enabled = {"weir.dev/capture": "enabled"}
        app = tb.add_pod_cni("app", [tb.bridge_conf()], annotations=enabled)
        lived = tb.add_pod_cni("lived", [tb.bridge_conf()], annotations=enabled)
        peer = tb.add_pod("peer")
        tb.sidecar(app)
        tb.serve(app, [8080], uid=APP_UID, gid=APP_UID)
        tb.serve(peer, [8080])
        ready = os.path.join(tb.tmp, "hold-ready")
        echo = tb.spawn(lived, [sys.executable, HOLD, "serve", "--port", str(OUT), "--uid", str(PROXY),
                                "--ready-file", ready, "--max-seconds", "300"], name="hold-serve")
        deadline = time.monotonic() + 5
        while not os.path.exists(ready) and echo.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not os.path.exists(ready):
            check("the echo sidecar started", False, echo.output())
            return finish()

        holds = []
        for i, (how, backend) in enumerate(STEPS):
            what = f"step {i + 1} ({how} --backend {backend})"
            if not all([install(tb, how, backend, p) for p in (app, lived)]):
                continue
            traffic(tb, app, peer, what)
            for pod in (app, lived):
                cp = weir("check", "--netns", pod.netns, "--backend", backend)
                check(f"{what}: weir check passes on {pod.name}", cp.returncode == 0, cp.stdout + cp.stderr)
                only_in(tb, pod, backend, what)
            if not holds:
                for fam in (4, 6):
                    proc = tb.spawn(lived, [sys.executable, HOLD, "connect", "--to", peer.addr(7070, fam),
                                            "--uid", str(APP_UID), "--interval-ms", "50", "--max-seconds", "240"],
                                    name=f"hold-{fam}")
                    holds.append((fam, proc))
                for fam, proc in holds:
                    deadline = time.monotonic() + 5
                    while not proc.output() and proc.alive() and time.monotonic() < deadline:
                        time.sleep(0.02)
                    first = (proc.output().splitlines() or ["{}"])[0]
                    try:
                        rep = json.loads(first)
                    except ValueError:
                        rep = {}
                    check(f"{what}: the long-lived IPv{fam} connection to peer:7070 lands on the echo sidecar "
                          f"with SO_ORIGINAL_DST peer:7070",
                          rep.get("landed") == OUT and rep.get("orig_dst") == peer.addr(7070, fam), proc.output())
            still_echoing(holds, what)

        # Mixed state, then the removal of both.
        mixed_state(tb, app, "nftables", "app, nftables + planted legacy")
        cp = weir("clean", "--netns", app.netns)
        check("weir clean", cp.returncode == 0, cp.stdout + cp.stderr)
        for b in ("iptables", "nftables"):
            left = tb.weir_leftovers(app, b)
            check(f"weir clean removed weir's rules from {b}", left == "", left)
        for fam in (4, 6):
            r = tb.connect(app, peer.addr(8080, fam), uid=APP_UID, gid=APP_UID)
            check(f"after clean: IPv{fam} app -> peer:8080 goes to the peer", r.get("landed") == 8080, r)

        if install(tb, "weir apply", "iptables", lived):
            mixed_state(tb, lived, "iptables", "lived, iptables + planted nftables")
            calls = tb.cni_chain("DEL", [weir_conf()], pod=lived, cache=False, prev_result=lived.cni_result)
            check("weir-cni DEL", calls and calls[0].ok, calls)
            for b in ("iptables", "nftables"):
                left = tb.weir_leftovers(lived, b)
                check(f"weir-cni DEL removed weir's rules from {b}", left == "", left)
    print(f"({time.monotonic() - t0:.1f}s)")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
