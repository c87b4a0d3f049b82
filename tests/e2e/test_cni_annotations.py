#!/usr/bin/env python3
"""weir-cni's pod selection and per-pod overrides, each proven with real traffic:
every case is a pod attached through bridge + weir-cni with some annotations
(as containerd passes them in runtimeConfig), a stub sidecar and an app, and
connections (TCP, or UDP DNS queries) that must land on the proxy (with the
right SO_ORIGINAL_DST, or in TPROXY mode with the client's real address) or go
straight through. Every weir.dev/* spec field and every Istio
traffic.sidecar.istio.io/* annotation weir reads has a case.
Needs root; exits 77 (skipped) otherwise."""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cni import (ENABLED, Testbed, backend_in_use, call_weir, check, cni_pod, require_binaries,  # noqa: E402
                      run_tests, weir_conf, weir_stdin)

ISTIO = "traffic.sidecar.istio.io/"
APP_UID = 1000
PEER_PORTS = [8080, 8081, 8082]
# The pod's app also listens on the default tunnel port, a second tunnel port
# and a port weir excludes by default, so "goes straight through" can be shown.
APP_PORTS = PEER_PORTS + [15008, 15009, 15020]
STUB_ANSWER = "198.18.7.53"          # what the pod's DNS stub (the proxy's) answers
PEER_ANSWERS = ["198.18.7.10", "198.18.7.11"]  # what each peer's nameserver answers
TPROXY_MARK, TPROXY_TABLE = 4242, 142  # not the defaults (1337, 133)

# An expectation is a tuple whose first item says what it checks:
#  (OUT|IN|SELF, peer index, port, family, where, uid, gid): a TCP connection
#      OUT: app -> peer, IN: peer -> pod, SELF: pod -> its own address (over lo);
#      where = "proxy" (the sidecar's port for that direction; SELF: the inbound
#      port), a port number, "tproxy" (the inbound port, the client's own source
#      address and the dialed address as the socket's local address) or "direct".
#  (DNS, peer index, family, where, uid, tcp): a DNS query from the pod to the
#      peer's nameserver on 53; where = "proxy" (the pod's stub on the DNS port)
#      or "direct".
#  (RULES, argv, regex, present): `argv` run in the pod; its stdout matches or not.
#      With argv = WEIR_TABLE(table, fam) the text is weir's rules of that
#      xtables table and family in the backend this run uses (iptables-legacy-save,
#      or the chains of table inet weir for that table and family) and regex is
#      a dict {backend: regex}.
#  (INVALID, peer index, port): the peer sends TCP packets with SYN+FIN (conntrack
#      INVALID) to the pod; weir's DROP rule in mangle counts every one.
#  (DEL,): weir-cni's DEL for the pod; the expectations after it hold for the pod
#      without weir's rules (its namespace and eth0 are still there).
OUT, IN, SELF, DNS, RULES, INVALID, DEL = "out", "in", "self", "dns", "rules", "invalid", "del"


def E(direction, peer, port, fam=4, where="proxy", uid=APP_UID, gid=None):
    return (direction, peer, port, fam, where, uid, gid)


def Q(peer, fam=4, where="proxy", uid=APP_UID, tcp=False):
    return (DNS, peer, fam, where, uid, tcp)


def R(argv, regex, present=True):
    return (RULES, argv, regex, present)


def ip_rule(fam):
    return ["ip", f"-{fam}", "rule", "show"]


def ip_route_table(fam, table):
    return ["ip", f"-{fam}", "route", "show", "table", str(table)]


def save(table, fam=4):
    return ["iptables-legacy-save" if fam == 4 else "ip6tables-legacy-save", "-c", "-t", table]


def WEIR_TABLE(table, fam=4):
    return ("weir-table", table, fam)


def weir_table_text(tb, pod, table, fam):
    """weir's rules of one xtables table and family, in the backend in use."""
    if backend_in_use() == "iptables":
        return tb.exec(pod, save(table, fam), check=True).stdout
    prefix = tb.nft_chain(fam, "", table)
    listing = tb.weir_rules(pod, "nftables")
    return "\n".join(m.group(0) for m in re.finditer(r"^\tchain (\S+) \{\n.*?^\t\}", listing, re.M | re.S)
                     if m.group(1).startswith(prefix))


FWMARK = rf"fwmark 0x{TPROXY_MARK:x} lookup {TPROXY_TABLE}\b"
INVALID_DROP = {"iptables": r"--ctstate INVALID .*-j DROP", "nftables": r"ct state invalid .*drop"}

