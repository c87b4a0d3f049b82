#!/usr/bin/env python3
"""bench/report.py: every benchmark of weir in one run, as bench/report.sh
starts it (root). Not a test: it asserts no timing, it measures and reports.

Sections (--sections, default all, in this order):
  pod       one pod, whole process: weir-cni ADD and weir-init with each
            backend against /bin/true, iptables-legacy-restore,
            iptables-nft-restore, nft -f of the same rules (weir plan's
            output) and one iptables-nft exec per rule (Linkerd's
            proxy-init); every command started alike by weir_bench_spawn
            (fork, setns, exec), a fresh namespace per run, interleaved.
  inproc    in-process apply with each backend and nft -f started the same
            way (bench/nft_apply_bench.cc), interleaved.
  closewait where closing an nf_tables socket waits (bench/nft_close_wait.c).
  scale     N pods one after another and with 2 and 8 in parallel,
            weir-cni ADD, the backends alternating pod by pod; every
            namespace of a run kept until the run ends.
  node      weir-node: time from a primary rewrite to weir's entry being
            back (temp conf dirs), and a reconcile pass over 10, 100, 250
            pods of a private containerd (peak RSS).
  data      connections per second and request latency through a stub
            proxy, captured (REDIRECT, TPROXY; each backend) against no
            capture.
Everything it creates is named <prefix>-* (namespaces) or lives under its
temp dir, and is removed on every path (bench/report.sh sweeps again).
Writes <out>/report.md, <out>/*.dat and the gnuplot scripts' input."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
NETNS_DIR = "/var/run/netns"


# ---------------------------------------------------------------- helpers

def stats(v):
    s = sorted(v)
    n = len(s)
    return {"n": n, "median": statistics.median(s), "p95": s[min(n - 1, int(n * 0.95))], "min": s[0], "max": s[-1]}


def sh(*argv, check=True, timeout=60, **kw):
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout, **kw)


class Spawner:
    """One weir_bench_spawn process: starts commands and times them, makes and
    removes namespaces. Thread-safe per instance (one request at a time)."""

    def __init__(self, path, env):
        # Its own session: Ctrl-C reaches report.py, which still needs this to
        # remove namespaces; it exits when report.py closes its stdin.
        self.p = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                  start_new_session=True)
        self.lock = threading.Lock()

    def _ask(self, fields):
        with self.lock:
            self.p.stdin.write("\t".join(fields) + "\n")
            self.p.stdin.flush()
            out = self.p.stdout.readline().split()
        if len(out) != 2:
            raise RuntimeError(f"weir_bench_spawn: no answer to {fields[:3]}")
        return int(out[0]), int(out[1])

    def run(self, argv, netns="-", stdin="-", env=None):
        """Milliseconds from fork to the end of wait; raises when it failed."""
        env = env or {}
        ns, rc = self._ask(["run", netns, stdin, str(len(env)), *[f"{k}={v}" for k, v in env.items()], *argv])
        if rc != 0:
            raise RuntimeError(f"{' '.join(argv)} (netns {netns}, env {env}) exited {rc}")
        return ns / 1e6

    def mkns(self, path):
        _, err = self._ask(["mkns", path])
        if err:
            raise RuntimeError(f"create namespace {path}: {os.strerror(err)}")

    def rmns(self, path):
        try:
            _, err = self._ask(["rmns", path])
        except (RuntimeError, OSError):
            return False
        return err == 0

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=30)


class Namespaces:
    """Every namespace this run made, so that each is removed on every path."""

    def __init__(self, prefix, spawner):
        self.prefix, self.sp = prefix, spawner
        self.live = set()
        self.lock = threading.Lock()
        self.n = 0

    def make(self, tag, sp=None):
        with self.lock:
            self.n += 1
            name = f"{self.prefix}-{tag}{self.n}"
            self.live.add(name)
        path = os.path.join(NETNS_DIR, name)
        try:
            (sp or self.sp).mkns(path)
        except Exception:
            with self.lock:
                self.live.discard(name)
            raise
        return path

    def remove(self, path, sp=None):
        name = os.path.basename(path)
        if not (sp or self.sp).rmns(path):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
        with self.lock:
            self.live.discard(name)

    def remove_all(self):
        for name in list(self.live):
            self.remove(os.path.join(NETNS_DIR, name))


def ip_netns(*argv, check=True):
    return sh("ip", "netns", *argv, check=check)


# ---------------------------------------------------------------- the rules, in every form

class Rules:
    """weir plan's output for the default spec, in each tool's input form."""

    def __init__(self, bins, tmp):
        plan = sh(os.path.join(bins, "weir"), "plan").stdout
        parts = re.split(r"^# weir: ipv6 rules.*$", plan, flags=re.M)
        if len(parts) != 2:
            raise RuntimeError("weir plan: expected an ipv4 and an ipv6 section")
        self.v4 = self._restore_only(parts[0])
        self.v6 = self._restore_only(parts[1])
        self.nft = sh(os.path.join(bins, "weir"), "plan", "--backend", "nftables").stdout
        self.files = {}
        for name, text in (("v4", self.v4), ("v6", self.v6), ("nft", self.nft)):
            self.files[name] = os.path.join(tmp, f"rules.{name}")
            with open(self.files[name], "w") as f:
                f.write(text)
        # Linkerd's proxy-init: one iptables exec per chain and per rule.
        self.per_rule = []
        for tool, text in (("iptables-nft", self.v4), ("ip6tables-nft", self.v6)):
            table = "nat"
            for line in text.splitlines():
                if line.startswith("*"):
                    table = line[1:]
                elif line.startswith(":"):
                    chain = line[1:].split()[0]
                    if chain.startswith("WEIR"):
                        self.per_rule.append([tool, "-t", table, "-N", chain])
                elif line.startswith("-A "):
                    self.per_rule.append([tool, "-t", table, *shlex.split(line)])
        self.n_rules = sum(1 for line in (self.v4 + self.v6).splitlines() if line.startswith("-A "))

    @staticmethod
    def _restore_only(text):
        # Lines that are not restore input (the ::6 note) are comments already.
        return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"


def cni_conf(tmp, backend):
    prev = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "0a:58:c6:12:00:64", "sandbox": "/var/run/netns/x"}],
            "ips": [{"address": "198.18.0.100/24", "gateway": "198.18.0.1", "interface": 0},
                    {"address": "fd00:198:18::100/64", "gateway": "fd00:198:18::1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}], "dns": {}}
    conf = {"cniVersion": "1.0.0", "name": "bench", "type": "weir-cni",
            "capabilities": {"io.kubernetes.cri.pod-annotations": True},
            "capture": {"backend": backend}, "prevResult": prev,
            "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"weir.dev/capture": "enabled"}}}
    path = os.path.join(tmp, f"conf-{backend}.json")
    with open(path, "w") as f:
        json.dump(conf, f)
    return path


CNI_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "bench", "CNI_IFNAME": "eth0",
           "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p"}


def has_weir_rules(netns, backend):
    name = os.path.basename(netns)
    if backend == "nftables":
        r = ip_netns("exec", name, "nft", "list", "table", "inet", "weir", check=False)
        return r.returncode == 0 and "redirect to :15001" in r.stdout
    r = ip_netns("exec", name, "iptables-legacy-save", "-t", "nat", check=False)
    return "WEIR_OUTPUT" in r.stdout and "--to-ports 15001" in r.stdout


# ---------------------------------------------------------------- sections

class Report:
    def __init__(self, a):
        self.a = a
        self.bins = a.bin_dir
        self.out = a.out
        self.tmp = tempfile.mkdtemp(prefix=f"weir-bench-{a.prefix}-")
        env = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
        self.env = env
        self.spawn_bin = os.path.join(self.bins, "weir_bench_spawn")
        self.sp = Spawner(self.spawn_bin, env)
        self.ns = Namespaces(a.prefix, self.sp)
        self.procs = []            # background processes to stop
        self.rows = {}             # section -> list of (label, stats, baseline label)
        self.notes = {}            # section -> lines
        self.targets = []          # (what, value, met)
        self.started = time.monotonic()
        self._backends = None
        self.stopping = False      # set on the way out: worker threads stop making namespaces

    # -- bookkeeping
    def add(self, section, label, samples, baseline=None, unit="ms"):
        self.rows.setdefault(section, []).append((label, stats(samples), baseline, unit))
        safe = re.sub(r"[^A-Za-z0-9]+", "_", f"{section}_{label}").strip("_")
        with open(os.path.join(self.out, "samples", safe + ".txt"), "w") as f:
            f.write("\n".join(f"{x:.6f}" for x in samples) + "\n")

    def median(self, section, label):
        for lab, s, _, _ in self.rows.get(section, []):
            if lab == label:
                return s["median"]
        return None

    def note(self, section, line):
        self.notes.setdefault(section, []).append(line)
        print(f"  {line}", flush=True)

    def target(self, what, value, met):
        self.targets.append((what, value, met))

    def log(self, msg):
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", flush=True)

    def backends(self):
        """The backends weir-cni here can apply with (a static build may lack nftables), nftables first."""
        if self._backends is None:
            self._backends = []
            for b in ("nftables", "iptables"):
                ns = self.ns.make("bk")
                try:
                    self.sp.run([os.path.join(self.bins, "weir-cni")], stdin=cni_conf(self.tmp, b),
                                env=dict(CNI_ENV, CNI_NETNS=ns))
                    self._backends.append(b)
                except RuntimeError:
                    self.note("backends", f"weir-cni ADD with backend {b} fails with these binaries: left out")
                finally:
                    self.ns.remove(ns)
            if not self._backends:
                raise RuntimeError("weir-cni ADD fails with every backend")
        return self._backends

    # -- per pod, whole process
    def pod(self):
        runs = self.a.runs
        per_rule_every = 5
        self.log(f"pod: {runs} runs per method ({runs // per_rule_every} for the per-rule exec install), interleaved")
        rules = Rules(self.bins, self.tmp)
        self.rules = rules
        cni = os.path.join(self.bins, "weir-cni")
        init = os.path.join(self.bins, "weir-init")
        confs = {b: cni_conf(self.tmp, b) for b in ("nftables", "iptables", "auto")}
        f = rules.files
        methods = [
            ("/bin/true (setns + exec)", lambda ns: self.sp.run(["/bin/true"], netns=ns)),
            ("weir-cni VERSION (no kernel work: the binary's start-up)",
             lambda ns: self.sp.run([cni], stdin=confs["auto"], env=dict(CNI_ENV, CNI_COMMAND="VERSION", CNI_NETNS=ns))),
            ("weir-cni ADD, nftables", lambda ns: self.sp.run([cni], stdin=confs["nftables"], env=dict(CNI_ENV, CNI_NETNS=ns))),
            ("weir-cni ADD, iptables", lambda ns: self.sp.run([cni], stdin=confs["iptables"], env=dict(CNI_ENV, CNI_NETNS=ns))),
            ("weir-cni ADD, auto (the default)", lambda ns: self.sp.run([cni], stdin=confs["auto"], env=dict(CNI_ENV, CNI_NETNS=ns))),
            ("weir-init, nftables", lambda ns: self.sp.run([init, "--backend", "nftables", "--log-level", "warn"], netns=ns)),
            ("weir-init, iptables", lambda ns: self.sp.run([init, "--backend", "iptables", "--log-level", "warn"], netns=ns)),
            ("iptables-legacy-restore (v4 + v6)", lambda ns: self.sp.run(["iptables-legacy-restore"], netns=ns, stdin=f["v4"])
             + self.sp.run(["ip6tables-legacy-restore"], netns=ns, stdin=f["v6"])),
            ("iptables-nft-restore (v4 + v6)", lambda ns: self.sp.run(["iptables-nft-restore"], netns=ns, stdin=f["v4"])
             + self.sp.run(["ip6tables-nft-restore"], netns=ns, stdin=f["v6"])),
            ("nft -f (weir plan --backend nftables)", lambda ns: self.sp.run(["nft", "-f", f["nft"]], netns=ns)),
            (f"iptables-nft, one exec per rule ({len(rules.per_rule)} execs)",
             lambda ns: sum(self.sp.run(argv, netns=ns) for argv in rules.per_rule)),
        ]
        bk = self.backends()
        methods = [m for m in methods if not any(m[0].endswith(", " + b) for b in ("nftables", "iptables") if b not in bk)]
        # Each one checked once: it installs what it should.
        auto = bk[0]
        for backend, label in (("nftables", "weir-cni ADD, nftables"), ("iptables", "weir-cni ADD, iptables"),
                               (auto, "weir-cni ADD, auto (the default)"),
                               ("nftables", "weir-init, nftables"), ("iptables", "weir-init, iptables")):
            if backend not in bk:
                continue
            ns = self.ns.make("chk")
            dict(methods)[label](ns)
            ok = has_weir_rules(ns, backend)
            self.ns.remove(ns)
            if not ok:
                raise RuntimeError(f"{label}: no weir rules in the namespace afterwards")
        times = {m: [] for m, _ in methods}
        for i in range(runs + 3):
            todo = [m for m in methods if not m[0].startswith("iptables-nft, one exec") or i % per_rule_every == 0]
            k = i % len(todo)
            todo = todo[k:] + todo[:k]          # rotate: none always first after namespace creation
            spaces = [self.ns.make("p") for _ in todo]
            for (label, fn), ns in zip(todo, spaces):
                ms = fn(ns)
                if i >= 3:                       # three warm-up rounds
                    times[label].append(ms)
            for ns in spaces:
                self.ns.remove(ns)
        base = methods[0][0]
        for label, _ in methods:
            self.add("pod", label, times[label], base)
        t = self.median("pod", base)
        n_add = self.median("pod", "weir-cni ADD, nftables")
        i_add = self.median("pod", "weir-cni ADD, iptables")
        if n_add:
            self.target("weir-cni ADD with nftables ≤ 1.5× /bin/true (issue 10)", f"{n_add / t:.2f}×", n_add <= 1.5 * t)
        a_add = self.median("pod", "weir-cni ADD, auto (the default)")
        self.target(f"weir-cni ADD, default backend (auto: {auto} here) ≤ 1.3× /bin/true (issue 13 item 2)",
                    f"{a_add / t:.2f}×", a_add <= 1.3 * t)
        self.note("pod", f"restore inputs: {rules.n_rules} rules (v4 + v6) from `weir plan`; nft -f input from "
                  f"`weir plan --backend nftables`; weir-cni and weir-init also add ::6 to lo, the tools do not")
        if n_add and i_add:
            self.note("pod", f"weir-cni ADD, iptables / nftables: {i_add / n_add:.2f}")

    # -- in-process
    def inproc(self):
        runs = self.a.inproc_runs
        self.log(f"inproc: weir_nft_apply_bench {runs} runs (interleaved, a fresh namespace per run)")
        samples = os.path.join(self.tmp, "inproc.tsv")
        tool = os.path.join(self.bins, "weir_nft_apply_bench")
        r = subprocess.run([tool, str(runs), "--samples", samples, "--prefix", f"{self.a.prefix}-ip"],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"weir_nft_apply_bench: {r.stderr[-1500:]}")
        got = {}
        with open(samples) as f:
            for line in f:
                label, ms = line.split("\t")
                got.setdefault(label, []).append(float(ms))
        names = [("iptc_inproc", "libiptc backend, in-process (enter + lock + apply)"),
                 ("nft_inproc", "nftables backend, in-process (enter + lock + apply)"),
                 ("nft_f", "nft -f, fork + setns + exec (same ruleset, add+delete table first)"),
                 ("nft_f_create_only", "nft -f, create only (no delete)"),
                 ("nft_inproc_again", "nftables, same policy again (reads, writes nothing)"),
                 ("nft_inproc_warm", "nftables, nat already set up by another table"),
                 ("nft_inproc_changed", "nftables, a changed spec (delete + create)"),
                 ("nft_probe", "nftables probe (batch validated, aborted)"),
                 ("true_process", "a process: /bin/true"),
                 ("nft_tool_process", "a process: weir-nft-test-apply --no-probe")]
        base = names[0][1]
        for key, label in names:
            if key in got:
                self.add("inproc", label, got[key], base if not key.endswith("process") else "a process: /bin/true")
        n, i, nf = (self.median("inproc", names[k][1]) for k in (1, 0, 2))
        self.target("nftables in-process apply no slower than libiptc's (issue 10)", f"{n / i:.2f}×", n <= i)
        self.target("nftables in-process ≥ 20× faster than nft -f (issue 10)", f"{nf / n:.1f}×", nf >= 20 * n)

    # -- the close wait
    def closewait(self):
        self.log("closewait: weir_nft_close_wait")
        a, b = self.ns.make("cwa"), self.ns.make("cwb")
        try:
            r = sh(os.path.join(self.bins, "weir_nft_close_wait"), a, b, str(self.a.close_rounds), timeout=600)
        finally:
            self.ns.remove(a)
            self.ns.remove(b)
        self.closewait_lines = []
        for line in r.stdout.splitlines():
            if line.startswith("stack:"):
                self.note("closewait", "kernel stack of the longest close: " + line[6:].strip().replace(" ", " ← "))
            else:
                case, med, mx = line.split("\t")
                self.closewait_lines.append((case, float(med) / 1000, float(mx) / 1000))
        for case, med, mx in self.closewait_lines:
            self.note("closewait", f"{case}: median {med:.3f} ms, max {mx:.3f} ms ({self.a.close_rounds} rounds)")

    # -- scale
    def scale(self):
        n = self.a.scale
        par_n = self.a.scale_parallel
        cni = os.path.join(self.bins, "weir-cni")
        bk = self.backends()
        nb = len(bk)
        confs = {b: cni_conf(self.tmp, b) for b in bk}
        self.scale_series = {}
        self.scale_ratio = {}
        for workers, count in ((1, n), (2, par_n), (8, par_n)):
            self.log(f"scale: {count} pods per backend, {workers} at a time, backends alternating")
            sps = [self.sp] + [Spawner(self.spawn_bin, self.env) for _ in range(workers - 1)]
            results = {b: [None] * count for b in confs}
            beside = {b: [None] * count for b in confs}   # /bin/true in the same namespace, right after (1 at a time)
            made = []
            errors = []
            t0 = time.monotonic()

            def work(w):
                try:
                    # Pod j: round g = j // workers, one pod per worker; the
                    # backend alternates round by round, so every worker
                    # alternates backends too.
                    for j in range(w, nb * count, workers):
                        if self.stopping:
                            return
                        g = j // workers
                        backend = bk[g % nb]
                        k = (g // nb) * workers + j % workers    # pod number within its backend
                        ns = self.ns.make("s", sps[w])
                        made.append(ns)
                        results[backend][k] = sps[w].run([cni], stdin=confs[backend], env=dict(CNI_ENV, CNI_NETNS=ns))
                        if workers == 1:
                            beside[backend][k] = sps[w].run(["/bin/true"], netns=ns)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - t0
            self.log(f"scale: removing {len(made)} namespaces")
            for ns in made:
                self.ns.remove(ns)
            for s in sps[1:]:
                s.close()
            if errors:
                raise RuntimeError(f"scale ({workers} at a time): {errors[0]}")
            for backend, v in results.items():
                label = f"weir-cni ADD, {backend}, {workers} at a time"
                self.add("scale", label, v, f"weir-cni ADD, {backend}, 1 at a time")
                self.scale_series[(backend, workers)] = v
                if len(v) >= 200:
                    first, last = statistics.median(v[:100]), statistics.median(v[-100:])
                    self.target(f"scale, {backend}, {workers} at a time: last 100 pods within 1.2× of the first 100 (issue 13)",
                                f"{last / first:.2f}× ({first:.2f} → {last:.2f} ms)", last <= 1.2 * first)
                if workers == 1 and len(v) >= 200:
                    # The same against /bin/true timed beside each pod: load that drifts over the run cancels out.
                    ratio = [a / b for a, b in zip(v, beside[backend])]
                    self.scale_ratio[backend] = ratio
                    # Robust to a burst at either end: the Theil-Sen slope over every pod, as growth across the run.
                    slope = theil_sen(ratio)
                    self.note("scale", f"{backend}, 1 at a time: ADD / /bin/true fitted over all {len(ratio)} pods "
                              f"(Theil-Sen) grows {slope * len(ratio):+.2f} from pod 1 to pod {len(ratio)} "
                              f"(from {statistics.median(ratio):.2f} median: {1 + slope * len(ratio) / statistics.median(ratio):.2f}×)")
                    first, last = statistics.median(ratio[:100]), statistics.median(ratio[-100:])
                    self.target(f"scale, {backend}, 1 at a time, each ADD over /bin/true timed beside it: last 100 within "
                                f"1.2× of the first 100", f"{last / first:.2f}× ({first:.2f} → {last:.2f})", last <= 1.2 * first)
                    self.add("scale", f"/bin/true beside each {backend} pod, 1 at a time", beside[backend])
            self.note("scale", f"{workers} at a time: {nb * count} ADDs in {wall:.1f} s wall, {nb * count / wall:.0f} pods/s "
                      f"(namespace creation included, not in the per-pod times)")
        with open(os.path.join(self.out, "scale.dat"), "w") as f:
            keys = sorted(self.scale_series)
            # Column heads for gnuplot (running median of 50, ms).
            f.write("pod " + " ".join(f'"{b}, {w} at a time"' for b, w in keys) + "\n")
            longest = max(len(v) for v in self.scale_series.values())
            run = {k: running_median(v, 50) for k, v in self.scale_series.items()}
            for i in range(longest):
                f.write(f"{i + 1} " + " ".join(f"{run[k][i]:.4f}" if i < len(run[k]) else "NaN" for k in keys) + "\n")
        self.scale_keys = sorted(self.scale_series)
        if self.scale_ratio:
            with open(os.path.join(self.out, "scale-ratio.dat"), "w") as f:
                keys = sorted(self.scale_ratio)
                f.write("pod " + " ".join(f'"{b}"' for b in keys) + "\n")
                run = {k: running_median(self.scale_ratio[k], 50) for k in keys}
                for i in range(min(len(v) for v in run.values())):
                    f.write(f"{i + 1} " + " ".join(f"{run[k][i]:.4f}" for k in keys) + "\n")

    # -- node agent
    def node(self):
        sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
        os.environ["WEIR_BIN_DIR"] = self.bins
        self.node_rewrite()
        self.node_reconcile()

    def node_rewrite(self):
        import test_node  # noqa: E402 - the e2e test's temporary node (conf dir, bin dirs, agent)
        rewrites = self.a.rewrites
        self.log(f"node: {rewrites} primary rewrites, time until weir's entry is back")
        root = os.path.join(self.tmp, "node-rewrite")
        os.makedirs(root)
        n = test_node.Node(root, "n")
        try:
            n.write("10-calico.conflist", test_node.CALICO)
            n.start()
            if n.wait(lambda: n.entries("10-calico.conflist") == 1, timeout=10) is None:
                raise RuntimeError("weir-node run: no entry in the primary after 10 s:\n" + n.log_text()[-1500:])
            times = []
            for i in range(rewrites):
                time.sleep(0.05)
                t0 = time.monotonic()
                n.write("10-calico.conflist", test_node.CALICO, atomic=(i % 5 != 4))
                while n.entries("10-calico.conflist") != 1:
                    if time.monotonic() - t0 > 5:
                        raise RuntimeError("weir-node: entry not back within 5 s")
                    time.sleep(0.0005)
                times.append((time.monotonic() - t0) * 1000)
            self.add("node", "primary rewritten → weir's entry back (4 in 5 by rename)", times)
        finally:
            n.stop()

    def node_reconcile(self):
        import test_node_containerd as tnc  # noqa: E402 - the e2e test's private containerd
        why = tnc.need()
        if why:
            self.note("node", f"reconcile not measured: {why}")
            return
        counts = self.a.node_pods
        self.log(f"node: private containerd, reconcile passes over {counts} pods")
        cd = None
        budget_end = time.monotonic() + self.a.node_budget
        self.node_points = []
        with tnc.Testbed(role="node", prefix=f"{self.a.prefix}-node") as tb:
            # The testbed's signal handlers tear it down before anything else
            # (its node namespace and temp dir, under a running containerd):
            # here a signal only raises, and the finally below stops the pods,
            # then containerd, then the testbed, in that order.
            restore_signals()
            try:
                # The runtime and its CRI client in sessions of their own, so a
                # Ctrl-C reaches only report.py, which then stops and removes
                # the pods through them (else their netns, cgroups and pause
                # processes stay behind).
                with own_sessions():
                    cd = tnc.Containerd(tb, tb.tmp)
                with open(os.path.join(cd.conf_dir, "10-wtnode.conflist"), "w") as f:
                    json.dump({"cniVersion": "1.0.0", "name": "wtnode", "plugins": [
                        {"type": "bridge", "bridge": "wtn0", "isGateway": True, "isDefaultGateway": True,
                         "ipMasq": False, "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.64.0/22"}]],
                                                   "dataDir": f"{tb.tmp}/ipam"}}]}, f)
                flags = ["--cni-conf-dir", cd.conf_dir, "--cni-bin-dir", cd.bin_dir,
                         "--plugin-binary", os.path.join(self.bins, "weir-cni"),
                         "--state-dir", os.path.join(tb.tmp, "weir-state"), "--cri-endpoint", "unix://" + cd.sock]
                node = os.path.join(self.bins, "weir-node")
                started = 0
                for target in counts:
                    t0 = time.monotonic()
                    while started < target and time.monotonic() < budget_end:
                        # Pods start before weir's entry is in the conflist: uncaptured, for reconcile to repair.
                        r = cd.run_pod(f"b{started}", tnc.ENABLED if started % 2 == 0 else {})
                        if "error" in r:
                            raise RuntimeError(f"containerd RunPodSandbox: {r}")
                        started += 1
                    self.log(f"node: {started} pods running ({time.monotonic() - t0:.1f} s to start them)")
                    for kind in ("first", "steady", "steady", "steady"):
                        t0 = time.monotonic()
                        rc, err, rss = run_rusage([node, "reconcile", *flags, "--repair", "inplace"])
                        wall = (time.monotonic() - t0) * 1000
                        m = re.search(r"pods=(\d+).*repaired=(\d+).*duration=([0-9.]+)ms", err)
                        if rc != 0 or not m:
                            raise RuntimeError(f"weir-node reconcile: exit {rc}: {err[-1500:]}")
                        self.node_points.append((started, kind, int(m.group(2)), float(m.group(3)), wall, rss))
                    if started < target:
                        self.note("node", f"stopped at {started} pods (time budget)")
                        break
            finally:
                if cd:
                    cd.close()
        with open(os.path.join(self.out, "node.dat"), "w") as f:
            f.write("# pods first_ms steady_ms first_rss_mib steady_rss_mib (reconcile's own duration; ru_maxrss)\n")
            by = {}
            for pods, kind, _, dur, _, rss in self.node_points:
                by.setdefault(pods, {}).setdefault(kind, []).append((dur, rss / 1024))
            for pods in sorted(by):
                fi = by[pods].get("first", [("NaN", "NaN")])[0]
                st = by[pods].get("steady", [])
                st = (statistics.median(d for d, _ in st), max(r for _, r in st)) if st else ("NaN", "NaN")
                f.write(f"{pods} {fi[0]} {st[0]} {fi[1]} {st[1]}\n")
        for pods in sorted(by):
            first = [p for p in self.node_points if p[0] == pods and p[1] == "first"][0]
            steady = [p for p in self.node_points if p[0] == pods and p[1] == "steady"]
            self.note("node", f"`weir-node reconcile` over {pods} pods: first pass {first[3]:.1f} ms ({first[2]} repaired in "
                      f"place; whole process {first[4]:.0f} ms), steady pass (nothing to repair) median of "
                      f"{len(steady)} {statistics.median(p[3] for p in steady):.1f} ms; peak RSS "
                      f"{max(p[5] for p in self.node_points if p[0] == pods) / 1024:.1f} MiB")

    # -- data plane
    def data(self):
        self.log(f"data: {self.a.conns} connections and {self.a.requests} requests per mode, interleaved")
        stub = os.path.join(HERE, "dataplane_stub.py")
        client_ns = self.ns.make("dc")
        cname = os.path.basename(client_ns)
        sh("ip", "-n", cname, "link", "set", "lo", "up")
        weir = os.path.join(self.bins, "weir")
        modes = [("no capture, direct to the app", None, None, "direct"),
                 ("no capture, through the stub proxy", None, None, "proxy"),
                 ("REDIRECT, nftables", "REDIRECT", "nftables", "capture"),
                 ("TPROXY, nftables", "TPROXY", "nftables", "capture"),
                 ("REDIRECT, iptables", "REDIRECT", "iptables", "capture"),
                 ("TPROXY, iptables", "TPROXY", "iptables", "capture")]
        modes = [m for m in modes if m[2] is None or m[2] in self.backends()]
        targets = []
        try:
            for k, (label, mode, backend, kind) in enumerate(modes, start=1):
                pod = self.ns.make("dp")
                pname = os.path.basename(pod)
                c_ip, p_ip = f"198.18.{200 + k}.1", f"198.18.{200 + k}.2"
                va, vb = f"wbc{os.getpid() % 10000}{k}", f"wbp{os.getpid() % 10000}{k}"
                sh("ip", "-n", cname, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", pname)
                sh("ip", "-n", cname, "addr", "add", f"{c_ip}/30", "dev", va)
                sh("ip", "-n", cname, "link", "set", va, "up")
                sh("ip", "-n", pname, "addr", "add", f"{p_ip}/30", "dev", vb)
                sh("ip", "-n", pname, "link", "set", vb, "up")
                sh("ip", "-n", pname, "link", "set", "lo", "up")
                if mode:
                    sh(weir, "apply", "--netns", pod, "--backend", backend, "--inbound-mode", mode.lower())
                app = subprocess.Popen(["ip", "netns", "exec", pname, sys.executable, stub, "app", "8080"],
                                       stdout=subprocess.PIPE, text=True)
                self.procs.append(app)
                app.stdout.readline()
                port = 8080
                if kind != "direct":
                    proxy_mode = "fixed" if kind == "proxy" else mode.lower()
                    listen = 15006 if kind == "capture" else 15007
                    proxy = subprocess.Popen(["ip", "netns", "exec", pname, sys.executable, stub, "proxy", str(listen),
                                              proxy_mode], stdout=subprocess.PIPE, text=True)
                    self.procs.append(proxy)
                    proxy.stdout.readline()
                    if kind == "proxy":
                        port = 15007
                targets.append((label, f"{p_ip}:{port}:{'A' if kind == 'direct' else 'P'}"))
            spec = ",".join(f"{t}" for _, t in targets)
            client = subprocess.run(["ip", "netns", "exec", cname, sys.executable, stub, "client", spec,
                                     str(self.a.conns), str(self.a.requests)], capture_output=True, text=True, timeout=900)
            if client.returncode != 0:
                raise RuntimeError(f"data plane client: {client.stderr[-1500:]}")
            res = json.loads(client.stdout)
        finally:
            for p in self.procs:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
            self.procs = []
        base = modes[0][0]
        for (label, target), r in zip(targets, res):
            if r["errors"]:
                raise RuntimeError(f"data plane {label}: {r['errors']} failed connections")
            self.add("data-conn", label, r["conn_ms"], base)
        for (label, target), r in zip(targets, res):
            self.add("data-req", label, r["req_ms"], base)
        for (label, _), r in zip(targets, res):
            cps = 1000 / statistics.mean(r["conn_ms"])
            self.note("data", f"{label}: {cps:.0f} connections/s (one client, one connection at a time)")

    # -- output
    def write(self):
        a = self.a
        lines = [f"# weir benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
        lines += [f"- machine: {cpu_model()}, {os.cpu_count()} CPUs, kernel {platform.release()}",
                  f"- load average (1 min) at start {self.load_start:.2f}, at end {os.getloadavg()[0]:.2f}",
                  f"- binaries: `{a.bin_dir}`, {a.build_type}",
                  f"- tools: {tool_versions()}",
                  f"- `bench/report.sh {' '.join(a.argv)}`".rstrip() + f", {(time.monotonic() - self.started) / 60:.1f} min",
                  ""]
        titles = {"pod": "One pod, whole process (fresh namespace per run, interleaved)",
                  "inproc": "In-process apply, default dual-stack spec (fresh namespace per run, interleaved)",
                  "scale": "Scale: weir-cni ADD, pod after pod (per-pod time; every namespace kept until the run ends)",
                  "node": "weir-node",
                  "data-conn": "Data plane: new connection + one 64-byte request/response (client → pod)",
                  "data-req": "Data plane: one 64-byte request/response on open connections (ten per row, in turn)",
                  "backends": "Backends",
                  "data": "Data plane: connections per second (1000 / mean connection time, one client)"}
        for section in ("backends", "pod", "inproc", "closewait", "scale", "node", "data-conn", "data-req", "data"):
            rows = self.rows.get(section, [])
            if rows:
                lines += [f"## {titles.get(section, section)}", "",
                          "| | runs | median | p95 | min | max | ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
                for label, s, base, unit in rows:
                    b = self.median(section, base) if base else None
                    ratio = f"{s['median'] / b:.2f}×" if b else ""
                    lines.append(f"| {label} | {s['n']} | {s['median']:.3f} | {s['p95']:.3f} | {s['min']:.3f} | "
                                 f"{s['max']:.3f} | {ratio} |")
                lines += ["", "Times in ms; ratio: median against the first row's (or the row named as baseline), "
                          "measured in the same run.", ""]
            if self.notes.get(section):
                if not rows:
                    lines += [f"## {titles.get(section, section)}" if section != "closewait" else
                              "## The nf_tables close wait", ""]
                lines += [f"- {n}" for n in self.notes[section]] + [""]
        if self.targets:
            lines += ["## Targets", "", "| target | measured | |", "|---|---:|---|"]
            lines += [f"| {w} | {v} | {'met' if m else '**not met**'} |" for w, v, m in self.targets]
            lines.append("")
        text = "\n".join(lines)
        with open(os.path.join(self.out, "report.md"), "w") as f:
            f.write(text)
        for section in ("pod", "inproc", "data-conn", "data-req"):
            rows = self.rows.get(section, [])
            if rows:
                with open(os.path.join(self.out, f"{section}.dat"), "w") as f:
                    f.write("# label median p95 min max\n")
                    for label, s, _, _ in rows:
                        short = label.split(" (")[0] if section != "pod" else label.split(" (")[0]
                        f.write(f"\"{short}\" {s['median']:.4f} {s['p95']:.4f} {s['min']:.4f} {s['max']:.4f}\n")
        print("\n" + text)

    def cleanup(self):
        self.stopping = True
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.ns.remove_all()
        self.sp.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _raise_interrupt(signum, _):
    raise KeyboardInterrupt(f"signal {signum}")


def restore_signals():
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, so every finally runs."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)


class own_sessions:
    """Within it, every subprocess.Popen starts a new session."""

    def __enter__(self):
        self.orig = subprocess.Popen
        orig = self.orig

        class Popen(orig):
            def __init__(self, *a, **kw):
                kw.setdefault("start_new_session", True)
                super().__init__(*a, **kw)

        subprocess.Popen = Popen
        return self

    def __exit__(self, *exc):
        subprocess.Popen = self.orig
        return False


def theil_sen(v, step=3):
    """Median of the pairwise slopes of v against its index (every step-th point, to stay quick)."""
    pts = list(enumerate(v))[::step]
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(pts) for (x2, y2) in pts[i + 1:]]
    return statistics.median(slopes)


def running_median(v, w):
    out = []
    for i in range(len(v)):
        lo = max(0, i - w // 2)
        out.append(statistics.median(v[lo:lo + w]))
    return out


def run_rusage(argv, timeout=300):
    """Exit code, stderr and peak RSS (kB, wait4's ru_maxrss) of one run."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        err = p.stderr.read()
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, err, ru.ru_maxrss


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            return m.group(1).strip() if m else platform.processor()
    except OSError:
        return "unknown CPU"


def tool_versions():
    out = []
    for argv in (["nft", "--version"], ["iptables-legacy", "--version"]):
        try:
            out.append(sh(*argv, check=False).stdout.strip().splitlines()[0])
        except (OSError, IndexError, subprocess.SubprocessError):
            pass
    return "; ".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--build-type", default="unknown build")
    p.add_argument("--out", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sections", default="pod,inproc,closewait,scale,node,data")
    p.add_argument("--argv", default="")
    a = p.parse_args()
    a.argv = shlex.split(a.argv)
    q = a.quick
    a.runs = 60 if q else 300
    a.inproc_runs = 100 if q else 300
    a.close_rounds = 10 if q else 30
    a.scale = 200 if q else 1000
    a.scale_parallel = 200 if q else 1000
    a.rewrites = 20 if q else 50
    a.node_pods = [10, 50] if q else [10, 100, 250]
    a.node_budget = 60 if q else 300
    a.conns = 300 if q else 2000
    a.requests = 300 if q else 2000
    os.makedirs(os.path.join(a.out, "samples"), exist_ok=True)
    r = Report(a)
    r.load_start = os.getloadavg()[0]

    restore_signals()
    try:
        for section in a.sections.split(","):
            getattr(r, section)()
        r.write()
    finally:
        r.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
