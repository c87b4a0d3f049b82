#!/usr/bin/env python3
"""Other capture tools' rules in a pod are reported, never changed (issue 10, item 6).

Before weir runs, the pod gets what Istio and Linkerd leave behind:
- Istio's ISTIO_* chains in legacy xtables (iptables-legacy-restore, both
  families), hooked into PREROUTING and OUTPUT;
- Istio 1.27's native nftables table `inet istio-proxy-nat` (nft -f);
- Linkerd's PROXY_INIT_* chains through iptables-nft (when it is installed).
Then `weir apply`, `weir check`, `weir show`, `weir clean` and weir-cni
ADD/CHECK/DEL run against the pod, and:
- apply and ADD warn about each tool's rules, naming tool, backend, table and
  chains; check and CNI CHECK fail on them (weir's own rules are right:
  check's diff is empty); clean says they remain;
- the foreign rules are byte-identical (iptables-legacy-save of their tables
  without weir's lines, `nft list table`; counter values zeroed) after every
  step, and the legacy nat tables byte-identical as a whole after clean/DEL.
A backend the test switch WEIR_TEST_UNAVAILABLE_BACKEND hides is a kernel
interface the node lacks: what is in it is not reported (nothing reaches it),
and still never changed. ctest runs this with each backend hidden in turn.
Exit 77 when not root or a tool is missing.
"""

import json
import os
import re
import shutil
import subprocess
import sys

from checks import check, finish, testbed, Testbed, weir  # noqa: E402

ANNOTATIONS_CAP = "io.kubernetes.cri.pod-annotations"

ISTIO_LEGACY_V4 = """*nat
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -o lo -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""

ISTIO_LEGACY_V6 = """*nat
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""

# Istio 1.27's native nftables mode (knftables; shape after its istio-proxy-nat).
ISTIO_NFT = """table inet istio-proxy-nat {
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		meta l4proto tcp jump istio-inbound
	}
	chain output {
		type nat hook output priority -100; policy accept;
		jump istio-output
	}
	chain istio-inbound {
		tcp dport 15008 return
		meta l4proto tcp counter redirect to :15006
	}
	chain istio-output {
		oifname "lo" return
		meta l4proto tcp counter redirect to :15001 comment "istio-like"
	}
}
"""

# Linkerd's proxy-init with --iptables-mode nft: native expressions only (no -m comment).
LINKERD_NFT = """*nat
:PROXY_INIT_OUTPUT - [0:0]
:PROXY_INIT_REDIRECT - [0:0]
-A PREROUTING -p tcp -j PROXY_INIT_REDIRECT
-A OUTPUT -j PROXY_INIT_OUTPUT
-A PROXY_INIT_OUTPUT -o lo -j RETURN
-A PROXY_INIT_REDIRECT -p tcp --dport 4190 -j RETURN
COMMIT
"""


def hidden():
    return {b for b in os.environ.get("WEIR_TEST_UNAVAILABLE_BACKEND", "").split(",") if b}


# Counter values are the kernel's, not a tool's rules: the pod's own packets
# move them (an IGMP report when eth0 comes up reaches nat PREROUTING's
# policy). Every other byte must stay.
def zero_counters(text):
    text = re.sub(r"\[\d+:\d+\]", "[0:0]", text)
    return re.sub(r"counter packets \d+ bytes \d+", "counter packets 0 bytes 0", text)


def legacy_whole(tb, pod, fam):
    """iptables-legacy-save of one family's nat table, date lines dropped."""
    tool = "iptables-legacy-save" if fam == 4 else "ip6tables-legacy-save"
    out = tb.exec(pod, [tool, "-t", "nat"], check=True).stdout
    return zero_counters("".join(line + "\n" for line in out.splitlines() if not line.startswith("#")))


def legacy_foreign(tb, pod, fam):
    """The same without weir's lines (weir's chains and jumps come and go)."""
    return "".join(line + "\n" for line in legacy_whole(tb, pod, fam).splitlines() if "WEIR_" not in line)


def nft_table(tb, pod, family, name):
    cp = tb.exec(pod, ["nft", "list", "table", family, name])
    return zero_counters(f"exit {cp.returncode}\n{cp.stdout}{cp.stderr}")


class Foreign:
    """What the other tools installed, and their bytes to compare after each step."""

    def __init__(self, tb, pod, have_iptables_nft):
        self.tb, self.pod, self.nft_linkerd = tb, pod, have_iptables_nft
        self.before = self.snapshot()

    def snapshot(self):
        s = {"legacy v4 nat": legacy_foreign(self.tb, self.pod, 4),
             "legacy v6 nat": legacy_foreign(self.tb, self.pod, 6),
             "inet istio-proxy-nat": nft_table(self.tb, self.pod, "inet", "istio-proxy-nat")}
        if self.nft_linkerd:
            s["ip nat (iptables-nft)"] = nft_table(self.tb, self.pod, "ip", "nat")
        return s

    def unchanged(self, after_what):
        now = self.snapshot()
        for k, v in self.before.items():
            check(f"after {after_what}: {k} is byte-identical", now[k] == v, f"before:\n{v}\nafter:\n{now[k]}")


