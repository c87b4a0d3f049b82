#!/usr/bin/env python3
"""Issue 5 item 6: `weir explain` agrees with the kernel.

For each of 15 capture specs (defaults, port and CIDR lists, several proxy
UIDs/GIDs, DNS capture of all DNS and of given servers, TPROXY, excluded and
kube-virt interfaces, one family only, no inbound capture, drop invalid, and
combinations), `weir apply --config SPEC` captures the
testbed pod "app"; then hundreds of flows, generated systematically (both
families; inbound from two peers to ports in and out of every list; outbound
TCP as applications, proxy UIDs and GIDs and root to ports and peers in and out
of every list; to 127.0.0.1/::1, to the pod's own address over lo, from the
passthrough source 127.0.0.6/::6; UDP to port 53 and another port), are each
  - explained: `weir explain --config SPEC --output json` for the same packet
    (for a packet that stays local and passes output untouched, the walk goes
    on at prerouting on lo with the mark output left on it, as the kernel does);
    (every fifth flow is also explained on the rules read back from the
    namespace, `weir explain --netns`, which must give the same verdict);
  - sent for real: weir-probe connects in the testbed and the server it lands
    on reports its port, local address and SO_ORIGINAL_DST;
and the two verdicts are compared. Any disagreement fails the test and prints
the flow, explain's trace and what the kernel did.

Only namespaces this test creates (prefix wt-expl-<pid>-), addresses in
198.18.0.0/15 and fd00::/8. Exit 77 when not root or the binaries are missing.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.environ.get("WEIR_SOURCE_DIR", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))), "netns-testbed"))
import testbed  # noqa: E402
from testbed import Testbed  # noqa: E402

OUT, IN, DNS = 15001, 15006, 15053
# Ports the app listens on: inbound destinations, in and out of the lists below.
APP_PORTS = [8080, 9050, 9090, 2222, 3306, 15008, 15020, 15021, 15090]
# Ports the peers listen on: outbound destinations.
PEER_TCP = [80, 443, 3306, 8080, 9000, 53]
PEER_UDP = [53, 5353]
# (uid, gid) of the sending process: app, proxy, proxy by one id only, a second
# proxy uid, a second proxy gid, root.
IDS = [(1000, 1000), (1337, 1337), (1000, 1337), (1337, 1000), (1500, 1500), (1000, 2000), (0, 0)]
CONNECT_TIMEOUT_MS = 1500
LIVE_EVERY = 5  # also explain every 5th flow on the live rules (weir explain --netns)
# Sanitizer builds run every process several times slower: scripts/test.sh
# (WEIR_SANITIZE=1) sets a stride N so that each spec checks every Nth flow,
# starting at a different offset per spec. The plain build checks them all.
FLOW_STRIDE = max(1, int(os.environ.get("WEIR_EXPLAIN_FLOW_STRIDE", "1")))
SERVER_SECONDS = 1200  # = the ctest TIMEOUT of every e2e test


def weir_bin():
    return os.path.join(testbed.bin_dir(), "weir")


def run(argv, timeout=30):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)


def serve_as(tb, pod, ports, uid, gid, ready_dir, *, udp=False):
    """weir-probe serve started as uid/gid from the start. `tb.serve(uid=...)`
    drops privileges after making its sockets, so they stay root's and the
    owner match sees uid 0 on what they send: the DNS stub's UDP answers would
    miss the proxy's conntrack zone rule."""
    ready = os.path.join(ready_dir, f"ready-{'-'.join(map(str, ports))}-{'udp' if udp else 'tcp'}")
    argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", testbed.probe_bin(), "serve",
            "--ready-file", ready, "--max-seconds", "1200"]
    for p in ports:
        argv += ["--port", str(p)]
    if udp:
        argv.append("--udp")
    proc = tb.spawn(pod, argv, name="serve-as")
    deadline = time.monotonic() + 5
    while not os.path.exists(ready):
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop()
            raise testbed.TestbedError(f"{' '.join(argv)}: not ready: {proc.output().strip()}")
        time.sleep(0.01)
    return proc