# name -> (annotations or None, conf keys, k8s namespace, sidecar, expectations);
# sidecar: outbound_port, inbound_port, uid, gid (the stub proxy), transparent
# (IP_TRANSPARENT listeners, for TPROXY), dns_port (also run the proxy's DNS stub).
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
    ISTIO + "excludeInboundPorts (adds to the default 15020,...)": (
        {**ENABLED, ISTIO + "excludeInboundPorts": "8081"}, {}, "default", {},
        [E(IN, 0, 8081, where="direct"), E(IN, 0, 8080), E(IN, 0, 15020, where="direct")]),
    ISTIO + "excludeInterfaces": ({**ENABLED, ISTIO + "excludeInterfaces": "eth0"}, {}, "default", {},
                                  [E(IN, 0, 8080, where="direct"), E(OUT, 0, 8080, where="direct")]),
    ISTIO + "includeOutboundPorts with all IP ranges changes nothing": (
        {**ENABLED, ISTIO + "includeOutboundPorts": "8081"}, {}, "default", {},
        [E(OUT, 0, 8081), E(OUT, 1, 8080), E(OUT, 0, 8082, 6)]),
    ISTIO + "includeOutboundPorts with includeOutboundIPRanges *": (
        {**ENABLED, ISTIO + "includeOutboundIPRanges": "*", ISTIO + "includeOutboundPorts": "8081"}, {}, "default", {},
        [E(OUT, 0, 8081), E(OUT, 1, 8080)]),
    ISTIO + "includeOutboundPorts with no IP ranges, IPv6 too": (
        {**ENABLED, ISTIO + "includeOutboundIPRanges": "", ISTIO + "includeOutboundPorts": "8081,8082"}, {},
        "default", {}, [E(OUT, 1, 8082, 6), E(OUT, 1, 8080, 6, "direct"), E(IN, 0, 8080)]),
    ISTIO + "kubevirtInterfaces": (
        {**ENABLED, ISTIO + "kubevirtInterfaces": "eth0"}, {}, "default", {},
        [E(IN, 0, 8080, where=15001), E(IN, 1, 8081, 6, where=15001), E(OUT, 0, 8080)]),
    ISTIO + "kubevirtInterfaces adds to the config's": (
        {**ENABLED, ISTIO + "kubevirtInterfaces": "vif0"}, {"capture": {"kubeVirtInterfaces": ["eth0"]}}, "default",
        # Istio's meaning: the VM's TCP goes straight to the proxy, whatever the excludes.
        {}, [E(IN, 0, 8080, where=15001), R(WEIR_TABLE("nat"), {"iptables": r"-i vif0 .*-j WEIR_REDIRECT",
                                                  "nftables": r'iifname "vif0" .*jump ip_nat_WEIR_REDIRECT'})]),
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
    "weir.dev/excludeInboundPorts (replaces the default 15020,...)": (
        {**ENABLED, "weir.dev/excludeInboundPorts": "8081-8082"}, {}, "default", {},
        [E(IN, 0, 8081, where="direct"), E(IN, 0, 8082, 6, "direct"), E(IN, 0, 8080), E(IN, 0, 15020),
         E(OUT, 0, 8081)]),
    "weir.dev/excludeInboundCidrs": (
        {**ENABLED, "weir.dev/excludeInboundCidrs": "198.18.0.10/32,fd00:198:18::11/128"}, {}, "default", {},
        [E(IN, 0, 8080, where="direct"), E(IN, 1, 8080), E(IN, 1, 8080, 6, "direct"), E(IN, 0, 8080, 6),
         E(OUT, 0, 8080)]),
    "weir.dev/outboundPorts": (
        {**ENABLED, "weir.dev/outboundPorts": "8081-8082"}, {}, "default", {},
        [E(OUT, 0, 8081), E(OUT, 1, 8082, 6), E(OUT, 0, 8080, where="direct"), E(OUT, 1, 8080, 6, "direct"),
         E(IN, 0, 8080)]),
    "weir.dev/excludeInterfaces=eth0 (lo still captured)": (
        {**ENABLED, "weir.dev/excludeInterfaces": "eth0"}, {}, "default", {},
        [E(IN, 0, 8080, where="direct"), E(IN, 1, 8081, 6, "direct"), E(OUT, 0, 8080, where="direct"),
         E(OUT, 1, 8081, 6, "direct"), E(SELF, 0, 8080, uid=1337), E(SELF, 0, 8081, 6, uid=1337)]),
    "weir.dev/excludeInterfaces=lo (eth0 still captured)": (
        {**ENABLED, "weir.dev/excludeInterfaces": "lo"}, {}, "default", {},
        [E(SELF, 0, 8080, where="direct", uid=1337), E(SELF, 0, 8080, 6, "direct", uid=1337), E(IN, 0, 8080),
         E(OUT, 0, 8080), E(OUT, 0, 8080, 6)]),
    "weir.dev/proxyGids (replaces the GIDs, not the UIDs)": (
        {**ENABLED, "weir.dev/proxyGids": "2000"}, {}, "default", {},
        [E(OUT, 0, 8080, where="direct", gid=2000), E(OUT, 1, 8081, 6, "direct", gid=2000),
         E(OUT, 0, 8080, gid=APP_UID), E(OUT, 0, 8080, gid=1337), E(OUT, 0, 8080, where="direct", uid=1337, gid=0)]),
    "weir.dev/proxyGids follows weir.dev/proxyUids": (
        {**ENABLED, "weir.dev/proxyUids": "1500"}, {}, "default", {"uid": 1500, "gid": 1500},
        [E(OUT, 0, 8080, where="direct", gid=1500), E(OUT, 0, 8080, gid=1337)]),
    "weir.dev/inboundTunnelPort": (
        {**ENABLED, "weir.dev/inboundTunnelPort": "15009"}, {}, "default", {},
        [E(IN, 0, 15009, where="direct"), E(IN, 0, 15009, 6, "direct"), E(IN, 0, 15008), E(IN, 0, 8080)]),
    "weir.dev/inboundTunnelPort=0 (none)": (
        {**ENABLED, "weir.dev/inboundTunnelPort": "0"}, {}, "default", {},
        [E(IN, 0, 15008), E(IN, 0, 15008, 6), E(IN, 0, 15020, where="direct")]),
    "weir.dev/kubeVirtInterfaces": (
        {**ENABLED, "weir.dev/kubeVirtInterfaces": "eth0"}, {}, "default", {},
        [E(IN, 0, 8080, where=15001), E(IN, 1, 8081, 6, where=15001), E(OUT, 0, 8080)]),
    "weir.dev/kubeVirtInterfaces with weir.dev/outboundPort": (
        {**ENABLED, "weir.dev/kubeVirtInterfaces": "eth0", "weir.dev/outboundPort": "16001"}, {}, "default",
        {"outbound_port": 16001}, [E(IN, 0, 8080, where=16001), E(OUT, 0, 8080, where=16001)]),
    "weir.dev/ipFamilies=ipv6": ({**ENABLED, "weir.dev/ipFamilies": "ipv6"}, {}, "default", {},
                                 [E(OUT, 0, 8080, 6), E(IN, 0, 8080, 6), E(OUT, 0, 8080, where="direct"),
                                  E(IN, 0, 8080, where="direct")]),
    "weir.dev/mode=tproxy with tproxyMark and tproxyRouteTable": (
        {**ENABLED, "weir.dev/mode": "tproxy", "weir.dev/tproxyMark": str(TPROXY_MARK),
         "weir.dev/tproxyRouteTable": str(TPROXY_TABLE)}, {}, "default", {"transparent": True},
        [E(IN, 0, 8080, where="tproxy"), E(IN, 1, 8081, 6, "tproxy"), E(IN, 0, 15020, where="direct"),
         E(OUT, 0, 8080), E(OUT, 0, 8080, 6),
         R(ip_rule(4), FWMARK), R(ip_rule(6), FWMARK),
         R(ip_route_table(4, TPROXY_TABLE), r"^local default dev lo"),
         R(ip_route_table(6, TPROXY_TABLE), r"^local default dev lo"),
         R(WEIR_TABLE("mangle"), {"iptables": rf"-j TPROXY --on-port 15006 .*--tproxy-mark 0x{TPROXY_MARK:x}/",
                                  "nftables": rf"tproxy ip to :15006 meta mark set 0x0*{TPROXY_MARK:x}\b"}),
         R(ip_rule(4), r"lookup 133\b", present=False),
         (DEL,),
         R(ip_rule(4), FWMARK, present=False), R(ip_rule(6), FWMARK, present=False),
         R(ip_route_table(4, TPROXY_TABLE), r"\S", present=False),
         R(ip_route_table(6, TPROXY_TABLE), r"\S", present=False), E(IN, 0, 8080, where="direct"),
         E(IN, 1, 8081, 6, "direct")]),
    "weir.dev/dropInvalid=true": (
        {**ENABLED, "weir.dev/dropInvalid": "true"}, {}, "default", {},
        [E(IN, 0, 8080), E(OUT, 0, 8080), E(IN, 0, 8080, 6), R(WEIR_TABLE("mangle", 4), INVALID_DROP),
         R(WEIR_TABLE("mangle", 6), INVALID_DROP), (INVALID, 0, 8080)]),
    "weir.dev/dropInvalid=false": (
        {**ENABLED, "weir.dev/dropInvalid": "false"}, {"capture": {"dropInvalid": True}}, "default", {},
        [E(IN, 0, 8080), R(WEIR_TABLE("mangle", 4), INVALID_DROP, present=False)]),
    "weir.dev/dns capture": (
        {**ENABLED, "weir.dev/dns": '{"capture": true}'}, {}, "default", {"dns_port": 15053},
        [Q(0), Q(1, 6), Q(0, tcp=True), Q(1, where="direct", uid=1337), E(OUT, 0, 8080)]),
    "weir.dev/dns of given servers, on another port": (
        {**ENABLED,
         "weir.dev/dns": '{"capture": true, "captureAll": false, "servers": ["198.18.0.10"], "port": 15054}'},
        {}, "default", {"dns_port": 15054}, [Q(0), Q(1, where="direct"), Q(0, 6, "direct")]),
    "no weir.dev/dns: DNS is not captured": (ENABLED, {}, "default", {"dns_port": 15053},
                                             [Q(0, where="direct"), Q(1, 6, "direct")]),
}


