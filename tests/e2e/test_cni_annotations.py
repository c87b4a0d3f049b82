#!/usr/bin/env python3
"""weir-cni's pod selection and per-pod overrides, each proven with real TCP:
every case is a pod attached through bridge + weir-cni with some annotations
(as containerd passes them in runtimeConfig), a stub sidecar and an app, and
connections that must land on the proxy (with the right SO_ORIGINAL_DST) or go
straight through. Needs root; exits 77 (skipped) otherwise."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cni import (ENABLED, Testbed, check, cni_pod, expect_captured, expect_direct,  # noqa: E402
                      require_binaries, run_tests, weir_conf)

ISTIO = "traffic.sidecar.istio.io/"
APP_UID = 1000
PEER_PORTS = [8080, 8081, 8082]

# An expectation: (direction, peer index, port, family, where it lands) with
# where = "proxy" (the sidecar's port for that direction), a port number, or "direct".
OUT, IN = "out", "in"


def E(direction, peer, port, fam=4, where="proxy", uid=APP_UID):
    return (direction, peer, port, fam, where, uid)


# name -> (annotations or None, conf keys, k8s namespace, sidecar ports/uid, expectations)
CASES = {
    # --- which pods are captured
    "weir.dev/capture=enabled": (ENABLED, {}, "default", {}, [E(OUT, 0, 8080), E(IN, 0, 8080)]),
    "no annotation": ({}, {}, "default", {}, [E(OUT, 0, 8080, where="direct"), E(IN, 0, 8080, where="direct")]),
    "weir.dev/capture=disabled beats Istio's status": (
        {"weir.dev/capture": "disabled", "sidecar.istio.io/status": "{}"}, {}, "default", {},
        [E(OUT, 0, 8080, where="direct"), E(IN, 0, 8080, where="direct")]),
    "sidecar.istio.io/status present": ({"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'}, {}, "default",
                                        {}, [E(OUT, 0, 8080), E(IN, 0, 8080)]),
    "sidecar.istio.io/inject=false": ({**ENABLED, "sidecar.istio.io/inject": "false"}, {}, "default", {},
                                      [E(OUT, 0, 8080, where="direct")]),
    "sidecar.istio.io/inject=False (Go's ParseBool)": (
        {"sidecar.istio.io/status": "{}", "sidecar.istio.io/inject": "False"}, {}, "default", {},
        [E(OUT, 0, 8080, where="direct"), E(IN, 0, 8080, where="direct")]),
    "sidecar.istio.io/inject=0": ({**ENABLED, "sidecar.istio.io/inject": "0"}, {}, "default", {},
                                  [E(OUT, 0, 8080, where="direct")]),
    "sidecar.istio.io/inject=TRUE": ({"sidecar.istio.io/status": "{}", "sidecar.istio.io/inject": "TRUE"}, {},
                                     "default", {}, [E(OUT, 0, 8080), E(IN, 0, 8080)]),
    "sidecar.istio.io/status lists istio-init": (
        {"sidecar.istio.io/status": '{"initContainers":["istio-init"],"containers":["istio-proxy"]}'}, {}, "default",
        {}, [E(OUT, 0, 8080, where="direct"), E(IN, 0, 8080, where="direct")]),
    "kube-system is excluded by default": (ENABLED, {}, "kube-system", {}, [E(OUT, 0, 8080, where="direct")]),
    "excludeNamespaces replaces the default": (ENABLED, {"excludeNamespaces": ["shop"]}, "kube-system", {},
                                               [E(OUT, 0, 8080)]),
    "excluded namespace from config": (ENABLED, {"excludeNamespaces": ["shop"]}, "shop", {},
                                       [E(OUT, 0, 8080, where="direct")]),
    "no annotations from the runtime, captureWithoutAnnotations=false": (None, {}, "default", {},
                                                                         [E(OUT, 0, 8080, where="direct")]),
    "no annotations from the runtime, captureWithoutAnnotations=true": (
        None, {"captureWithoutAnnotations": True}, "default", {}, [E(OUT, 0, 8080), E(IN, 0, 8080)]),
    # --- Istio's annotations
    ISTIO + "excludeOutboundPorts": ({**ENABLED, ISTIO + "excludeOutboundPorts": "8081"}, {}, "default", {},
                                     [E(OUT, 0, 8081, where="direct"), E(OUT, 0, 8080), E(OUT, 0, 8081, 6, "direct")]),
    ISTIO + "excludeOutboundPorts adds to the config's": (
        {**ENABLED, ISTIO + "excludeOutboundPorts": "8081"}, {"capture": {"excludeOutboundPorts": [8080]}}, "default",
        {}, [E(OUT, 0, 8080, where="direct"), E(OUT, 0, 8081, where="direct"), E(OUT, 0, 8082)]),
    ISTIO + "excludeOutboundIPRanges": ({**ENABLED, ISTIO + "excludeOutboundIPRanges": "198.18.0.10/32"}, {},
                                        "default", {}, [E(OUT, 0, 8080, where="direct"), E(OUT, 1, 8080)]),
    ISTIO + "excludeOutboundIPRanges with host bits, masked as Istio does": (
        {**ENABLED, ISTIO + "excludeOutboundIPRanges": "198.18.0.11/31"}, {}, "default", {},
        [E(OUT, 0, 8080, where="direct"), E(OUT, 1, 8080, where="direct"), E(IN, 0, 8080)]),
    ISTIO + "includeOutboundIPRanges list": ({**ENABLED, ISTIO + "includeOutboundIPRanges": "198.18.0.11/32"}, {},
                                             "default", {}, [E(OUT, 0, 8080, where="direct"), E(OUT, 1, 8080)]),
    ISTIO + "includeOutboundIPRanges * = all": ({**ENABLED, ISTIO + "includeOutboundIPRanges": "*"}, {}, "default",
                                                {}, [E(OUT, 0, 8080), E(OUT, 1, 8081)]),
    ISTIO + "includeOutboundIPRanges empty = none": (
        {**ENABLED, ISTIO + "includeOutboundIPRanges": ""}, {}, "default", {},
        [E(OUT, 0, 8080, where="direct"), E(OUT, 1, 8080, where="direct"), E(IN, 0, 8080)]),
    ISTIO + "includeOutboundPorts with no IP ranges": (
        {**ENABLED, ISTIO + "includeOutboundIPRanges": "", ISTIO + "includeOutboundPorts": "8081"}, {}, "default", {},
        [E(OUT, 0, 8081), E(OUT, 0, 8080, where="direct"), E(OUT, 1, 8082, where="direct")]),
    ISTIO + "includeInboundPorts list": ({**ENABLED, ISTIO + "includeInboundPorts": "8080"}, {}, "default", {},
                                         [E(IN, 0, 8080), E(IN, 0, 8081, where="direct"), E(IN, 0, 8080, 6)]),
    ISTIO + "includeInboundPorts empty = none": ({**ENABLED, ISTIO + "includeInboundPorts": ""}, {}, "default", {},
                                                 [E(IN, 0, 8080, where="direct"), E(OUT, 0, 8080)]),
    ISTIO + "excludeInboundPorts": ({**ENABLED, ISTIO + "excludeInboundPorts": "8081"}, {}, "default", {},
                                    [E(IN, 0, 8081, where="direct"), E(IN, 0, 8080)]),
    ISTIO + "excludeInterfaces": ({**ENABLED, ISTIO + "excludeInterfaces": "eth0"}, {}, "default", {},
                                  [E(IN, 0, 8080, where="direct"), E(OUT, 0, 8080, where="direct")]),
    # --- weir's own, one per spec field that traffic can show
    "weir.dev/excludeOutboundPorts": ({**ENABLED, "weir.dev/excludeOutboundPorts": "8081-8082"}, {}, "default", {},
                                      [E(OUT, 0, 8081, where="direct"), E(OUT, 0, 8082, where="direct"), E(OUT, 0, 8080)]),
    "weir.dev/outboundPort and inboundPort": (
        {**ENABLED, "weir.dev/outboundPort": "16001", "weir.dev/inboundPort": "16006"}, {}, "default",
        {"outbound_port": 16001, "inbound_port": 16006}, [E(OUT, 0, 8080, where=16001), E(IN, 0, 8080, where=16006)]),
    "weir.dev/proxyUids": ({**ENABLED, "weir.dev/proxyUids": "1500"}, {}, "default", {"uid": 1500, "gid": 1500},
                           [E(OUT, 0, 8080, where="direct", uid=1500), E(OUT, 0, 8080, uid=1337)]),
    "weir.dev/outboundCidrs": ({**ENABLED, "weir.dev/outboundCidrs": "198.18.0.10/32"}, {}, "default", {},
                               [E(OUT, 0, 8080), E(OUT, 1, 8080, where="direct")]),
    "weir.dev/inboundPorts": ({**ENABLED, "weir.dev/inboundPorts": "8081"}, {}, "default", {},
                              [E(IN, 0, 8081), E(IN, 0, 8080, where="direct")]),
    "weir.dev/ipFamilies=ipv4": ({**ENABLED, "weir.dev/ipFamilies": "ipv4"}, {}, "default", {},
                                 [E(OUT, 0, 8080), E(OUT, 0, 8080, 6, "direct"), E(IN, 0, 8080, 6, "direct")]),
    "weir.dev/excludeOutboundCidrs": ({**ENABLED, "weir.dev/excludeOutboundCidrs": "198.18.0.11/32"}, {}, "default",
                                      {}, [E(OUT, 0, 8080), E(OUT, 1, 8080, where="direct")]),
}


def _check_case(tb, n, name, peers):
    annotations, conf, ns, sidecar, expectations = CASES[name]
    pod = cni_pod(tb, f"p{n}", annotations=annotations, conf=weir_conf(**conf), k8s_namespace=ns)
    out_port = sidecar.get("outbound_port", 15001)
    in_port = sidecar.get("inbound_port", 15006)
    tb.sidecar(pod, outbound_port=out_port, inbound_port=in_port, uid=sidecar.get("uid", 1337),
               gid=sidecar.get("gid", 1337))
    tb.serve(pod, PEER_PORTS, uid=APP_UID, gid=APP_UID)
    for direction, peer_index, port, fam, where, uid in expectations:
        peer = peers[peer_index]
        if direction == OUT:
            frm, to, proxy = pod, peer.addr(port, fam), out_port
        else:
            frm, to, proxy, uid = peer, pod.addr(port, fam), in_port, None
        if where == "direct":
            expect_direct(tb, frm, to, uid=uid)
        else:
            expect_captured(tb, frm, to, proxy if where == "proxy" else where, uid=uid)
    tb.remove_pod(pod)


def test_selection_and_overrides():
    failures = []
    with Testbed(role="cni") as tb:
        peers = [tb.add_pod("peer0"), tb.add_pod("peer1")]
        check([p.ip4 for p in peers] == ["198.18.0.10", "198.18.0.11"], f"peer addresses {peers}")
        for p in peers:
            tb.serve(p, PEER_PORTS)
        for n, name in enumerate(CASES):
            try:
                _check_case(tb, n, name, peers)
                print(f"  ok   {name}", flush=True)
            except AssertionError as e:
                failures.append(f"{name}: {e}")
                print(f"  FAIL {name}: {e}", flush=True)
    check(not failures, f"{len(failures)} case(s) failed:\n" + "\n".join(failures))


TESTS = [test_selection_and_overrides]

if __name__ == "__main__":
    require_binaries()
    run_tests(TESTS)