def specs(peer, peer2):
    """(name, spec JSON) pairs; CIDRs name the testbed's peers."""
    p4, p6 = f"{peer.ip4}/32", f"{peer.ip6}/128"
    q4, q6 = f"{peer2.ip4}/32", f"{peer2.ip6}/128"
    return [
        ("default", {}),
        ("lists", {
            "inboundPorts": "8080,9000-9100,15008,15020,3306",
            "excludeInboundPorts": "9050,15020",
            "excludeInboundCidrs": [q4, q6],
            "outboundPorts": "80,443,3306,8080,53",
            "excludeOutboundPorts": "3306",
            "excludeOutboundCidrs": [q4, q6],
        }),
        ("include-cidrs-uids", {
            "outboundCidrs": [p4, p6],
            "proxyUids": "1337,1500",
            "proxyGids": "1337,2000",
        }),
        ("dns-all", {"dns": {"capture": True}}),
        ("dns-servers", {"dns": {"capture": True, "captureAll": False, "servers": [p4, p6]}}),
        ("tproxy", {"mode": "tproxy"}),
        ("tproxy-lists", {"mode": "tproxy", "inboundPorts": "8080,2222,15008", "excludeInboundCidrs": [q4, q6],
                          "proxyUids": "1337,1500"}),
        ("exclude-eth0", {"excludeInterfaces": "eth0"}),
        ("kubevirt-eth0", {"kubeVirtInterfaces": "eth0"}),
        ("ipv4-only", {"ipFamilies": "ipv4"}),
        ("ipv6-only-tproxy", {"ipFamilies": "ipv6", "mode": "tproxy"}),
        ("tproxy-dns-kubevirt", {"mode": "tproxy", "dns": {"capture": True}, "kubeVirtInterfaces": "eth0"}),
        ("uids-dns-excludes", {"proxyUids": "1337,1500", "proxyGids": "1337,2000", "dns": {"capture": True},
                               "excludeOutboundPorts": "80,443", "excludeInboundPorts": "8080"}),
        ("no-inbound", {"inboundPorts": "", "outboundPorts": "8080-9000"}),
        ("drop-invalid", {"dropInvalid": True, "excludeOutboundCidrs": [p4, p6]}),
    ]


class Flow:
    def __init__(self, kind, fam, src_pod, dst_addr, dport, *, proto="tcp", uid=None, gid=None,
                 src_addr=None, out_iface=None, local=False):
        self.kind, self.fam, self.src_pod, self.dst_addr, self.dport = kind, fam, src_pod, dst_addr, dport
        self.proto, self.uid, self.gid, self.src_addr = proto, uid, gid, src_addr
        self.out_iface, self.local = out_iface, local

    def dialed(self):
        return f"[{self.dst_addr}]:{self.dport}" if self.fam == 6 else f"{self.dst_addr}:{self.dport}"

    def __str__(self):
        who = f" uid {self.uid} gid {self.gid}" if self.uid is not None else ""
        src = f" from {self.src_addr}" if self.src_addr else ""
        via = f" via {self.out_iface}" if self.out_iface else ""
        return f"{self.kind} {self.proto} {self.src_pod.name}{src}{who} -> {self.dialed()}{via}"


def flows(app, peer, peer2):
    out = []
    for fam in (4, 6):
        ip = (lambda p: p.ip4) if fam == 4 else (lambda p: p.ip6)
        loop, passthrough = ("127.0.0.1", "127.0.0.6") if fam == 4 else ("::1", "::6")
        for src in (peer, peer2):
            for port in APP_PORTS:
                out.append(Flow("inbound", fam, src, ip(app), port, src_addr=ip(src)))
        for uid, gid in IDS:
            for dst in (peer, peer2):
                for port in PEER_TCP:
                    out.append(Flow("outbound", fam, app, ip(dst), port, uid=uid, gid=gid, src_addr=ip(app)))
            out.append(Flow("outbound", fam, app, loop, 8080, uid=uid, gid=gid, src_addr=loop, local=True))
            for port in (8080, 15008):
                out.append(Flow("outbound", fam, app, ip(app), port, uid=uid, gid=gid, src_addr=ip(app),
                                out_iface="lo", local=True))
            out.append(Flow("outbound", fam, app, ip(app), 8080, uid=uid, gid=gid, src_addr=passthrough,
                            out_iface="lo", local=True))
        for uid, gid in ((1000, 1000), (1337, 1337)):
            for dst in (peer, peer2):
                for port in PEER_UDP:
                    out.append(Flow("outbound", fam, app, ip(dst), port, proto="udp", uid=uid, gid=gid,
                                    src_addr=ip(app)))
    return out