# Sends `count` TCP segments with SYN+FIN (which conntrack finds INVALID) from
# src to dst:port through a raw socket; the kernel adds the IP header.
SEND_INVALID = r"""
import socket, struct, sys
src, dst, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seg = struct.pack("!HHIIBBHHH", 40001, port, 1, 0, 5 << 4, 0x03, 1024, 0, 0)
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(seg))
data = pseudo + seg
total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
while total >> 16:
    total = (total & 0xffff) + (total >> 16)
seg = seg[:16] + struct.pack("!H", ~total & 0xffff) + seg[18:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for _ in range(count):
    s.sendto(seg, (dst, 0))
"""


def _probe(tb, frm, to, uid, gid) -> dict:
    r = tb.connect(frm, to, uid=uid, gid=gid)
    check("error" not in r, f"connection {frm.name} -> {to} (uid {uid} gid {gid}) failed: {r}")
    return r


def _host(addr: str) -> str:
    return addr.rsplit(":", 1)[0]


def _check_tcp(tb, pod, peers, sc, exp):
    direction, peer_index, port, fam, where, uid, gid = exp
    peer = peers[peer_index]
    if direction == OUT:
        frm, to, proxy = pod, peer.addr(port, fam), sc["outbound_port"]
    elif direction == SELF:
        frm, to, proxy = pod, pod.addr(port, fam), sc["inbound_port"]
    else:
        frm, to, proxy, uid, gid = peer, pod.addr(port, fam), sc["inbound_port"], None, None
    r = _probe(tb, frm, to, uid, gid)
    who = f"{frm.name} -> {to} (uid {uid} gid {gid})"
    if where == "direct":
        check(r["landed"] == port and r["orig_dst"] is None, f"{who}: expected to go straight to port {port}, got {r}")
    elif where == "tproxy":
        check(r["landed"] == proxy and r["local"] == to and _host(r["peer"]) == _host(frm.addr(0, fam)),
              f"{who}: expected TPROXY to {proxy} with local address {to} and the client's own address, got {r}")
    else:
        proxy = proxy if where == "proxy" else where
        check(r["landed"] == proxy and r["orig_dst"] == to,
              f"{who}: expected to land on {proxy} with original destination {to}, got {r}")


