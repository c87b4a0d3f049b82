#!/usr/bin/env python3
"""Real traffic through weir's nftables ruleset (iptables/kernel/nft/), both families.

The rules are installed by the test tool weir-nft-test-apply (the nftables filter,
in-process over netlink; plus the TPROXY policy routes and ::6 on lo, as ops adds
them) until the front ends select the filter. In every mode the pod's table is
`inet weir` only, with no xt (compat) expression, and nothing legacy:
- REDIRECT: an app's connection to a peer lands on the sidecar's 15001 and
  SO_ORIGINAL_DST says where it was going; a peer's connection to the app lands
  on 15006 with the original destination; the proxy's own traffic is not captured.
- TPROXY: inbound lands on a transparent 15006 keeping the client address and
  the destination; an excluded port is not captured; outbound stays REDIRECT.
- DNS: the app's UDP and TCP queries land on the stub on 15053 (uid 1337), whose
  upstream query reaches the nameserver uncaptured (conntrack zones in raw).
Clean removes the table. kill -9 at random moments, of the test tool's apply and
of the real weir-cni ADD (nftables, run as a runtime runs it), never leaves a
part of the table. Exit 77 when not root or the binaries are not built.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

from checks import check, finish, testbed, Testbed  # noqa: E402

APP_UID = 1000


def tool(*args):
    argv = [os.path.join(testbed.bin_dir(), "weir-nft-test-apply")] + [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def applied(cp, what):
    check(what, cp.returncode == 0 and cp.stdout.strip() == "ok", f"exit {cp.returncode}: {cp.stdout}{cp.stderr}")
    return cp.returncode == 0


def only_weir_nft(tb, pod, what):
    cp = tb.exec(pod, ["nft", "--json", "list", "ruleset"])
    check(f"{what}: nft --json lists the ruleset", cp.returncode == 0, cp.stderr)
    if cp.returncode != 0:
        return
    objs = json.loads(cp.stdout)["nftables"]
    tables = [(o["table"]["family"], o["table"]["name"]) for o in objs if "table" in o]
    check(f"{what}: the only table is inet weir", tables == [("inet", "weir")], tables)
    check(f"{what}: no xt (compat) expression", '"xt"' not in cp.stdout, cp.stdout[:2000])
    for fam in (4, 6):
        save = tb.iptables_save(pod, fam)
        check(f"{what}: nothing of weir's in legacy IPv{fam} xtables", "WEIR_" not in save, save)


def redirect(tb):
    app, peer = tb.add_pod("rd-app"), tb.add_pod("rd-peer")
    tb.sidecar(app)
    tb.serve(app, [8080])
    tb.serve(peer, [8080])
    if not applied(tool("--netns", app.netns), "apply the default spec (REDIRECT, dual-stack) with nftables"):
        return
    only_weir_nft(tb, app, "redirect")
    listing = tb.exec(app, ["nft", "list", "table", "inet", "weir"]).stdout
    print(listing)
    for fam in (4, 6):
        v = f"IPv{fam} redirect"
        r = tb.connect(app, peer.addr(8080, fam), uid=APP_UID, gid=APP_UID)
        check(f"{v}: app -> peer:8080 lands on 15001, SO_ORIGINAL_DST is peer:8080",
              r.get("landed") == 15001 and r.get("orig_dst") == peer.addr(8080, fam), r)
        r = tb.connect(peer, app.addr(8080, fam))
        check(f"{v}: peer -> app:8080 lands on 15006, SO_ORIGINAL_DST is app:8080",
              r.get("landed") == 15006 and r.get("orig_dst") == app.addr(8080, fam), r)
        r = tb.connect(app, peer.addr(8080, fam), uid=1337, gid=1337)
        check(f"{v}: the proxy's own outbound goes straight through", r.get("landed") == 8080, r)
        r = tb.connect(peer, app.addr(15020, fam), timeout_ms=500)
        check(f"{v}: excluded inbound port 15020 is not captured", r.get("landed") != 15006, r)
    def handles():  # counters zeroed: a late packet between the listings moves them
        out = tb.exec(app, ["nft", "-a", "list", "table", "inet", "weir"]).stdout
        return re.sub(r"counter packets \d+ bytes \d+", "counter", out)
    again = handles()
    applied(tool("--netns", app.netns), "apply the same spec again")
    after = handles()
    check("redirect: applying again changed nothing (same handles)", after == again and "# handle" in after,
          f"before:\n{again}\nafter:\n{after}")
    applied(tool("--netns", app.netns, "--clean"), "clean (redirect)")
    check("redirect: clean removed table inet weir", tb.exec(app, ["nft", "list", "ruleset"]).stdout.strip() == "")
    for fam in (4, 6):
        r = tb.connect(app, peer.addr(8080, fam), uid=APP_UID, gid=APP_UID)
        check(f"IPv{fam}: after clean, app -> peer:8080 goes to the peer", r.get("landed") == 8080, r)


def tproxy(tb):
    app, peer = tb.add_pod("tp-app"), tb.add_pod("tp-peer")
    tb.sidecar(app, transparent=True)
    tb.serve(app, [8080, 9090])
    tb.serve(peer, [8080])
    spec = json.dumps({"mode": "tproxy", "excludeInboundPorts": "9090"})
    if not applied(tool("--netns", app.netns, "--spec", spec), "apply mode tproxy with nftables"):
        return
    only_weir_nft(tb, app, "tproxy")
    for fam in (4, 6):
        v = f"IPv{fam} tproxy"
        r = tb.connect(peer, app.addr(8080, fam))
        check(f"{v}: peer -> app:8080 lands on 15006, keeps the client address and the destination",
              r.get("landed") == 15006 and r.get("local") == app.addr(8080, fam)
              and r.get("peer", "").rsplit(":", 1)[0] == peer.addr(0, fam).rsplit(":", 1)[0], r)
        r = tb.connect(peer, app.addr(9090, fam))
        check(f"{v}: excluded inbound port 9090 goes straight to the app", r.get("landed") == 9090, r)
        r = tb.connect(app, peer.addr(8080, fam), uid=APP_UID, gid=APP_UID)
        check(f"{v}: outbound still redirected to 15001",
              r.get("landed") == 15001 and r.get("orig_dst") == peer.addr(8080, fam), r)
        r = tb.connect(app, peer.addr(8080, fam), uid=1337, gid=1337)
        check(f"{v}: the proxy's own outbound goes straight through", r.get("landed") == 8080, r)
    applied(tool("--netns", app.netns, "--clean", "--spec", spec), "clean (tproxy)")
    for fam in (4, 6):
        r = tb.connect(peer, app.addr(8080, fam))
        check(f"IPv{fam} tproxy: after clean, peer -> app:8080 goes to the app", r.get("landed") == 8080, r)


def dns(tb):
    app, ns = tb.add_pod("dns-app"), tb.add_pod("dns-ns")
    tb.dns_serve(ns, [53], answers=["198.18.7.1", "fd00:198:18:7::1"])
    stub4 = tb.dns_serve(app, [15053], family="4", uid=1337, gid=1337, upstream=ns.addr(53, 4))
    stub6 = tb.dns_serve(app, [15053], family="6", uid=1337, gid=1337, upstream=ns.addr(53, 6))
    app_ip = {4: app.ip4, 6: app.ip6}
    if not applied(tool("--netns", app.netns, "--spec", json.dumps({"dns": {"capture": True}})),
                   "apply DNS capture with nftables"):
        return
    only_weir_nft(tb, app, "dns")
    n = 0
    for fam, stub in ((4, stub4), (6, stub6)):
        for tcp in (False, True):
            n += 1
            proto = "tcp" if tcp else "udp"
            name = f"q{n}-{proto}{fam}.weir.test"
            r = tb.dns_query(app, ns.addr(53, fam), name=name, tcp=tcp, uid=APP_UID, gid=APP_UID)
            seen = [x for x in stub.reports() if x.get("qname") == name + "."]
            check(f"IPv{fam} {proto}: the app's query to the nameserver lands on the stub on 15053",
                  len(seen) == 1 and seen[0].get("landed") == 15053 and seen[0].get("proto") == proto,
                  f"stub saw {stub.reports()}")
            rep = r.get("report") or {}
            check(f"IPv{fam} {proto}: the stub's upstream query reaches the nameserver uncaptured",
                  r.get("rcode") == 0 and r.get("answers") == ["198.18.7.1"]
                  and rep.get("landed") == 53 and rep.get("peer", "").startswith(
                      app_ip[fam] if fam == 4 else f"[{app_ip[fam]}]"), r)
            name = f"p{n}-{proto}{fam}.weir.test"
            r = tb.dns_query(app, ns.addr(53, fam), name=name, tcp=tcp, uid=1337, gid=1337)
            check(f"IPv{fam} {proto}: the proxy's own query goes straight to the nameserver",
                  (r.get("report") or {}).get("landed") == 53
                  and not [x for x in stub.reports() if x.get("qname") == name + "."], r)
    applied(tool("--netns", app.netns, "--clean"), "clean (dns)")


def listing(tb, pod):
    """nft list ruleset without counters (they differ between runs)."""
    out = tb.exec(pod, ["nft", "list", "ruleset"]).stdout
    return re.sub(r"counter packets \d+ bytes \d+", "counter", out)


def kill9(tb):
    """kill -9 of an apply at random moments never leaves a half-installed table."""
    app = tb.add_pod("k9-app")
    spec = json.dumps({"mode": "tproxy", "dns": {"capture": True}})
    t0 = time.monotonic()
    if not applied(tool("--netns", app.netns, "--spec", spec), "kill -9: a full apply for reference"):
        return
    span = time.monotonic() - t0  # kills land anywhere from exec to exit
    full = listing(tb, app)
    applied(tool("--netns", app.netns, "--clean", "--spec", spec), "kill -9: clean before the runs")
    argv = [os.path.join(testbed.bin_dir(), "weir-nft-test-apply"), "--netns", app.netns, "--spec", spec]
    rng = random.Random(1337)
    seen = {"none": 0, "full": 0, "other": 0}
    bad = ""
    for _ in range(60):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, span))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        now = listing(tb, app)
        kind = "none" if not now.strip() else "full" if now == full else "other"
        seen[kind] += 1
        if kind == "other" and not bad:
            bad = now
        tool("--netns", app.netns, "--clean", "--spec", spec)
    check(f"kill -9 at random moments: the table is absent or whole every time ({seen})", seen["other"] == 0, bad)


def cni_kill9(tb):
    """kill -9 of the real weir-cni ADD (nftables), driven as a runtime drives it
    (CNI_* in the environment, the config with a prevResult on stdin, run in the
    node namespace), at random moments: the pod has no table inet weir or the
    whole one, never part of it; then a normal ADD repairs and CHECK passes.
    Bounded: 40 kills or 30 s, whichever comes first."""
    app = tb.add_pod("k9-cni")
    conf = {"cniVersion": "1.0.0", "name": "weir-testbed", "type": "weir-cni",
            "capture": {"backend": "nftables", "mode": "tproxy", "dns": {"capture": True}},
            "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"weir.dev/capture": "enabled"}},
            "capabilities": {"io.kubernetes.cri.pod-annotations": True},
            "prevResult": {"cniVersion": "1.0.0",
                           "interfaces": [{"name": "eth0", "sandbox": app.path}],
                           "ips": [{"address": f"{app.ip4}/24", "gateway": testbed.GATEWAY4, "interface": 0},
                                   {"address": f"{app.ip6}/64", "gateway": testbed.GATEWAY6, "interface": 0}]}}
    env = {"CNI_NETNS": app.path, "CNI_CONTAINERID": app.container_id, "CNI_IFNAME": "eth0",
           "CNI_ARGS": tb.containerd_cni_args(app), "WEIR_TEST_UNAVAILABLE_BACKEND": "iptables"}

    def call(command):
        return tb.cni_invoke("weir-cni", command, conf, env=env)

    t0 = time.monotonic()
    add = call("ADD")
    span = time.monotonic() - t0  # the whole process, from exec to exit
    check("weir-cni kill -9: a full ADD (nftables) for reference", add.ok, add)
    if not add.ok:
        return
    full = listing(tb, app)
    check("weir-cni kill -9: the reference is table inet weir alone", full.startswith("table inet weir {"), full)
    call("DEL")
    argv = ["ip", "netns", "exec", tb.node, tb.resolve_plugin("weir-cni")]
    penv = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": "ADD",
            "CNI_PATH": os.pathsep.join(testbed.plugin_dirs()), **env}
    data = json.dumps(conf).encode()
    rng = random.Random(4242)
    seen = {"none": 0, "full": 0, "other": 0}
    bad = ""
    deadline = time.monotonic() + 30
    for i in range(40):
        if time.monotonic() > deadline:
            break
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=penv)
        try:
            p.stdin.write(data)
            p.stdin.close()
        except BrokenPipeError:
            pass
        time.sleep(rng.uniform(0, span))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        now = listing(tb, app)
        kind = "none" if not now.strip() else "full" if now == full else "other"
        seen[kind] += 1
        if kind == "other" and not bad:
            bad = now
        if i < 39:
            d = call("DEL")
            if not d.ok or listing(tb, app).strip():
                check("weir-cni kill -9: DEL between the runs empties the ruleset", False, d)
                break
    total = sum(seen.values())
    check(f"weir-cni ADD killed -9 {total} times at random moments: table inet weir absent or whole ({seen})",
          seen["other"] == 0 and total >= 10, bad)
    add = call("ADD")
    check("weir-cni kill -9: a normal ADD afterwards repairs", add.ok and listing(tb, app) == full, add)
    chk = call("CHECK")
    check("weir-cni kill -9: CHECK passes after the repair", chk.ok, chk)
    call("DEL")


def main():
    testbed.require_root()
    for b in ("weir-nft-test-apply", "weir-probe", "weir-cni"):
        if not os.access(os.path.join(testbed.bin_dir(), b), os.X_OK):
            print(f"SKIP: {b} not built in {testbed.bin_dir()}", file=sys.stderr)
            return 77
    if subprocess.run(["nft", "--version"], capture_output=True).returncode != 0:
        print("SKIP: no nft to look at the rules with", file=sys.stderr)
        return 77
    with Testbed(role="nft") as tb:
        redirect(tb)
        tproxy(tb)
        dns(tb)
        kill9(tb)
        cni_kill9(tb)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
