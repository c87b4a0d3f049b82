#!/usr/bin/env python3
"""weir-init end to end: the native, Istio (istio-iptables) and Linkerd
(proxy-init) command lines, each run as an init container would run it (inside
the pod's network namespace: `ip netns exec POD weir-init ...`), then real TCP
(and DNS) through the kernel showing the outcome the original tool documents:
captured (lands on the proxy's port, SO_ORIGINAL_DST = where it was going) or
untouched (lands on the real server).

Topology (netns-testbed): pod (weir-init's target; a stub proxy on 15001/15006
as uid 1337 and on 4140/4143 as uid 2102, app servers as uid 1000), peer and far
(other pods on the bridge, servers on common ports). The rules go to the packet
filter this run's auto picks (testbed.backend_in_use()); "no rules left" and
"nothing changed" look at both. Exit 77 when not root.
"""

import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("WEIR_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                                "netns-testbed"))
import testbed  # noqa: E402
from testbed import Testbed, backend_in_use, other_backend, require_root  # noqa: E402

BIN = testbed.bin_dir()
WEIR_INIT = os.path.join(BIN, "weir-init")

APP_PORTS = [8080, 9090, 15008, 15009, 15020, 4190, 4191, 4567, 7000]
PEER_PORTS = [8080, 9090, 3306, 4567, 443]

failures = []
checks = 0


def note(msg):
    print(msg, flush=True)


class Net:
    """The testbed plus the few helpers every case uses."""

    def __init__(self, tb):
        self.tb = tb
        self.pod = tb.add_pod("pod")
        self.peer = tb.add_pod("peer")
        self.far = tb.add_pod("far", ip4="198.18.0.50", ip6="fd00:198:18::50")
        tb.sidecar(self.pod)  # 15001 + 15006 as 1337
        tb.serve(self.pod, [4140, 4143], uid=2102, gid=2102)  # Linkerd's proxy
        tb.serve(self.pod, APP_PORTS, uid=1000, gid=1000)
        tb.serve(self.peer, PEER_PORTS)
        tb.serve(self.far, [8080])

    def run(self, args, env=None, where=None, check_rc=0, timeout=30, wrap=()):
        argv = list(wrap) + [WEIR_INIT] + list(args)
        if env:
            argv = ["env"] + [f"{k}={v}" for k, v in env.items()] + argv
        cp = self.tb.exec(where or self.pod, argv, timeout=timeout)
        if check_rc is not None and cp.returncode != check_rc:
            fail(f"weir-init {' '.join(args)}: exit {cp.returncode}, wanted {check_rc}: {cp.stderr.strip()}")
        return cp

    def save(self, family=4):
        return self.tb.iptables_save(self.pod, family)

    def rules(self):
        """Every rule of the pod, both families and both packet filters (ns_rules)."""
        return ns_rules(self.tb, self.pod)

    def clean(self):
        self.run(["--cleanup"])
        left = weir_left(self.tb, self.pod)
        if left:
            fail(f"cleanup left weir rules:\n{left}")

    def out(self, to, uid=1000, gid=None):
        """An app in the pod (uid/gid) connecting out."""
        return self.tb.connect(self.pod, to, uid=uid, gid=uid if gid is None else gid)

    def into(self, port, family=4, src=None):
        """A client in peer (or `src`) connecting to the pod."""
        return self.tb.connect(src or self.peer, self.pod.addr(port, family))


def fail(msg):
    failures.append(msg)
    note("FAIL: " + msg)


def ns_rules(tb, where):
    """Every rule in a namespace, in both packet filters (both families'
    iptables-legacy-save without the timestamp comments and counters, and
    `nft list ruleset` without counters), so that before/after compare rules only."""
    text = tb.iptables_save(where, 4) + tb.iptables_save(where, 6)
    lines = [re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines() if not line.startswith("#")]
    nft = tb.exec(where, ["nft", "list", "ruleset"]).stdout
    return lines + [re.sub(r"counter packets \d+ bytes \d+", "counter", line) for line in nft.splitlines()]


def weir_left(tb, where):
    """What of weir's is in a namespace, in either backend ("" when nothing)."""
    return tb.weir_leftovers(where, "iptables") + tb.weir_leftovers(where, "nftables")


def in_backend(net, case):
    """weir-init put its rules in the backend this run's auto picks, and
    nothing of weir's in the other."""
    global checks
    checks += 1
    backend = backend_in_use()
    if not net.tb.weir_installed(net.pod, backend):
        fail(f"[{case}] no weir rules in the {backend} backend")
    left = net.tb.weir_leftovers(net.pod, other_backend(backend))
    if left:
        fail(f"[{case}] weir rules in the {other_backend(backend)} backend too:\n{left}")


def expect(case, what, report, landed, orig=None):
    """landed: the port it must arrive on; orig: SO_ORIGINAL_DST there (None: untouched)."""
    global checks
    checks += 1
    got_landed = report.get("landed")
    got_orig = report.get("orig_dst")
    if "error" in report or got_landed != landed or got_orig != orig:
        fail(f"[{case}] {what}: wanted landed={landed} orig_dst={orig}, got {report}")


known = []


def known_difference(case, what, report, landed, orig):
    """A documented difference from the original tool (init/README.md): printed,
    not failed, until the library can express the original's behaviour."""
    global checks
    checks += 1
    if "error" in report or report.get("landed") != landed or report.get("orig_dst") != orig:
        known.append(f"[{case}] {what}: the original gives landed={landed}, weir gives {report}")
        note("KNOWN DIFFERENCE: " + known[-1])


def captured(net, case, what, report, proxy_port, dst):
    expect(case, what + " is captured", report, proxy_port, dst)


def direct(net, case, what, report, port):
    expect(case, what + " goes straight through", report, port, None)


# ---------------------------------------------------------------- native

def dry_run_changes_nothing(net, case, args):
    """A dry run (-n, --simulate) prints the plan and leaves the namespace as it was."""
    before = net.rules()
    cp = net.run(args)
    if "*nat" not in cp.stdout:
        fail(f"[{case}] no plan printed")
    if net.rules() != before:
        fail(f"[{case}] the namespace changed")


def native_cases(net):
    pod, peer, far = net.pod, net.peer, net.far
    C = "native default"
    net.run([])
    in_backend(net, C)
    captured(net, C, "outbound ipv4", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    captured(net, C, "outbound ipv6", net.out(peer.addr(8080, 6)), 15001, peer.addr(8080, 6))
    direct(net, C, "the proxy's own outbound", net.out(peer.addr(8080), uid=1337), 8080)
    captured(net, C, "inbound ipv4", net.into(8080), 15006, pod.addr(8080))
    captured(net, C, "inbound ipv6", net.into(8080, 6), 15006, pod.addr(8080, 6))
    direct(net, C, "inbound to 15020", net.into(15020), 15020)
    direct(net, C, "inbound to the tunnel port 15008", net.into(15008), 15008)
    net.clean()
    direct(net, "native --cleanup", "outbound after cleanup", net.out(peer.addr(8080)), 8080)

    # Each flag, given on the command line or through its WEIR_ variable.
    C = "native --inbound-ports"
    net.run(["--inbound-ports", "8080"])
    captured(net, C, "inbound 8080", net.into(8080), 15006, pod.addr(8080))
    direct(net, C, "inbound 9090", net.into(9090), 9090)
    net.clean()
    C = "native WEIR_EXCLUDE_INBOUND_PORTS"
    net.run([], env={"WEIR_EXCLUDE_INBOUND_PORTS": "9000-9100"})
    direct(net, C, "inbound 9090", net.into(9090), 9090)
    captured(net, C, "inbound 8080", net.into(8080), 15006, pod.addr(8080))
    net.clean()
    C = "native --exclude-inbound-cidrs"
    net.run(["--exclude-inbound-cidrs", peer.ip4 + "/32"])
    direct(net, C, "inbound from peer", net.into(8080), 8080)
    captured(net, C, "inbound from far", net.into(8080, src=far), 15006, pod.addr(8080))
    net.clean()
    C = "native --inbound-tunnel-port"
    net.run(["--inbound-tunnel-port", "15009"])
    direct(net, C, "inbound 15009", net.into(15009), 15009)
    captured(net, C, "inbound 15008", net.into(15008), 15006, pod.addr(15008))
    net.clean()
    C = "native --outbound-cidrs"
    net.run(["--outbound-cidrs", "198.18.0.0/28"])
    captured(net, C, "outbound to peer (.11)", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    direct(net, C, "outbound to far (.50)", net.out(far.addr(8080)), 8080)
    net.clean()
    C = "native WEIR_EXCLUDE_OUTBOUND_CIDRS"
    net.run([], env={"WEIR_EXCLUDE_OUTBOUND_CIDRS": far.ip4 + "/32"})
    direct(net, C, "outbound to far", net.out(far.addr(8080)), 8080)
    captured(net, C, "outbound to peer", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    net.clean()
    C = "native --outbound-ports / --exclude-outbound-ports"
    net.run(["--outbound-ports", "8000-9999", "--exclude-outbound-ports", "9090"])
    captured(net, C, "outbound 8080", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    direct(net, C, "outbound 9090 (excluded)", net.out(peer.addr(9090)), 9090)
    direct(net, C, "outbound 3306 (not included)", net.out(peer.addr(3306)), 3306)
    net.clean()
    C = "native --proxy-uid/--proxy-gid"
    net.run(["--proxy-uid", "1500", "--proxy-gid", "1600"])
    direct(net, C, "uid 1500", net.out(peer.addr(8080), uid=1500), 8080)
    direct(net, C, "gid 1600", net.out(peer.addr(8080), uid=1000, gid=1600), 8080)
    captured(net, C, "uid 1337 (no longer the proxy)", net.out(peer.addr(8080), uid=1337), 15001, peer.addr(8080))
    net.clean()
    C = "native --outbound-port/--inbound-port"
    net.run(["--outbound-port", "4140", "--inbound-port", "4143"])
    captured(net, C, "outbound", net.out(peer.addr(8080)), 4140, peer.addr(8080))
    captured(net, C, "inbound", net.into(8080), 4143, pod.addr(8080))
    net.clean()
    C = "native WEIR_IP_FAMILIES=ipv4"
    net.run([], env={"WEIR_IP_FAMILIES": "ipv4"})
    captured(net, C, "outbound ipv4", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    direct(net, C, "outbound ipv6", net.out(peer.addr(8080, 6)), 8080)
    net.clean()
    C = "native --exclude-interfaces"
    net.run(["--exclude-interfaces", "eth0"])
    direct(net, C, "outbound via eth0", net.out(peer.addr(8080)), 8080)
    direct(net, C, "inbound via eth0", net.into(8080), 8080)
    net.clean()

    C = "native --kube-virt-interfaces"
    net.run(["--kube-virt-interfaces", "eth0"])
    captured(net, C, "inbound on a kube-virt interface goes to the outbound port", net.into(8080), 15001,
             pod.addr(8080))
    net.clean()
    C = "native --config FILE, a flag overriding it"
    cfg = os.path.join(net.tb.tmp, "spec.json")
    with open(cfg, "w") as f:
        f.write('{"outboundPort": 4140, "excludeOutboundPorts": "3306", "inboundPorts": "9090"}')
    net.run(["--config", cfg, "--inbound-ports", "8080"])
    captured(net, C, "outbound (outboundPort from the file)", net.out(peer.addr(8080)), 4140, peer.addr(8080))
    direct(net, C, "outbound 3306 (excluded in the file)", net.out(peer.addr(3306)), 3306)
    captured(net, C, "inbound 8080 (the flag wins)", net.into(8080), 15006, pod.addr(8080))
    direct(net, C, "inbound 9090 (the file's value, overridden)", net.into(9090), 9090)
    net.clean()
    C = "native WEIR_DRY_RUN"
    before = net.rules()
    cp = net.run([], env={"WEIR_DRY_RUN": "true"})
    if "*nat" not in cp.stdout or net.rules() != before:
        fail(f"[{C}] wanted a printed plan and no change")

    C = "native --dry-run"
    before = net.rules()
    cp = net.run(["--dry-run", "--inbound-ports", "8080"])
    if "*nat" not in cp.stdout or "WEIR_" not in cp.stdout:
        fail(f"[{C}] no plan printed: {cp.stdout[:300]}")
    if net.rules() != before:
        fail(f"[{C}] the namespace changed")
    C = "native unknown flag"
    cp = net.run(["--no-such-flag"], check_rc=2)
    if "--no-such-flag" not in cp.stderr or len(cp.stderr.strip().splitlines()) != 1:
        fail(f"[{C}] wanted one line naming the flag, got {cp.stderr!r}")
    C = "native bad value"
    cp = net.run(["--inbound-ports", "70000"], check_rc=2)
    if "70000" not in cp.stderr or len(cp.stderr.strip().splitlines()) != 1:
        fail(f"[{C}] wanted one line naming the value, got {cp.stderr!r}")
    if weir_left(net.tb, net.pod):
        fail(f"[{C}] a failed command left rules")


# ---------------------------------------------------------------- Istio

ISTIO_INJECTOR = ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "",
                  "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"]


def istio_cases(net):
    pod, peer, far = net.pod, net.peer, net.far
    C = "istio injector line"
    net.run(ISTIO_INJECTOR)
    in_backend(net, C)
    captured(net, C, "outbound ipv4", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    direct(net, C, "outbound ipv6 without --dual-stack", net.out(peer.addr(8080, 6)), 8080)
    direct(net, C, "the proxy's outbound (uid 1337)", net.out(peer.addr(8080), uid=1337), 8080)
    captured(net, C, "inbound 8080", net.into(8080), 15006, pod.addr(8080))
    direct(net, C, "inbound 15020 (-d)", net.into(15020), 15020)
    direct(net, C, "inbound 15008 (tunnel port, always)", net.into(15008), 15008)
    direct(net, C, "inbound ipv6 without --dual-stack", net.into(8080, 6), 8080)
    captured(net, C, "the proxy calling the pod's own address (treated as inbound)", net.out(pod.addr(8080), uid=1337),
             15006, pod.addr(8080))
    direct(net, C, "the proxy's passthrough from 127.0.0.6",
           net.tb.connect(pod, pod.addr(8080), uid=1337, gid=1337, src="127.0.0.6"), 8080)
    direct(net, C, "the app calling its own pod address", net.out(pod.addr(8080)), 8080)
    direct(net, C, "the app calling 127.0.0.1", net.out("127.0.0.1:8080"), 8080)
    C = "istio --cleanup-only"
    net.run(["istio-iptables", "--cleanup-only"])
    if weir_left(net.tb, net.pod):
        fail(f"[{C}] weir rules left: {weir_left(net.tb, net.pod)}")
    direct(net, C, "outbound after cleanup", net.out(peer.addr(8080)), 8080)

    C = "istio no flags (Istio captures nothing by default)"
    net.run(["istio-iptables"])
    direct(net, C, "outbound", net.out(peer.addr(8080)), 8080)
    direct(net, C, "inbound", net.into(8080), 8080)
    net.clean()
    C = "istio -b list"
    net.run(["istio-iptables", "-b", "8080", "-d", "8080"])
    captured(net, C, "inbound 8080 (-d ignored with a list)", net.into(8080), 15006, pod.addr(8080))
    direct(net, C, "inbound 9090", net.into(9090), 9090)
    direct(net, C, "outbound (no -i)", net.out(peer.addr(8080)), 8080)
    net.clean()
    C = "istio -b * -d"
    net.run(["istio-iptables", "-b", "*", "-d", "9090,7000"])
    direct(net, C, "inbound 9090", net.into(9090), 9090)
    captured(net, C, "inbound 15020 (no default excludes)", net.into(15020), 15006, pod.addr(15020))
    net.clean()
    C = "istio -e"
    net.run(["istio-iptables", "-b", "*", "-e", "15009"])
    direct(net, C, "inbound 15009", net.into(15009), 15009)
    captured(net, C, "inbound 15008", net.into(15008), 15006, pod.addr(15008))
    net.clean()
    C = "istio -i CIDR"
    net.run(["istio-iptables", "-i", "198.18.0.0/28"])
    captured(net, C, "outbound to peer", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    direct(net, C, "outbound to far", net.out(far.addr(8080)), 8080)
    net.clean()
    C = "istio -x"
    net.run(["istio-iptables", "-i", "*", "-x", peer.ip4 + "/32"])
    direct(net, C, "outbound to peer", net.out(peer.addr(8080)), 8080)
    captured(net, C, "outbound to far", net.out(far.addr(8080)), 15001, far.addr(8080))
    net.clean()
    C = "istio -o"
    net.run(["istio-iptables", "-i", "*", "-o", "3306"])
    direct(net, C, "outbound 3306", net.out(peer.addr(3306)), 3306)
    captured(net, C, "outbound 8080", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    net.clean()
    C = "istio -q"
    net.run(["istio-iptables", "-q", "9090"])
    captured(net, C, "outbound 9090", net.out(peer.addr(9090)), 15001, peer.addr(9090))
    direct(net, C, "outbound 8080", net.out(peer.addr(8080)), 8080)
    net.clean()
    C = "istio -u/-g"
    net.run(["istio-iptables", "-i", "*", "-u", "1500", "-g", "1600"])
    direct(net, C, "uid 1500", net.out(peer.addr(8080), uid=1500), 8080)
    direct(net, C, "gid 1600", net.out(peer.addr(8080), uid=1000, gid=1600), 8080)
    captured(net, C, "uid 1337", net.out(peer.addr(8080), uid=1337), 15001, peer.addr(8080))
    net.clean()
    C = "istio -c"
    net.run(["istio-iptables", "-i", "*", "-b", "*", "-c", "eth0"])
    direct(net, C, "outbound via eth0", net.out(peer.addr(8080)), 8080)
    direct(net, C, "inbound via eth0", net.into(8080), 8080)
    net.clean()
    C = "istio -k"
    net.run(["istio-iptables", "-i", "*", "-k", "eth0"])
    captured(net, C, "inbound on a kube-virt interface goes to the outbound port", net.into(8080), 15001,
             pod.addr(8080))
    net.clean()
    C = "istio --dual-stack"
    net.run(["istio-iptables", "-i", "*", "-b", "*", "--dual-stack"])
    captured(net, C, "outbound ipv6", net.out(peer.addr(8080, 6)), 15001, peer.addr(8080, 6))
    captured(net, C, "inbound ipv6", net.into(8080, 6), 15006, pod.addr(8080, 6))
    net.clean()
    C = "istio env vars"
    net.run(["istio-iptables"], env={"ISTIO_SERVICE_CIDR": "*", "ISTIO_INBOUND_PORTS": "8080", "ENVOY_PORT": "4140"})
    captured(net, C, "outbound (ISTIO_SERVICE_CIDR, ENVOY_PORT)", net.out(peer.addr(8080)), 4140, peer.addr(8080))
    captured(net, C, "inbound (ISTIO_INBOUND_PORTS)", net.into(8080), 15006, pod.addr(8080))
    direct(net, C, "inbound 9090", net.into(9090), 9090)
    net.clean()
    C = "istio -p/-z"
    net.run(["istio-iptables", "-i", "*", "-b", "*", "-p", "4140", "-z", "4143"])
    captured(net, C, "outbound", net.out(peer.addr(8080)), 4140, peer.addr(8080))
    captured(net, C, "inbound", net.into(8080), 4143, pod.addr(8080))
    net.clean()
    C = "istio --network-namespace"
    net.run(["istio-iptables", "-i", "*", "--network-namespace", "/var/run/netns/" + pod.netns], where=far)
    captured(net, C, "outbound in the named namespace", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    if weir_left(net.tb, far):
        fail(f"[{C}] rules landed in the namespace weir-init ran in")
    net.clean()

    dry_run_changes_nothing(net, "istio -n (dry run)", ISTIO_INJECTOR + ["-n"])
    C = "istio -n with --dual-stack"
    cp = net.run(ISTIO_INJECTOR + ["-n", "--dual-stack"])
    if "# weir: ipv6 rules" not in cp.stdout:
        fail(f"[{C}] no IPv6 rules in the plan: {cp.stdout[:300]}")
    C = "istio -n in a dual-stack pod"
    cp = net.run(ISTIO_INJECTOR + ["-n"])
    if "# weir: ipv6 rules" in cp.stdout or "# weir: ipv4 rules" not in cp.stdout:
        fail(f"[{C}] wanted IPv4 rules only (the pod has an IPv4 address): {cp.stdout[:300]}")

    # Flags the injector writes that change nothing in weir: accepted, each says so.
    for flag in ("--log_as_json", "--force-apply", "--native-nftables"):
        C = f"istio {flag} -n"
        before = net.rules()
        cp = net.run(ISTIO_INJECTOR + [flag, "-n"])
        # --native-nftables selects the nftables backend: its dry run prints the nft form.
        plan_mark = "table inet weir {" if flag == "--native-nftables" else "*nat"
        if plan_mark not in cp.stdout or net.rules() != before:
            fail(f"[{C}] wanted a printed plan ({plan_mark}) and no change")
    C = "istio --force-apply / --native-nftables log lines"
    cp = net.run(ISTIO_INJECTOR + ["--force-apply", "--native-nftables", "-n"])
    if not re.search(r" info weir-init: --force-apply .*changes nothing: weir always reconciles", cp.stderr):
        fail(f"[{C}] no info line saying --force-apply changes nothing: {cp.stderr!r}")
    if not re.search(r" info weir-init: --native-nftables: backend nftables; .*table inet weir", cp.stderr):
        fail(f"[{C}] no info line saying --native-nftables selects the nftables backend: {cp.stderr!r}")
    C = "istio --log_as_json"
    json_lines(C, net.run(ISTIO_INJECTOR + ["--log_as_json", "--force-apply", "--native-nftables", "-n"]).stderr,
               want=["--force-apply", "--native-nftables"])
    json_lines(C + " (apply)", net.run(ISTIO_INJECTOR + ["--log_as_json"]).stderr, want=["capture installed"])
    captured(net, C, "outbound ipv4", net.out(peer.addr(8080)), 15001, peer.addr(8080))
    net.clean()
    json_lines(C + " (an error)", net.run(["istio-iptables", "--log_as_json", "-p", "0"], check_rc=1).stderr,
               want=["envoy-port"])

    C = "istio unknown flag"
    cp = net.run(["istio-iptables", "--no-such-flag"], check_rc=1)
    if "--no-such-flag" not in cp.stderr:
        fail(f"[{C}] the error does not name the flag: {cp.stderr!r}")
    C = "istio -q with -i list"
    cp = net.run(["istio-iptables", "-i", "10.0.0.0/8", "-q", "443"], check_rc=1)
    if weir_left(net.tb, net.pod):
        fail(f"[{C}] a refused command left rules")


def json_lines(case, stderr, want):
    """Every stderr line a JSON object with time, level and msg; each of `want`
    in some msg."""
    global checks
    checks += 1
    msgs = []
    for line in stderr.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            fail(f"[{case}] a stderr line is not JSON: {line!r}")
            continue
        if not isinstance(obj, dict) or set(obj) != {"time", "level", "msg"}:
            fail(f"[{case}] wanted time, level, msg: {line!r}")
            continue
        msgs.append(obj["msg"])
    for w in want:
        if not any(w in m for m in msgs):
            fail(f"[{case}] no JSON log line mentions {w!r}: {stderr!r}")


def istio_ipv6_only_cases(tb, net):
    """A pod with only an IPv6 address: Istio turns IPv6 on by itself (its pod
    IP is IPv6), so the injector's line without --dual-stack captures IPv6."""
    peer = net.peer
    pod = tb.add_pod("v6")
    tb.exec(pod, ["ip", "-4", "addr", "del", f"{pod.ip4}/24", "dev", "eth0"], check=True)
    tb.exec(pod, ["ip", "-4", "route", "flush", "table", "main"], check=True)
    addrs = tb.exec(pod, ["ip", "-4", "addr", "show", "scope", "global"], check=True).stdout
    if addrs.strip():
        fail(f"[istio IPv6-only] the pod still has a global IPv4 address: {addrs}")
        return
    tb.sidecar(pod)
    tb.serve(pod, [8080], uid=1000, gid=1000)

    def run(args, where=pod, check_rc=0):
        cp = tb.exec(where, [WEIR_INIT] + args)
        if cp.returncode != check_rc:
            fail(f"weir-init {' '.join(args)} in {where}: exit {cp.returncode}, wanted {check_rc}: {cp.stderr.strip()}")
        return cp

    def rules():
        return ns_rules(tb, pod)

    def out(to, uid=1000):
        return tb.connect(pod, to, uid=uid, gid=uid)

    C = "istio IPv6-only pod, injector line without --dual-stack"
    cp = run(ISTIO_INJECTOR)
    if "only IPv6 addresses" not in cp.stderr:
        fail(f"[{C}] no log line saying IPv6 was turned on: {cp.stderr!r}")
    captured(net, C, "outbound ipv6", out(peer.addr(8080, 6)), 15001, peer.addr(8080, 6))
    captured(net, C, "outbound ipv6 to another port", out(peer.addr(9090, 6)), 15001, peer.addr(9090, 6))
    direct(net, C, "the proxy's outbound ipv6 (uid 1337)", out(peer.addr(8080, 6), uid=1337), 8080)
    captured(net, C, "inbound ipv6", tb.connect(peer, pod.addr(8080, 6)), 15006, pod.addr(8080, 6))
    run(["istio-iptables", "--cleanup-only"])
    if weir_left(tb, pod):
        fail(f"[{C}] --cleanup-only left weir rules")
    direct(net, C, "outbound ipv6 after cleanup", out(peer.addr(8080, 6)), 8080)

    C = "istio IPv6-only pod, IPv6 CIDRs in -i and -x are kept"
    run(["istio-iptables", "-i", f"{peer.ip6}/128,198.18.0.0/24", "-x", f"{net.far.ip6}/128"])
    captured(net, C, "outbound ipv6 to an -i CIDR", out(peer.addr(8080, 6)), 15001, peer.addr(8080, 6))
    direct(net, C, "outbound ipv6 elsewhere", out(net.far.addr(8080, 6)), 8080)
    run(["--cleanup"])

    C = "istio IPv6-only pod, -n"
    before = rules()
    cp = run(ISTIO_INJECTOR + ["-n"])
    if "# weir: ipv6 rules" not in cp.stdout:
        fail(f"[{C}] no IPv6 rules in the plan: {cp.stdout[:300]}")
    if rules() != before:
        fail(f"[{C}] the namespace changed")

    C = "istio --network-namespace naming an IPv6-only pod"
    ns = "/var/run/netns/" + pod.netns
    cp = run(ISTIO_INJECTOR + ["-n", "--network-namespace", ns], where=net.far)
    if "# weir: ipv6 rules" not in cp.stdout:
        fail(f"[{C}] -n: no IPv6 rules in the plan (addresses read in the wrong namespace?): {cp.stdout[:300]}")
    run(ISTIO_INJECTOR + ["--network-namespace", ns], where=net.far)
    captured(net, C, "outbound ipv6", out(peer.addr(8080, 6)), 15001, peer.addr(8080, 6))
    if weir_left(tb, net.far):
        fail(f"[{C}] rules landed in the namespace weir-init ran in")
    run(["--cleanup"])
    C = "istio --network-namespace naming a dual-stack pod, run from the IPv6-only one"
    cp = run(ISTIO_INJECTOR + ["-n", "--network-namespace", "/var/run/netns/" + net.pod.netns])
    if "# weir: ipv6 rules" in cp.stdout:
        fail(f"[{C}] IPv6 rules planned for a pod with an IPv4 address (addresses read in the wrong namespace?)")
    if weir_left(tb, pod):
        fail(f"[{C}] rules left in the IPv6-only pod")


DNS_STUB = r"""
import json, os, socket, sys, time
deadline, port = time.monotonic() + 300, int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))  # as a DNS proxy does: replies then leave from 127.0.0.1, which conntrack un-NATs
s.settimeout(1.0)
print("READY", flush=True)
while time.monotonic() < deadline:
    try:
        data, peer = s.recvfrom(4096)
    except socket.timeout:
        continue
    s.sendto(json.dumps({"proto": "udp", "landed": port, "local": "127.0.0.1:%d" % port,
                         "peer": "%s:%d" % peer, "orig_dst": None}).encode() + b"\n", peer)
"""


def dns_stub(tb, pod, port=15053):
    """The proxy's DNS listener: UDP 127.0.0.1:15053 as uid 1337 (weir-probe binds
    0.0.0.0, whose replies would leave from the pod's address and miss conntrack)."""
    proc = tb.spawn(pod, ["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups", sys.executable, "-c", DNS_STUB,
                          str(port)],
                    name="dns-stub")
    deadline = time.monotonic() + 5
    while "READY" not in proc.output():
        if time.monotonic() > deadline or not proc.alive():
            raise RuntimeError(f"DNS stub not ready: {proc.output()}")
        time.sleep(0.01)
    return proc


def istio_dns_cases(net):
    """--redirect-dns: with --capture-all-dns every port-53 query; without, only
    those to the resolv.conf nameservers (ip netns exec gives the pod its own
    /etc/resolv.conf from /etc/netns/POD/)."""
    pod, peer, far = net.pod, net.peer, net.far
    tb = net.tb
    dns_pod = dns_stub(tb, pod)
    tb.serve(peer, [53], udp=True)
    tb.serve(far, [53], udp=True)
    C = "istio --redirect-dns --capture-all-dns"
    net.run(["istio-iptables", "-i", "*", "--redirect-dns", "--capture-all-dns"])
    r = tb.connect(pod, peer.addr(53), uid=1000, gid=1000, udp=True)
    expect(C, "app's DNS to peer lands on 15053", r, 15053, r.get("orig_dst"))
    r = tb.connect(pod, far.addr(53), uid=1000, gid=1000, udp=True)
    expect(C, "app's DNS to far lands on 15053", r, 15053, r.get("orig_dst"))
    r = tb.connect(pod, peer.addr(53), uid=1337, gid=1337, udp=True)
    expect(C, "the proxy's DNS goes out", r, 53, r.get("orig_dst"))
    net.clean()

    etc = f"/etc/netns/{pod.netns}"
    os.makedirs(etc, exist_ok=True)
    try:
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write(f"search example.test\nnameserver {peer.ip4}\n")
        C = "istio --redirect-dns (resolv.conf nameservers)"
        net.run(["istio-iptables", "-i", "*", "--redirect-dns"])
        r = tb.connect(pod, peer.addr(53), uid=1000, gid=1000, udp=True)
        expect(C, "DNS to the resolv.conf nameserver lands on 15053", r, 15053, r.get("orig_dst"))
        r = tb.connect(pod, far.addr(53), uid=1000, gid=1000, udp=True)
        expect(C, "DNS to another server goes out", r, 53, r.get("orig_dst"))
        net.clean()
    finally:
        try:
            os.remove(os.path.join(etc, "resolv.conf"))
        except OSError:
            pass
        try:
            os.rmdir(etc)
        except OSError:
            pass
    dns_pod.stop()

    alt = dns_stub(tb, pod, 15054)
    C = "native --redirect-dns --dns-servers --dns-port"
    net.run(["--redirect-dns", "--dns-servers", far.ip4, "--dns-port", "15054"])
    r = tb.connect(pod, far.addr(53), uid=1000, gid=1000, udp=True)
    expect(C, "DNS to the listed server lands on 15054", r, 15054, r.get("orig_dst"))
    r = tb.connect(pod, peer.addr(53), uid=1000, gid=1000, udp=True)
    expect(C, "DNS to another server goes out", r, 53, r.get("orig_dst"))
    net.clean()
    C = "native --redirect-dns --resolv-conf"
    conf = os.path.join(tb.tmp, "resolv.conf")
    with open(conf, "w") as f:
        f.write(f"nameserver {peer.ip4}\noptions ndots:5\n")
    net.run(["--redirect-dns", "--resolv-conf", conf, "--dns-port", "15054"])
    r = tb.connect(pod, peer.addr(53), uid=1000, gid=1000, udp=True)
    expect(C, "DNS to the resolv.conf server lands on 15054", r, 15054, r.get("orig_dst"))
    r = tb.connect(pod, far.addr(53), uid=1000, gid=1000, udp=True)
    expect(C, "DNS to another server goes out", r, 53, r.get("orig_dst"))
    net.clean()
    C = "native --redirect-dns --capture-all-dns"
    net.run(["--redirect-dns", "--capture-all-dns", "--dns-port", "15054"])
    r = tb.connect(pod, far.addr(53), uid=1000, gid=1000, udp=True)
    expect(C, "DNS to any server lands on 15054", r, 15054, r.get("orig_dst"))
    r = tb.connect(pod, far.addr(53), uid=1337, gid=1337, udp=True)
    expect(C, "the proxy's DNS goes out", r, 53, r.get("orig_dst"))
    net.clean()
    alt.stop()


def istio_drop_invalid_case(net):
    """--drop-invalid: a packet conntrack calls INVALID (TCP SYN+FIN) is dropped
    by weir's rule; the rule's packet counter proves the kernel took that path."""
    C = "istio --drop-invalid"
    net.run(["istio-iptables", "-i", "*", "-b", "*", "--drop-invalid"])
    sender = (
        "import socket,struct\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_TCP)\n"
        "hdr=struct.pack('!HHIIBBHHH',40000,8080,1,0,5<<4,0x03,1024,0,0)\n"
        f"[s.sendto(hdr,('{net.pod.ip4}',0)) for _ in range(3)]\n"
    )
    net.tb.exec(net.peer, [sys.executable, "-c", sender], check=True)
    time.sleep(0.2)
    counted = 0
    if backend_in_use() == "nftables":
        for r in net.tb.nft_weir_rules(net.pod):
            if r["chain"].startswith("ip_mangle_") and any("drop" in e for e in r["expr"]):
                counted += sum(e["counter"]["packets"] for e in r["expr"] if "counter" in e)
    for line in net.tb.exec(net.pod, ["iptables-legacy-save", "-c", "-t", "mangle"], check=True).stdout.splitlines():
        if "INVALID" in line and "-j DROP" in line and line.startswith("["):
            counted += int(line[1:line.index(":")])
    if counted < 3:
        fail(f"[{C}] wanted >= 3 INVALID packets dropped by weir's rule, counted {counted}")
    captured(net, C, "normal outbound still works", net.out(net.peer.addr(8080)), 15001, net.peer.addr(8080))
    net.clean()


def tproxy_cases(tb):
    """TPROXY: inbound arrives on 15006 with the client's real address; the mark
    and route table flags reach the policy routing."""
    pod = tb.add_pod("tp")
    client = tb.add_pod("tpc")
    tb.sidecar(pod, transparent=True)
    tb.serve(pod, [8080], uid=1000, gid=1000)
    tproxy_case(tb, pod, client, "istio -m TPROXY -t -r",
                ["istio-iptables", "-i", "*", "-b", "*", "-m", "TPROXY", "--dual-stack", "-t", "1400", "-r", "140"],
                1400, 140, ["istio-iptables", "--cleanup-only"])
    tproxy_case(tb, pod, client, "native --inbound-mode tproxy --tproxy-mark --tproxy-route-table",
                ["--inbound-mode", "tproxy", "--tproxy-mark", "1500", "--tproxy-route-table", "150"], 1500, 150,
                ["--cleanup"])


def tproxy_case(tb, pod, client, C, args, mark, table, cleanup):
    cp = tb.exec(pod, [WEIR_INIT] + args)
    if cp.returncode != 0:
        fail(f"[{C}] exit {cp.returncode}: {cp.stderr.strip()}")
        return
    for fam in (4, 6):
        rules = tb.exec(pod, ["ip", f"-{fam}", "rule", "show"], check=True).stdout
        if f"fwmark {hex(mark)} lookup {table}" not in rules:
            fail(f"[{C}] ipv{fam}: no policy rule for mark {mark} / table {table}: {rules}")
    for fam in (4, 6):
        r = tb.connect(client, pod.addr(8080, fam))
        expect(C, f"inbound ipv{fam} lands on 15006", r, 15006, r.get("orig_dst"))
        if r.get("peer", "").rsplit(":", 1)[0].strip("[]") != (client.ip4 if fam == 4 else client.ip6):
            fail(f"[{C}] ipv{fam}: the proxy saw {r.get('peer')}, not the client's address")
    r = tb.connect(pod, client.addr(9999), uid=1000, gid=1000)
    expect(C, "outbound still REDIRECTed to 15001", r, 15001, client.addr(9999))
    tb.exec(pod, [WEIR_INIT] + cleanup, check=True)
    for fam in (4, 6):
        rules = tb.exec(pod, ["ip", f"-{fam}", "rule", "show"], check=True).stdout
        if f"lookup {table}" in rules:
            fail(f"[{C}] {' '.join(cleanup)} left the TPROXY policy route (ipv{fam}): {rules}")
        if weir_left(tb, pod):
            fail(f"[{C}] {' '.join(cleanup)} left weir rules (ipv{fam}): {weir_left(tb, pod)}")


# ---------------------------------------------------------------- Linkerd

LINKERD_CHART = ["proxy-init", "--incoming-proxy-port", "4143", "--outgoing-proxy-port", "4140", "--proxy-uid", "2102",
                 "--inbound-ports-to-ignore", "4190,4191,4567,4568", "--outbound-ports-to-ignore", "4567,4568"]


def linkerd_cases(net):
    pod, peer, far = net.pod, net.peer, net.far
    C = "linkerd chart line"
    net.run(LINKERD_CHART)
    in_backend(net, C)
    captured(net, C, "outbound ipv4", net.out(peer.addr(8080)), 4140, peer.addr(8080))
    captured(net, C, "outbound ipv6 (--ipv6 defaults to true)", net.out(peer.addr(8080, 6)), 4140, peer.addr(8080, 6))
    direct(net, C, "the proxy's outbound (uid 2102)", net.out(peer.addr(8080), uid=2102), 8080)
    captured(net, C, "uid 1337 (not Linkerd's proxy)", net.out(peer.addr(8080), uid=1337), 4140, peer.addr(8080))
    direct(net, C, "outbound 4567 (ignored)", net.out(peer.addr(4567)), 4567)
    captured(net, C, "inbound 8080", net.into(8080), 4143, pod.addr(8080))
    direct(net, C, "inbound 4190", net.into(4190), 4190)
    direct(net, C, "inbound 4567", net.into(4567), 4567)
    captured(net, C, "inbound 15008 (no Istio tunnel port)", net.into(15008), 4143, pod.addr(15008))
    captured(net, C, "inbound 15020 (no Istio excludes)", net.into(15020), 4143, pod.addr(15020))
    direct(net, C, "the app calling its own pod address", net.out(pod.addr(8080)), 8080)
    direct(net, C, "the proxy (uid 2102) forwarding inbound to the app at the pod's address (Linkerd >= 2.11 "
           "forwards to the original address)", net.out(pod.addr(8080), uid=2102), 8080)
    direct(net, C, "the app calling 127.0.0.1", net.out("127.0.0.1:8080"), 8080)
    net.clean()

    C = "linkerd 4190/4191 always ignored"
    net.run(["proxy-init", "-p", "4143", "-o", "4140", "-u", "2102"])
    direct(net, C, "inbound 4191", net.into(4191), 4191)
    direct(net, C, "inbound 4190", net.into(4190), 4190)
    net.clean()
    C = "linkerd port ranges"
    net.run(["proxy-init", "-p", "4143", "-o", "4140", "-u", "2102", "--outbound-ports-to-ignore", "3000-3400",
             "--inbound-ports-to-ignore", "9000-9100"])
    direct(net, C, "outbound 3306", net.out(peer.addr(3306)), 3306)
    captured(net, C, "outbound 8080", net.out(peer.addr(8080)), 4140, peer.addr(8080))
    direct(net, C, "inbound 9090", net.into(9090), 9090)
    net.clean()
    C = "linkerd --subnets-to-ignore"
    net.run(["proxy-init", "-p", "4143", "-o", "4140", "-u", "2102", "--subnets-to-ignore", peer.ip4 + "/32"])
    direct(net, C, "inbound from peer", net.into(8080), 8080)
    captured(net, C, "inbound from far", net.into(8080, src=far), 4143, pod.addr(8080))
    net.clean()
    C = "linkerd --ports-to-redirect"
    net.run(["proxy-init", "-p", "4143", "-o", "4140", "-u", "2102", "--ports-to-redirect", "8080"])
    captured(net, C, "inbound 8080", net.into(8080), 4143, pod.addr(8080))
    direct(net, C, "inbound 9090", net.into(9090), 9090)
    net.clean()
    C = "linkerd --proxy-gid"
    net.run(["proxy-init", "-p", "4143", "-o", "4140", "-u", "2102", "-g", "2200"])
    direct(net, C, "gid 2200", net.out(peer.addr(8080), uid=1000, gid=2200), 8080)
    net.clean()
    C = "linkerd --ipv6=false"
    net.run(["proxy-init", "-p", "4143", "-o", "4140", "-u", "2102", "--ipv6=false"])
    captured(net, C, "outbound ipv4", net.out(peer.addr(8080)), 4140, peer.addr(8080))
    direct(net, C, "outbound ipv6", net.out(peer.addr(8080, 6)), 8080)
    net.clean()
    C = "linkerd --netns"
    net.run(["proxy-init", "-p", "4143", "-o", "4140", "-u", "2102", "--netns", "/var/run/netns/" + pod.netns],
            where=far)
    captured(net, C, "outbound in the named namespace", net.out(peer.addr(8080)), 4140, peer.addr(8080))
    net.clean()
    C = "linkerd --iptables-mode/-w/--log-format"
    # plain: auto (this test runs with nftables unavailable, so legacy xtables).
    cp = net.run(LINKERD_CHART + ["--iptables-mode=plain", "-w", "--log-format", "json", "--log-level", "info"])
    json_lines(C, cp.stderr, want=["--iptables-mode=plain: backend auto", "-w/--use-wait-flag changes nothing"])
    if not re.search(r'"msg":"--iptables-mode=plain: backend auto; nftables where the kernel', cp.stderr):
        fail(f"[{C}] wanted a note that --iptables-mode=plain leaves the backend to auto: {cp.stderr!r}")
    if "iptables-legacy-save" not in cp.stderr or "not needed" in cp.stderr:
        fail(f"[{C}] the lines should say where the rules are (and not call the mode 'not needed'): {cp.stderr!r}")
    captured(net, C, "outbound", net.out(peer.addr(8080)), 4140, peer.addr(8080))
    net.clean()

    dry_run_changes_nothing(net, "linkerd --simulate", LINKERD_CHART + ["--simulate"])
    C = "linkerd unsupported flag"
    cp = net.run(LINKERD_CHART + ["--timeout-close-wait-secs", "5"], check_rc=1)
    if "--timeout-close-wait-secs" not in cp.stderr:
        fail(f"[{C}] the error does not name the flag: {cp.stderr!r}")


# What the example manifests give the init container: NET_ADMIN and NET_RAW,
# nothing else (no CAP_SYS_ADMIN: weir-init must not need setns).
INIT_CAPS = ["setpriv", "--bounding-set=-all,+net_admin,+net_raw", "--inh-caps=-all", "--"]


def capability_cases(net):
    peer = net.peer
    for name, args in (("native", []), ("istio", ISTIO_INJECTOR), ("linkerd", LINKERD_CHART)):
        C = f"{name} with only NET_ADMIN+NET_RAW"
        cp = net.run(args, wrap=INIT_CAPS, check_rc=None)
        if cp.returncode != 0:
            fail(f"[{C}] exit {cp.returncode}: {cp.stderr.strip()}")
            continue
        port = 4140 if name == "linkerd" else 15001
        captured(net, C, "outbound", net.out(peer.addr(8080)), port, peer.addr(8080))
        cleanup = ["--cleanup"] if name == "native" else [args[0], "--cleanup-only"] if name == "istio" else None
        if cleanup:
            net.run(cleanup, wrap=INIT_CAPS)
            direct(net, C, "outbound after a cleanup with the same capabilities", net.out(peer.addr(8080)), 8080)
        net.run(["--cleanup"], check_rc=None)


def kube_virt_exclude_cases(net):
    """A kube-virt interface and an excluded CIDR (issue 12, item 15). istio-iptables
    redirects every TCP connection arriving on a kube-virt interface to the
    outbound port, -x or not (`-I PREROUTING 1 -i vif0 -j ISTIO_REDIRECT`), and
    weir-init istio-iptables does the same (spec kubeVirtExcludes ignore);
    weir's own command line keeps the default (apply): the VM's traffic to an
    excluded CIDR or port is not captured. eth0 is the kube-virt interface
    here; the excluded CIDRs cover the pod's addresses, where the peer's
    connections go. Both families; traffic only, so either backend."""
    pod = net.pod
    excluded = f"{pod.ip4}/32,{pod.ip6}/128"
    weir = os.path.join(BIN, "weir")

    def explain_live(dst):
        cp = net.tb.exec(pod, [weir, "explain", "--netns", pod.path, "--direction", "inbound", "--in-iface", "eth0",
                                "--dst", dst, "--dport", "8080"])
        return cp.stdout + cp.stderr

    C = "istio -k with -x (and -o): Istio's semantics"
    net.run(["istio-iptables", "-i", "*", "-k", "eth0", "-x", excluded, "-o", "8080", "--dual-stack"])
    for fam in (4, 6):
        captured(net, C, f"ipv{fam} inbound on the kube-virt interface to an excluded CIDR and port",
                 net.into(8080, fam), 15001, pod.addr(8080, fam))
    direct(net, C, "the pod's own outbound to the excluded port", net.out(net.peer.addr(8080)), 8080)
    text = explain_live(pod.ip6)
    if "redirected to port 15001" not in text or "kubeVirtExcludes ignore" not in text:
        fail(f"[{C}] weir explain of the live rules does not show the kube-virt redirect past the excludes:\n{text}")
    net.clean()

    C = "native --kube-virt-interfaces with --exclude-outbound-cidrs: weir's default"
    net.run(["--kube-virt-interfaces", "eth0", "--exclude-outbound-cidrs", excluded])
    for fam in (4, 6):
        direct(net, C, f"ipv{fam} inbound on the kube-virt interface to an excluded CIDR", net.into(8080, fam), 8080)
    text = explain_live(pod.ip4)
    if "passed untouched" not in text or "is not captured" not in text:
        fail(f"[{C}] weir explain of the live rules does not show the exclude deciding:\n{text}")
    net.clean()

    C = "native --kube-virt-excludes ignore"
    net.run(["--kube-virt-interfaces", "eth0", "--exclude-outbound-cidrs", excluded, "--kube-virt-excludes", "ignore"])
    for fam in (4, 6):
        captured(net, C, f"ipv{fam} inbound on the kube-virt interface to an excluded CIDR", net.into(8080, fam),
                 15001, pod.addr(8080, fam))
    net.clean()


def main():
    require_root()
    if not os.access(WEIR_INIT, os.X_OK):
        print(f"SKIP: {WEIR_INIT} not built", file=sys.stderr)
        return 77
    start = time.monotonic()
    with Testbed(role="init") as tb:
        net = Net(tb)
        for group in (native_cases, istio_cases, istio_dns_cases, istio_drop_invalid_case, linkerd_cases,
                      capability_cases, kube_virt_exclude_cases):
            try:
                group(net)
            except Exception as e:  # one broken group must not hide the others
                fail(f"{group.__name__}: {type(e).__name__}: {e}")
            try:
                net.run(["--cleanup"], check_rc=None)
            except Exception:
                pass
        try:
            tproxy_cases(tb)
        except Exception as e:
            fail(f"tproxy_cases: {type(e).__name__}: {e}")
        try:
            istio_ipv6_only_cases(tb, net)
        except Exception as e:
            fail(f"istio_ipv6_only_cases: {type(e).__name__}: {e}")
    note(f"{checks} traffic checks, {len(failures)} failures, {len(known)} known differences, "
         f"{time.monotonic() - start:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
