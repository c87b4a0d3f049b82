#!/usr/bin/env python3
"""The `weir` CLI end to end (issue 2 item 9, issue 5 explain).

Without root: `weir plan` text/JSON, one-line errors with exit 2 naming the bad
flag or value, --config with flag overrides, explain from flags.
With root, in namespaces this test creates (wt-cli-<pid>-*), also: plan run as
an unprivileged user is accepted by iptables-legacy-restore --test and
ip6tables-legacy-restore --test inside the namespace; apply/check/show/clean
(check exits 1 with a diff after a rule is deleted by hand, 0 after re-apply);
--netns by name, path and pid:N; the CLI refuses its own namespace unless told
"--netns self"; explain on live rules. The live-rule checks read the
packet filter this run's `auto` picks (BACKEND, as testbed.backend_in_use():
iptables-legacy-save, or `nft list table inet weir`), and nothing of weir's
may be in the other.
Exit 77 (after the unprivileged part) when not root; real-traffic capture is
tested elsewhere (testbed).
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

BIN_DIR = os.environ.get("WEIR_BIN_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build", "bin")
WEIR = os.path.join(BIN_DIR, "weir")
PREFIX = f"wt-cli-{os.getpid()}-"
TIMEOUT = 30
FAILURES = []
NAMESPACES = []
PROCS = []
TMPDIR = tempfile.mkdtemp(prefix="weir-cli-test-")
os.chmod(TMPDIR, 0o755)  # the unprivileged run reads config files from here


def check(desc, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {desc}" + ("" if cond else f"\n       {detail}"), flush=True)
    if not cond:
        FAILURES.append(desc)


def run(argv, *, input=None, timeout=TIMEOUT):
    return subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)


def weir(*args, wrap=()):
    return run(list(wrap) + [WEIR] + list(args))


def show(r):
    return f"rc={r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-2000:]}"


def write(name, text):
    path = os.path.join(TMPDIR, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


# ---- cleanup: every namespace and process we make goes, also on failure ----

def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    PROCS.clear()
    for ns in NAMESPACES:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=TIMEOUT)
    NAMESPACES.clear()
    shutil.rmtree(TMPDIR, ignore_errors=True)


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


atexit.register(cleanup)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, on_signal)


def make_netns(suffix):
    name = PREFIX + suffix
    assert len(name) <= 32
    NAMESPACES.append(name)
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=TIMEOUT)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True,
                   capture_output=True, timeout=TIMEOUT)
    return name


def in_ns(ns, *argv, input=None):
    return run(["ip", "netns", "exec", ns] + list(argv), input=input)


def save(ns, table="nat", v6=False):
    return in_ns(ns, "ip6tables-legacy-save" if v6 else "iptables-legacy-save", "-t", table).stdout


# The packet filter weir's auto picks in this run (tests/CMakeLists.txt hides
# the other with WEIR_TEST_UNAVAILABLE_BACKEND).
BACKEND = "iptables" if os.environ.get("WEIR_TEST_UNAVAILABLE_BACKEND") == "nftables" else "nftables"


def nft_weir(ns):
    """`nft list table inet weir`, "" when there is no such table."""
    r = in_ns(ns, "nft", "list", "table", "inet", "weir")
    return r.stdout if r.returncode == 0 else ""


def weir_rules(ns):
    """weir's nat rules of both families in the backend in use, as text."""
    return save(ns) + save(ns, v6=True) if BACKEND == "iptables" else nft_weir(ns)


def delete_first_output_rule(ns):
    """Deletes weir's first IPv4 WEIR_OUTPUT rule behind weir's back."""
    if BACKEND == "iptables":
        return in_ns(ns, "iptables-legacy", "-t", "nat", "-D", "WEIR_OUTPUT", "1")
    r = in_ns(ns, "nft", "--json", "list", "chain", "inet", "weir", "ip_nat_WEIR_OUTPUT")
    try:
        handle = next(o["rule"]["handle"] for o in json.loads(r.stdout)["nftables"] if "rule" in o)
    except (ValueError, StopIteration, KeyError):
        return r
    return in_ns(ns, "nft", "delete", "rule", "inet", "weir", "ip_nat_WEIR_OUTPUT", "handle", str(handle))


# ---- without root -----------------------------------------------------------

