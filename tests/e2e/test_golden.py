#!/usr/bin/env python3
"""Golden outputs: the binaries' exact bytes for a matrix of inputs, recorded
from the code before the refactor of issue 9 ("no change of behaviour").

Three matrices under tests/golden/ (see its README):
  plan/  `weir plan` (text and -o json) for each spec; stdout, and exit code +
         stderr when the plan is refused
  cni/   the documents `weir-cni` prints on stdout, and its exit code
  init/  `weir-init` dry runs (native --dry-run, istio-iptables -n, proxy-init
         --simulate): stdout and exit code, in a network namespace of their own

Runs the binaries of WEIR_BIN_DIR (default build/bin) on every case and fails
with the case's name and a unified diff on any byte difference. Cases that need
root (weir-cni in namespaces this test creates) are skipped, and counted, when
not root; exit 77 only when nothing could run.

    test_golden.py                  compare (what ctest runs)
    test_golden.py --record BINDIR  rewrite the recorded outputs from BINDIR
    test_golden.py --only NAME      only the cases whose name contains NAME
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import FAILURES, SOURCE_DIR, check, finish, testbed  # noqa: E402

GOLDEN = os.path.join(SOURCE_DIR, "tests", "golden")
PREFIX = f"wt-golden-{os.getpid()}-"
# The namespace-state cases ("save") record the rules in the packet filter the
# run's auto picks: NN-name.rules under legacy iptables, NN-name.nft.rules under
# nftables (the other recordings do not depend on the backend).
BACKEND = testbed.backend_in_use()
RULES_SUFFIX = ".rules" if BACKEND == "iptables" else ".nft.rules"
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "WEIR_TEST_UNAVAILABLE_BACKEND": os.environ.get("WEIR_TEST_UNAVAILABLE_BACKEND", "")}
INPUT_SUFFIXES = (".spec.json", ".args.json", ".case.json")
DRY_RUN_FLAGS = ("--dry-run", "-n", "--simulate")
TIMEOUT = 30


class Skip(Exception):
    pass


def is_root() -> bool:
    return os.geteuid() == 0


def run(argv, *, cwd=None, env=None, stdin=b""):
    return subprocess.run(argv, cwd=cwd, env=env if env is not None else CLEAN_ENV, input=stdin,
                          capture_output=True, timeout=TIMEOUT)


def status_text(cp, *, with_stderr: bool) -> bytes:
    return f"exit {cp.returncode}\n".encode() + (cp.stderr if with_stderr else b"")


def normalize(data: bytes, subst: dict[str, str]) -> bytes:
    """Each actual value (temp dir, namespace path and name) back to its placeholder, longest first."""
    for placeholder, actual in sorted(subst.items(), key=lambda kv: -len(kv[1])):
        data = data.replace(actual.encode(), placeholder.encode())
    return data


def expand(value, subst: dict[str, str]):
    """Placeholders in a case's input (strings anywhere in a JSON value) to their actual values."""
    if isinstance(value, str):
        for placeholder, actual in subst.items():
            value = value.replace(placeholder, actual)
        return value
    if isinstance(value, list):
        return [expand(v, subst) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, subst) for k, v in value.items()}
    return value


# ------------------------------------------------------------------ plan

def plan_case(bin_dir, folder, base):
    """`weir plan` of one spec file (or argv file), text and JSON. stdout as is;
    `.stderr` (exit code and stderr) only when the run is not a clean exit 0."""
    spec = base + ".spec.json"
    if os.path.exists(os.path.join(folder, spec)):
        args = ["--config", spec]
    else:
        with open(os.path.join(folder, base + ".args.json")) as f:
            args = json.load(f)
    out = {}
    for fmt, ext in (("text", ".txt"), ("json", ".json")):
        cp = run([os.path.join(bin_dir, "weir"), "plan"] + args + ["--output", fmt], cwd=folder)
        out[base + ext] = cp.stdout
        if cp.returncode != 0 or cp.stderr:
            out[base + ext + ".stderr"] = status_text(cp, with_stderr=True)
    return out


# ------------------------------------------------------------------ cni

class Namespaces:
    """The network namespaces this test creates (root only): a node namespace
    where weir-cni runs, as a runtime runs it, and a fresh pod namespace per case."""

    def __init__(self):
        self.names = []

    def add(self, tag: str) -> str:
        name = f"{PREFIX}{tag}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=TIMEOUT)
        self.names.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True,
                       timeout=TIMEOUT)
        return name

    def delete(self, name: str) -> None:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=TIMEOUT)
        self.names.remove(name)

    def close(self) -> None:
        for name in list(self.names):
            self.delete(name)


def save_text(text: str) -> str:
    """iptables-save output without its comment lines, counters zeroed and the
    tables sorted by name: the kernel lists them in the order they were first
    used in the namespace, which says nothing about the rules."""
    tables, current = [], None
    for line in text.splitlines(keepends=True):
        if line.startswith("#"):
            continue
        if line.startswith("*") or current is None:
            current = []
            tables.append(current)
        current.append(re.sub(r"\[\d+:\d+\]", "[0:0]", line))
    return "".join("".join(t) for t in sorted(tables, key=lambda t: t[0]))


