#!/usr/bin/env python3
"""Issue 2, real traffic through the real `weir` CLI.

A pod "app" (captured, stub sidecar on 15001/15006 as uid 1337, servers on 8080
and 9090) and peers "peer" (servers 8080, 9000, 7070) and "peer2" (8080, an
excluded CIDR) on the testbed's bridge. After `weir apply --netns app ...`:
  inbound:  peer -> app:8080 lands on 15006 with SO_ORIGINAL_DST app:8080;
            app:9090 (excluded inbound port) lands on 9090;
  outbound: app as uid 1000 -> peer:8080 / peer:7070 lands on 15001 with the
            original destination; uid 1337 and gid 1337 go straight through;
            excluded port 9000 and excluded CIDR peer2 go straight through;
            127.0.0.1 is not captured; the proxy calling its own pod IP is
            treated as inbound (15006);
each over IPv4 and IPv6. Then: apply twice == apply once (iptables-legacy-save,
or `nft list table inet weir` under nftables), clean removes every weir chain
and jump, leaves a foreign rule alone (a legacy one, and under nftables a
foreign table too), and traffic is no longer captured. Either backend: the one
this run's auto picks (checks.BACKEND), with nothing of weir's in the other.
Exit 77 when not root or when the binaries are not built.
"""

import os
import re
import sys

from checks import BACKEND, check, finish, only_in_backend, testbed, Testbed, weir  # noqa: E402

OUT, IN = 15001, 15006
APP_UID = 1000
def must(cp, what):
    if cp.returncode != 0:
        raise SystemExit(f"FAIL {what}: exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}")
    return cp


def normalized_save(tb, pod, family):
    """iptables-legacy-save without comments and counters, so runs compare."""
    text = tb.iptables_save(pod, family)
    lines = [re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in text.splitlines() if not ln.startswith("#")]
    return "\n".join(lines)


def expect_captured(tb, desc, src, to, *, port, orig, uid=None, gid=None):
    r = tb.connect(src, to, uid=uid, gid=gid)
    check(f"{desc}: lands on {port}, original destination {orig}",
          r.get("landed") == port and r.get("orig_dst") == orig, f"got {r}")


def expect_direct(tb, desc, src, to, *, port, uid=None, gid=None):
    r = tb.connect(src, to, uid=uid, gid=gid)
    check(f"{desc}: goes straight to {to}",
          r.get("landed") == port and r.get("orig_dst") is None and r.get("local") == to, f"got {r}")


def traffic(tb, app, peer, peer2, fam):
    v = f"IPv{fam}"
    expect_captured(tb, f"{v} inbound peer -> app:8080", peer, app.addr(8080, fam), port=IN, orig=app.addr(8080, fam))
    expect_direct(tb, f"{v} inbound peer -> app:9090 (excluded inbound port)", peer, app.addr(9090, fam), port=9090)
    expect_captured(tb, f"{v} outbound app uid {APP_UID} -> peer:8080", app, peer.addr(8080, fam),
                    port=OUT, orig=peer.addr(8080, fam), uid=APP_UID, gid=APP_UID)
    expect_captured(tb, f"{v} outbound app uid {APP_UID} -> peer:7070 (port not excluded)", app,
                    peer.addr(7070, fam), port=OUT, orig=peer.addr(7070, fam), uid=APP_UID, gid=APP_UID)
    expect_direct(tb, f"{v} outbound proxy uid 1337 -> peer:8080", app, peer.addr(8080, fam), port=8080,
                  uid=1337, gid=1337)
    expect_direct(tb, f"{v} outbound proxy gid 1337 (uid {APP_UID}) -> peer:8080", app, peer.addr(8080, fam),
                  port=8080, uid=APP_UID, gid=1337)
    expect_direct(tb, f"{v} outbound app -> peer:9000 (excluded outbound port)", app, peer.addr(9000, fam),
                  port=9000, uid=APP_UID, gid=APP_UID)
    expect_direct(tb, f"{v} outbound app -> peer2:8080 (excluded outbound CIDR)", app, peer2.addr(8080, fam),
                  port=8080, uid=APP_UID, gid=APP_UID)
    lo = "127.0.0.1:8080" if fam == 4 else "[::1]:8080"
    expect_direct(tb, f"{v} app -> {lo} (loopback not captured)", app, lo, port=8080, uid=APP_UID, gid=APP_UID)
    expect_captured(tb, f"{v} proxy -> own pod IP :8080 (treated as inbound)", app, app.addr(8080, fam),
                    port=IN, orig=app.addr(8080, fam), uid=1337, gid=1337)