def test_plan_text_and_json():
    r = weir("plan", "--ip-families", "ipv4")
    check("plan ipv4 exits 0", r.returncode == 0, show(r))
    check("plan ipv4 is iptables-restore text", "*nat" in r.stdout and "COMMIT" in r.stdout
          and "--to-ports 15001" in r.stdout and "--to-ports 15006" in r.stdout, show(r))
    check("plan ipv4 has no IPv6 addresses", "::1" not in r.stdout and "::6" not in r.stdout, show(r))
    r = weir("plan")
    lines = [l for l in r.stdout.splitlines() if l.startswith("#")]
    check("dual plan: a comment line introduces each family",
          r.returncode == 0 and any("ipv4" in l.lower() for l in lines) and any("ipv6" in l.lower() for l in lines),
          show(r))
    r = weir("plan", "--output", "json")
    try:
        j = json.loads(r.stdout)
        ok = r.returncode == 0 and isinstance(j, (dict, list))
    except json.JSONDecodeError as e:
        ok, r = False, r
        print(e)
    check("plan --output json parses", ok, show(r))
    check("plan json names both families", '"ipv4"' in r.stdout and '"ipv6"' in r.stdout, show(r))


BAD = [
    (["plan", "--outbound-port", "0"], ["--outbound-port", "0"]),
    (["plan", "--inbound-port", "70000"], ["--inbound-port", "70000"]),
    (["plan", "--inbound-ports", "8080,9100-9000"], ["--inbound-ports", "9100-9000"]),
    (["plan", "--exclude-outbound-cidrs", "198.18.0.0/33"], ["--exclude-outbound-cidrs", "198.18.0.0/33"]),
    (["plan", "--outbound-cidrs", "198.18.0.1/15"], ["--outbound-cidrs", "198.18.0.1/15"]),
    (["plan", "--proxy-uid", "abc"], ["--proxy-uid", "abc"]),
    (["plan", "--ip-families", "ipv5"], ["--ip-families", "ipv5"]),
    (["plan", "--inbound-mode", "nat"], ["--inbound-mode", "nat"]),
    (["plan", "--exclude-interfaces", "a-very-long-interface-name"], ["--exclude-interfaces"]),
    (["plan", "--tproxy-mark", "0x1ffffffff"], ["--tproxy-mark"]),
    (["plan", "--outbound-port", "15006"], ["15006"]),  # equal to the inbound port
    (["plan", "--dns-servers", "198.18.0.53"], ["--dns-servers", "--redirect-dns"]),
    (["plan", "--no-such-flag"], ["--no-such-flag"]),
    (["plan", "--output", "yaml"], ["--output", "yaml"]),
    (["apply"], ["--netns"]),
    (["apply", "--netns", "x", "--lock-timeout", "soon"], ["--lock-timeout", "soon"]),
    (["explain", "--direction", "outbound"], ["--dport"]),
    (["explain", "--direction", "sideways", "--dport", "80"], ["--direction", "sideways"]),
    (["explain", "--direction", "outbound", "--dport", "80", "--src", "198.18.0.1", "--dst", "fd00::1"],
     ["--src", "--dst"]),
    (["explain", "--direction", "inbound", "--dport", "80", "--uid", "5"], ["--uid"]),
    (["explain", "--netns", "x", "--outbound-port", "15101", "--direction", "outbound", "--dport", "80"],
     ["--netns"]),
    (["frobnicate"], ["frobnicate"]),
]


def test_bad_flags():
    for args, needles in BAD:
        r = weir(*args)
        lines = r.stderr.strip().splitlines()
        cmd = args[0]
        ok = (r.returncode == 2 and len(lines) == 1 and r.stdout == ""
              and (lines[0].startswith(f"weir: {cmd}: ") or cmd == "frobnicate" and lines[0].startswith("weir: "))
              and all(n in lines[0] for n in needles))
        check(f"bad input {' '.join(args)!r}: exit 2, one line naming {needles}", ok, show(r))