def _check_dns(tb, pod, peers, sc, exp):
    _, peer_index, fam, where, uid, tcp = exp
    server = peers[peer_index].addr(53, fam)
    r = tb.dns_query(pod, server, uid=uid, gid=uid, tcp=tcp)
    rep = r.get("report") or {}
    what = f"DNS over {'tcp' if tcp else 'udp'} {pod.name} -> {server} (uid {uid})"
    if where == "direct":
        check(r.get("answers") == [PEER_ANSWERS[peer_index]] and rep.get("landed") == 53,
              f"{what}: expected the nameserver on {server} to answer, got {r}")
    else:
        check(r.get("answers") == [STUB_ANSWER] and rep.get("landed") == sc["dns_port"],
              f"{what}: expected the proxy's DNS stub on port {sc['dns_port']} to answer, got {r}")


def _invalid_drops(tb, pod) -> int:
    """The packet counter of weir's INVALID DROP rule in the IPv4 mangle table."""
    if backend_in_use() == "nftables":
        for r in tb.nft_weir_rules(pod):
            if r["chain"].startswith("ip_mangle_") and any("drop" in e for e in r["expr"]):
                return next(e["counter"]["packets"] for e in r["expr"] if "counter" in e)
    for line in tb.exec(pod, save("mangle", 4), check=True).stdout.splitlines():
        m = re.match(r"\[(\d+):\d+\] (.*)", line)
        if m and re.search(INVALID_DROP["iptables"], m.group(2)):
            return int(m.group(1))
    raise AssertionError(f"no INVALID DROP rule in {pod.name}'s mangle table")


