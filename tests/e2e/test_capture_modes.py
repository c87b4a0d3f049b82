#!/usr/bin/env python3
"""Issue 5's modes with real traffic through the real `weir` CLI, both families.

TPROXY (`--inbound-mode tproxy`): the stub sidecar listens with IP_TRANSPARENT on
15006; a client in a peer namespace connecting to app:8080 lands there with its
real source address and the original destination as the socket's local address;
an excluded inbound port is not captured; outbound stays REDIRECT; the policy
routing (fwmark rule + local route table) exists after apply and is gone after
clean.

DNS (`--redirect-dns`): an app's UDP and TCP queries to a nameserver in another
namespace land on the stub DNS server on 15053 in the pod (running as the proxy,
uid 1337), whose own upstream query then reaches that nameserver uncaptured.
Exit 77 when not root or when the binaries are not built.
"""

import os
import sys

from checks import check, finish, only_in_backend, testbed, Testbed, weir  # noqa: E402

APP_UID = 1000
def applied(cp, what):
    check(what, cp.returncode == 0, f"exit {cp.returncode}: {cp.stdout}{cp.stderr}")
    return cp.returncode == 0


def policy_routing(tb, pod, fam, table=133):
    fl = "-4" if fam == 4 else "-6"
    rules = tb.exec(pod, ["ip", fl, "rule", "show"]).stdout
    routes = tb.exec(pod, ["ip", fl, "route", "show", "table", str(table)]).stdout
    return rules, routes


def tproxy(tb):
    app, peer = tb.add_pod("tp-app"), tb.add_pod("tp-peer")
    tb.sidecar(app, transparent=True)
    tb.serve(app, [8080, 9090])
    tb.serve(peer, [8080])
    if not applied(weir("apply", "--netns", app.netns, "--inbound-mode", "tproxy",
                        "--exclude-inbound-ports", "9090"), "weir apply --inbound-mode tproxy"):
        return
    only_in_backend(tb, app, "tproxy")
    for fam in (4, 6):
        v = f"IPv{fam} tproxy"
        rules, routes = policy_routing(tb, app, fam)
        check(f"{v}: fwmark rule to table 133 and local route installed",
              "fwmark 0x539" in rules and "lookup 133" in rules and "local" in routes, rules + routes)
        r = tb.connect(peer, app.addr(8080, fam))
        check(f"{v}: peer -> app:8080 lands on 15006, keeps the client address and the destination",
              r.get("landed") == 15006 and r.get("local") == app.addr(8080, fam)
              and r.get("peer", "").rsplit(":", 1)[0] == peer.addr(0, fam).rsplit(":", 1)[0], r)
        r = tb.connect(peer, app.addr(9090, fam))
        check(f"{v}: excluded inbound port 9090 goes straight to the app", r.get("landed") == 9090, r)
        r = tb.connect(app, peer.addr(8080, fam), uid=APP_UID, gid=APP_UID)
        check(f"{v}: outbound still redirected to 15001", r.get("landed") == 15001
              and r.get("orig_dst") == peer.addr(8080, fam), r)
        r = tb.connect(app, peer.addr(8080, fam), uid=1337, gid=1337)
        check(f"{v}: proxy's own outbound goes straight through", r.get("landed") == 8080, r)
    cp = weir("check", "--netns", app.netns, "--inbound-mode", "tproxy", "--exclude-inbound-ports", "9090")
    check("tproxy: weir check agrees with the live rules and routes", cp.returncode == 0, cp.stdout + cp.stderr)
    applied(weir("clean", "--netns", app.netns), "weir clean (tproxy)")
    for fam in (4, 6):
        rules, routes = policy_routing(tb, app, fam)
        check(f"IPv{fam} tproxy: clean removed the fwmark rule and the route table",
              "lookup 133" not in rules and not routes.strip(), rules + routes)
        save = tb.iptables_save(app, fam)
        check(f"IPv{fam} tproxy: clean removed every weir chain", "WEIR_" not in save, save)
    check("tproxy: clean removed table inet weir", tb.weir_rules(app, "nftables") == "", tb.weir_rules(app, "nftables"))
    for fam in (4, 6):
        r = tb.connect(peer, app.addr(8080, fam))
        check(f"IPv{fam} tproxy: after clean, peer -> app:8080 goes to the app", r.get("landed") == 8080, r)


def dns(tb):
    app, ns = tb.add_pod("dns-app"), tb.add_pod("dns-ns")
    # The nameserver in another namespace, and the pod's stub (the proxy's DNS
    # listener) forwarding to it as uid 1337.
    tb.dns_serve(ns, [53], answers=["198.18.7.1", "fd00:198:18:7::1"])
    stub4 = tb.dns_serve(app, [15053], family="4", uid=1337, gid=1337, upstream=ns.addr(53, 4))
    stub6 = tb.dns_serve(app, [15053], family="6", uid=1337, gid=1337, upstream=ns.addr(53, 6))
    app_ip = {4: app.ip4, 6: app.ip6}

    r = tb.dns_query(app, ns.addr(53), name="before.weir.test", uid=APP_UID)
    check("before apply: the app's query goes straight to the nameserver",
          (r.get("report") or {}).get("landed") == 53 and not stub4.reports(), r)

    if not applied(weir("apply", "--netns", app.netns, "--redirect-dns"), "weir apply --redirect-dns"):
        return
    only_in_backend(tb, app, "dns")
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
            # The proxy's own query is never captured.
            name = f"p{n}-{proto}{fam}.weir.test"
            r = tb.dns_query(app, ns.addr(53, fam), name=name, tcp=tcp, uid=1337, gid=1337)
            check(f"IPv{fam} {proto}: the proxy's own query goes straight to the nameserver",
                  (r.get("report") or {}).get("landed") == 53
                  and not [x for x in stub.reports() if x.get("qname") == name + "."], r)
    applied(weir("clean", "--netns", app.netns), "weir clean (dns)")
    r = tb.dns_query(app, ns.addr(53), name="after.weir.test", uid=APP_UID)
    check("after clean: the app's query goes straight to the nameserver",
          (r.get("report") or {}).get("landed") == 53
          and not [x for x in stub4.reports() if x.get("qname") == "after.weir.test."], r)


def main():
    testbed.require_root()
    for b in ("weir", "weir-probe"):
        if not os.access(os.path.join(testbed.bin_dir(), b), os.X_OK):
            print(f"SKIP: {b} not built in {testbed.bin_dir()}", file=sys.stderr)
            return 77
    with Testbed(role="bed") as tb:
        tproxy(tb)
        dns(tb)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