def test_config_and_overrides():
    cfg = write("spec.json", json.dumps({"outboundPort": 15111, "inboundPort": 15222, "proxyUids": [2102]}))
    r = weir("plan", "--ip-families", "ipv4", "--config", cfg, "--inbound-port", "15333")
    check("config file is read", r.returncode == 0 and "--to-ports 15111" in r.stdout
          and "--uid-owner 2102" in r.stdout, show(r))
    check("a flag overrides the config file", "--to-ports 15333" in r.stdout and "15222" not in r.stdout, show(r))
    check("proxy GIDs default to the UIDs from the file", "--gid-owner 2102" in r.stdout, show(r))
    r = weir("plan", "--ip-families", "ipv4", "--proxy-uid", "2102", "--proxy-uid", "2103")
    check("--proxy-uid repeatable, GIDs follow", r.returncode == 0 and "--uid-owner 2103" in r.stdout
          and "--gid-owner 2103" in r.stdout, show(r))
    r = weir("plan", "--ip-families", "ipv4", "--proxy-uid", "2102,2103", "--proxy-gid", "3000")
    check("--proxy-gid overrides", r.returncode == 0 and "--gid-owner 3000" in r.stdout
          and "--gid-owner 2103" not in r.stdout, show(r))
    bad = write("bad.json", json.dumps({"outboundPort": 15111, "noSuchKey": 1}))
    r = weir("plan", "--config", bad)
    check("unknown config key: exit 2 naming key and file", r.returncode == 2 and "noSuchKey" in r.stderr
          and bad in r.stderr and len(r.stderr.strip().splitlines()) == 1, show(r))
    notjson = write("notjson.json", "{ outboundPort: ")
    r = weir("plan", "--config", notjson)
    check("malformed config: exit 2, one line", r.returncode == 2 and notjson in r.stderr
          and len(r.stderr.strip().splitlines()) == 1, show(r))
    r = weir("plan", "--config", os.path.join(TMPDIR, "missing.json"))
    check("missing config: exit 2", r.returncode == 2 and "missing.json" in r.stderr, show(r))
    resolv = write("resolv.conf", "search svc.cluster.local\nnameserver 198.18.0.53\nnameserver fd00::53%eth0\n")
    r = weir("plan", "--redirect-dns", "--resolv-conf", resolv)
    check("--resolv-conf: DNS captured only to its nameservers", r.returncode == 0 and "198.18.0.53" in r.stdout
          and "fd00::53" in r.stdout, show(r))


def explain_json(*args):
    r = weir("explain", "--output", "json", *args)
    try:
        return r, json.loads(r.stdout)
    except json.JSONDecodeError:
        return r, {}


def verdict(j):
    v = j.get("verdict", {})
    return v.get("kind"), v.get("port")


def test_explain_from_flags():
    r, j = explain_json("--direction", "outbound", "--dst", "198.18.7.7", "--dport", "80")
    check("explain: app's outbound TCP is redirected to 15001", verdict(j) == ("redirected", 15001), show(r))
    r, j = explain_json("--direction", "outbound", "--dst", "198.18.7.7", "--dport", "80", "--uid", "1337")
    check("explain: the proxy's own traffic is untouched", verdict(j) == ("untouched", 0), show(r))
    r, j = explain_json("--direction", "inbound", "--dport", "8080")
    check("explain: inbound TCP is redirected to 15006", verdict(j) == ("redirected", 15006), show(r))
    r, j = explain_json("--hook", "prerouting", "--dport", "15020")
    check("explain: an excluded inbound port is untouched", verdict(j)[0] == "untouched", show(r))
    r, j = explain_json("--direction", "inbound", "--dport", "8080", "--src", "fd00::10", "--inbound-mode", "tproxy")
    check("explain: IPv6 inbound in TPROXY mode", verdict(j) == ("tproxied", 15006)
          and j.get("packet", {}).get("family") == "ipv6", show(r))
    r, j = explain_json("--direction", "outbound", "--dst", "198.18.7.7", "--dport", "443",
                        "--exclude-outbound-ports", "443")
    check("explain: capture flags shape the plan it walks", verdict(j)[0] == "untouched", show(r))
    r = weir("explain", "--direction", "outbound", "--dst", "198.18.7.7", "--dport", "80")
    check("explain text: rule by rule, then the verdict", r.returncode == 0 and "verdict:" in r.stdout
          and "WEIR_" in r.stdout and "15001" in r.stdout, show(r))


def test_help_and_version():
    r = weir("--version")
    check("--version", r.returncode == 0 and re.search(r"\d+\.\d+", r.stdout), show(r))
    for cmd in ["plan", "apply", "check", "clean", "show", "explain"]:
        r = weir(cmd, "--help")
        check(f"{cmd} --help", r.returncode == 0 and "--" in r.stdout, show(r))
    r = weir("explain", "--help")
    check("explain --help states the defaults", "198.18.0.10" in r.stdout and "uid 1000" in r.stdout, show(r))


# ---- with root --------------------------------------------------------------

def unprivileged():
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return ["runuser", "-u", "nobody", "--"]


