#!/usr/bin/env python3
"""End-to-end tests of weir-cni driven as a runtime drives it: the testbed runs
the chain (bridge + host-local, then weir-cni) and real TCP proves capture.

Also the shared helpers of the other test_cni_*.py files (imported from here).
The rules are looked at in the packet filter this run's auto picks
(testbed.backend_in_use()); "no weir rules" means in either.
Needs root; exits 77 (skipped) otherwise."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.environ.get("WEIR_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                                "netns-testbed"))
from testbed import Testbed, TestbedError, backend_in_use, bin_dir, require_root  # noqa: E402

ANNOTATIONS_CAP = "io.kubernetes.cri.pod-annotations"
ENABLED = {"weir.dev/capture": "enabled"}
CHAIN_VERSIONS = ["0.3.1", "0.4.0", "1.0.0"]


# ------------------------------------------------------------------ helpers

def weir_conf(**keys) -> dict:
    """weir-cni's conflist entry, as an operator writes it."""
    conf = {"type": "weir-cni", "capabilities": {ANNOTATIONS_CAP: True}}
    conf.update(keys)
    return conf


def weir_bin() -> str:
    return os.path.join(bin_dir(), "weir-cni")


def require_binaries() -> None:
    require_root()
    for b in ("weir-cni", "weir-probe"):
        p = os.path.join(bin_dir(), b)
        if not os.access(p, os.X_OK):
            print(f"FAIL: {p} is missing: build the weir-cni and weir-probe targets", file=sys.stderr)
            sys.exit(1)
    for p in ("bridge", "host-local", "loopback"):
        if not os.access(f"/usr/lib/cni/{p}", os.X_OK):
            print(f"SKIP: /usr/lib/cni/{p} missing (install containernetworking-plugins)", file=sys.stderr)
            sys.exit(77)