def _check_case(tb, n, name, peers):
    annotations, conf, ns, sidecar, expectations = CASES[name]
    pod = cni_pod(tb, f"p{n}", annotations=annotations, conf=weir_conf(**conf), k8s_namespace=ns)
    sc = {"outbound_port": 15001, "inbound_port": 15006, "uid": 1337, "gid": 1337, "transparent": False,
          "dns_port": None, **sidecar}
    tb.sidecar(pod, outbound_port=sc["outbound_port"], inbound_port=sc["inbound_port"], uid=sc["uid"],
               gid=sc["gid"], transparent=sc["transparent"])
    if sc["dns_port"]:
        tb.dns_serve(pod, [sc["dns_port"]], uid=sc["uid"], gid=sc["gid"], answers=[STUB_ANSWER])
    tb.serve(pod, APP_PORTS, uid=APP_UID, gid=APP_UID)
    for exp in expectations:
        kind = exp[0]
        if kind in (OUT, IN, SELF):
            _check_tcp(tb, pod, peers, sc, exp)
        elif kind == DNS:
            _check_dns(tb, pod, peers, sc, exp)
        elif kind == RULES:
            _, argv, regex, present = exp
            if argv[0] == "weir-table":
                text, regex = weir_table_text(tb, pod, argv[1], argv[2]), regex[backend_in_use()]
                argv = [f"weir's {argv[1]} rules (IPv{argv[2]}, {backend_in_use()})"]
            else:
                text = tb.exec(pod, argv, check=True).stdout
            found = re.search(regex, text, re.M) is not None
            check(found == present, f"`{' '.join(argv)}` in {pod.name} {'lacks' if present else 'has'} "
                                    f"/{regex}/:\n{text}")
        elif kind == INVALID:
            _, peer_index, port = exp
            peer, count = peers[peer_index], 3
            before = _invalid_drops(tb, pod)
            cp = tb.exec(peer, [sys.executable, "-c", SEND_INVALID, peer.ip4, pod.ip4, str(port), str(count)])
            check(cp.returncode == 0, f"sending SYN+FIN from {peer.name} failed: {cp.stderr}")
            after = _invalid_drops(tb, pod)
            check(after - before >= count, f"{count} SYN+FIN segments {peer.name} -> {pod.addr(port)}: weir's "
                                           f"INVALID DROP rule counted {after - before}")
        elif kind == DEL:
            # weir-cni's DEL alone: the whole chain's would take eth0 away too.
            call = call_weir(tb, "DEL", pod, weir_stdin(pod, weir_conf(**conf), annotations=annotations))
            check(call.ok, f"weir-cni DEL of pod {pod.name} failed: {call}")
        else:
            raise AssertionError(f"unknown expectation {exp}")
    tb.remove_pod(pod)


def test_selection_and_overrides():
    failures = []
    with Testbed(role="cni") as tb:
        peers = [tb.add_pod("peer0"), tb.add_pod("peer1")]
        check([p.ip4 for p in peers] == ["198.18.0.10", "198.18.0.11"], f"peer addresses {peers}")
        for p, answer in zip(peers, PEER_ANSWERS):
            tb.serve(p, PEER_PORTS)
            tb.dns_serve(p, [53], answers=[answer])
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
