#!/usr/bin/env python3
"""kill -9 in the middle of a legacy (libiptc) apply, spec change and clean
(issue 12, item 6). libiptc commits one table of one family at a time, so a
kill between two commits leaves some tables changed and the others not. weir
orders its commits so that the half states are the safer ones
(iptables/kernel/iptc/filter.cc, commit_order; README "Reliability"):

    apply and spec change:  ipv6 raw, ipv6 mangle, ipv6 nat, ipv4 raw, ipv4 mangle, ipv4 nat
    clean:                  the same, backwards

so at any moment the tables already on the new state are a prefix of that
list: never IPv4 captured with IPv6 not, never nat without raw's DNS zones.

Each round starts from a known state, runs `weir apply --backend iptables`
(or `weir clean`) on a pod namespace, kills it with SIGKILL after a random
delay within the run's duration, and reads every table with
iptables-legacy-save (and ip6tables-legacy-save). Each (family, table) is
classified as absent, spec A or spec B by its weir lines (A and B differ in
every table: dns.port is in raw's zones and nat's DNS redirect, tproxyMark in
mangle), and the combination must be one the order allows. Then an apply
of the round's target repairs and `weir check` passes. Large CIDR lists make
each commit slow, and the kill delay follows what the kills find (later
after an untouched state, earlier after a finished run), so that kills land
between commits. Bounded: ROUNDS kills in at most DEADLINE_S seconds. Exit
77 when not root.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("WEIR_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
                                "netns-testbed"))
import testbed  # noqa: E402
from testbed import Testbed, require_root  # noqa: E402

BIN = testbed.bin_dir()
WEIR = os.path.join(BIN, "weir")
ROUNDS = int(os.environ.get("WEIR_KILL_ROUNDS", "60"))
DEADLINE_S = float(os.environ.get("WEIR_KILL_DEADLINE_S", "40"))
OUT_CIDRS, IN_CIDRS = 500, 300
# The commit order weir promises for an apply; clean runs it backwards.
ORDER = [(6, "raw"), (6, "mangle"), (6, "nat"), (4, "raw"), (4, "mangle"), (4, "nat")]

failures = []


def note(msg):
    print(msg, flush=True)


def fail(msg):
    failures.append(msg)
    note("FAIL: " + msg)


def spec(dns_port, mark):
    # Thousands of CIDRs: nat's WEIR_OUTBOUND and mangle's WEIR_INBOUND get one
    # rule each, so every commit takes milliseconds.
    out4 = [f"198.19.{i // 256}.{i % 256}/32" for i in range(OUT_CIDRS)]
    out6 = [f"fd00:ff::{i:x}/128" for i in range(OUT_CIDRS)]
    in4 = [f"198.18.{100 + i // 256}.{i % 256}/32" for i in range(IN_CIDRS)]
    in6 = [f"fd00:fe::{i:x}/128" for i in range(IN_CIDRS)]
    return {
        "ipFamilies": "dual",
        "mode": "tproxy",
        "tproxyMark": mark,
        "dns": {"capture": True, "port": dns_port},
        "excludeOutboundCidrs": out4 + out6,
        "excludeInboundCidrs": in4 + in6,
    }


def weir_lines(text):
    """Per table, weir's lines of an iptables-save, counters dropped."""
    tables, cur = {}, None
    for line in text.splitlines():
        if line.startswith("*"):
            cur = line[1:]
            tables.setdefault(cur, [])
        elif cur and "WEIR_" in line:
            tables[cur].append(re.sub(r"\[\d+:\d+\]", "", line))
    return {t: sorted(lines) for t, lines in tables.items()}


def classify(tb, pod, refs):
    """{(family, table): "absent" | "A" | "B" | "other"}."""
    state = {}
    for fam in (4, 6):
        tool = "iptables-legacy-save" if fam == 4 else "ip6tables-legacy-save"
        cp = tb.exec(pod, [tool])
        if cp.returncode != 0:
            raise RuntimeError(f"{tool}: exit {cp.returncode}: {cp.stderr.strip()}")
        live = weir_lines(cp.stdout)
        for table in ("raw", "mangle", "nat"):
            lines = live.get(table, [])
            if not lines:
                state[(fam, table)] = "absent"
            elif lines == refs["A"][fam].get(table):
                state[(fam, table)] = "A"
            elif lines == refs["B"][fam].get(table):
                state[(fam, table)] = "B"
            else:
                state[(fam, table)] = "other"
    return state


def allowed(state, old, new, backwards=False):
    """True when the tables on `new` are a prefix of ORDER (a suffix when the
    run goes `backwards`, as clean does) and the rest are on `old`."""
    seen_old = False
    for key in (reversed(ORDER) if backwards else ORDER):
        v = state[key]
        if v == new and not seen_old:
            continue
        if v == old:
            seen_old = True
            continue
        return False
    return True


def short(state):
    return " ".join(f"v{f}{t}={state[(f, t)]}" for f, t in ORDER)


