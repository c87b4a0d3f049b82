#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

The seeds are small, meaningful inputs in each target's input format (see the
comment at the top of each fuzz/<target>_fuzz.cc): the example CNI config
(examples/cni/), the configs and command lines the e2e tests use
(tests/e2e/test_cni*.py, tests/e2e/test_init.py, init/README.md), and the
iptables-save text `weir plan` prints for a few specs (pure: it touches no
kernel state).

    fuzz/make_seeds.py [--weir build/bin/weir]

Run it again after changing a format or adding a case; commit the result."""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(SRC, "fuzz", "corpus")
ANNOTATIONS_CAP = "io.kubernetes.cri.pod-annotations"
ISTIO = "traffic.sidecar.istio.io/"
ENABLED = {"weir.dev/capture": "enabled"}


def write(target: str, name: str, data: bytes | str) -> None:
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# ------------------------------------------------------------------ CNI

def example_weir_entry() -> dict:
    """weir-cni's entry of examples/cni/10-bridge-weir.conflist, as the runtime passes it."""
    with open(os.path.join(SRC, "examples", "cni", "10-bridge-weir.conflist")) as f:
        conflist = json.load(f)
    entry = next(p for p in conflist["plugins"] if p["type"] == "weir-cni")
    entry = copy.deepcopy(entry)
    entry["cniVersion"] = conflist["cniVersion"]
    entry["name"] = conflist["name"]
    return entry


def prev_result(version: str) -> dict:
    """What bridge + host-local return for a pod (the testbed's chain)."""
    ips = [{"address": "198.18.0.100/24", "gateway": "198.18.0.1", "interface": 2},
           {"address": "fd00::100/64", "gateway": "fd00::1", "interface": 2}]
    if version < "1.0.0":
        ips[0]["version"] = "4"
        ips[1]["version"] = "6"
    return {"cniVersion": version,
            "interfaces": [{"name": "cni0", "mac": "0a:58:c6:12:00:01"},
                           {"name": "veth1234", "mac": "6e:1c:7e:a8:99:01"},
                           {"name": "eth0", "mac": "0a:58:c6:12:00:64", "sandbox": "/var/run/netns/pod"}],
            "ips": ips,
            "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}],
            "dns": {}}


def cni_input(command: str, stdin: dict | str, *, netns="/var/run/netns/pod", args=None, env=None) -> str:
    e = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
         "CNI_ARGS": args if args is not None else
         "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=app;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=1234",
         "CNI_PATH": "/opt/cni/bin"}
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    text = stdin if isinstance(stdin, str) else json.dumps(stdin, indent=1)
    return "".join(f"{k}={v}\n" for k, v in e.items()) + "\n" + text


def weir_stdin(version="1.0.0", annotations=None, prev=True, **keys) -> dict:
    d = example_weir_entry()
    d["cniVersion"] = version
    d.update(keys)
    if prev:
        d["prevResult"] = prev_result(version)
    if annotations is not None:
        d["runtimeConfig"] = {ANNOTATIONS_CAP: annotations}
    return d