def explain(rules, f, *, hook=None, mark=None):
    """explain's verdict JSON for the flow (one hook), or a dict with "error".
    `rules` is a spec file, or ("netns", PATH) for the live rules."""
    source = ["--netns", rules[1]] if isinstance(rules, tuple) else ["--config", rules]
    argv = [weir_bin(), "explain"] + source + ["--output", "json", "--proto", f.proto,
            "--src", f.src_addr, "--dst", f.dst_addr, "--dport", f.dport]
    if hook == "prerouting" or (hook is None and f.kind == "inbound"):
        argv += ["--hook", "prerouting", "--in-iface", "lo" if hook == "prerouting" else "eth0"]
    else:
        argv += ["--hook", "output", "--uid", f.uid, "--gid", f.gid]
        if f.out_iface:
            argv += ["--out-iface", f.out_iface]
    if mark:
        argv += ["--mark", mark]
    cp = run(argv)
    if cp.returncode != 0:
        return {"error": f"exit {cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}", "argv": argv}
    return json.loads(cp.stdout)


def expected(rules, f):
    """(verdict tuple, trace text) that explain predicts for the flow."""
    e = explain(rules, f)
    traces = [e]
    if "error" in e:
        # A family the spec does not capture: the CLI says there are no rules.
        if "no ipv6 rules" in e["error"] or "no ipv4 rules" in e["error"]:
            return ("untouched",), f"(no rules of this family) {e['error']}"
        return ("explain failed", e["error"]), json.dumps(e)
    v = e["verdict"]
    # A local packet that passed output untouched comes back in over lo,
    # carrying the mark output gave it.
    if f.local and v["kind"] == "untouched":
        e2 = explain(rules, f, hook="prerouting", mark=v["mark"])
        traces.append(e2)
        if "error" in e2:
            return ("explain failed", e2["error"]), json.dumps(e2)
        v = e2["verdict"]
    trace = " | then at prerouting on lo: ".join(t.get("summary", "") for t in traces)
    steps = "\n".join(f"        {'match' if s['matched'] else 'skip '} {s['table']} {s['ruleText']}"
                      + (f"  => {s['effect']}" if s["matched"] else "")
                      for t in traces for s in t.get("steps", []))
    kind = v["kind"]
    if kind in ("redirected", "tproxied"):
        return (kind, v["port"]), trace + "\n" + steps
    if kind == "dropped":
        return ("no answer",), trace + "\n" + steps
    return ("untouched",), trace + "\n" + steps


def observed(tb, f):
    """(verdict tuple, raw report) of the real connection."""
    r = tb.connect(f.src_pod, f.dialed(), uid=f.uid, gid=f.gid, src=f.src_addr if f.local else None,
                   udp=f.proto == "udp", timeout_ms=CONNECT_TIMEOUT_MS)
    if "error" in r:
        return ("no answer",), r
    landed, local, orig = r.get("landed"), r.get("local"), r.get("orig_dst")
    if orig is not None:
        if orig != f.dialed():
            return ("redirected", landed, f"orig_dst {orig}"), r
        return ("redirected", landed), r
    if landed == f.dport and local == f.dialed():
        return ("untouched",), r
    if landed != f.dport and local == f.dialed():
        return ("tproxied", landed), r
    if f.proto == "udp" and landed != f.dport:
        # UDP's IP_ORIGDSTADDR reports the address after NAT: a REDIRECT shows
        # only as a different port on a loopback address.
        return ("redirected", landed), r
    return ("unexplained", landed), r