def test_unprivileged_plan_restores(ns):
    for fam, restore, extra in [("ipv4", "iptables-legacy-restore", []),
                                ("ipv6", "ip6tables-legacy-restore", []),
                                ("ipv4", "iptables-legacy-restore", ["--inbound-mode", "tproxy", "--redirect-dns",
                                                                     "--drop-invalid"]),
                                ("ipv6", "ip6tables-legacy-restore", ["--inbound-mode", "tproxy", "--redirect-dns",
                                                                      "--drop-invalid"])]:
        r = weir("plan", "--ip-families", fam, *extra, wrap=unprivileged())
        check(f"plan {fam} {' '.join(extra)} as uid 65534", r.returncode == 0 and "*nat" in r.stdout, show(r))
        t = in_ns(ns, restore, "--test", input=r.stdout)
        check(f"{restore} --test accepts it", t.returncode == 0, show(t))
    r = weir("plan", "--output", "json", wrap=unprivileged())
    check("plan json as uid 65534", r.returncode == 0 and json.loads(r.stdout or "null") is not None, show(r))


def test_apply_check_show_clean(ns):
    # A foreign rule weir must leave alone.
    in_ns(ns, "iptables-legacy", "-t", "nat", "-A", "OUTPUT", "-d", "198.18.9.9", "-j", "RETURN")
    r = weir("apply", "--netns", ns)
    check("apply by name", r.returncode == 0, show(r))
    nat4, nat6 = save(ns), save(ns, v6=True)
    if BACKEND == "iptables":
        check("iptables-legacy-save shows weir's chains (v4, v6)", "WEIR_OUTPUT" in nat4 and "WEIR_OUTPUT" in nat6,
              nat4 + nat6)
    else:
        t = nft_weir(ns)
        check("nft list table inet weir shows weir's chains (v4, v6)",
              "chain ip_nat_WEIR_OUTPUT" in t and "chain ip6_nat_WEIR_OUTPUT" in t, t)
        check("nothing of weir's in legacy iptables", "WEIR_" not in nat4 + nat6, nat4 + nat6)
    r = weir("check", "--netns", ns)
    check("check after apply: exit 0", r.returncode == 0, show(r))
    r = weir("apply", "--netns", f"/var/run/netns/{ns}")
    check("apply again by path", r.returncode == 0, show(r))
    if BACKEND == "iptables":
        check("apply twice leaves one jump", save(ns).count("-j WEIR_OUTPUT") == 1, save(ns))
    else:
        check("apply twice leaves one jump", nft_weir(ns).count("jump ip_nat_WEIR_OUTPUT") == 1, nft_weir(ns))

    d = delete_first_output_rule(ns)
    check("deleted a rule by hand", d.returncode == 0, show(d))
    r = weir("check", "--netns", ns)
    check("check after a deleted rule: exit 1 with a diff on stdout",
          r.returncode == 1 and "WEIR_OUTPUT" in r.stdout and "missing" in r.stdout.lower(), show(r))
    weir("apply", "--netns", ns)
    r = weir("check", "--netns", ns)
    check("check after re-apply: exit 0", r.returncode == 0, show(r))
    r = weir("check", "--netns", ns, "--outbound-port", "15101")
    check("check against a different spec: exit 1", r.returncode == 1 and "15101" in r.stdout, show(r))
    r = weir("check", "--netns", ns, "--outbound-port", "15101", "-o", "json")
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        j = {}
    check("check --output json: inSync false and the diff", r.returncode == 1 and j.get("inSync") is False
          and any("15101" in (l.get("wanted") or "") for l in j.get("diff", [])), show(r))

    # show, also via pid:N of a process living in the namespace.
    sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"])
    PROCS.append(sleeper)
    pid = None
    for _ in range(50):  # ip netns exec forks/execs; wait until sleep runs in the netns
        out = run(["ip", "netns", "pids", ns]).stdout.split()
        if out:
            pid = out[0]
            break
        subprocess.run(["sleep", "0.1"])
    r = weir("show", "--netns", f"pid:{pid}")
    if BACKEND == "iptables":
        check("show by pid:N: weir's rules with counters",
              r.returncode == 0 and "WEIR_OUTPUT" in r.stdout and re.search(r"^\[\d+:\d+\] -A ", r.stdout, re.M)
              and "198.18.9.9" not in r.stdout, show(r))
    else:
        # The text form is the nft listing, each rule's counter with its figures.
        check("show by pid:N: weir's rules with counters, read from the nftables backend",
              r.returncode == 0 and "rules read from the nftables backend" in r.stdout
              and "chain ip_nat_WEIR_OUTPUT" in r.stdout and "198.18.9.9" not in r.stdout
              and re.search(r"counter packets \d+ bytes \d+ ", r.stdout), show(r))
    r = weir("show", "--netns", ns, "-o", "json")
    try:
        ok = r.returncode == 0 and "WEIR_OUTPUT" in json.dumps(json.loads(r.stdout))
    except json.JSONDecodeError:
        ok = False
    check("show --output json parses", ok, show(r))
    if BACKEND == "nftables":
        try:
            objs = json.loads(r.stdout)["nftables"]
        except (json.JSONDecodeError, KeyError, TypeError):
            objs = []
        rules = [o["rule"] for o in objs if "rule" in o]
        counters = [e["counter"] for ru in rules for e in ru.get("expr", []) if "counter" in e]
        check("show --output json (nftables): the listing's objects, every rule's counter with its figures",
              rules and len(counters) == len(rules) and all("packets" in (c or {}) for c in counters)
              and not any("add" in o for o in objs) and "routes" in json.loads(r.stdout), show(r))

    r, j = explain_json("--netns", ns, "--direction", "outbound", "--dst", "198.18.7.7", "--dport", "80")
    check("explain on live rules", verdict(j) == ("redirected", 15001) and ns in j.get("rules", ""), show(r))

    r = weir("clean", "--netns", ns)
    check("clean", r.returncode == 0, show(r))
    nat4, nat6 = save(ns), save(ns, v6=True)
    check("clean leaves no weir chain", "WEIR_" not in nat4 and "WEIR_" not in nat6
          and "WEIR_" not in save(ns, "mangle") and "WEIR_" not in save(ns, "raw"), nat4 + nat6)
    check("clean leaves the foreign rule", "198.18.9.9" in nat4, nat4)
    check("clean leaves no table inet weir", nft_weir(ns) == "", nft_weir(ns))
    r = weir("clean", "--netns", ns)
    check("clean twice succeeds", r.returncode == 0, show(r))
    r = weir("check", "--netns", ns)
    check("check after clean: exit 1", r.returncode == 1, show(r))
    r = weir("check", "--netns", PREFIX + "nonexistent")
    check("check on a missing namespace: exit 2, one line",
          r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, show(r))