def cni_seeds() -> None:
    t = "cni_config"
    write(t, "add-example-enabled", cni_input("ADD", weir_stdin(annotations=ENABLED)))
    write(t, "add-example-plain-stdin", json.dumps(weir_stdin(annotations=ENABLED)))
    for v in ("0.3.0", "0.3.1", "0.4.0", "1.1.0"):
        write(t, f"add-{v}", cni_input("ADD", weir_stdin(version=v, annotations=ENABLED)))
    write(t, "check-0.4.0", cni_input("CHECK", weir_stdin(version="0.4.0", annotations=ENABLED)))
    write(t, "del-bad-capture-lenient", cni_input("DEL", weir_stdin(annotations=ENABLED, capture={"outbondPort": 1})))
    write(t, "del-empty-netns", cni_input("DEL", weir_stdin(), netns=""))
    write(t, "version", cni_input("VERSION", {"cniVersion": "0.4.0"}))
    write(t, "status-1.1.0", cni_input("STATUS", weir_stdin(version="1.1.0", prev=False)))
    write(t, "gc-1.1.0", cni_input("GC", weir_stdin(version="1.1.0", prev=False)))
    write(t, "add-no-prevresult", cni_input("ADD", weir_stdin(annotations=ENABLED, prev=False)))
    write(t, "add-missing-ifname", cni_input("ADD", weir_stdin(annotations=ENABLED), env={"CNI_IFNAME": None}))
    write(t, "add-invalid-json", cni_input("ADD", '{"cniVersion": "1.0.0", "type": "weir-cni",'))
    write(t, "add-kubernetes-reserved", cni_input("ADD", weir_stdin(annotations=ENABLED, kubernetes={"kubeconfig": "/etc/k"})))
    write(t, "add-prev-0.2.0-shape", cni_input("ADD", dict(weir_stdin(annotations=ENABLED, prev=False),
                                                          prevResult={"cniVersion": "0.2.0",
                                                                      "ip4": {"ip": "198.18.0.100/24"}})))
    write(t, "add-log-debug", cni_input("ADD", weir_stdin(annotations=ENABLED, logLevel="debug")))
    # Selection (tests/e2e/test_cni_annotations.py).
    istio_status = '{"initContainers":["istio-init"],"containers":["istio-proxy"]}'
    write(t, "sel-istio-status", cni_input("ADD", weir_stdin(annotations={"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'})))
    write(t, "sel-istio-init", cni_input("ADD", weir_stdin(annotations={"sidecar.istio.io/status": istio_status})))
    write(t, "sel-inject-false", cni_input("ADD", weir_stdin(annotations={"sidecar.istio.io/status": "{}",
                                                                          "sidecar.istio.io/inject": "False"})))
    write(t, "sel-kube-system", cni_input("ADD", weir_stdin(annotations=ENABLED),
                                          args="K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns"))
    write(t, "sel-without-annotations", cni_input("ADD", weir_stdin(captureWithoutAnnotations=True, excludeNamespaces=["shop"])))
    # Istio's annotations.
    write(t, "istio-annotations", cni_input("ADD", weir_stdin(annotations={
        **ENABLED,
        ISTIO + "excludeOutboundPorts": "8081,9000-9100",
        ISTIO + "excludeInboundPorts": "9090",
        ISTIO + "includeInboundPorts": "8080,8443",
        ISTIO + "includeOutboundIPRanges": "10.0.0.0/8,fd00::/8",
        ISTIO + "excludeOutboundIPRanges": "10.96.0.1/12,169.254.169.254/32",
        ISTIO + "includeOutboundPorts": "443",
        ISTIO + "kubevirtInterfaces": "vif0,vif1",
        ISTIO + "excludeInterfaces": "eth1"})))
    write(t, "istio-include-all", cni_input("ADD", weir_stdin(annotations={
        "sidecar.istio.io/status": "{}", ISTIO + "includeInboundPorts": "*", ISTIO + "includeOutboundIPRanges": "*"})))
    # weir.dev annotations.
    write(t, "weir-annotations", cni_input("ADD", weir_stdin(annotations={
        **ENABLED,
        "weir.dev/outboundPort": "16001", "weir.dev/inboundPort": "16006",
        "weir.dev/proxyUids": "1500", "weir.dev/excludeOutboundPorts": "5432",
        "weir.dev/excludeOutboundCidrs": "10.96.0.0/12", "weir.dev/ipFamilies": "dual",
        "weir.dev/dropInvalid": "true"})))
    write(t, "weir-tproxy", cni_input("ADD", weir_stdin(annotations={
        **ENABLED, "weir.dev/mode": "tproxy", "weir.dev/tproxyMark": "1400", "weir.dev/tproxyRouteTable": "140"})))
    write(t, "weir-dns", cni_input("ADD", weir_stdin(annotations={
        **ENABLED, "weir.dev/dns": '{"capture": true, "captureAll": false, "servers": ["198.18.0.10"], "port": 15054}'})))
    write(t, "weir-bad-annotation", cni_input("ADD", weir_stdin(annotations={**ENABLED, "weir.dev/excludeOutboundPorts": "70000"})))
    write(t, "capture-config", cni_input("ADD", weir_stdin(annotations=ENABLED, proxyGids=[1337], capture={
        "outboundPort": 15001, "inboundPort": 15006, "proxyUids": [1337, 1338], "proxyGids": [1337],
        "inboundPorts": ["8080", "9000-9100"], "excludeOutboundCidrs": ["10.96.0.0/12"],
        "kubeVirtInterfaces": ["vif0"], "ipFamilies": "dual", "mode": "redirect",
        "dns": {"capture": True, "captureAll": True, "port": 15053}, "dropInvalid": True})))


# ------------------------------------------------------------------ spec

SPECS = {
    "empty": {},
    "example": example_weir_entry()["capture"],
    "ipv6": {"ipFamilies": "ipv6", "excludeOutboundCidrs": ["fd00::/8"]},
    "tproxy": {"mode": "tproxy", "tproxyMark": 1400, "tproxyRouteTable": 140, "ipFamilies": "dual"},
    "ports": {"inboundPorts": [8080, "9000-9100"], "excludeInboundPorts": ["15020", 15021],
              "outboundPorts": ["8000-9999"], "excludeOutboundPorts": [9090], "inboundTunnelPort": 0},
    "cidrs": {"outboundCidrs": ["198.18.0.0/28", "fd00::/8"], "excludeOutboundCidrs": ["198.18.0.8/29"],
              "excludeInboundCidrs": ["198.18.0.10/32"]},
    "ids": {"proxyUids": [1500], "proxyGids": [1600, 1601]},
    "interfaces": {"excludeInterfaces": ["eth1"], "kubeVirtInterfaces": ["vif0", "vif+"]},
    "dns": {"dns": {"capture": True, "captureAll": False, "servers": ["198.18.0.10", "fd00::10"], "port": 15054}},
    "linkerd-like": {"outboundPort": 4140, "inboundPort": 4143, "proxyUids": [2102], "inboundTunnelPort": 0,
                     "excludeInboundPorts": [4190, 4191], "dropInvalid": True},
    "none": {"inboundPorts": [], "outboundCidrs": []},
    "bad-port": {"inboundPort": 70000},
    "bad-key": {"outbondPort": 15001},
    "bad-type": {"outboundPort": "x"},
}


def spec_seeds() -> None:
    for name, spec in SPECS.items():
        write("spec", name, json.dumps(spec, indent=1))


# --------------------------------------------------------- iptables-save

PLAN_FLAGS = {
    "default": [],
    "tproxy": ["--inbound-mode", "tproxy", "--tproxy-mark", "1500", "--tproxy-route-table", "150"],
    "dns": ["--redirect-dns", "--dns-servers", "198.18.0.10,fd00::10", "--dns-port", "15054"],
    "lists": ["--inbound-ports", "8080,9000-9100", "--outbound-ports", "1-100,200,300,400,500,600,700,800,900,1000",
              "--exclude-outbound-ports", "9090", "--exclude-outbound-cidrs", "10.96.0.0/12,fd00:96::/64",
              "--kube-virt-interfaces", "vif0", "--exclude-interfaces", "eth1", "--drop-invalid"],
}

FULL_DUMP = """# Generated by iptables-save v1.8.9 on Thu Nov 26 01:10:25 2026
*raw
:PREROUTING ACCEPT [10:600]
:OUTPUT ACCEPT [10:600]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [5:300]
:POSTROUTING ACCEPT [5:300]
:KUBE-SERVICES - [0:0]
:WEIR_OUTPUT - [0:0]
:WEIR_REDIRECT - [0:0]
[7:420] -A PREROUTING -m addrtype --dst-type LOCAL -j KUBE-SERVICES
[2:120] -A OUTPUT -p tcp -m comment --comment "weir: outbound capture" -j WEIR_OUTPUT
[0:0] -A OUTPUT -p icmp -j ACCEPT
[0:0] -A POSTROUTING -s 198.18.0.0/15 -j MASQUERADE
[0:0] -A KUBE-SERVICES -d 198.18.5.5/32 -p tcp -m tcp --dport 443 -j DNAT --to-destination 198.18.0.2:6443
[1:60] -A WEIR_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
[1:60] -A WEIR_OUTPUT -m owner --uid-owner 1337 -j RETURN
[0:0] -A WEIR_OUTPUT -j WEIR_REDIRECT
[0:0] -A WEIR_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
# Completed on Thu Nov 26 01:10:25 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -i eth0 -j ACCEPT
COMMIT
"""


def split_families(text: str) -> dict[str, str]:
    """`weir plan` output: '# weir: ipv4 rules ...' then '# weir: ipv6 rules ...'."""
    out: dict[str, list[str]] = {}
    fam = None
    for line in text.splitlines():
        if line.startswith("# weir: ipv4"):
            fam = "ipv4"
        elif line.startswith("# weir: ipv6"):
            fam = "ipv6"
        if fam:
            out.setdefault(fam, []).append(line)
    return {k: "\n".join(v) + "\n" for k, v in out.items()}


def iptables_save_seeds(weir: str) -> None:
    t = "iptables_save"
    # Option byte: bit 0 IPv6, bit 1 keep foreign chains.
    for name, flags in PLAN_FLAGS.items():
        cp = subprocess.run([weir, "plan", "--ip-families", "dual", *flags], capture_output=True, text=True, check=True)
        for fam, text in split_families(cp.stdout).items():
            opt = b"\x01" if fam == "ipv6" else b"\x00"
            write(t, f"plan-{name}-{fam}", opt + text.encode())
        if name == "default":
            write(t, "plan-default-ipv4-counters", b"\x00" + split_families(
                subprocess.run([weir, "plan", "--ip-families", "ipv4"], capture_output=True, text=True,
                               check=True).stdout)["ipv4"].replace("-A ", "[3:180] -A ").encode())
    write(t, "full-dump-weir-only", b"\x00" + FULL_DUMP.encode())
    write(t, "full-dump-everything", b"\x02" + FULL_DUMP.encode())
    write(t, "builtin-without-rules-everything", b"\x02*raw\n:OUTPUT\nCOMMIT")
    write(t, "weir-jump-undecodable", b"\x00*nat\n-A OUTPUT -p sctp -j WEIR_OUTPUT\nCOMMIT\n")
    write(t, "negations", b"\x00*mangle\n:WEIR_INBOUND - [0:0]\n"
                          b"-A PREROUTING -p tcp -j WEIR_INBOUND\n"
                          b"-A WEIR_INBOUND ! -s 198.18.0.0/15 ! -i eth0 -p tcp -m multiport ! --dports 22,80:90 "
                          b"-m conntrack ! --ctstate RELATED,ESTABLISHED -m mark ! --mark 0x539/0xffff "
                          b"-m connmark --mark 0x1 -j MARK --set-xmark 0x539/0xffffffff\n"
                          b"-A WEIR_INBOUND -m owner ! --gid-owner 7 -p udp -m udp ! --sport 53 -j CONNMARK --restore-mark\n"
                          b"-A WEIR_INBOUND -p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x539/0xffffffff\n"
                          b"COMMIT\n*raw\n-A OUTPUT -j WEIR_OUTPUT\n:WEIR_OUTPUT - [0:0]\n-A WEIR_OUTPUT -j CT --zone 5\nCOMMIT\n")


# ------------------------------------------------------------ command lines

ISTIO_INJECTOR = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*",
                  "-d", "15090,15021,15020", "--log_output_level=default:info"]
ISTIO_ARGS = {
    "injector": ISTIO_INJECTOR,
    "injector-dry-run-dual": ISTIO_INJECTOR + ["-n", "--dual-stack"],
    "cleanup-only": ["--cleanup-only"],
    "dual-stack": ["-i", "*", "-b", "*", "--dual-stack"],
    "netns": ["-i", "*", "--network-namespace", "/var/run/netns/pod"],
    "dns-all": ["-i", "*", "--redirect-dns", "--capture-all-dns"],
    "dns-resolv": ["-i", "*", "--redirect-dns"],
    "drop-invalid": ["-i", "*", "-b", "*", "--drop-invalid"],
    "tproxy": ["-i", "*", "-b", "*", "-m", "TPROXY", "--dual-stack", "-t", "1400", "-r", "140"],
    "kube-virt": ["-k", "vif0", "-i", "*", "-x", "2001:db8::/32", "--dual-stack"],
    "excludes": ["-i", "10.0.0.0/8", "-x", "10.96.0.0/12", "-q", "443,8443", "-o", "3306", "-c", "eth1",
                 "-e", "15009", "-g", "1338"],
    "validation": ISTIO_INJECTOR + ["--run-validation", "--skip-rule-apply", "--iptables-probe-port", "15002",
                                    "--probe-timeout", "2s"],
    "logging": ISTIO_INJECTOR + ["--log_as_json", "--force-apply", "--native-nftables", "--reconcile"],
    "bad-port": ["-p", "0"],
    "unknown-flag": ["--no-such-flag"],
}
ISTIO_ENV = {
    "env-dns": ["ISTIO_META_DNS_CAPTURE=true", "-i", "*"],
    "env-dual": ["ISTIO_AGENT_DUAL_STACK=true", "INVALID_DROP=true", "-i", "*", "-b", "*"],
    "env-direct": ["ISTIO_SERVICE_CIDR=*", "ISTIO_INBOUND_PORTS=*", "ISTIO_LOCAL_EXCLUDE_PORTS=15090,15021", "-u", "1337"],
}

LINKERD_CHART = ["--incoming-proxy-port", "4143", "--outgoing-proxy-port", "4140", "--proxy-uid", "2102",
                 "--inbound-ports-to-ignore", "4190,4191,4567,4568", "--outbound-ports-to-ignore", "4567,4568"]
LINKERD = {
    "chart": LINKERD_CHART,
    "chart-nft-json": LINKERD_CHART + ["--iptables-mode=nft", "-w", "--log-format", "json", "--log-level", "info"],
    "port-ranges": ["-p", "4143", "-o", "4140", "-u", "2102", "--outbound-ports-to-ignore", "3000-3400",
                    "--inbound-ports-to-ignore", "9000-9100"],
    "subnets": ["-p", "4143", "-o", "4140", "-u", "2102", "--subnets-to-ignore", "198.18.0.10/32,fd00::/8"],
    "redirect": ["-p", "4143", "-o", "4140", "-u", "2102", "--ports-to-redirect", "8080"],
    "no-ipv6": ["-p", "4143", "-o", "4140", "-u", "2102", "--ipv6=false"],
    "netns-simulate": ["-p", "4143", "-o", "4140", "-u", "2102", "-g", "2103", "--netns", "/var/run/netns/pod",
                       "--simulate", "--firewall-bin-path", "iptables-legacy",
                       "--firewall-save-bin-path", "iptables-legacy-save"],
    "missing-ports": ["-u", "2102"],
}

CAPTURE_FLAGS = {
    "inbound-ports": ["--inbound-ports", "8080"],
    "exclude-inbound-cidrs": ["--exclude-inbound-cidrs", "198.18.0.10/32"],
    "tunnel-port": ["--inbound-tunnel-port", "15009"],
    "outbound-cidrs": ["--outbound-cidrs", "198.18.0.0/28"],
    "outbound-ports": ["--outbound-ports", "8000-9999", "--exclude-outbound-ports", "9090"],
    "ids": ["--proxy-uid", "1500", "--proxy-gid", "1600"],
    "ports": ["--outbound-port", "4140", "--inbound-port", "4143"],
    "interfaces": ["--exclude-interfaces", "eth0", "--kube-virt-interfaces", "vif0"],
    "dns": ["--redirect-dns", "--dns-servers", "198.18.0.10", "--dns-port", "15054"],
    "dns-all": ["--redirect-dns", "--capture-all-dns", "--dns-port", "15054"],
    "tproxy": ["--inbound-mode", "tproxy", "--tproxy-mark", "0x5dc", "--tproxy-route-table", "150"],
    "families": ["--ip-families", "ipv6", "--drop-invalid"],
    "env": ["WEIR_INBOUND_PORTS=8080,9090", "WEIR_EXCLUDE_OUTBOUND_CIDRS=169.254.169.254/32", "--proxy-uid", "1337"],
    "bad-port": ["--inbound-ports", "70000"],
}


def nul(args: list[str]) -> bytes:
    return b"\0".join(a.encode() for a in args)


def command_line_seeds() -> None:
    # istio_flags: option byte (bit 0 no resolv.conf, bit 1 IPv6-only pod, bit 2 UID 1337), then argv.
    for name, args in {**ISTIO_ARGS, **ISTIO_ENV}.items():
        write("istio_flags", name, b"\x00" + nul(args))
    write("istio_flags", "dns-resolv-missing", b"\x01" + nul(ISTIO_ARGS["dns-resolv"]))
    write("istio_flags", "ipv6-only-pod", b"\x02" + nul(ISTIO_INJECTOR))
    write("istio_flags", "validation-as-1337", b"\x04" + nul(ISTIO_ARGS["validation"]))
    for name, args in LINKERD.items():
        write("linkerd_flags", name, nul(args))
    for name, args in CAPTURE_FLAGS.items():
        write("capture_flags", name, nul(args))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weir", default=os.path.join(SRC, "build", "bin", "weir"), help="the weir binary (for `weir plan`)")
    opts = ap.parse_args()
    if not os.access(opts.weir, os.X_OK):
        print(f"{opts.weir} is missing: build the weir target first", file=sys.stderr)
        return 1
    for t in ("cni_config", "spec", "iptables_save", "istio_flags", "linkerd_flags", "capture_flags"):
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    cni_seeds()
    spec_seeds()
    iptables_save_seeds(opts.weir)
    command_line_seeds()
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