def main():
    testbed.require_root()
    for b in ("weir", "weir-probe"):
        if not os.access(os.path.join(testbed.bin_dir(), b), os.X_OK):
            print(f"SKIP: {b} not built in {testbed.bin_dir()}", file=sys.stderr)
            return 77
    failures = []
    counts = {}
    total = 0
    live_checked = 0
    started = time.monotonic()
    with Testbed(role="expl") as tb, tempfile.TemporaryDirectory(prefix="weir-expl-") as tmp:
        app, peer, peer2 = tb.add_pod("app"), tb.add_pod("peer"), tb.add_pod("peer2")
        # The proxy's passthrough source for IPv6, ::6, is put on lo by the
        # first `weir apply` with IPv6 rules (the first spec is dual-stack).
        # Transparent listeners serve REDIRECT and TPROXY alike.
        tb.sidecar(app, transparent=True)
        ready_dir = os.path.join(tmp, "ready")
        os.mkdir(ready_dir)
        os.chmod(tmp, 0o755)
        os.chmod(ready_dir, 0o777)
        serve_as(tb, app, [DNS], 1337, 1337, ready_dir)
        serve_as(tb, app, [DNS], 1337, 1337, ready_dir, udp=True)
        # The servers live for the whole test, which under a sanitizer build
        # takes longer than the probe's default safety limit: use ctest's timeout.
        tb.serve(app, APP_PORTS, uid=1000, gid=1000, max_seconds=SERVER_SECONDS)
        for p in (peer, peer2):
            tb.serve(p, PEER_TCP, max_seconds=SERVER_SECONDS)
            tb.serve(p, PEER_UDP, udp=True, max_seconds=SERVER_SECONDS)

        all_flows = flows(app, peer, peer2)
        only = [n for n in os.environ.get("WEIR_EXPLAIN_SPECS", "").split(",") if n]  # for debugging
        for spec_index, (name, spec) in enumerate(specs(peer, peer2)):
            if only and name not in only:
                continue
            path = os.path.join(tmp, f"{name}.json")
            with open(path, "w") as fh:
                json.dump(spec, fh)
            cp = run([weir_bin(), "apply", "--netns", app.path, "--config", path])
            if cp.returncode != 0:
                failures.append(f"[{name}] weir apply failed: exit {cp.returncode}: {cp.stderr.strip()}")
                print(f"FAIL [{name}] weir apply: {cp.stderr.strip()}", flush=True)
                continue
            agreed = 0
            these = all_flows[spec_index % FLOW_STRIDE::FLOW_STRIDE]
            for i, f in enumerate(these):
                want, trace = expected(path, f)
                if i % LIVE_EVERY == 0:
                    # The same walk over the rules read back from the namespace.
                    live, live_trace = expected(("netns", app.path), f)
                    live_checked += 1
                    if live != want:
                        msg = (f"[{name}] {f}\n    explain on the spec: {want}  on the live rules: {live}\n"
                               f"    spec: {trace}\n    live: {live_trace}")
                        failures.append(msg)
                        print("FAIL " + msg, flush=True)
                got, report = observed(tb, f)
                total += 1
                counts[want] = counts.get(want, 0) + 1
                if want == got:
                    agreed += 1
                    continue
                msg = (f"[{name}] {f}\n    explain: {want}  kernel: {got}\n    kernel report: {report}\n"
                       f"    explain: {trace}")
                failures.append(msg)
                print("FAIL " + msg, flush=True)
            print(f"{'ok  ' if agreed == len(these) else 'FAIL'} [{name}] {agreed}/{len(these)} flows agree"
                  f" (spec {json.dumps(spec)})", flush=True)
        run([weir_bin(), "clean", "--netns", app.path])

    if FLOW_STRIDE > 1:
        print(f"\nWEIR_EXPLAIN_FLOW_STRIDE={FLOW_STRIDE}: every {FLOW_STRIDE}th flow of each spec was checked")
    print(f"\n{total} flows in {time.monotonic() - started:.0f}s ({live_checked} also explained on the live rules);"
          " verdicts explain predicted:")
    for k, n in sorted(counts.items(), key=lambda kv: str(kv[0])):
        print(f"    {n:5d}  {k}")
    # The flows must exercise every kind of verdict, or agreement proves little.
    needed = [("redirected", OUT), ("redirected", IN), ("redirected", DNS), ("tproxied", IN), ("untouched",)]
    for need in [] if only else needed:
        if counts.get(need, 0) < (5 if FLOW_STRIDE == 1 else 1):
            failures.append(f"too few flows with verdict {need}: {counts.get(need, 0)}")
            print(f"FAIL too few flows with verdict {need}", flush=True)
    if failures:
        print(f"\n{len(failures)} disagreement(s) or failures", flush=True)
        return 1
    print("every flow agrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
