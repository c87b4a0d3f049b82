#!/usr/bin/env python3
"""weir-cni against hostile input (issue 12): no crash, no hang, no answer that
lies. Each case failed on the code before its fix: a deeply nested prevResult
crashed weir-cni (stack overflow), a prevResult address that is a number gave
105 after the rules were in, a 0.2.0-shaped prevResult was relabelled, an
oversized config was answered in another cniVersion than its own, a logFile
naming a FIFO blocked forever, and DEL out of file descriptors said success
and left the rules. Needs root; exits 77 (skipped) otherwise."""

from __future__ import annotations

import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cni import (ENABLED, Testbed, call_weir, check, check_error, cni_pod, ns_state,  # noqa: E402
                      require_binaries, run_tests, weir_bin, weir_conf, weir_env, weir_lines, weir_stdin)

DEPTH = 100_000  # 200 KB of brackets: inside the 512 KiB limit, far past any stack


def deep_prev(stdin: dict) -> str:
    """`stdin` as text, with a value nested DEPTH levels deep inside prevResult."""
    text = json.dumps(stdin)
    key = '"prevResult": {'
    at = text.index(key) + len(key)
    return text[:at] + '"deep": ' + "[" * DEPTH + "]" * DEPTH + ", " + text[at:]


def test_deep_prev_result_gets_an_answer():
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        before = ns_state(tb, pod)
        check(weir_lines(tb, pod), "pod not captured to begin with")
        text = deep_prev(weir_stdin(pod, annotations=ENABLED))
        check(len(text) < 512 * 1024, "the test's config is over the size limit")
        for command in ("ADD", "CHECK"):
            call = call_weir(tb, command, pod, text)
            check_error(call, 6, "nested deeper")
            check(call.json["cniVersion"] == "1.0.0", f"{command} answered in another version: {call.json}")
            check(ns_state(tb, pod) == before, f"{command} changed the pod's rules")
        # DEL does not need prevResult: it leaves the deep part unread and cleans.
        d = call_weir(tb, "DEL", pod, text)
        check(d.ok and d.json == {"cniVersion": "1.0.0"}, f"DEL of a deep config: {d}")
        check(weir_lines(tb, pod) == [], f"weir rules left after DEL: {weir_lines(tb, pod)}")
        check("nested deeper" in d.stderr, f"DEL did not warn about the deep config: {d.stderr}")


def test_malformed_prev_result_changes_nothing():
    """Validated before anything is installed: code 7 naming the field, and a
    pod that was not captured stays uncaptured."""
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "plain", annotations={})
        check(weir_lines(tb, pod) == [], "the uncaptured pod has weir rules")
        good = weir_stdin(pod, version="0.4.0", annotations=ENABLED)
        failures = []
        for name, mutate, field in [
            ("address is a number", lambda p: p["ips"][0].__setitem__("address", 5), "prevResult.ips[0].address"),
            ("address is null", lambda p: p["ips"][0].__setitem__("address", None), "prevResult.ips[0].address"),
            ("ips is a string", lambda p: p.__setitem__("ips", "198.18.0.5/24"), "prevResult.ips"),
        ]:
            stdin = copy.deepcopy(good)
            mutate(stdin["prevResult"])
            call = call_weir(tb, "ADD", pod, stdin)
            try:
                check_error(call, 7, field)
                check(weir_lines(tb, pod) == [], f"rules installed by a failed ADD: {weir_lines(tb, pod)}")
            except AssertionError as e:
                failures.append(f"{name}: {e}")
        # A 0.2.0-shaped result (ip4, no ips) in a 1.0.0 config is not relabelled.
        old = weir_stdin(pod, version="1.0.0", annotations=ENABLED)
        old["prevResult"] = {"cniVersion": "0.2.0", "ip4": {"ip": "198.18.0.5/24", "gateway": "198.18.0.1"},
                             "dns": {}}
        call = call_weir(tb, "ADD", pod, old)
        try:
            check_error(call, 7, "prevResult")
            check(weir_lines(tb, pod) == [], "rules installed by a failed ADD")
        except AssertionError as e:
            failures.append(f"0.2.0 prevResult: {e}")
        check(not failures, "\n".join(failures))