def expected(have_iptables_nft):
    """(what must be reported, what must not), as (needle regex, description) pairs."""
    legacy = [
        (r"Istio's ISTIO_\S+, (ISTIO_\S+, ){2}ISTIO_\S+ in legacy iptables nat: another capture tool's rules; "
         r"weir leaves them, but traffic may be captured twice", "Istio's four chains in legacy iptables nat"),
        (r"Istio's ISTIO_(OUTPUT|REDIRECT), ISTIO_(OUTPUT|REDIRECT) in legacy ip6tables nat", "Istio's in legacy ip6tables nat"),
    ]
    nft = [(r"Istio's table inet istio-proxy-nat in nftables", "Istio's native nftables table")]
    if have_iptables_nft:
        nft.append((r"Linkerd's PROXY_INIT_(OUTPUT|REDIRECT), PROXY_INIT_(OUTPUT|REDIRECT) in iptables-nft ip nat",
                    "Linkerd's chains in iptables-nft ip nat"))
    want, unwanted = [], []
    (unwanted if "iptables" in hidden() else want).extend(legacy)
    (unwanted if "nftables" in hidden() else want).extend(nft)
    return want, unwanted


def names_all(what, text, want, unwanted, remain=False):
    for rx, desc in want:
        if remain:
            rx = rx.split(": another")[0] + r" remains?: another capture tool's rules, which weir does not remove"
        check(f"{what}: names {desc}", re.search(rx, text) is not None, text[-3000:])
    for rx, desc in unwanted:
        check(f"{what}: says nothing of {desc} (its backend is hidden)", re.search(rx.split(" in ")[0] + " in", text) is None
              and re.search(rx, text) is None, text[-3000:])


def cni_stdin(pod, command, prev):
    d = {"type": "weir-cni", "capabilities": {ANNOTATIONS_CAP: True}, "name": "weir-testbed",
         "cniVersion": "1.0.0", "runtimeConfig": {ANNOTATIONS_CAP: {"weir.dev/capture": "enabled"}}}
    if command != "DEL" or prev:
        d["prevResult"] = prev
    return d


def prev_result(pod):
    """What the bridge plugin would have returned for the ip-wired pod."""
    return {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": pod.path}],
            "ips": [{"address": f"{pod.ip4}/24", "interface": 0, "gateway": "198.18.0.1"},
                    {"address": f"{pod.ip6}/64", "interface": 0}]}


def cni(tb, pod, command):
    env = {"CNI_CONTAINERID": f"foreign-{os.getpid()}", "CNI_NETNS": pod.path, "CNI_IFNAME": "eth0",
           "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod.name}"}
    return tb.cni_invoke("weir-cni", command, cni_stdin(pod, command, prev_result(pod)), env=env)


def cli_steps(tb, pod, foreign, want, unwanted):
    ns = pod.path
    r = weir("apply", "--netns", ns)
    check("weir apply succeeds beside the other tools' rules", r.returncode == 0, r.stderr)
    names_all("weir apply warns", r.stderr, want, unwanted)
    check("weir apply: the warnings are warnings", all(" warn" in line or "warning" in line
                                                         for line in r.stderr.splitlines()
                                                         if "another capture tool" in line), r.stderr)
    foreign.unchanged("weir apply")

    r = weir("check", "--netns", ns)
    check("weir check: exit 1 (a pod two tools capture is a problem)", r.returncode == 1, f"{r.stdout}{r.stderr}")
    check("weir check: one 'other capture tool:' line per finding, and no drift line",
          len([l for l in r.stdout.splitlines() if l.startswith("other capture tool: ")]) == len(want)
          and "missing" not in r.stdout and "extra" not in r.stdout, r.stdout)
    names_all("weir check", r.stdout, want, unwanted)
    r = weir("check", "--netns", ns, "-o", "json")
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        j = {}
    check("weir check -o json: inSync (weir's rules are right) and the findings under foreign",
          r.returncode == 1 and j.get("inSync") is True and len(j.get("foreign", [])) == len(want)
          and all({"tool", "backend", "table", "chains", "message"} <= set(f) for f in j.get("foreign", [])),
          r.stdout)
    foreign.unchanged("weir check")

    r = weir("show", "--netns", ns)
    check("weir show succeeds", r.returncode == 0 and "WEIR_" in r.stdout, f"{r.stdout}{r.stderr}")
    if "nftables" not in hidden():
        check("weir show (nftables): every rule has its counter values, as nft lists them",
              re.search(r"counter packets \d+ bytes \d+ ", r.stdout) is not None
              and re.search(r"counter (jump|return|redirect|accept)", r.stdout) is None
              and "delete table" not in r.stdout, r.stdout)
    foreign.unchanged("weir show")

    r = weir("clean", "--netns", ns)
    check("weir clean succeeds", r.returncode == 0, r.stderr)
    names_all("weir clean says they remain", r.stderr, want, unwanted, remain=True)
    foreign.unchanged("weir clean")
    for fam in (4, 6):
        check(f"after weir clean: the IPv{fam} legacy nat table is byte-identical, weir's lines gone too",
              legacy_whole(tb, pod, fam) == foreign.before[f"legacy v{fam} nat"], legacy_whole(tb, pod, fam))
    tables = tb.exec(pod, ["nft", "list", "tables"]).stdout
    check("after weir clean: no table inet weir", "inet weir" not in tables, tables)