def main():
    require_root()
    if not os.access(WEIR, os.X_OK):
        print(f"SKIP: {WEIR} not built", file=sys.stderr)
        return 77
    if subprocess.run(["sh", "-c", "command -v iptables-legacy-save && command -v ip6tables-legacy-save"],
                      capture_output=True).returncode != 0:
        print("SKIP: iptables-legacy-save not installed", file=sys.stderr)
        return 77
    start = time.monotonic()
    random.seed(os.getpid())
    with Testbed(role="legacykill") as tb:
        pod = tb.add_pod("pod")
        cfg = {}
        for name, (port, mark) in {"A": (15053, 1337), "B": (15054, 1400)}.items():
            cfg[name] = os.path.join(tb.tmp, f"spec-{name}.json")
            with open(cfg[name], "w") as f:
                json.dump(spec(port, mark), f)

        # The legacy backend, whatever ctest says: auto picks it when nftables
        # is unavailable (the test switch in kernel/ops.cc).
        env = dict(os.environ, WEIR_TEST_UNAVAILABLE_BACKEND="nftables")

        def argv(op, name=None):
            a = [WEIR, op, "--netns", pod.path]
            return a + (["--config", cfg[name]] if name else [])

        def run(op, name=None):
            cp = subprocess.run(argv(op, name), capture_output=True, text=True, env=env, timeout=60)
            if cp.returncode != 0:
                raise RuntimeError(f"weir {op} {name or ''}: exit {cp.returncode}: {cp.stderr.strip()}")
            return cp

        def timed(op, name=None):
            t = time.monotonic()
            run(op, name)
            return time.monotonic() - t

        # Reference dumps of each spec, and how long each kind of run takes.
        refs = {}
        for name in ("A", "B"):
            run("apply", name)
            refs[name] = {}
            for fam in (4, 6):
                tool = "iptables-legacy-save" if fam == 4 else "ip6tables-legacy-save"
                refs[name][fam] = weir_lines(tb.exec(pod, [tool], check=True).stdout)
            for fam in (4, 6):
                for table in ("raw", "mangle", "nat"):
                    if not refs[name][fam].get(table):
                        raise RuntimeError(f"spec {name} has no ipv{fam} {table} rules; the test needs all six")
        if any(refs["A"][f][t] == refs["B"][f][t] for f in (4, 6) for t in ("raw", "mangle", "nat")):
            raise RuntimeError("specs A and B give a table the same rules; the test cannot tell them apart")
        durations = {"apply": [], "change": [], "clean": []}
        for _ in range(3):
            run("clean")
            durations["apply"].append(timed("apply", "A"))
            durations["change"].append(timed("apply", "B"))
            run("apply", "A")
            durations["clean"].append(timed("clean"))
        durations = {k: sorted(v)[1] for k, v in durations.items()}  # medians
        note("one run takes: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in durations.items()))

        # (phase, the state it starts from, the run killed, what that run moves to).
        # Each round's repair leaves the start of the next: apply -> A, change -> B.
        phases = [("apply", "absent", ("apply", "A"), "A"),
                  ("change", "A", ("apply", "B"), "B"),
                  ("clean", "A", ("clean", None), "absent")]
        counts = {p[0]: {} for p in phases}
        estimate = {k: v * 0.8 for k, v in durations.items()}
        rounds = 0
        run("clean")
        while rounds < ROUNDS and time.monotonic() - start < DEADLINE_S:
            phase, old, (op, name), new = phases[rounds % len(phases)]
            rounds += 1
            if phase == "apply":
                run("clean")
            elif phase == "clean":
                run("apply", "A")
            # (change starts where the apply round's repair left it: on A.)
            # Around the estimate of when the commits happen, which follows
            # what the kills find: later after an untouched state, earlier
            # after a finished run.
            delay = random.uniform(0.5, 1.2) * estimate[phase]
            p = subprocess.Popen(argv(op, name), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
            state = classify(tb, pod, refs)
            if all(v == new for v in state.values()):
                kind = "done"
            elif all(v == old for v in state.values()):
                kind = "untouched"
            else:
                kind = "half: " + short(state)
            counts[phase][kind] = counts[phase].get(kind, 0) + 1
            if kind == "untouched":
                estimate[phase] = min(estimate[phase] * 1.25, durations[phase] * 3)
            elif kind == "done":
                estimate[phase] *= 0.8
            if not allowed(state, old, new, backwards=(phase == "clean")):
                fail(f"[{phase}] killed after {delay * 1000:.1f} ms: a half state the commit order does not allow: "
                     f"{short(state)}")
            # The next apply repairs, and check agrees.
            repair = "A" if new == "absent" else new
            run("apply", repair)
            cp = subprocess.run(argv("check", repair), capture_output=True, text=True, env=env, timeout=60)
            if cp.returncode != 0:
                fail(f"[{phase}] after the repairing apply, weir check exits {cp.returncode}: "
                     f"{(cp.stdout + cp.stderr).strip()[:500]}")
        for phase, c in counts.items():
            note(f"{phase}: " + ", ".join(f"{n} {k}" for k, n in sorted(c.items())))
        halves = sum(n for c in counts.values() for k, n in c.items() if k.startswith("half"))
        if halves == 0:
            note("NOTE: no kill landed between two commits this time, so the order was not exercised")
        note(f"{rounds} kills, {halves} half states (all checked against the order), "
             f"{len(failures)} failures, {time.monotonic() - start:.1f} s")
        run("clean")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