def test_oversized_config_is_answered_in_its_version():
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        for version in ("0.4.0", "1.0.0"):
            stdin = dict(weir_stdin(pod, version=version, annotations=ENABLED), padding="x" * (1 << 20))
            call = call_weir(tb, "ADD", pod, json.dumps({"cniVersion": version, **stdin}))
            check_error(call, 7, "bytes")
            check(call.json["cniVersion"] == version, f"answered in {call.json['cniVersion']}, config says {version}")
        # cniVersion after the cut: the newest version, and the answer says so.
        late = json.dumps({"padding": "x" * (1 << 20), **weir_stdin(pod, annotations=ENABLED)})
        call = call_weir(tb, "ADD", pod, late)
        check_error(call, 7, "bytes", "could not be read")
        check(call.json["cniVersion"] == "1.1.0", f"unreadable version answered in {call.json['cniVersion']}")


def test_log_file_fifo_does_not_block():
    """A log file never fails (or hangs) a pod: a FIFO is refused, with a warning on stderr."""
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        fifo = os.path.join(tb.tmp, "log.fifo")
        os.mkfifo(fifo, 0o600)
        conf = weir_conf(logFile=fifo)
        for command in ("ADD", "CHECK", "DEL"):
            call = tb.cni_invoke("weir-cni", command, weir_stdin(pod, conf=conf, annotations=ENABLED),
                                 env=weir_env(pod), timeout=10)
            check(call.returncode != -1, f"{command} with a FIFO logFile hung: {call}")
            check(call.ok, f"{command} with a FIFO logFile failed: {call}")
            check("FIFO" in call.stderr and "logging to stderr" in call.stderr,
                  f"{command}: no warning about the FIFO: {call.stderr!r}")


def test_del_out_of_file_descriptors_is_reported():
    """Only "does not exist" means the namespace is gone: DEL that cannot open
    CNI_NETNS for want of descriptors fails (the runtime retries) and leaves
    the rules for the retry to remove."""
    if os.environ.get("WEIR_SANITIZED") == "1":
        # UBSan's vptr check probes memory through a pipe(2): with no
        # descriptor left it cannot, and reports every virtual call it checks
        # as "invalid vptr" (seen at a shared_ptr's release). Not weir's bug.
        print("skip test_del_out_of_file_descriptors_is_reported: a sanitizer build "
              "(UBSan needs a free descriptor for its vptr check); the normal build runs it", flush=True)
        return
    with Testbed(role="cni") as tb:
        pod = cni_pod(tb, "app")
        before = weir_lines(tb, pod)
        check(before, "pod not captured to begin with")
        env = {"CNI_COMMAND": "DEL", "PATH": "/usr/bin:/bin", "WEIR_TEST_UNAVAILABLE_BACKEND": os.environ.get("WEIR_TEST_UNAVAILABLE_BACKEND", ""), **weir_env(pod)}
        stdin = json.dumps(weir_stdin(pod, annotations=ENABLED)).encode()
        # Descriptors 0-3: one for the dynamic loader (it closes each library
        # after mapping it), then one for CNI_NETNS; the next open(2) on the
        # way to the namespace fails with EMFILE.
        cp = tb.exec(tb.node, ["env", "-i"] + [f"{k}={v}" for k, v in env.items()] +
                     ["prlimit", "--nofile=4:4", weir_bin()], input=stdin)
        check(cp.stdout.strip(), f"no answer from weir-cni: rc {cp.returncode} {cp.stderr!r}")
        doc = json.loads(cp.stdout)
        check(cp.returncode != 0 and doc.get("code") not in (None, 0), f"DEL out of descriptors: rc {cp.returncode} {doc}")
        check("Too many open files" in doc.get("msg", "") + doc.get("details", ""), f"error does not name EMFILE: {doc}")
        check(weir_lines(tb, pod) == before, "the pod's rules changed")
        again = call_weir(tb, "DEL", pod, weir_stdin(pod, annotations=ENABLED))
        check(again.ok and weir_lines(tb, pod) == [], f"DEL with descriptors: {again}")


TESTS = [test_deep_prev_result_gets_an_answer, test_malformed_prev_result_changes_nothing,
         test_oversized_config_is_answered_in_its_version, test_log_file_fifo_does_not_block,
         test_del_out_of_file_descriptors_is_reported]

if __name__ == "__main__":
    require_binaries()
    run_tests(TESTS)
