#!/usr/bin/env python3
"""Issue 2: iptables-legacy-restore --test / ip6tables-legacy-restore --test, run
inside a namespace this test creates, accept `weir plan` output for a range of
representative specs (every mode and option family), and
`weir plan --ip-families ipv4` can be fed to iptables-legacy-restore as it is.
When the run's backend is nftables (checks.BACKEND), `nft -c -f` in the
namespace also accepts `weir plan --backend nftables` for every spec, and
commits nothing.
Exit 77 when not root or when the binaries are not built.
"""

import os
import re
import subprocess
import sys

from checks import BACKEND, check, finish, testbed, Testbed  # noqa: E402

MANY_PORTS = ",".join(str(p) for p in range(20000, 20040, 2))  # 20 ports: packs into 2 multiport rules

SPECS = {
    "default": [],
    "other ports": ["--outbound-port", "15101", "--inbound-port", "15106"],
    "several proxy ids": ["--proxy-uid", "1337,1338", "--proxy-gid", "1337,1400"],
    "inbound include list": ["--inbound-ports", "8080,9000-9100"],
    "many excluded inbound ports": ["--exclude-inbound-ports", MANY_PORTS],
    "outbound cidrs": ["--outbound-cidrs", "198.18.0.0/16,fd00::/8",
                       "--exclude-outbound-cidrs", "198.18.1.0/24,fd00:1::/64"],
    "outbound ports": ["--outbound-ports", "80,443,8000-8100", "--exclude-outbound-ports", "9000," + MANY_PORTS],
    "excluded interfaces": ["--exclude-interfaces", "eth1,veth-x"],
    "kube-virt interfaces": ["--kube-virt-interfaces", "virt0"],
    "no tunnel port": ["--inbound-tunnel-port", "0"],
    "excluded inbound cidrs": ["--exclude-inbound-cidrs", "198.18.5.0/24,fd00:5::/64"],
    "tproxy": ["--inbound-mode", "tproxy"],
    "dns capture": ["--redirect-dns"],
    "dns to nameservers": ["--redirect-dns", "--dns-servers", "198.18.0.53,fd00::53"],
    "drop invalid": ["--drop-invalid"],
    "everything": ["--inbound-mode", "tproxy", "--redirect-dns", "--drop-invalid", "--proxy-uid", "1337,1338",
                   "--exclude-outbound-ports", MANY_PORTS, "--exclude-interfaces", "eth1"],
}

def weir_plan(*args):
    argv = [os.path.join(testbed.bin_dir(), "weir"), "plan"] + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def split_families(text):
    """The dual plan's IPv4 and IPv6 parts, split at the comment line that
    introduces the IPv6 ruleset."""
    m = re.search(r"^#.*ipv6.*$", text, re.M | re.I)
    if not m:
        return text, None
    return text[:m.start()], text[m.start():]


def restore_test(tb, ns, family, text):
    tool = "iptables-legacy-restore" if family == 4 else "ip6tables-legacy-restore"
    return tb.exec(ns, [tool, "--test"], input=text)


def main():
    testbed.require_root()
    for b in ("weir",):
        if not os.access(os.path.join(testbed.bin_dir(), b), os.X_OK):
            print(f"SKIP: {b} not built in {testbed.bin_dir()}", file=sys.stderr)
            return 77

    with Testbed(role="bed") as tb:
        pod = tb.add_pod("restore")
        for name, flags in SPECS.items():
            cp = weir_plan(*flags)
            if cp.returncode != 0:
                check(f"weir plan ({name})", False, f"exit {cp.returncode}: {cp.stderr.strip()}")
                continue
            v4, v6 = split_families(cp.stdout)
            check(f"plan ({name}) has an IPv6 ruleset", v6 is not None and "*" in v6, cp.stdout)
            check(f"plan ({name}) redirects somewhere", "REDIRECT" in cp.stdout or "TPROXY" in cp.stdout, cp.stdout)
            for fam, text in ((4, v4), (6, v6)):
                if text is None:
                    continue
                r = restore_test(tb, pod, fam, text)
                # An empty input would pass --test trivially: require real tables.
                check(f"IPv{fam} restore --test accepts plan ({name})",
                      r.returncode == 0 and "*nat" in text and "COMMIT" in text and text.count("-A ") >= 3,
                      f"{r.stderr.strip()}\n{text}")

        for fam, arg in ((4, "ipv4"), (6, "ipv6")):
            cp = weir_plan("--ip-families", arg)
            r = restore_test(tb, pod, fam, cp.stdout) if cp.returncode == 0 else None
            check(f"weir plan --ip-families {arg} feeds {'ip6' if fam == 6 else 'ip'}tables-legacy-restore as it is",
                  r is not None and r.returncode == 0 and "*nat" in cp.stdout,
                  f"plan: {cp.stderr.strip()} restore: {r.stderr.strip() if r else ''}")
        if BACKEND == "nftables":
            for name, flags in SPECS.items():
                cp = weir_plan("--backend", "nftables", *flags)
                r = tb.exec(pod, ["nft", "-c", "-f", "-"], input=cp.stdout) if cp.returncode == 0 else None
                check(f"nft -c -f accepts weir plan --backend nftables ({name})",
                      r is not None and r.returncode == 0 and "table inet weir" in cp.stdout
                      and cp.stdout.count("redirect to") + cp.stdout.count("tproxy") >= 2,
                      f"plan: {cp.stderr.strip()} nft: {r.stderr.strip() if r else ''}\n{cp.stdout}")
            r = tb.exec(pod, ["nft", "-c", "-f", "-"], input="table inet weir { chain c { jump no_such_chain } }\n")
            check("nft -c -f refuses a broken ruleset (the check can fail)", r.returncode != 0)
            check("nft -c -f left no table behind", tb.weir_rules(pod, "nftables") == "")
        # restore --test must commit nothing.
        save = tb.iptables_save(pod, 4) + tb.iptables_save(pod, 6)
        check("restore --test left no rules behind", "WEIR_" not in save, save)

        # The test checks something: a broken ruleset is refused.
        r = restore_test(tb, pod, 4, "*nat\n-A NO_SUCH_CHAIN -j RETURN\nCOMMIT\n")
        check("restore --test refuses a broken ruleset (the check can fail)", r.returncode != 0)

    print(f"{len(SPECS)} specs")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