def cni_steps(tb, pod, foreign, want, unwanted):
    add = cni(tb, pod, "ADD")
    check("weir-cni ADD succeeds beside the other tools' rules", add.returncode == 0, add)
    names_all("weir-cni ADD logs", add.stderr, want, unwanted)
    foreign.unchanged("weir-cni ADD")

    chk = cni(tb, pod, "CHECK")
    doc = chk.json if isinstance(chk.json, dict) else {}
    check("weir-cni CHECK fails with code 104 and says another capture tool is there",
          chk.returncode != 0 and doc.get("code") == 104 and "another capture tool" in doc.get("msg", ""), chk)
    names_all("weir-cni CHECK details", doc.get("details", ""), want, unwanted)
    foreign.unchanged("weir-cni CHECK")

    dele = cni(tb, pod, "DEL")
    check("weir-cni DEL succeeds", dele.returncode == 0, dele)
    foreign.unchanged("weir-cni DEL")
    tables = tb.exec(pod, ["nft", "list", "tables"]).stdout
    check("after weir-cni DEL: no table inet weir", "inet weir" not in tables, tables)
    for fam in (4, 6):
        check(f"after weir-cni DEL: no weir chain in legacy IPv{fam}", "WEIR_" not in legacy_whole(tb, pod, fam))


def main():
    testbed.require_root()
    for b in ("weir", "weir-cni"):
        if not os.access(os.path.join(testbed.bin_dir(), b), os.X_OK):
            print(f"FAIL: {b} is not built in {testbed.bin_dir()}", file=sys.stderr)
            return 1
    for tool in ("iptables-legacy-restore", "ip6tables-legacy-restore", "iptables-legacy-save", "nft"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed", file=sys.stderr)
            return 77
    have_iptables_nft = shutil.which("iptables-nft-restore") is not None
    if not have_iptables_nft:
        print("note: iptables-nft-restore is not installed: Linkerd's iptables-nft chains are not tried")
    print(f"backends hidden by the test switch: {sorted(hidden()) or 'none'}")
    want, unwanted = expected(have_iptables_nft)
    with Testbed("foreign", prefix=f"wt-foreign-{os.getpid()}") as tb:
        for step in (cli_steps, cni_steps):
            pod = tb.add_pod(step.__name__.replace("_steps", "").replace("_", "-"))
            for argv, text in ((["iptables-legacy-restore", "--noflush"], ISTIO_LEGACY_V4),
                               (["ip6tables-legacy-restore", "--noflush"], ISTIO_LEGACY_V6),
                               (["nft", "-f", "-"], ISTIO_NFT)) + (
                                  ((["iptables-nft-restore", "--noflush"], LINKERD_NFT),) if have_iptables_nft else ()):
                cp = tb.exec(pod, argv, input=text)
                check(f"{step.__name__}: {argv[0]} installs the other tool's rules", cp.returncode == 0, cp.stderr)
            foreign = Foreign(tb, pod, have_iptables_nft)
            check(f"{step.__name__}: the foreign rules are there to compare",
                  "ISTIO_INBOUND" in foreign.before["legacy v4 nat"]
                  and "istio-output" in foreign.before["inet istio-proxy-nat"], foreign.before)
            try:
                step(tb, pod, foreign, want, unwanted)
            except Exception as e:  # report and go on to cleanup
                check(f"{step.__name__} ran to the end", False, repr(e))
    left = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
            if n.startswith(f"wt-foreign-{os.getpid()}")]
    check("no namespace of this test is left", not left, left)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