def test_own_namespace(ns):
    # Run weir inside a namespace of ours, so that even a broken refusal could
    # only touch that namespace, never the machine's.
    for ref in ["/proc/self/ns/net", "/proc/thread-self/ns/net"]:
        r = in_ns(ns, WEIR, "apply", "--netns", ref)
        check(f"apply --netns {ref} on its own namespace is refused", r.returncode == 2
              and len(r.stderr.strip().splitlines()) == 1, show(r))
    r = in_ns(ns, WEIR, "clean", "--netns", "/proc/self/ns/net")
    check("clean on its own namespace is refused", r.returncode == 2, show(r))
    check("nothing was installed", "WEIR_" not in save(ns) and nft_weir(ns) == "", save(ns) + nft_weir(ns))
    r = in_ns(ns, WEIR, "apply", "--netns", "self")
    check("apply --netns self is allowed", r.returncode == 0 and "WEIR_OUTPUT" in weir_rules(ns), show(r))
    r = in_ns(ns, WEIR, "clean", "--netns", "self")
    check("clean --netns self", r.returncode == 0 and "WEIR_" not in save(ns) and nft_weir(ns) == "", show(r))


def main():
    if not os.access(WEIR, os.X_OK):
        print(f"skip: {WEIR} is not built")
        return 77
    test_plan_text_and_json()
    test_bad_flags()
    test_config_and_overrides()
    test_explain_from_flags()
    test_help_and_version()
    if os.geteuid() != 0:
        print("skip: the namespace part (apply/check/show/clean, restore --test) needs root")
        return 1 if FAILURES else 77
    for tool in ["ip", "iptables-legacy", "iptables-legacy-restore", "ip6tables-legacy-restore"]:
        if not shutil.which(tool):
            print(f"skip: {tool} not installed")
            return 1 if FAILURES else 77
    try:
        test_unprivileged_plan_restores(make_netns("r"))
        test_apply_check_show_clean(make_netns("a"))
        test_own_namespace(make_netns("s"))
    finally:
        cleanup()
    print(f"{len(FAILURES)} failure(s)" if FAILURES else "all passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