def other_backends_file(name: str) -> bool:
    """A recording of the other backend's namespace state (not this run's)."""
    if BACKEND == "iptables":
        return name.endswith(".nft.rules")
    return name.endswith(".rules") and not name.endswith(".nft.rules")


def pod_state(pod: str) -> bytes:
    """What ADD left in the pod's namespace, read with the system's tools: under
    nftables first `nft list ruleset` (counters zeroed), then both families'
    iptables-save (see save_text), policy rules, routes and lo's addresses."""
    out = []
    if BACKEND == "nftables":
        cp = subprocess.run(["ip", "netns", "exec", pod, "nft", "list", "ruleset"], capture_output=True,
                            timeout=TIMEOUT, check=True)
        text = re.sub(r"counter packets \d+ bytes \d+", "counter packets 0 bytes 0", cp.stdout.decode())
        out.append(f"$ nft list ruleset\n{text}")
    for argv in (["iptables-legacy-save"], ["ip6tables-legacy-save"], ["ip", "-4", "rule"], ["ip", "-6", "rule"],
                 ["ip", "-4", "route", "show", "table", "all"], ["ip", "-6", "route", "show", "table", "all"],
                 ["ip", "addr", "show", "dev", "lo"]):
        cp = subprocess.run(["ip", "netns", "exec", pod] + argv, capture_output=True, timeout=TIMEOUT, check=True)
        text = cp.stdout.decode()
        if argv[0].endswith("-save"):
            text = save_text(text)
        out.append(f"$ {' '.join(argv)}\n{text}")
    return "".join(out).encode()


def cni_case(bin_dir, folder, base, ctx):
    """One weir-cni call (after its `before` calls, which must succeed).
    Placeholders: @TMP@ a temp dir, @POD_NETNS@ a fresh pod namespace when
    the case says "pod" (root; else a path that does not exist: for cases that
    fail before opening it), @MISSING_NETNS@ a namespace path that does not exist."""
    with open(os.path.join(folder, base + ".case.json")) as f:
        case = json.load(f)
    needs_root = case.get("root", False)
    if needs_root and not is_root():
        raise Skip("needs root (network namespaces)")
    if not ctx["can_unshare"] and not is_root():
        raise Skip("cannot create a network namespace (unshare -rn failed)")
    tmp = tempfile.mkdtemp(prefix=PREFIX)
    subst = {"@TMP@": tmp, "@MISSING_NETNS@": f"/var/run/netns/{PREFIX}none"}
    pod = None
    try:
        for name in case.get("files", []):
            open(os.path.join(tmp, name), "w").close()
        if case.get("pod"):
            pod = ctx["ns"].add(f"pod-{base[:2]}")
            subst["@POD_NETNS@"] = f"/var/run/netns/{pod}"
        else:  # weir-cni stops before it opens the namespace
            subst["@POD_NETNS@"] = f"/var/run/netns/{PREFIX}pod-absent"
        calls = case.get("before", []) + [case]
        for i, call in enumerate(calls):
            stdin = expand(call["stdin"], subst)
            data = stdin.encode() if isinstance(stdin, str) else json.dumps(stdin).encode()
            if call.get("pad"):
                data = data[:-1] + b', "padding": "' + b"x" * call["pad"] + b'"}'
            env = dict(CLEAN_ENV)
            env.update(expand(call.get("env", {}), subst))
            if call["command"] is not None:
                env["CNI_COMMAND"] = call["command"]
            argv = [os.path.join(bin_dir, "weir-cni")]
            if is_root():
                argv = ["nsenter", f"--net=/var/run/netns/{ctx['node']}", "--"] + argv
            else:
                argv = ["unshare", "-rn", "--"] + argv
            cp = run(argv, env=env, stdin=data)
            if i < len(calls) - 1 and cp.returncode != 0:
                raise RuntimeError(f"{base}: setup call {call['command']} failed: {cp}")
        out = {base + ".stdout": normalize(cp.stdout, subst), base + ".exit": status_text(cp, with_stderr=False)}
        if case.get("save"):
            out[base + RULES_SUFFIX] = normalize(pod_state(pod), subst)
        return out
    finally:
        if pod:
            ctx["ns"].delete(pod)
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ init

