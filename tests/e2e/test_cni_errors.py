#!/usr/bin/env python3
"""weir-cni on bad input: each case gives the right CNI error code, a message
naming the problem, exactly one JSON document on stdout, and leaves the pod's
namespace exactly as it was (a captured pod keeps its rules, untouched).
Needs root; exits 77 (skipped) otherwise."""

from __future__ import annotations

import fcntl
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cni import (ENABLED, Testbed, call_weir, check, check_error, cni_pod, ns_state,  # noqa: E402
                      require_binaries, run_tests, weir_bin, weir_conf, weir_env, weir_lines, weir_stdin)

ISTIO = "traffic.sidecar.istio.io/"


def _cases(pod, tb):
    """(name, command, stdin, env overrides, code, needles)."""
    good = weir_stdin(pod, annotations=ENABLED)

    def with_(**keys):
        d = dict(good)
        d.update(keys)
        return d

    def annotated(key, value):
        return weir_stdin(pod, annotations={**ENABLED, key: value})

    not_netns = os.path.join(tb.tmp, "not-a-netns")
    open(not_netns, "w").close()
    no_prev = dict(good)
    no_prev.pop("prevResult")
    big = with_(padding="x" * (1 << 20))
    return [
        ("invalid JSON", "ADD", '{"cniVersion": "1.0.0", "type": "weir-cni",', {}, 6, ["JSON"]),
        ("not an object", "ADD", "[]", {}, 6, ["object"]),
        ("excludeNamespaces wrong type", "ADD", with_(excludeNamespaces="kube-system"), {}, 7, ["excludeNamespaces"]),
        ("captureWithoutAnnotations wrong type", "ADD", with_(captureWithoutAnnotations="yes"), {}, 7,
         ["captureWithoutAnnotations"]),
        ("capture wrong type", "ADD", with_(capture={"outboundPort": "x"}), {}, 7, ["outboundPort"]),
        ("capture unknown key", "ADD", with_(capture={"outbondPort": 15001}), {}, 7, ["outbondPort"]),
        ("capture bad value", "ADD", with_(capture={"inboundPort": 70000}), {}, 7, ["inboundPort"]),
        ("annotations wrong type", "ADD", with_(runtimeConfig={"io.kubernetes.cri.pod-annotations": {"a": 1}}), {},
         7, ["annotation a"]),
        ("unsupported cniVersion 0.2.0", "ADD", with_(cniVersion="0.2.0"), {}, 1, ["0.2.0"]),
        ("unsupported cniVersion 2.0.0", "ADD", with_(cniVersion="2.0.0"), {}, 1, ["2.0.0"]),
        ("missing cniVersion", "ADD", {k: v for k, v in good.items() if k != "cniVersion"}, {}, 1, ["cniVersion"]),
        ("missing prevResult", "ADD", no_prev, {}, 7, ["prevResult"]),
        ("missing CNI_NETNS", "ADD", good, {"CNI_NETNS": None}, 4, ["CNI_NETNS"]),
        ("missing CNI_CONTAINERID", "ADD", good, {"CNI_CONTAINERID": None}, 4, ["CNI_CONTAINERID"]),
        ("missing CNI_IFNAME", "ADD", good, {"CNI_IFNAME": None}, 4, ["CNI_IFNAME"]),
        ("unknown CNI_COMMAND", "FROB", good, {}, 4, ["FROB"]),
        ("netns is a plain file", "ADD", good, {"CNI_NETNS": not_netns}, 4, [not_netns]),
        ("netns is another kind of namespace", "ADD", good, {"CNI_NETNS": "/proc/self/ns/uts"}, 4,
         ["/proc/self/ns/uts"]),
        ("netns does not exist", "ADD", good, {"CNI_NETNS": "/var/run/netns/wt-cni-none"}, 100,
         ["/var/run/netns/wt-cni-none"]),
        ("bad port annotation", "ADD", annotated(ISTIO + "excludeOutboundPorts", "8080,70000"), {}, 7,
         [ISTIO + "excludeOutboundPorts", "70000"]),
        ("bad port range annotation", "ADD", annotated("weir.dev/excludeInboundPorts", "9000-8000"), {}, 7,
         ["weir.dev/excludeInboundPorts"]),
        ("bad CIDR annotation", "ADD", annotated(ISTIO + "includeOutboundIPRanges", "198.18.0.0/33"), {}, 7,
         [ISTIO + "includeOutboundIPRanges"]),
        ("bad CIDR annotation (not an address)", "ADD", annotated(ISTIO + "excludeOutboundIPRanges", "10.0.0.0/8,nope"),
         {}, 7, [ISTIO + "excludeOutboundIPRanges", "nope"]),
        ("bad interface annotation", "ADD", annotated(ISTIO + "excludeInterfaces", "this-name-is-too-long"), {}, 7,
         [ISTIO + "excludeInterfaces"]),
        ("unknown weir annotation", "ADD", annotated("weir.dev/outbondPort", "1"), {}, 7, ["weir.dev/outbondPort"]),
        ("bad weir.dev/capture", "ADD", annotated("weir.dev/capture", "yes"), {}, 7, ["weir.dev/capture"]),
        ("1 MiB config", "ADD", big, {}, 7, ["bytes"]),
        ("CHECK needs 0.4.0", "CHECK", with_(cniVersion="0.3.1"), {}, 1, ["CHECK"]),
        ("CHECK without prevResult", "CHECK", no_prev, {}, 7, ["prevResult"]),
        ("DEL with bad JSON", "DEL", "{", {}, 6, ["JSON"]),
        ("DEL with a JSON array", "DEL", "[]", {}, 6, ["object"]),
        ("DEL with unsupported cniVersion", "DEL", with_(cniVersion="2.0.0"), {}, 1, ["2.0.0"]),
        ("DEL without cniVersion", "DEL", {k: v for k, v in good.items() if k != "cniVersion"}, {}, 1,
         ["cniVersion"]),
        ("DEL without CNI_CONTAINERID", "DEL", good, {"CNI_CONTAINERID": None}, 4, ["CNI_CONTAINERID"]),
        ("empty CNI_COMMAND", "", good, {}, 4, ["CNI_COMMAND"]),
    ]