def main():
    testbed.require_root()
    for b in ("weir", "weir-probe"):
        if not os.access(os.path.join(testbed.bin_dir(), b), os.X_OK):
            print(f"SKIP: {b} not built in {testbed.bin_dir()}", file=sys.stderr)
            return 77

    with Testbed(role="bed") as tb:
        app, peer, peer2 = tb.add_pod("app"), tb.add_pod("peer"), tb.add_pod("peer2")
        tb.sidecar(app)
        tb.serve(app, [8080, 9090])
        tb.serve(peer, [8080, 9000, 7070])
        tb.serve(peer2, [8080])
        # A rule weir does not own: clean must leave it alone.
        for fam, tool in ((4, "iptables-legacy"), (6, "ip6tables-legacy")):
            tb.exec(app, [tool, "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "5999", "-j", "RETURN"],
                    check=True)
        if BACKEND == "nftables":
            tb.exec(app, ["nft", "add table inet other; add chain inet other out { type nat hook output priority 0; }; "
                          "add rule inet other out udp dport 5999 return"], check=True)

        # Before any rule: nothing is captured (the probe itself is honest).
        expect_direct(tb, "before apply: peer -> app:8080", peer, app.addr(8080), port=8080)

        flags = ["--exclude-inbound-ports", "9090,15020,15021,15090",
                 "--exclude-outbound-ports", "9000",
                 "--exclude-outbound-cidrs", f"{peer2.ip4}/32,{peer2.ip6}/128"]
        must(weir("apply", "--netns", app.netns, *flags), "weir apply")
        if BACKEND == "iptables":
            for fam in (4, 6):
                save = tb.iptables_save(app, fam)
                check(f"IPv{fam}: iptables-legacy-save shows weir's chains after apply",
                      "WEIR_" in save and "-j REDIRECT" in save, save)
        else:
            listing = tb.weir_rules(app)
            check("nft list table inet weir shows weir's chains after apply, both families",
                  all(c in listing for c in ("chain ip_nat_WEIR_OUTPUT", "chain ip6_nat_WEIR_OUTPUT",
                                             "redirect to :15001", "redirect to :15006")), listing)
        only_in_backend(tb, app, "after apply")
        for fam in (4, 6):
            traffic(tb, app, peer, peer2, fam)

        # Apply twice == apply once.
        before = {fam: normalized_save(tb, app, fam) for fam in (4, 6)}
        before_nft = tb.weir_rules(app, "nftables")
        must(weir("apply", "--netns", app.netns, *flags), "second weir apply")
        for fam in (4, 6):
            after = normalized_save(tb, app, fam)
            check(f"IPv{fam}: apply twice leaves the same rules as once (iptables-legacy-save)", after == before[fam],
                  f"once:\n{before[fam]}\ntwice:\n{after}")
            for builtin in ("PREROUTING", "OUTPUT"):
                jumps = tb.weir_base_jumps(app, fam, builtin)
                check(f"IPv{fam}: exactly one jump from nat {builtin} after two applies ({BACKEND})", len(jumps) == 1,
                      tb.weir_rules(app))
        after_nft = tb.weir_rules(app, "nftables")
        check("apply twice leaves the same rules as once (nft list table inet weir)", after_nft == before_nft,
              f"once:\n{before_nft}\ntwice:\n{after_nft}")
        cp = weir("check", "--netns", app.netns, *flags)
        check("weir check agrees with the live rules after apply", cp.returncode == 0, cp.stdout + cp.stderr)

        # A changed spec replaces the old rules: port 9000 is now captured.
        must(weir("apply", "--netns", app.netns, "--exclude-inbound-ports", "9090"), "weir apply (changed spec)")
        expect_captured(tb, "changed spec: app -> peer:9000 now captured", app, peer.addr(9000),
                        port=OUT, orig=peer.addr(9000), uid=APP_UID, gid=APP_UID)
        expect_captured(tb, "changed spec: app -> peer2:8080 now captured", app, peer2.addr(8080),
                        port=OUT, orig=peer2.addr(8080), uid=APP_UID, gid=APP_UID)

        # check notices a rule deleted by hand, in either family; apply repairs it.
        changed = ["--exclude-inbound-ports", "9090"]
        for fam in (4, 6):
            tb.delete_weir_rule(app, fam, "WEIR_OUTPUT", 1)
            cp = weir("check", "--netns", app.netns, *changed)
            check(f"IPv{fam}: weir check exits 1 with a diff after a rule is deleted by hand",
                  cp.returncode == 1 and "WEIR_OUTPUT" in cp.stdout + cp.stderr, cp.stdout + cp.stderr)
            must(weir("apply", "--netns", app.netns, *changed), "weir apply (repair)")
            cp = weir("check", "--netns", app.netns, *changed)
            check(f"IPv{fam}: apply repairs it (check exits 0)", cp.returncode == 0, cp.stdout + cp.stderr)

        # Clean removes exactly weir's rules.
        must(weir("clean", "--netns", app.netns), "weir clean")
        for fam in (4, 6):
            save = tb.iptables_save(app, fam)
            check(f"IPv{fam}: clean leaves no weir chain or jump", "WEIR_" not in save, save)
            check(f"IPv{fam}: clean leaves the foreign rule", "--dport 5999 -j RETURN" in save, save)
        check("clean leaves no table inet weir", tb.weir_rules(app, "nftables") == "", tb.weir_rules(app, "nftables"))
        if BACKEND == "nftables":
            other = tb.exec(app, ["nft", "list", "table", "inet", "other"]).stdout
            check("clean leaves the foreign nft table and its rule", "udp dport 5999 return" in other, other)
        expect_direct(tb, "after clean: peer -> app:8080", peer, app.addr(8080), port=8080)
        expect_direct(tb, "after clean: app -> peer:8080", app, peer.addr(8080), port=8080, uid=APP_UID)
        must(weir("clean", "--netns", app.netns), "weir clean (nothing left to remove)")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