def check(cond, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def ns_state(tb: Testbed, pod) -> str:
    """Every rule of both families in a pod, in both packet filters (legacy
    xtables and the whole nft ruleset), counters zeroed: to prove "unchanged"."""
    nft = tb.exec(pod, ["nft", "list", "ruleset"]).stdout
    return tb.weir_rules(pod, "iptables") + "\n" + re.sub(r"counter packets \d+ bytes \d+", "counter", nft)


def weir_lines(tb: Testbed, pod) -> list[str]:
    """What belongs to weir in a pod, in either backend: the WEIR_ lines of
    iptables-legacy-save/ip6tables-legacy-save and the lines of table inet weir."""
    return [line for b in ("iptables", "nftables") for line in tb.weir_leftovers(pod, b).splitlines()]


def outbound_captured_in_backend(tb: Testbed, pod) -> bool:
    """weir's jump to WEIR_OUTPUT is in the backend this run's auto picks, and
    nothing of weir's is in the other."""
    if backend_in_use() == "iptables":
        return (any("-j WEIR_OUTPUT" in line for line in tb.weir_leftovers(pod, "iptables").splitlines())
                and tb.weir_leftovers(pod, "nftables") == "")
    return "jump ip_nat_WEIR_OUTPUT" in tb.weir_rules(pod, "nftables") and tb.weir_leftovers(pod, "iptables") == ""


def weir_calls(calls) -> list:
    return [c for c in calls if c.plugin == "weir-cni"]


def check_one_document(call) -> None:
    """stdout holds exactly one JSON document, whatever happened."""
    try:
        json.loads(call.stdout)
    except ValueError as e:
        raise AssertionError(f"weir-cni stdout is not one JSON document ({e}): {call.stdout!r}")


def check_error(call, code: int, *needles: str) -> None:
    """The call failed with `code`, and its message names every needle."""
    check_one_document(call)
    check(call.returncode != 0, f"expected failure with code {code}, got success: {call}")
    doc = call.json or {}
    check(doc.get("code") == code, f"expected code {code}, got {doc.get('code')}: {call}")
    check(set(doc) >= {"cniVersion", "code", "msg", "details"}, f"error document lacks keys: {doc}")
    text = doc.get("msg", "") + " " + doc.get("details", "")
    for n in needles:
        check(n in text, f"error message does not name {n!r}: {doc}")


def weir_env(pod, **overrides) -> dict:
    env = {"CNI_CONTAINERID": pod.container_id, "CNI_NETNS": pod.path, "CNI_IFNAME": pod.ifname,
           "CNI_ARGS": Testbed.containerd_cni_args(pod)}
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def weir_stdin(pod, conf: dict | None = None, version: str = "1.0.0", prev=True, annotations=None) -> dict:
    """The stdin a runtime gives weir-cni for this pod (prevResult = the pod's cached result)."""
    d = dict(conf or weir_conf())
    d.update({"name": "weir-testbed", "cniVersion": version})
    if prev and pod.cni_result is not None:
        d["prevResult"] = pod.cni_result
    if annotations is not None:
        d["runtimeConfig"] = {ANNOTATIONS_CAP: annotations}
    return d


def call_weir(tb: Testbed, command: str, pod, stdin, **env_overrides):
    """weir-cni alone, in the node namespace like every plugin of the chain."""
    call = tb.cni_invoke("weir-cni", command, stdin, env=weir_env(pod, **env_overrides))
    check_one_document(call)
    return call


def cni_pod(tb: Testbed, name: str, *, version="1.0.0", annotations=ENABLED, conf=None, **kw):
    """A pod attached through loopback, bridge+host-local and weir-cni; every call must succeed."""
    pod = tb.add_pod_cni(name, [tb.bridge_conf(), conf or weir_conf()], cni_version=version,
                         annotations=annotations, check=False, **kw)
    for c in pod.cni_calls:
        if c.plugin == "weir-cni":
            check_one_document(c)
    check(all(c.ok for c in pod.cni_calls), f"ADD of pod {name} failed: {pod.cni_calls}")
    return pod


def connect(tb: Testbed, frm, to: str, *, uid=None) -> dict:
    r = tb.connect(frm, to, uid=uid)
    check("error" not in r, f"connection {frm.name} -> {to} (uid {uid}) failed: {r}")
    return r


def expect_captured(tb, frm, to: str, proxy_port: int, *, uid=None) -> None:
    """The connection lands on the proxy port and SO_ORIGINAL_DST is where it was going."""
    r = connect(tb, frm, to, uid=uid)
    check(r["landed"] == proxy_port and r["orig_dst"] == to,
          f"{frm.name} -> {to} (uid {uid}): expected to land on {proxy_port} with original destination {to}, got {r}")


def expect_direct(tb, frm, to: str, *, uid=None) -> None:
    """The connection reaches the server it dialed, not the proxy."""
    r = connect(tb, frm, to, uid=uid)
    port = int(to.rsplit(":", 1)[1])
    check(r["landed"] == port and r["orig_dst"] is None,
          f"{frm.name} -> {to} (uid {uid}): expected to go straight to port {port}, got {r}")


def run_tests(tests) -> None:
    """Runs each test function, reports, exits 1 when any failed."""
    only = os.environ.get("WEIR_TEST_ONLY")
    failed = []
    for t in tests:
        if only and only not in t.__name__:
            continue
        t0 = time.monotonic()
        try:
            t()
            print(f"PASS {t.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
        except (AssertionError, TestbedError, subprocess.SubprocessError) as e:
            failed.append(t.__name__)
            print(f"FAIL {t.__name__}: {e}", flush=True)
            traceback.print_exc()
    print(f"{len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""), flush=True)
    sys.exit(1 if failed else 0)


# ------------------------------------------------------------------ tests

def test_version():
    with Testbed(role="cni") as tb:
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]:
            call = tb.cni_invoke("weir-cni", "VERSION", {"cniVersion": v},
                                 env={"CNI_CONTAINERID": "/dummy", "CNI_NETNS": "/dummy", "CNI_IFNAME": "/dummy"})
            check(call.ok, f"VERSION failed: {call}")
            check(call.json == {"cniVersion": v, "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]},
                  f"VERSION answer: {call.json}")
        # A version weir does not speak, or none: answered in the newest it does.
        for stdin in ({"cniVersion": "2.0.0"}, {"cniVersion": "0.2.0"}, {}, ""):
            call = tb.cni_invoke("weir-cni", "VERSION", stdin, env={})
            check(call.ok and call.json.get("cniVersion") == "1.1.0", f"VERSION for {stdin!r}: {call}")


def _lifecycle(version: str):
    with Testbed(role="cni") as tb:
        peer = tb.add_pod("peer")
        tb.serve(peer, [8080])
        pod = cni_pod(tb, "app", version=version)
        bridge_out, weir_out = pod.cni_calls[-2].json, pod.cni_calls[-1].json
        # ADD passes the previous result through, in the config's version.
        check(weir_out == bridge_out, f"{version}: weir-cni changed prevResult:\n{bridge_out}\n{weir_out}")
        check(weir_out["cniVersion"] == version, f"result version {weir_out.get('cniVersion')}")
        for ip in weir_out["ips"]:
            check(("version" in ip) == (version != "1.0.0"), f"{version}: ips entry {ip}")
        check(outbound_captured_in_backend(tb, pod),
              f"no jump to WEIR_OUTPUT in {backend_in_use()} after ADD: {weir_lines(tb, pod)}")

        tb.sidecar(pod)
        tb.serve(pod, [8080], uid=1000, gid=1000)
        expect_captured(tb, peer, pod.addr(8080), 15006)        # inbound, IPv4
        expect_captured(tb, peer, pod.addr(8080, 6), 15006)     # inbound, IPv6
        expect_captured(tb, pod, peer.addr(8080), 15001, uid=1000)     # outbound from the app
        expect_captured(tb, pod, peer.addr(8080, 6), 15001, uid=1000)
        expect_direct(tb, pod, peer.addr(8080), uid=1337)       # the proxy's own traffic

        weir_only = [weir_conf()]
        if version == "0.3.1":
            calls = tb.cni_chain("CHECK", weir_only, pod=pod)
            check_error(calls[0], 1, "CHECK")
        else:
            calls = tb.cni_chain("CHECK", weir_only, pod=pod)
            check(calls[0].ok, f"CHECK after ADD failed: {calls[0]}")

        # weir's DEL alone first, so traffic can show the capture is gone...
        calls = tb.cni_chain("DEL", weir_only, pod=pod, cache=False)
        check(calls[0].ok, f"DEL failed: {calls}")
        check(weir_lines(tb, pod) == [], f"weir rules left after DEL: {weir_lines(tb, pod)}")
        expect_direct(tb, pod, peer.addr(8080), uid=1000)
        expect_direct(tb, peer, pod.addr(8080))
        # ...then the whole chain in reverse, as the runtime does.
        calls = tb.cni_chain("DEL", pod.cni_plugins, pod=pod)
        check(all(c.ok for c in calls), f"chain DEL failed: {calls}")
        # DEL again, then as containerd's RemovePodSandbox: no netns, no prevResult.
        again = call_weir(tb, "DEL", pod, weir_stdin(pod, version=version, prev=False))
        check(again.ok, f"second DEL failed: {again}")
        empty = call_weir(tb, "DEL", pod, weir_stdin(pod, version=version, prev=False), CNI_NETNS="")
        check(empty.ok, f"DEL with empty CNI_NETNS failed: {empty}")


def test_lifecycle_0_3_1():
    _lifecycle("0.3.1")


def test_lifecycle_0_4_0():
    _lifecycle("0.4.0")


def test_lifecycle_1_0_0():
    _lifecycle("1.0.0")


def test_check_detects_drift():
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        weir_only = [weir_conf()]

        def check_call():
            return tb.cni_chain("CHECK", weir_only, pod=pod)[0]

        check(check_call().ok, "CHECK right after ADD failed")
        # A rule deleted by hand.
        tb.delete_weir_rule(pod, 4, "WEIR_OUTPUT", 1)
        check_error(check_call(), 104, "WEIR_OUTPUT")
        # ADD again repairs it.
        add = tb.cni_chain("ADD", weir_only, pod=pod, cache=False, prev_result=pod.cni_result)[0]
        check(add.ok, f"re-ADD failed: {add}")
        check(check_call().ok, "CHECK after re-ADD failed")
        # weir's chain flushed (IPv6 this time).
        tb.flush_weir_chain(pod, 6, "WEIR_OUTPUT")
        check_error(check_call(), 104, "WEIR_OUTPUT", "ipv6")
        # A pod weir does not capture passes CHECK whatever its rules.
        other = cni_pod(tb, "other", annotations={})
        check(tb.cni_chain("CHECK", weir_only, pod=other)[0].ok, "CHECK of an uncaptured pod failed")


def test_del_after_netns_deleted():
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        tb.exec(tb.node, ["true"])  # the node namespace is usable
        subprocess.run(["ip", "netns", "delete", pod.netns], check=True, timeout=10)
        call = call_weir(tb, "DEL", pod, weir_stdin(pod))
        check(call.ok, f"DEL after the namespace was deleted failed: {call}")
        # A mount point left behind as a plain file reads as gone too.
        stale = os.path.join(tb.tmp, "stale-netns")
        open(stale, "w").close()
        call = call_weir(tb, "DEL", pod, weir_stdin(pod), CNI_NETNS=stale)
        check(call.ok, f"DEL with a stale netns file failed: {call}")
        tb.pods.pop(pod.name, None)


def test_uncaptured_pod_gets_no_rules():
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "plain", annotations={})
        check(weir_lines(tb, pod) == [], f"weir rules in an uncaptured pod: {weir_lines(tb, pod)}")
        check(pod.cni_calls[-1].json == pod.cni_calls[-2].json, "prevResult not passed through")


def test_refuses_own_netns():
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app", annotations={})
        before = ns_state(tb, tb.node)
        # weir-cni runs in the node namespace: both names of it are refused.
        for path in (f"/var/run/netns/{tb.node}", "/proc/self/ns/net"):
            call = call_weir(tb, "ADD", pod, weir_stdin(pod, annotations=ENABLED), CNI_NETNS=path)
            check_error(call, 102, path)
            call = call_weir(tb, "DEL", pod, weir_stdin(pod), CNI_NETNS=path)
            check_error(call, 102, path)
            # Refused before deciding: also for a pod weir would not capture.
            for command in ("ADD", "CHECK"):
                call = call_weir(tb, command, pod, weir_stdin(pod, annotations={}), CNI_NETNS=path)
                check_error(call, 102, path)
        check(ns_state(tb, tb.node) == before, "the plugin's own namespace changed")


def test_status_and_gc():
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        conf = weir_stdin(pod, version="1.1.0", prev=False)
        status = tb.cni_invoke("weir-cni", "STATUS", conf)
        check(status.ok and status.json == {"cniVersion": "1.1.0"}, f"STATUS failed: {status}")
        # Specs that need mangle (TPROXY, dropInvalid) and raw (DNS capture) too.
        for capture in ({"mode": "tproxy"}, {"dropInvalid": True}, {"dns": {"capture": True}},
                        {"ipFamilies": "ipv4"}, {"ipFamilies": "ipv6", "mode": "tproxy"}):
            st = tb.cni_invoke("weir-cni", "STATUS", weir_stdin(pod, conf=weir_conf(capture=capture), version="1.1.0",
                                                                 prev=False))
            check(st.ok and st.json == {"cniVersion": "1.1.0"}, f"STATUS with capture {capture} failed: {st}")
        gc_conf = dict(conf)
        gc_conf["cni.dev/valid-attachments"] = [{"containerID": "x", "ifname": "eth0"}]
        gc_conf["cni.dev/attachments"] = gc_conf["cni.dev/valid-attachments"]
        gc = tb.cni_invoke("weir-cni", "GC", gc_conf)
        check(gc.ok, f"GC failed: {gc}")
        check(weir_lines(tb, pod) != [], "GC removed a live pod's rules")
        # STATUS and GC need 1.1.0.
        old = tb.cni_invoke("weir-cni", "STATUS", weir_stdin(pod, version="1.0.0", prev=False))
        check_error(old, 1, "STATUS")
        check_error(tb.cni_invoke("weir-cni", "GC", weir_stdin(pod, version="0.4.0", prev=False)), 1, "GC")
        # Without the privilege to program rules, STATUS says the plugin is not available (50).
        cp = subprocess.run([weir_bin()], input=json.dumps(conf).encode(), capture_output=True, timeout=10,
                            env={"CNI_COMMAND": "STATUS", "PATH": "/usr/bin:/bin", "WEIR_TEST_UNAVAILABLE_BACKEND": os.environ.get("WEIR_TEST_UNAVAILABLE_BACKEND", "")}, user=65534, group=65534,
                            extra_groups=[])
        doc = json.loads(cp.stdout)
        check(cp.returncode != 0 and doc.get("code") == 50, f"STATUS as nobody: rc {cp.returncode} {doc}")


def test_log_file_and_log_line():
    with Testbed(role="cni") as tb:
        log = os.path.join(tb.tmp, "weir-cni.log")
        pod = cni_pod(tb, "app", conf=weir_conf(logFile=log))
        mode = stat.S_IMODE(os.stat(log).st_mode)
        check(mode == 0o600, f"log file mode {oct(mode)}, want 0600")
        with open(log) as f:
            lines = [line for line in f.read().splitlines() if " ADD " in line]
        check(len(lines) == 1, f"want one ADD log line, got {lines}")
        for needle in (pod.container_id, f"default/{pod.name}", "decision=captured", "weir.dev/capture", "duration="):
            check(needle in lines[0], f"log line lacks {needle!r}: {lines[0]}")
        check(pod.cni_calls[-1].stderr.strip() == "", f"stderr not empty with a logFile: {pod.cni_calls[-1].stderr}")


TESTS = [test_version, test_lifecycle_0_3_1, test_lifecycle_0_4_0, test_lifecycle_1_0_0, test_check_detects_drift,
         test_del_after_netns_deleted, test_uncaptured_pod_gets_no_rules, test_refuses_own_netns,
         test_status_and_gc, test_log_file_and_log_line]

if __name__ == "__main__":
    require_binaries()
    run_tests(TESTS)
