#!/usr/bin/env python3
"""The testbed and the probe, tested on their own (no weir involved), so the
capture tests built on them can be trusted:
  - ip-wired pods reach each other over IPv4 and IPv6; a closed port and an
    unreachable address are reported as errors, not as successes;
  - with a REDIRECT rule the test installs by hand (iptables-legacy, in the pod;
    an nft table when the run's backend is nftables),
    weir-probe reports where a connection landed and SO_ORIGINAL_DST for both
    families, and uid/gid switching works (an owner-match rule sees it);
  - UDP datagrams are answered;
  - a CNI pod attached through loopback + bridge/host-local (run in the node
    namespace) gets its addresses, CHECK and DEL (twice, and with an empty
    CNI_NETNS) succeed, and stdin carries name/cniVersion/prevResult/
    runtimeConfig as a runtime sends them;
  - nothing lands in the root namespace, and a testbed killed by SIGTERM or
    SIGINT leaves no namespace behind; `testbed.py cleanup` removes leftovers.
"""

import json
import os
import signal
import subprocess
import sys
import time

from checks import check, finish, testbed, Testbed, TB_DIR  # noqa: E402

def root_links():
    """Names of the root namespace's links that a misplaced testbed would add."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=10).stdout
    names = {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines() if ":" in ln}
    return {n for n in names if n == "cni0" or n.startswith(("vp", "veth"))}


def probe_and_wiring():
    with Testbed(role="bed") as tb:
        a, b = tb.add_pod("a"), tb.add_pod("b")
        tb.serve(b, [8080])
        for fam in (4, 6):
            r = tb.connect(a, b.addr(8080, fam))
            check(f"IPv{fam}: a -> b:8080 lands on b:8080", r.get("landed") == 8080 and r.get("local") == b.addr(8080, fam)
                  and r.get("peer", "").startswith(a.addr(0, fam)[:-2]) and r.get("orig_dst") is None, r)
            r = tb.connect(a, b.addr(8081, fam))
            check(f"IPv{fam}: closed port is an error", "refused" in r.get("error", ""), r)
        r = tb.connect(a, "198.19.255.1:80", timeout_ms=300)
        check("unrouted address is an error", "error" in r, r)

        # Hand-made REDIRECT of uid 1000's TCP to 15001, in the packet filter
        # this run's weir would use (legacy xtables, or an nft table).
        tb.sidecar(a)
        if testbed.backend_in_use() == "iptables":
            for tool in ("iptables-legacy", "ip6tables-legacy"):
                tb.exec(a, [tool, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", "1000",
                            "-j", "REDIRECT", "--to-ports", "15001"], check=True)
        else:
            tb.exec(a, ["nft", "add table inet hand; add chain inet hand out { type nat hook output priority -100; }; "
                        "add rule inet hand out meta l4proto tcp meta skuid 1000 redirect to :15001"], check=True)
        for fam in (4, 6):
            r = tb.connect(a, b.addr(8080, fam), uid=1000, gid=1000)
            check(f"IPv{fam}: redirected connection reports landed 15001 and SO_ORIGINAL_DST",
                  r.get("landed") == 15001 and r.get("orig_dst") == b.addr(8080, fam), r)
            r = tb.connect(a, b.addr(8080, fam), uid=1001, gid=1001)
            check(f"IPv{fam}: another uid is not redirected", r.get("landed") == 8080 and r.get("orig_dst") is None, r)

        tb.serve(b, [5353], udp=True)
        for fam in (4, 6):
            r = tb.connect(a, b.addr(5353, fam), udp=True)
            check(f"IPv{fam}: UDP datagram answered", r.get("proto") == "udp" and r.get("landed") == 5353, r)

        side = tb.procs[1]
        check("sidecar runs as uid 1337", open(f"/proc/{side.pid}/status").read().count("1337") >= 2
              if side.alive() else False)


def cni_chain():
    with Testbed(role="bed") as tb:
        peer = tb.add_pod("peer")
        tb.serve(peer, [8080])
        conf = tb.bridge_conf(capabilities={"io.kubernetes.cri.pod-annotations": True})
        pod = tb.add_pod_cni("c", [conf], annotations={"weir.dev/capture": "enabled"})
        check("CNI pod got addresses from host-local",
              pod.ip4 and pod.ip4.startswith("198.18.0.") and pod.ip6 and pod.ip6.startswith("fd00:198:18::"),
              pod)
        sent = json.loads(pod.cni_calls[-1].stdin)
        check("bridge got name, cniVersion and runtimeConfig (declared capability only)",
              sent.get("name") == "weir-testbed" and sent.get("cniVersion") == "1.0.0"
              and sent.get("runtimeConfig", {}).get("io.kubernetes.cri.pod-annotations") == {"weir.dev/capture": "enabled"}
              and "prevResult" not in sent, sent)
        check("loopback brought lo up", "UP" in tb.exec(pod, ["ip", "link", "show", "lo"]).stdout)
        for fam in (4, 6):
            r = tb.connect(pod, peer.addr(8080, fam))
            check(f"IPv{fam}: CNI pod reaches an ip-wired pod", r.get("landed") == 8080, r)
        calls = tb.cni_chain("CHECK", pod.cni_plugins, pod=pod)
        check("CHECK gets the cached result as prevResult",
              calls and json.loads(calls[0].stdin).get("prevResult", {}).get("ips"), calls)
        calls = tb.cni_chain("DEL", pod.cni_plugins, pod=pod)
        check("DEL succeeds", calls and all(c.ok for c in calls), calls)
        calls = tb.cni_chain("DEL", pod.cni_plugins, pod=pod, netns_path="")
        check("second DEL, empty CNI_NETNS, no prevResult, succeeds",
              calls and all(c.ok for c in calls) and "prevResult" not in json.loads(calls[0].stdin), calls)
        args = calls[0].stdin  # CNI_ARGS are not in stdin; check the generator instead
        seen = {tb.containerd_cni_args(pod) for _ in range(30)}
        check("CNI_ARGS come in random order with IgnoreUnknown=1",
              len(seen) > 1 and all("IgnoreUnknown=1" in s for s in seen), seen)
        del args
        v = tb.cni_invoke("bridge", "VERSION", {"cniVersion": "1.0.0"})
        check("cni_invoke VERSION returns supportedVersions", v.ok and "1.0.0" in v.json.get("supportedVersions", []), v)


def teardown_on_signal():
    for sig in (signal.SIGTERM, signal.SIGINT):
        code = ("import sys,time; sys.path.insert(0, %r); import testbed; tb = testbed.Testbed(role='bedsig');"
                "tb.add_pod('x'); tb.serve(tb.pods['x'], [8080]); print(tb.prefix, flush=True); time.sleep(60)") % TB_DIR
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ))
        try:
            prefix = p.stdout.readline().strip()
            check(f"child testbed started ({prefix})", prefix.startswith("wt-bedsig-"))
            p.send_signal(sig)
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        left = [n for n in os.listdir("/var/run/netns") if n.startswith(prefix)] if prefix else ["?"]
        check(f"{signal.Signals(sig).name}: no namespace left behind", not left, left)
        if left:
            testbed.cleanup(prefix)

    # cleanup command removes leftovers (a namespace made to look like one).
    name = f"wt-bedcl-{os.getpid()}-x"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    cp = subprocess.run([sys.executable, os.path.join(TB_DIR, "testbed.py"), "cleanup", "--prefix",
                         f"wt-bedcl-{os.getpid()}"], capture_output=True, text=True, timeout=60)
    check("testbed.py cleanup removes a leftover namespace",
          cp.returncode == 0 and name not in os.listdir("/var/run/netns"), cp.stdout + cp.stderr)


def main():
    testbed.require_root()
    if not os.access(os.path.join(testbed.bin_dir(), "weir-probe"), os.X_OK):
        print(f"SKIP: weir-probe not built in {testbed.bin_dir()}", file=sys.stderr)
        return 77
    links_before = root_links()
    t0 = time.monotonic()
    probe_and_wiring()
    cni_chain()
    teardown_on_signal()
    after = root_links()
    check("no bridge or veth of the testbed in the root namespace", "cni0" not in after and after <= links_before,
          f"before {links_before} after {after}")
    print(f"({time.monotonic() - t0:.1f}s)")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