def test_bad_input_leaves_namespace_unchanged():
    with Testbed(role="cni") as tb:
        # A captured pod with a non-default spec: a bad call must neither remove
        # nor replace its rules.
        pod = cni_pod(tb, "app", conf=weir_conf(capture={"excludeOutboundPorts": [5432]}))
        before = ns_state(tb, pod)
        check("WEIR_OUTPUT" in before, "pod not captured to begin with")
        failures = []
        for name, command, stdin, env, code, needles in _cases(pod, tb):
            call = call_weir(tb, command, pod, stdin, **env)
            try:
                check_error(call, code, *needles)
                check(ns_state(tb, pod) == before, "the pod's rules changed")
            except AssertionError as e:
                failures.append(f"{name}: {e}")
        check(not failures, "\n".join(failures))


def test_del_is_lenient():
    """DEL needs only cniVersion: a config problem only ADD cares about must not
    fail it (libcni stops a chain's DEL at the first failure, so the interface
    plugin's DEL would never run and the pod's IP would leak). Each DEL really
    removes weir's rules from a captured pod, and warns about the problem."""
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        good = weir_stdin(pod, annotations=ENABLED)

        def with_(**keys):
            d = dict(good)
            d.update(keys)
            return d

        cases = [
            ("bad capture key", with_(capture={"outbondPort": 15001}), {}, "outbondPort"),
            ("bad capture value", with_(capture={"inboundPort": 70000}), {}, "inboundPort"),
            ("the reserved kubernetes key", with_(kubernetes={"kubeconfig": "/etc/k"}), {}, "kubernetes"),
            ("bad logLevel", with_(logLevel="loud"), {}, "logLevel"),
            ("non-string annotation", with_(runtimeConfig={"io.kubernetes.cri.pod-annotations": {"a": 1}}), {},
             "annotation a"),
            ("prevResult not an object", with_(prevResult="x"), {}, "prevResult"),
            ("1 MiB config", with_(padding="x" * (1 << 20)), {}, "bytes"),
            ("bad config and no CNI_IFNAME, CNI_NETNS empty", with_(kubernetes={}), {"CNI_NETNS": "",
                                                                                      "CNI_IFNAME": None}, None),
        ]
        failures = []
        for name, stdin, env, needle in cases:
            try:
                add = call_weir(tb, "ADD", pod, good)
                check(add.ok and weir_lines(tb, pod), f"re-ADD failed: {add}")
                call = call_weir(tb, "DEL", pod, stdin, **env)
                check(call.ok, f"DEL failed: {call}")
                check(call.json == {"cniVersion": "1.0.0"}, f"DEL answer: {call.json}")
                if needle is None:
                    continue
                check(weir_lines(tb, pod) == [], f"weir rules left after DEL: {weir_lines(tb, pod)}")
                check(needle in call.stderr and " W " in call.stderr, f"no warning naming {needle!r}: {call.stderr}")
            except AssertionError as e:
                failures.append(f"{name}: {e}")
        # GC is as lenient.
        gc = tb.cni_invoke("weir-cni", "GC", dict(weir_stdin(pod, version="1.1.0", prev=False),
                                                  capture={"outbondPort": 1}, kubernetes={}))
        if not gc.ok:
            failures.append(f"GC with a bad config: {gc}")
        check(not failures, "\n".join(failures))