def init_case(bin_dir, folder, base, ctx):
    """A weir-init dry run, always in a network namespace of its own (never this
    machine's): `unshare -n` as root, `unshare -rn` otherwise. `setup` commands
    run in that namespace first (root only: e.g. an IPv6-only pod address)."""
    with open(os.path.join(folder, base + ".case.json")) as f:
        case = json.load(f)
    args = case["args"]
    env = dict(CLEAN_ENV)
    env.update(case.get("env", {}))
    if not any(a in DRY_RUN_FLAGS for a in args) and env.get("WEIR_DRY_RUN") not in ("1", "true"):
        raise RuntimeError(f"{base}: refusing a weir-init case without a dry-run flag")
    if case.get("setup") and not is_root():
        raise Skip("its setup needs root")
    if not is_root() and not ctx["can_unshare"]:
        raise Skip("cannot create a network namespace (unshare -rn failed)")
    script = "".join(f"{cmd} >/dev/null || exit 125\n" for cmd in case.get("setup", []))
    script += 'exec "$@"\n'
    argv = ["unshare", "-n" if is_root() else "-rn", "--", "sh", "-c", script, "sh",
            os.path.join(bin_dir, "weir-init")] + args
    cp = run(argv, env=env, cwd=folder)
    if cp.returncode == 125:
        raise RuntimeError(f"{base}: setup failed: {cp.stderr.decode(errors='replace')}")
    # A refusal's one line on stderr is part of the behaviour; a success's log lines carry times.
    return {base + ".stdout": cp.stdout, base + ".exit": status_text(cp, with_stderr=cp.returncode != 0)}


# ------------------------------------------------------------------ driver

MATRICES = [("plan", plan_case, False), ("cni", cni_case, True), ("init", init_case, True)]


def bases(folder: str) -> list[str]:
    return sorted({n.split(".")[0] for n in os.listdir(folder) if n.endswith(INPUT_SUFFIXES)})


def recorded(folder: str, base: str) -> dict[str, bytes]:
    out = {}
    for n in os.listdir(folder):
        if (n.split(".")[0] == base and not n.endswith(INPUT_SUFFIXES) and not n.startswith(".")
                and not other_backends_file(n)):
            with open(os.path.join(folder, n), "rb") as f:
                out[n] = f.read()
    return out


def diff(name: str, want: bytes | None, got: bytes | None) -> str:
    def lines(data):
        out = (data or b"").decode(errors="replace").splitlines(keepends=True)
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n\\ No newline at end of file\n"
        return out
    a, b = lines(want), lines(got)
    text = "".join(difflib.unified_diff(a, b, f"recorded/{name}", f"now/{name}"))
    if want is None:
        text = f"(no recorded {name}: the current build prints what was not printed before)\n" + text
    if got is None:
        text = f"(recorded {name} is no longer produced)\n" + text
    return text or "(differs only in bytes the diff cannot show, e.g. a missing final newline)\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", metavar="BINDIR", help="rewrite the recorded outputs from the binaries in BINDIR")
    ap.add_argument("--only", default="", help="only the cases whose matrix/name contains this")
    opts = ap.parse_args()
    bin_dir = os.path.abspath(opts.record) if opts.record else testbed.bin_dir()
    for b in ("weir", "weir-cni", "weir-init"):
        if not os.access(os.path.join(bin_dir, b), os.X_OK):
            print(f"FAIL: {bin_dir}/{b} missing: build the weir, weir-cni and weir-init targets "
                  "(or set WEIR_BIN_DIR)")
            return 1
    ctx = {"can_unshare": run(["unshare", "-rn", "true"]).returncode == 0, "ns": Namespaces()}
    ran, skipped, recorded_files = 0, {}, 0
    try:
        if is_root():
            ctx["node"] = ctx["ns"].add("node")
        for matrix, fn, takes_ctx in MATRICES:
            folder = os.path.join(GOLDEN, matrix)
            for base in bases(folder):
                name = f"{matrix}/{base}"
                if opts.only not in name:
                    continue
                try:
                    got = fn(bin_dir, folder, base, ctx) if takes_ctx else fn(bin_dir, folder, base)
                except Skip as e:
                    skipped[name] = str(e)
                    continue
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    check(f"{name}: runs", False, str(e))
                    continue
                ran += 1
                if opts.record:
                    for n in set(recorded(folder, base)) - set(got):
                        os.remove(os.path.join(folder, n))
                    for n, data in got.items():
                        with open(os.path.join(folder, n), "wb") as f:
                            f.write(data)
                        recorded_files += 1
                    continue
                want = recorded(folder, base)
                bad = [n for n in sorted(set(want) | set(got)) if want.get(n) != got.get(n)]
                check(f"{name}: same bytes as recorded", not bad,
                      "".join(f"--- {name}: {n}\n{diff(n, want.get(n), got.get(n))}" for n in bad))
    finally:
        ctx["ns"].close()
    for name, why in sorted(skipped.items()):
        print(f"skip {name}: {why}")
    if opts.record:
        print(f"recorded {recorded_files} files of {ran} cases from {bin_dir}" +
              (f"; {len(skipped)} skipped (not recorded)" if skipped else ""))
        return 1 if skipped or FAILURES else 0
    if ran == 0:
        print(f"SKIP: no case could run ({len(skipped)} skipped)")
        return 77
    print(f"{ran} cases run, {len(skipped)} skipped")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
