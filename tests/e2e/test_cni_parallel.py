#!/usr/bin/env python3
"""20 pods added and then deleted through bridge + weir-cni, two at a time in
parallel: every captured pod captures (real TCP lands on its sidecar with the
right SO_ORIGINAL_DST), every other pod does not, and DEL leaves no weir rule
and no IP allocation behind. Needs root; exits 77 (skipped) otherwise."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cni import (ENABLED, Testbed, check, cni_pod, expect_captured, expect_direct,  # noqa: E402
                      require_binaries, run_tests, weir_lines)

PODS = 20
PARALLEL = 2


def captured(i: int) -> bool:
    return i % 4 != 3  # every fourth pod opts out


def test_twenty_pods_two_at_a_time():
    with Testbed(role="cni") as tb:
        peer = tb.add_pod("peer")
        tb.serve(peer, [8080])

        def add(i):
            return cni_pod(tb, f"p{i}", annotations=ENABLED if captured(i) else {})

        with ThreadPoolExecutor(PARALLEL) as pool:
            pods = list(pool.map(add, range(PODS)))
        check(len({p.ip4 for p in pods}) == PODS, "pods share addresses")

        for i, pod in enumerate(pods):
            has_rules = weir_lines(tb, pod) != []
            check(has_rules == captured(i), f"pod {pod.name}: weir rules present={has_rules}, captured={captured(i)}")
            sidecar = tb.sidecar(pod)
            if captured(i):
                expect_captured(tb, pod, peer.addr(8080), 15001, uid=1000)
                expect_captured(tb, peer, pod.addr(8080), 15006)
            else:
                expect_direct(tb, pod, peer.addr(8080), uid=1000)
            sidecar.stop()

        def delete(pod):
            return tb.cni_chain("DEL", pod.cni_plugins, pod=pod)

        with ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(delete, pods))
        for pod, calls in zip(pods, results):
            check(all(c.ok for c in calls), f"DEL of {pod.name} failed: {calls}")
            check(weir_lines(tb, pod) == [], f"weir rules left in {pod.name}: {weir_lines(tb, pod)}")
        # host-local keeps one file per allocated address: none may be left.
        leases = []
        for root, _dirs, files in os.walk(os.path.join(tb.tmp, "host-local")):
            leases += [f for f in files if f[0].isdigit() or ":" in f]
        check(leases == [], f"IP allocations left after DEL: {leases}")
        check(weir_lines(tb, tb.node) == [], "weir rules in the node namespace")


TESTS = [test_twenty_pods_two_at_a_time]

if __name__ == "__main__":
    require_binaries()
    run_tests(TESTS)