def test_missing_privilege_says_so():
    """ADD without the privilege to enter the pod's namespace (setns: EPERM) is
    a missing permission (106), not rules the kernel refused (101)."""
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        before = ns_state(tb, pod)
        env = {"CNI_COMMAND": "ADD", "PATH": "/usr/bin:/bin", "WEIR_TEST_UNAVAILABLE_BACKEND": os.environ.get("WEIR_TEST_UNAVAILABLE_BACKEND", ""), **weir_env(pod)}
        stdin = json.dumps(weir_stdin(pod, annotations=ENABLED)).encode()
        cp = tb.exec(tb.node, ["env", "-i"] + [f"{k}={v}" for k, v in env.items()] +
                     ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", weir_bin()], input=stdin)
        doc = json.loads(cp.stdout)
        check(cp.returncode != 0 and doc.get("code") == 106, f"ADD as nobody: rc {cp.returncode} {doc}")
        check("permission" in doc.get("details", ""), f"error does not say permission is missing: {doc}")
        check(ns_state(tb, pod) == before, "the pod's rules changed")


def test_stdout_is_one_document_with_logs_on_stderr():
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app", conf=weir_conf(logLevel="debug"))
        call = call_weir(tb, "ADD", pod, weir_stdin(pod, conf=weir_conf(logLevel="debug"), annotations=ENABLED))
        check(call.ok and "ADD" in call.stderr, f"expected success with the log line on stderr: {call}")
        check(call.stdout.count("\n") == 1, f"stdout has more than one line: {call.stdout!r}")
        # The log line of a call without CNI_COMMAND names the command "-".
        empty = call_weir(tb, "", pod, weir_stdin(pod))
        check_error(empty, 4, "CNI_COMMAND")
        check(" - container=" in empty.stderr, f"log line of an empty CNI_COMMAND: {empty.stderr!r}")


def test_lock_held_gives_try_again():
    """Another weir writer holding the namespace's lock: ADD gives up after its
    timeout with code 11 (try again later) and changes nothing."""
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        before = ns_state(tb, pod)
        # weir's lock is flock(2) on the namespace itself, whatever path reaches it.
        with open(pod.path, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            call = call_weir(tb, "ADD", pod, weir_stdin(pod, annotations={**ENABLED, ISTIO + "excludeOutboundPorts": "1"}))
            fcntl.flock(lock, fcntl.LOCK_UN)
        check_error(call, 11, "lock")
        check(ns_state(tb, pod) == before, "the pod's rules changed")
        again = call_weir(tb, "ADD", pod, weir_stdin(pod, annotations=ENABLED))
        check(again.ok, f"ADD after the lock was released failed: {again}")


TESTS = [test_bad_input_leaves_namespace_unchanged, test_del_is_lenient, test_missing_privilege_says_so,
         test_stdout_is_one_document_with_logs_on_stderr, test_lock_held_gives_try_again]

if __name__ == "__main__":
    require_binaries()
    run_tests(TESTS)
