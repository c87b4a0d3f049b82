#!/usr/bin/env python3
"""Issue 2: two writers on one namespace at once lose and duplicate nothing.

Rounds of two `weir apply` processes with different specs started together
against the same namespace (plus, in some rounds, a `weir clean` racing them).
After each round every writer has succeeded, the live rules equal exactly one
of the two specs (`weir check` agrees with one of them), each built-in chain
has exactly one jump into weir's chains, and real traffic is captured the way
that spec says. A foreign rule survives every round.
Exit 77 when not root or when the binaries are not built.
"""

import os
import subprocess
import sys

from checks import BACKEND, check, finish, other_backend, testbed, Testbed, weir, weir_argv  # noqa: E402

ROUNDS = 12
SPEC_A = ["--exclude-outbound-ports", "9000"]   # 9000 goes straight through
SPEC_B = ["--outbound-ports", "9000,7070"]      # only 9000 and 7070 are captured


def main():
    testbed.require_root()
    for b in ("weir", "weir-probe"):
        if not os.access(os.path.join(testbed.bin_dir(), b), os.X_OK):
            print(f"SKIP: {b} not built in {testbed.bin_dir()}", file=sys.stderr)
            return 77

    with Testbed(role="bed") as tb:
        app, peer = tb.add_pod("app"), tb.add_pod("peer")
        tb.sidecar(app)
        tb.serve(peer, [9000, 8080])
        for tool in ("iptables-legacy", "ip6tables-legacy"):
            tb.exec(app, [tool, "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "5999", "-j", "RETURN"],
                    check=True)

        for rnd in range(ROUNDS):
            with_clean = rnd % 3 == 2
            cmds = [weir_argv("apply", "--netns", app.netns, *SPEC_A),
                    weir_argv("apply", "--netns", app.netns, *SPEC_B)]
            if with_clean:
                cmds.insert(1, weir_argv("clean", "--netns", app.netns))
            procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
            outs = []
            for p in procs:
                try:
                    outs.append(p.communicate(timeout=60))
                except subprocess.TimeoutExpired:
                    p.kill()
                    outs.append(p.communicate())
            codes = [p.returncode for p in procs]
            check(f"round {rnd}: all {len(procs)} writers succeed", codes == [0] * len(procs),
                  f"{codes} {[o[1].strip() for o in outs]}")

            a_ok = weir("check", "--netns", app.netns, *SPEC_A).returncode == 0
            b_ok = weir("check", "--netns", app.netns, *SPEC_B).returncode == 0
            saves = {fam: tb.iptables_save(app, fam) for fam in (4, 6)}
            # Empty: nothing of weir's in either backend (the one in use is BACKEND).
            empty = not tb.weir_installed(app, "iptables") and not tb.weir_installed(app, "nftables")
            # A clean that ran last leaves nothing; otherwise exactly one spec is live.
            check(f"round {rnd}: live rules are exactly one writer's result",
                  (a_ok != b_ok) or (with_clean and empty and not a_ok and not b_ok),
                  f"check A={a_ok} B={b_ok} empty={empty}\n{tb.weir_rules(app)}")
            left = tb.weir_leftovers(app, other_backend())
            check(f"round {rnd}: nothing of weir's in the {other_backend()} backend", left == "", left)
            for fam, save in saves.items():
                for builtin in ("PREROUTING", "OUTPUT"):
                    jumps = tb.weir_base_jumps(app, fam, builtin)
                    check(f"round {rnd} IPv{fam}: at most one jump from {builtin}, never a duplicate ({BACKEND})",
                          len(jumps) == (0 if empty else 1), tb.weir_rules(app))
                check(f"round {rnd} IPv{fam}: the foreign rule survives", "--dport 5999 -j RETURN" in save, save)
            # Traffic as the winning spec says: 9000 is captured under B only.
            r = tb.connect(app, peer.addr(9000), uid=1000, gid=1000)
            want = 15001 if b_ok else 9000
            check(f"round {rnd}: app -> peer:9000 lands on {want} ({'B' if b_ok else 'A' if a_ok else 'none'} live)",
                  r.get("landed") == want, r)

    print(f"{ROUNDS} rounds")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
