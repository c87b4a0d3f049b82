#!/usr/bin/env python3
"""weir-init validate (and istio-iptables --run-validation), end to end, in a
pod namespace of the netns testbed. The validator runs as a non-root UID with
no capabilities, as a pod's first init container would:

- no rules: exits 42 (Istio dialect: 126; --failure-exit-code N: N) within
  its timeout, never hanging;
- rules in place: exits 0, fast (asserted < 1 s on a noisy machine; the
  measured figures are printed);
- rules for the wrong port: exits 42;
- rules with the outbound and inbound ports swapped: exits 42 (Istio: 126) at
  once, naming where the probe arrived and where it should have;
- the proxy's port already in use: a clear error, exit 1;
- a dual-stack pod is checked on IPv4 (IPv4-only rules pass);
- an IPv6-only pod (no IPv4 address or route), where the IPv4 default target
  cannot be dialled: the default becomes [fdff:ffff:ffff:ffff::fe]:15999, so
  `weir apply` rules (dual or ipv6) pass, none or IPv4-only ones exit 42
  within the timeout; with no route in either family, a clear error (exit 1).
Exit 77 when not root.
"""

import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("WEIR_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                                "netns-testbed"))
import testbed  # noqa: E402
from testbed import Testbed, require_root  # noqa: E402

WEIR_INIT = os.path.join(testbed.bin_dir(), "weir-init")
WEIR = os.path.join(testbed.bin_dir(), "weir")
DEFAULT4 = "198.19.255.254:15999"
DEFAULT6 = "[fdff:ffff:ffff:ffff::fe]:15999"
UNPRIVILEGED = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
AS_PROXY = ["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def run(tb, pod, args, as_=None, timeout=30):
    """Runs weir-init in the pod; returns (CompletedProcess, wall seconds)."""
    argv = (as_ or []) + [WEIR_INIT] + args
    t0 = time.monotonic()
    cp = tb.exec(pod, argv, timeout=timeout)
    return cp, time.monotonic() - t0


def expect_rc(what, cp, rc):
    if cp.returncode != rc:
        fail(f"{what}: exit {cp.returncode}, wanted {rc}; stderr: {cp.stderr.strip()}")
        return False
    return True


def in_process_ms(cp):
    m = re.search(r"\(([0-9.]+) ms\)", cp.stderr)
    return float(m.group(1)) if m else None


def weir(tb, pod, args):
    """`weir ARGS --netns self`, run inside the pod's namespace."""
    cp = tb.exec(pod, [WEIR] + args + ["--netns", "self"])
    if cp.returncode != 0:
        fail(f"weir {' '.join(args)} in {pod.name}: exit {cp.returncode}: {cp.stderr.strip()}")
    return cp


def dual_stack_checks_ipv4(tb, pod):
    """A dual-stack pod is validated on IPv4: IPv4-only rules (Istio without
    --dual-stack) are capture in place, not a failure."""
    C = "dual-stack pod, IPv4-only rules"
    weir(tb, pod, ["apply", "--ip-families", "ipv4"])
    cp, _ = run(tb, pod, ["validate", "--timeout", "2s"], as_=UNPRIVILEGED)
    if expect_rc(C, cp, 0) and DEFAULT4 not in cp.stderr:
        fail(f"{C}: the IPv4 default was not the target dialed: {cp.stderr!r}")
    weir(tb, pod, ["clean"])


def ipv6_only_cases(tb):
    """A pod with no IPv4 address or route: connect() to the IPv4 default fails
    with ENETUNREACH before netfilter sees it, so the IPv6 default is dialed."""
    pod = tb.add_pod("v6")
    tb.exec(pod, ["ip", "-4", "addr", "del", f"{pod.ip4}/24", "dev", "eth0"], check=True)
    tb.exec(pod, ["ip", "-4", "route", "flush", "table", "main"], check=True)
    left = (tb.exec(pod, ["ip", "-4", "addr", "show", "scope", "global"], check=True).stdout +
            tb.exec(pod, ["ip", "-4", "route", "show", "table", "main"], check=True).stdout)
    if left.strip():
        fail(f"[IPv6-only] the pod still has IPv4 addresses or routes: {left}")
        return

    C = "IPv6-only pod, no rules"
    cp, wall = run(tb, pod, ["validate", "--timeout", "1s"], as_=UNPRIVILEGED)
    if expect_rc(C, cp, 42):
        if DEFAULT6 not in cp.stderr or "capture missing" not in cp.stderr:
            fail(f"{C}: wanted capture missing for {DEFAULT6}: {cp.stderr!r}")
    if wall > 3.0:
        fail(f"{C}: took {wall:.2f} s with --timeout 1s")
    print(f"{C}: exit {cp.returncode} after {wall:.2f} s: {cp.stderr.strip()}")

    for families in ("dual", "ipv6"):
        C = f"IPv6-only pod, weir apply --ip-families {families}"
        weir(tb, pod, ["apply", "--ip-families", families])
        cp, wall = run(tb, pod, ["validate", "--timeout", "2s"], as_=UNPRIVILEGED)
        if expect_rc(C, cp, 0):
            if DEFAULT6 not in cp.stderr or "no IPv4 route" not in cp.stderr:
                fail(f"{C}: the success line does not name the IPv6 default and why: {cp.stderr!r}")
            if wall > 1.0:
                fail(f"{C}: took {wall:.2f} s, wanted well under 1 s")
        print(f"{C}: exit {cp.returncode} in {wall * 1000:.1f} ms: {cp.stderr.strip()}")
        weir(tb, pod, ["clean"])

    C = "IPv6-only pod, IPv4-only rules (the pod's IPv6 is not captured)"
    weir(tb, pod, ["apply", "--ip-families", "ipv4"])
    cp, wall = run(tb, pod, ["validate", "--timeout", "1s"], as_=UNPRIVILEGED)
    expect_rc(C, cp, 42)
    if wall > 3.0:
        fail(f"{C}: took {wall:.2f} s with --timeout 1s")
    cp, _ = run(tb, pod, ["validate", "--timeout", "1s", "--failure-exit-code", "95"], as_=UNPRIVILEGED)
    expect_rc(C + ", --failure-exit-code 95", cp, 95)
    weir(tb, pod, ["clean"])

    # Asked for by name, an unroutable IPv4 target is still dialed (and fails), saying why.
    C = "IPv6-only pod, --target the IPv4 default"
    weir(tb, pod, ["apply"])
    cp, wall = run(tb, pod, ["validate", "--timeout", "500ms", "--target", DEFAULT4], as_=UNPRIVILEGED)
    if expect_rc(C, cp, 42) and "no route to it" not in cp.stderr:
        fail(f"{C}: the error does not say there is no route: {cp.stderr!r}")
    if wall > 2.5:
        fail(f"{C}: took {wall:.2f} s with --timeout 500ms")
    weir(tb, pod, ["clean"])

    # No route in either family: nothing to dial by default. A clear error, not 42.
    C = "pod with no IPv4 and no IPv6 route"
    tb.exec(pod, ["ip", "-6", "route", "flush", "table", "main"], check=True)
    cp, wall = run(tb, pod, ["validate", "--timeout", "1s"], as_=UNPRIVILEGED)
    if expect_rc(C, cp, 1):
        if "no route to" not in cp.stderr or DEFAULT4 not in cp.stderr or DEFAULT6 not in cp.stderr \
                or "--target" not in cp.stderr:
            fail(f"{C}: the error does not name both defaults and --target: {cp.stderr!r}")
    print(f"{C}: exit {cp.returncode} after {wall:.2f} s: {cp.stderr.strip()}")
    if tb.weir_leftovers(pod, "iptables") or tb.weir_leftovers(pod, "nftables"):
        fail("[IPv6-only] weir clean left rules")


def main():
    require_root()
    for binary in (WEIR_INIT, WEIR):
        if not os.access(binary, os.X_OK):
            print(f"SKIP: {binary} not built", file=sys.stderr)
            return 77
    with Testbed(role="initv") as tb:
        pod = tb.add_pod("val")

        # No rules: the documented code, within the timeout (+ slack for process start).
        cp, wall = run(tb, pod, ["validate", "--timeout", "1s"], as_=UNPRIVILEGED)
        expect_rc("no rules", cp, 42)
        if "capture missing" not in cp.stderr or len(cp.stderr.strip().splitlines()) != 1:
            fail(f"no rules: wanted one line saying capture is missing, got {cp.stderr!r}")
        if wall > 3.0:
            fail(f"no rules: took {wall:.2f} s with --timeout 1s")
        print(f"no rules: exit {cp.returncode} after {wall:.2f} s (timeout 1s): {cp.stderr.strip()}")
        cp, wall = run(tb, pod, ["validate", "--timeout", "500ms", "--failure-exit-code", "95"], as_=UNPRIVILEGED)
        expect_rc("no rules, --failure-exit-code 95", cp, 95)

        # Rules in place (native defaults, both families): fast success as a plain user.
        cp, _ = run(tb, pod, [])
        expect_rc("apply default capture", cp, 0)
        walls, inproc = [], []
        for _ in range(7):
            cp, wall = run(tb, pod, ["validate"], as_=UNPRIVILEGED)
            if expect_rc("validate with rules", cp, 0):
                walls.append(wall)
                ms = in_process_ms(cp)
                if ms is not None:
                    inproc.append(ms)
        if walls:
            med = statistics.median(walls)
            print(f"validate with rules: median {med * 1000:.1f} ms per process (ip netns exec + setpriv included), "
                  f"in-process median {statistics.median(inproc) if inproc else float('nan'):.2f} ms over {len(walls)} runs")
            if med > 1.0:
                fail(f"validate with rules: median {med:.2f} s, wanted well under 1 s")
            if inproc and statistics.median(inproc) > 100:
                fail(f"validate with rules: in-process median {statistics.median(inproc):.1f} ms, wanted < 100 ms")
        cp, _ = run(tb, pod, ["validate", "--target", "[fd00:198:18::ffff]:15999,198.18.255.254:443"], as_=UNPRIVILEGED)
        expect_rc("validate IPv6 and a second IPv4 target", cp, 0)
        cp, _ = run(tb, pod, ["validate", "--timeout", "1s"], as_=AS_PROXY)
        expect_rc("validate as the proxy UID (its traffic is never captured)", cp, 42)
        cp, _ = run(tb, pod, ["validate", "--target", "127.0.0.6:15002", "--source", "127.0.0.1"], as_=AS_PROXY)
        expect_rc("validate as the proxy UID via 127.0.0.6 (captured as inbound)", cp, 0)

        # The proxy's port is taken: the check cannot run; say so.
        holder = tb.serve(pod, [15001], family="4")
        cp, wall = run(tb, pod, ["validate", "--timeout", "1s"], as_=UNPRIVILEGED)
        expect_rc("port in use", cp, 1)
        if "15001" not in cp.stderr:
            fail(f"port in use: the error does not name the port: {cp.stderr!r}")
        holder.stop()

        # Rules for the wrong port: what arrives is refused, the check fails in time.
        cp, _ = run(tb, pod, ["--outbound-port", "15011", "--inbound-port", "15016"])
        expect_rc("apply wrong ports", cp, 0)
        cp, wall = run(tb, pod, ["validate", "--timeout", "1s"], as_=UNPRIVILEGED)
        expect_rc("rules for the wrong port", cp, 42)
        if wall > 3.0:
            fail(f"rules for the wrong port: took {wall:.2f} s with --timeout 1s")
        print(f"wrong port: exit {cp.returncode} after {wall:.2f} s: {cp.stderr.strip()}")
        cp, _ = run(tb, pod, ["validate", "--outbound-port", "15011", "--inbound-port", "15016"], as_=UNPRIVILEGED)
        expect_rc("validate against the ports the rules use", cp, 0)
        run(tb, pod, ["--cleanup"])

        # Rules with the two ports swapped: the probe is redirected with the
        # right SO_ORIGINAL_DST, but to the other listener. That is not capture.
        cp, _ = run(tb, pod, ["--outbound-port", "15006", "--inbound-port", "15001"])
        expect_rc("apply swapped ports", cp, 0)
        cp, wall = run(tb, pod, ["validate", "--timeout", "3s"], as_=UNPRIVILEGED)
        expect_rc("outbound probe, swapped ports", cp, 42)
        if "arrived on 15006, expected the outbound port 15001" not in cp.stderr:
            fail(f"outbound probe, swapped ports: the error does not say where it arrived: {cp.stderr!r}")
        if wall > 2.5:
            fail(f"outbound probe, swapped ports: took {wall:.2f} s; a misdirected probe should fail at once")
        print(f"swapped ports: exit {cp.returncode} after {wall:.2f} s: {cp.stderr.strip()}")
        cp, _ = run(tb, pod, ["validate", "--timeout", "3s", "--target", "127.0.0.6:15002", "--source", "127.0.0.1"],
                    as_=AS_PROXY)
        expect_rc("inbound probe (proxy via 127.0.0.6), swapped ports", cp, 42)
        if "arrived on 15001, expected the inbound port 15006" not in cp.stderr:
            fail(f"inbound probe, swapped ports: the error does not say where it arrived: {cp.stderr!r}")
        cp, _ = run(tb, pod, ["validate", "--timeout", "3s", "--failure-exit-code", "95"], as_=UNPRIVILEGED)
        expect_rc("swapped ports, --failure-exit-code 95", cp, 95)
        cp, _ = run(tb, pod, ["istio-iptables", "--run-validation", "--skip-rule-apply", "--probe-timeout", "3s"],
                    as_=AS_PROXY)
        expect_rc("istio validation as 1337, swapped ports", cp, 126)
        cp, _ = run(tb, pod, ["istio-iptables", "--run-validation", "--skip-rule-apply", "--probe-timeout", "3s"],
                    as_=UNPRIVILEGED)
        expect_rc("istio validation as another UID, swapped ports", cp, 126)
        # Told the ports the rules really use, the same rules validate.
        cp, _ = run(tb, pod, ["validate", "--outbound-port", "15006", "--inbound-port", "15001"], as_=UNPRIVILEGED)
        expect_rc("validate against the swapped ports as given to the rules", cp, 0)
        run(tb, pod, ["--cleanup"])

        # Istio's validation container: --run-validation --skip-rule-apply as 1337.
        istio_validate = ["istio-iptables", "--run-validation", "--skip-rule-apply", "--probe-timeout", "1s"]
        cp, wall = run(tb, pod, istio_validate, as_=AS_PROXY)
        expect_rc("istio validation, no rules", cp, 126)
        if wall > 3.0:
            fail(f"istio validation, no rules: took {wall:.2f} s with --probe-timeout 1s")
        cp, _ = run(tb, pod, ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
                              "-x", "", "-b", "*", "-d", "15090,15021,15020"])
        expect_rc("istio apply", cp, 0)
        t0 = time.monotonic()
        cp, wall = run(tb, pod, istio_validate, as_=AS_PROXY)
        expect_rc("istio validation as 1337, rules in place", cp, 0)
        print(f"istio validation as 1337 with rules: exit {cp.returncode} in {wall * 1000:.1f} ms")
        cp, _ = run(tb, pod, istio_validate, as_=UNPRIVILEGED)
        expect_rc("istio validation as another UID, rules in place", cp, 0)
        cp, _ = run(tb, pod, istio_validate + ["--iptables-probe-port", "15999"], as_=AS_PROXY)
        expect_rc("istio validation with --iptables-probe-port", cp, 0)
        cp, wall = run(tb, pod, ["istio-iptables", "--run-validation", "--skip-rule-apply", "-z", "15106",
                                 "--probe-timeout", "500ms"], as_=AS_PROXY)
        expect_rc("istio validation expecting another inbound port", cp, 126)
        if wall > 2.5:
            fail(f"istio validation, wrong port: took {wall:.2f} s with --probe-timeout 500ms")
        cp, _ = run(tb, pod, ["istio-iptables", "--cleanup-only"])
        expect_rc("istio cleanup", cp, 0)
        # Apply and validate in one run (the init-container variant).
        cp, _ = run(tb, pod, ["istio-iptables", "-i", "*", "-b", "*", "--run-validation"])
        expect_rc("istio apply + --run-validation", cp, 0)
        run(tb, pod, ["--cleanup"])

        # Linkerd's ports.
        cp, _ = run(tb, pod, ["proxy-init", "-p", "4143", "-o", "4140", "-u", "2102"])
        expect_rc("proxy-init apply", cp, 0)
        cp, _ = run(tb, pod, ["validate", "--outbound-port", "4140", "--inbound-port", "4143"], as_=UNPRIVILEGED)
        expect_rc("validate Linkerd's ports", cp, 0)
        run(tb, pod, ["--cleanup"])
        if tb.weir_leftovers(pod, "iptables") or tb.weir_leftovers(pod, "nftables"):
            fail("cleanup left weir rules")

        dual_stack_checks_ipv4(tb, pod)
        ipv6_only_cases(tb)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
