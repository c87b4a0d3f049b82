#!/usr/bin/env python3
"""netns testbed: a Kubernetes node on one machine, for weir's tests, demo and benchmarks.

Python 3 standard library only. Import it (tests put $WEIR_SOURCE_DIR/netns-testbed
on sys.path) or run it (`testbed.py --help`).

Layout. Everything lives in network namespaces the testbed creates; the machine's
own (root) namespace never gets a link, route, rule or sysctl:

    <prefix>-node     the "node": bridge cni0, 198.18.0.1/24 + fd00:198:18::1/64
    <prefix>-<pod>    one namespace per pod, eth0 (a veth whose peer sits in the
                      node namespace on cni0), lo up, default routes via the bridge

Pods wired with `ip` (add_pod) get 198.18.0.10-99 / fd00:198:18::10-99; pods wired
through CNI plugins (add_pod_cni, host-local IPAM) get 198.18.0.100-250 /
fd00:198:18::100-1ff, so both kinds share one bridge. CNI plugins run inside the
node namespace with CNI_NETNS pointing at the pod, so the bridge plugin builds its
bridge there, not in the root namespace. host-local keeps its state in the
testbed's temporary directory.

API (all timeouts bounded; every call raises TestbedError on failure unless said):

    from testbed import Testbed, require_root
    require_root()                        # exits 77 (ctest "skipped") when not root
    with Testbed(role="cni") as tb:       # prefix "wt-cni-<pid>-<n>"; tb.prefix, tb.node, tb.tmp
        a = tb.add_pod("a")               # Pod: .name .netns .path .ip4 .ip6 .ifname .container_id
        b = tb.add_pod_cni("b", [bridge_conf(tb), weir_conf], cni_version="1.0.0",
                           runtime_config={...}, annotations={...})
        #  -> Pod; the chain's calls are in b.cni_calls (list of CniCall); raises when a
        #     call fails unless check=False. Config helpers: tb.bridge_conf(),
        #     loopback_conf(), plugin(type, **keys).
        calls = tb.cni_chain("ADD"|"CHECK"|"DEL", plugins, pod=b, ...)  # generic runner
        call = tb.cni_invoke(binary_or_type, "VERSION", {"cniVersion": "1.1.0"}, env={})
        #  CniCall: .plugin .command .returncode .stdout .stderr .json .stdin .ok
        sidecar = tb.sidecar(a)           # weir-probe on 15001+15006 as uid/gid 1337
        app = tb.serve(b, [8080], uid=1000, gid=1000, family="both", udp=False)
        r = tb.connect(b, a.addr(8080), uid=1000)   # dict: the server's report or {"error":...}
        r = tb.connect(b, a.addr(8080, 6))          # "[fd00:198:18::10]:8080"
        dns = tb.dns_serve(a, [15053], uid=1337, upstream=b.addr(53))  # DNS stub (UDP+TCP)
        tb.dns_serve(b, [53], answers=["198.18.7.1"])                 # a "real" nameserver
        r = tb.dns_query(a, b.addr(53), uid=1000, tcp=False)
        #  -> {"rcode","answers":[...],"report":{the answering server's report}|None}
        tb.exec(a, ["iptables-legacy-save"])        # CompletedProcess, in the pod's netns
        tb.iptables_save(a, 4|6)                    # text
        backend_in_use()                  # "nftables" or "iptables": what auto picks in this run
        tb.weir_rules(a)                  # weir's rules in that backend's form, normalized
        tb.weir_leftovers(a, "iptables")  # "" when nothing of weir's is in that backend
        tb.nft_weir_rules(a)              # rules of table inet weir (nft --json), [] without it
        tb.delete_weir_rule(a, 4, "WEIR_OUTPUT", 1)   # drift made by hand, in the backend in use
        tb.flush_weir_chain(a, 6, "WEIR_OUTPUT")
        proc.stop()                       # also done by tb.close()/the with-block
    # leaving the with-block (or tb.close(), atexit, SIGINT/SIGTERM) kills every process
    # the testbed started, runs nothing else, and deletes its namespaces and temp dir.

    connect() reports: {"proto","landed","local","peer","orig_dst"} (see weir-probe).
    Pods, servers and CNI chains may be added from several threads at once.
    Servers run as the uid/gid given from the start (a socket carries its creator's
    credentials, which `-m owner` matches), and exit by themselves after
    max_seconds (default 600) should a test die without cleaning up.

CLI:
    testbed.py demo                       # two pods, a sidecar, a few connections, cleanup
    testbed.py cleanup --prefix wt-bed-   # remove leftover namespaces/processes/dirs
    testbed.py list [--prefix wt-]

Binaries: weir-probe and weir-cni come from $WEIR_BIN_DIR (default: build/bin of
this checkout); reference plugins from /usr/lib/cni ($WEIR_CNI_PLUGIN_DIR).
"""

from __future__ import annotations

import atexit
import copy
import glob
import ipaddress
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref

__all__ = [
    "Testbed", "Pod", "Proc", "CniCall", "TestbedError", "require_root", "cleanup",
    "bin_dir", "probe_bin", "backend_in_use", "other_backend", "SUBNET4", "SUBNET6", "GATEWAY4", "GATEWAY6",
]

SUBNET4 = "198.18.0.0/24"
SUBNET6 = "fd00:198:18::/64"
GATEWAY4 = "198.18.0.1"
GATEWAY6 = "fd00:198:18::1"
BRIDGE = "cni0"
NETNS_DIR = "/var/run/netns"
CMD_TIMEOUT = 30          # seconds for any single command
READY_TIMEOUT = 5.0       # seconds for a server to start listening
STOP_TIMEOUT = 3.0        # seconds between SIGTERM and SIGKILL
# weir-probe's own safety limit. A sanitizer build (ctest sets
# WEIR_SANITIZED=1) runs the explain agreement's 4,140 flows in about 11
# minutes, past 600 s: its listeners would exit mid-test and refuse the rest.
PROBE_MAX_SECONDS = 1500 if os.environ.get("WEIR_SANITIZED") == "1" else 600


class TestbedError(Exception):
    pass


def require_root() -> None:
    """Exit 77 (ctest: skipped) with a reason when the tests cannot run here."""
    if os.geteuid() != 0:
        print("SKIP: needs root (creates network namespaces)", file=sys.stderr)
        sys.exit(77)
    for tool in ("ip",):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} not found (install iproute2)", file=sys.stderr)
            sys.exit(77)


def backend_in_use() -> str:
    """The packet filter weir's `auto` picks in this run: "iptables" (legacy
    xtables) when the test switch WEIR_TEST_UNAVAILABLE_BACKEND=nftables hides
    nf_tables (kernel/ops.cc), else "nftables" (this kernel takes weir's
    ruleset, so auto picks it, also with the switch unset)."""
    return "iptables" if os.environ.get("WEIR_TEST_UNAVAILABLE_BACKEND") == "nftables" else "nftables"


def other_backend(backend: str | None = None) -> str:
    return "iptables" if (backend or backend_in_use()) == "nftables" else "nftables"


def bin_dir() -> str:
    d = os.environ.get("WEIR_BIN_DIR")
    if d:
        return d
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "bin")


def probe_bin() -> str:
    p = os.path.join(bin_dir(), "weir-probe")
    if not os.access(p, os.X_OK):
        raise TestbedError(f"{p} not found: build the weir-probe target (or set WEIR_BIN_DIR)")
    return p


def plugin_dirs() -> list[str]:
    return [bin_dir(), os.environ.get("WEIR_CNI_PLUGIN_DIR", "/usr/lib/cni")]


def _run(argv, *, timeout=CMD_TIMEOUT, check=True, input=None, env=None) -> subprocess.CompletedProcess:
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env,
                            text=isinstance(input, str) or input is None)
    except subprocess.TimeoutExpired as e:
        raise TestbedError(f"{' '.join(map(str, argv))}: timed out after {timeout}s") from e
    if check and cp.returncode != 0:
        raise TestbedError(f"{' '.join(map(str, argv))}: exit {cp.returncode}: {cp.stderr.strip()}")
    return cp


def _netns_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _netns_pids(name: str) -> list[int]:
    cp = _run(["ip", "netns", "pids", name], check=False, timeout=10)
    return [int(p) for p in cp.stdout.split() if p.isdigit()]


def _delete_netns(name: str) -> None:
    # Kill whatever still runs inside first; a namespace with processes lingers.
    for attempt in range(3):
        pids = _netns_pids(name)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05 * (attempt + 1))
    _run(["ip", "netns", "delete", name], check=False, timeout=10)


def cleanup(prefix: str) -> list[str]:
    """Removes namespaces named <prefix>* (and their processes) and the testbed's temp
    dirs for that prefix. Returns the namespaces removed."""
    if len(prefix) < 3:
        raise TestbedError(f"cleanup: prefix {prefix!r} is too short to be safe")
    removed = []
    names = [n for n in _netns_names() if n.startswith(prefix)]
    # Pods before nodes: a pod's veth peer goes away with either side anyway.
    for n in sorted(names, key=lambda n: n.endswith("-node")):
        _delete_netns(n)
        removed.append(n)
    for d in glob.glob(os.path.join(tempfile.gettempdir(), f"weir-testbed-{prefix}*")):
        shutil.rmtree(d, ignore_errors=True)
    return removed


class CniCall:
    """One plugin invocation as a runtime makes it."""

    def __init__(self, plugin, command, stdin, returncode, stdout, stderr, seconds):
        self.plugin, self.command, self.stdin = plugin, command, stdin
        self.returncode, self.stdout, self.stderr, self.seconds = returncode, stdout, stderr, seconds
        try:
            self.json = json.loads(stdout) if stdout.strip() else None
        except ValueError:
            self.json = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __repr__(self):
        return (f"CniCall({self.plugin} {self.command} rc={self.returncode} "
                f"stdout={self.stdout.strip()[:300]!r} stderr={self.stderr.strip()[:300]!r})")


class Pod:
    def __init__(self, name, netns, ip4=None, ip6=None, ifname="eth0", container_id=None,
                 namespace="default", uid=None):
        self.name, self.netns, self.ip4, self.ip6, self.ifname = name, netns, ip4, ip6, ifname
        self.container_id = container_id or uuid.uuid4().hex
        self.k8s_namespace = namespace
        self.k8s_uid = uid or str(uuid.uuid4())
        self.cni_plugins = None     # the chain this pod was added with (CNI pods)
        self.cni_result = None      # the cached final ADD result, as a runtime keeps it
        self.cni_calls = []         # every CniCall made for this pod, in order
        self.cni_version = "1.0.0"  # the chain's cniVersion, reused by CHECK/DEL
        self.network_name = "weir-testbed"
        self.runtime_config = {}    # what ADD got as runtimeConfig (annotations...)

    @property
    def path(self) -> str:
        return os.path.join(NETNS_DIR, self.netns)

    def addr(self, port: int, family: int = 4) -> str:
        """"ADDR:PORT" (family 4) or "[ADDR]:PORT" (family 6) of this pod."""
        if family == 6:
            return f"[{self.ip6}]:{port}"
        return f"{self.ip4}:{port}"

    def __repr__(self):
        return f"Pod({self.name}, netns={self.netns}, {self.ip4}, {self.ip6})"


class Proc:
    """A process the testbed started in a pod, in its own process group."""

    def __init__(self, popen, argv, out_path, ready_file=None):
        self.popen, self.argv, self.out_path, self.ready_file = popen, argv, out_path, ready_file

    @property
    def pid(self):
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            with open(self.out_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def reports(self) -> list[dict]:
        """The JSON lines a weir-probe server printed, one per connection."""
        out = []
        for line in self.output().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


# Every live testbed, so atexit and signal handlers can tear them down.
_live: "weakref.WeakSet[Testbed]" = weakref.WeakSet()
_counter = itertools.count()
_handlers_installed = False


def _teardown_all():
    for tb in list(_live):
        tb.close()


def _on_signal(signum, frame):
    _teardown_all()
    # Default behaviour afterwards: KeyboardInterrupt for SIGINT, exit for SIGTERM.
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


def _install_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_teardown_all)
    # ctest kills a test that outlives its TIMEOUT with SIGKILL, which no
    # handler sees: WEIR_TEST_DEADLINE (seconds, set by tests/CMakeLists.txt a
    # little under TIMEOUT) tears the testbed down first and fails the test.
    deadline = int(os.environ.get("WEIR_TEST_DEADLINE", "0") or 0)
    if deadline > 0:
        try:
            if signal.getsignal(signal.SIGALRM) == signal.SIG_DFL:
                def _on_deadline(signum, frame):
                    print(f"testbed: WEIR_TEST_DEADLINE ({deadline} s) reached; tearing down", file=sys.stderr,
                          flush=True)
                    _on_signal(signum, frame)
                signal.signal(signal.SIGALRM, _on_deadline)
                signal.alarm(deadline)
        except ValueError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread: atexit still covers normal exits
            pass


class Testbed:
    def __init__(self, role: str = "bed", prefix: str | None = None):
        if prefix is None:
            prefix = f"wt-{role}-{os.getpid()}-{next(_counter)}"
        self.prefix = prefix
        self.node = f"{prefix}-node"
        self.tmp = tempfile.mkdtemp(prefix=f"weir-testbed-{prefix}-")
        self.pods: dict[str, Pod] = {}
        self.procs: list[Proc] = []
        self._next_host = 10
        self._next_veth = 0
        self._ids = itertools.count()
        self._lock = threading.Lock()  # tests add pods and start servers from threads
        self._closed = False
        _install_handlers()
        _live.add(self)
        try:
            self._make_node()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ lifecycle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        """Stops every process and removes every namespace and file of this testbed.
        Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for p in self.procs:
            try:
                p.stop()
            except Exception:
                pass
        for pod in list(self.pods.values()):
            _delete_netns(pod.netns)
        _delete_netns(self.node)
        # Anything with our prefix that a failed step left behind.
        for n in _netns_names():
            if n.startswith(self.prefix + "-"):
                _delete_netns(n)
        shutil.rmtree(self.tmp, ignore_errors=True)
        _live.discard(self)

    def _add_netns(self, name: str) -> None:
        if name in _netns_names():
            raise TestbedError(f"network namespace {name} already exists (run: testbed.py cleanup --prefix {self.prefix})")
        _run(["ip", "netns", "add", name])
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _make_node(self) -> None:
        self._add_netns(self.node)
        n = ["ip", "-n", self.node]
        _run(n + ["link", "add", BRIDGE, "type", "bridge"])
        _run(n + ["addr", "add", f"{GATEWAY4}/24", "dev", BRIDGE])
        _run(n + ["-6", "addr", "add", f"{GATEWAY6}/64", "dev", BRIDGE, "nodad"])
        _run(n + ["link", "set", BRIDGE, "up"])

    # ------------------------------------------------------------ pods

    def _pod_netns(self, name: str) -> str:
        if name in self.pods:
            raise TestbedError(f"pod {name} already exists")
        return f"{self.prefix}-{name}"

    def add_pod(self, name: str, ip4: str | None = None, ip6: str | None = None) -> Pod:
        """A pod namespace wired with plain `ip` commands: veth eth0 on the node's
        bridge, both families, lo up, default routes via the bridge."""
        with self._lock:
            if ip4 is None or ip6 is None:
                if self._next_host > 99:
                    raise TestbedError("no more addresses for ip-wired pods (10-99)")
                host = self._next_host
                self._next_host += 1
                ip4 = ip4 or str(ipaddress.ip_network(SUBNET4)[host])
                ip6 = ip6 or str(ipaddress.ip_network(SUBNET6)[int(str(host), 16)])
            netns = self._pod_netns(name)
            pod = Pod(name, netns, ip4, ip6)
            self.pods[name] = pod
            veth = f"vp{self._next_veth}"
            self._next_veth += 1
        self._add_netns(netns)
        n = ["ip", "-n", self.node]
        p = ["ip", "-n", netns]
        # Made inside the node namespace, the peer moved straight into the pod.
        _run(n + ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
        _run(n + ["link", "set", veth, "master", BRIDGE, "up"])
        _run(p + ["addr", "add", f"{ip4}/24", "dev", "eth0"])
        _run(p + ["-6", "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad"])
        _run(p + ["link", "set", "eth0", "up"])
        _run(p + ["route", "add", "default", "via", GATEWAY4])
        _run(p + ["-6", "route", "add", "default", "via", GATEWAY6])
        return pod

    def bridge_conf(self, **extra) -> dict:
        """The reference bridge plugin with host-local IPAM on the testbed's subnets."""
        conf = {
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": False,
            "ipam": {
                "type": "host-local",
                "dataDir": os.path.join(self.tmp, "host-local"),
                "ranges": [
                    [{"subnet": SUBNET4, "rangeStart": "198.18.0.100", "rangeEnd": "198.18.0.250",
                      "gateway": GATEWAY4}],
                    [{"subnet": SUBNET6, "rangeStart": "fd00:198:18::100", "rangeEnd": "fd00:198:18::1ff",
                      "gateway": GATEWAY6}],
                ],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
            },
        }
        conf.update(extra)
        return conf

    @staticmethod
    def loopback_conf() -> dict:
        return {"type": "loopback"}

    @staticmethod
    def plugin(type_: str, **keys) -> dict:
        d = {"type": type_}
        d.update(keys)
        return d

    def add_pod_cni(self, name: str, plugins: list[dict], *, cni_version: str = "1.0.0",
                    network_name: str = "weir-testbed", annotations: dict | None = None,
                    runtime_config: dict | None = None, k8s_namespace: str = "default",
                    ifname: str = "eth0", check: bool = True, loopback: bool = True) -> Pod:
        """A pod attached the way containerd does it: lo through the loopback plugin
        (when loopback=True), then ADD through `plugins` in order. Pod annotations go
        into runtimeConfig["io.kubernetes.cri.pod-annotations"] for plugins that
        declare that capability. The pod's addresses come from the ADD result."""
        with self._lock:
            netns = self._pod_netns(name)
            pod = Pod(name, netns, ifname=ifname, namespace=k8s_namespace)
            self.pods[name] = pod
        _run(["ip", "netns", "add", netns])
        if loopback:
            calls = self.cni_chain("ADD", [self.loopback_conf()], pod=pod, cni_version=cni_version,
                                   network_name="cni-loopback", ifname="lo", cache=False)
            if not calls[-1].ok:
                raise TestbedError(f"loopback ADD for pod {name} failed: {calls[-1]}")
        rc = dict(runtime_config or {})
        if annotations is not None:
            rc["io.kubernetes.cri.pod-annotations"] = annotations
        pod.runtime_config = rc
        calls = self.cni_chain("ADD", plugins, pod=pod, cni_version=cni_version,
                               network_name=network_name, runtime_config=rc)
        if check and not all(c.ok for c in calls):
            raise TestbedError(f"CNI ADD for pod {name} failed: {calls[-1]}")
        self._learn_addresses(pod)
        return pod

    def _learn_addresses(self, pod: Pod) -> None:
        for ip in (pod.cni_result or {}).get("ips", []):
            addr = ipaddress.ip_interface(ip["address"]).ip
            if addr.version == 4 and pod.ip4 is None:
                pod.ip4 = str(addr)
            elif addr.version == 6 and pod.ip6 is None:
                pod.ip6 = str(addr)

    def remove_pod(self, pod: Pod) -> list[CniCall]:
        """DEL through the pod's chain (CNI pods), then delete its namespace."""
        calls = []
        if pod.cni_plugins is not None:
            calls = self.cni_chain("DEL", pod.cni_plugins, pod=pod)
        _delete_netns(pod.netns)
        self.pods.pop(pod.name, None)
        return calls

    # ------------------------------------------------------------ CNI runner

    def resolve_plugin(self, type_or_path: str) -> str:
        if os.sep in type_or_path:
            return type_or_path
        for d in plugin_dirs():
            p = os.path.join(d, type_or_path)
            if os.access(p, os.X_OK):
                return p
        raise TestbedError(f"CNI plugin {type_or_path!r} not found in {plugin_dirs()}")

    @staticmethod
    def containerd_cni_args(pod: Pod) -> str:
        """CNI_ARGS as containerd's CRI sends them: IgnoreUnknown=1 and the pod's
        identity, in random order (containerd builds them from a Go map)."""
        args = [
            "IgnoreUnknown=1",
            f"K8S_POD_NAMESPACE={pod.k8s_namespace}",
            f"K8S_POD_NAME={pod.name}",
            f"K8S_POD_INFRA_CONTAINER_ID={pod.container_id}",
            f"K8S_POD_UID={pod.k8s_uid}",
        ]
        random.shuffle(args)
        return ";".join(args)

    def cni_invoke(self, plugin: str, command: str, stdin, *, env: dict | None = None,
                   in_node: bool = True, timeout: float = CMD_TIMEOUT) -> CniCall:
        """Runs one plugin binary (a path, or a type looked up in $WEIR_BIN_DIR and
        /usr/lib/cni) with CNI_COMMAND=command, `env` added to a clean environment,
        and `stdin` (a dict is sent as JSON; str/bytes as they are). In the node
        namespace unless in_node=False (then in the caller's: only for VERSION)."""
        binary = self.resolve_plugin(plugin)
        # The test switch that hides a packet filter (kernel/ops.cc) reaches
        # the plugins, whose environment is otherwise clean.
        e = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
             "WEIR_TEST_UNAVAILABLE_BACKEND": os.environ.get("WEIR_TEST_UNAVAILABLE_BACKEND", ""),
             "CNI_COMMAND": command, "CNI_PATH": os.pathsep.join(plugin_dirs())}
        e.update(env or {})
        data = json.dumps(stdin) if isinstance(stdin, (dict, list)) else stdin
        if isinstance(data, str):
            data = data.encode()
        argv = (["ip", "netns", "exec", self.node] if in_node else []) + [binary]
        t0 = time.monotonic()
        try:
            cp = subprocess.run(argv, input=data or b"", capture_output=True, env=e, timeout=timeout)
            rc, out, err = cp.returncode, cp.stdout.decode(errors="replace"), cp.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired:
            rc, out, err = -1, "", f"timed out after {timeout}s"
        return CniCall(os.path.basename(binary), command, data.decode(errors="replace") if data else "",
                       rc, out, err, time.monotonic() - t0)

    def cni_chain(self, command: str, plugins: list[dict], *, pod: Pod, cni_version: str | None = None,
                  network_name: str | None = None, runtime_config: dict | None = None,
                  ifname: str | None = None, netns_path: str | None = None, cni_args: str | None = None,
                  prev_result: dict | None = None, cache: bool = True, stop_on_error: bool = True,
                  extra_env: dict | None = None) -> list[CniCall]:
        """Runs a plugin chain as a runtime does (libcni): for each plugin's entry inject
        name, cniVersion, runtimeConfig (only declared capabilities) and prevResult;
        ADD in order, each result feeding the next; CHECK in order and DEL in reverse,
        both with the cached final ADD result. With cache=True the final ADD result is
        kept on the pod (and dropped after DEL). netns_path="" gives an empty CNI_NETNS
        (as containerd's second DEL). Returns the calls made; stops at the first failure
        unless stop_on_error=False."""
        command = command.upper()
        if cache and command == "ADD":
            pod.cni_plugins = copy.deepcopy(plugins)
            pod.cni_version = cni_version or "1.0.0"
            pod.network_name = network_name or "weir-testbed"
        cni_version = cni_version or pod.cni_version
        network_name = network_name or pod.network_name
        if runtime_config is None:
            runtime_config = pod.runtime_config
        env = {
            "CNI_CONTAINERID": pod.container_id,
            "CNI_NETNS": pod.path if netns_path is None else netns_path,
            "CNI_IFNAME": ifname or pod.ifname,
            "CNI_ARGS": cni_args if cni_args is not None else self.containerd_cni_args(pod),
        }
        env.update(extra_env or {})
        if command == "ADD":
            order, prev = list(plugins), prev_result
        else:
            order = list(reversed(plugins)) if command == "DEL" else list(plugins)
            prev = prev_result if prev_result is not None else (pod.cni_result if cache else None)
        calls = []
        for conf in order:
            stdin = copy.deepcopy(conf)
            stdin["name"] = network_name
            stdin["cniVersion"] = cni_version
            caps = conf.get("capabilities") or {}
            rc = {k: v for k, v in runtime_config.items() if caps.get(k)}
            if rc:
                stdin["runtimeConfig"] = rc
            if prev is not None:
                stdin["prevResult"] = prev
            call = self.cni_invoke(conf["type"], command, stdin, env=env)
            calls.append(call)
            pod.cni_calls.append(call)
            if command == "ADD" and call.ok:
                prev = call.json
            if not call.ok and stop_on_error:
                break
        if cache and command == "ADD" and calls and all(c.ok for c in calls):
            pod.cni_result = prev
        if cache and command == "DEL" and all(c.ok for c in calls):
            pod.cni_result = None
        return calls

    # ------------------------------------------------------------ processes

    def _ns_of(self, where) -> str:
        return where.netns if isinstance(where, Pod) else where

    def exec(self, where, argv: list[str], *, check: bool = False, timeout: float = CMD_TIMEOUT,
             input=None) -> subprocess.CompletedProcess:
        """Runs a command to completion inside a pod's (or a named) namespace."""
        return _run(["ip", "netns", "exec", self._ns_of(where)] + list(argv), check=check,
                    timeout=timeout, input=input)

    def spawn(self, where, argv: list[str], *, name: str = "proc") -> Proc:
        """Starts a long-running command in a namespace, in its own process group;
        stopped by Proc.stop() or when the testbed closes."""
        if self._closed:
            raise TestbedError("testbed is closed")
        out_path = os.path.join(self.tmp, f"{name}-{next(self._ids)}.out")
        full = ["ip", "netns", "exec", self._ns_of(where)] + list(argv)
        with open(out_path, "wb") as out:
            popen = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        proc = Proc(popen, full, out_path)
        with self._lock:
            self.procs.append(proc)
        return proc

    def serve(self, where, ports: list[int], *, uid: int | None = None, gid: int | None = None,
              family: str = "both", udp: bool = False, transparent: bool = False,
              max_seconds: int = PROBE_MAX_SECONDS) -> Proc:
        """weir-probe serve in a namespace; returns once it listens (bounded wait)."""
        ready = os.path.join(self.tmp, f"ready-{next(self._ids)}")
        argv = [probe_bin(), "serve", "--family", str(family), "--ready-file", ready,
                "--max-seconds", str(max_seconds)]
        for p in ports:
            argv += ["--port", str(p)]
        if uid is not None:
            argv += ["--uid", str(uid)]
        if gid is not None:
            argv += ["--gid", str(gid)]
        if udp:
            argv.append("--udp")
        if transparent:
            argv.append("--transparent")
        proc = self.spawn(where, argv, name=f"serve-{'-'.join(map(str, ports))}")
        self._wait_ready(proc, ready, where, f"serve {ports}")
        return proc

    def _wait_ready(self, proc: Proc, ready: str, where, what: str) -> None:
        proc.ready_file = ready
        deadline = time.monotonic() + READY_TIMEOUT
        while not os.path.exists(ready):
            if not proc.alive():
                raise TestbedError(f"weir-probe {what} in {self._ns_of(where)} exited: {proc.output().strip()}")
            if time.monotonic() > deadline:
                proc.stop()
                raise TestbedError(f"weir-probe {what} in {self._ns_of(where)} not ready after {READY_TIMEOUT}s")
            time.sleep(0.01)

    def dns_serve(self, where, ports: list[int], *, uid: int | None = None, gid: int | None = None,
                  family: str = "both", answers: list[str] | None = None, upstream: str | None = None,
                  max_seconds: int = PROBE_MAX_SECONDS) -> Proc:
        """weir-probe dns-serve (UDP and TCP): answers with `answers` plus a TXT report,
        or forwards to `upstream`. Proc.reports() lists the queries it saw."""
        ready = os.path.join(self.tmp, f"ready-{next(self._ids)}")
        argv = [probe_bin(), "dns-serve", "--family", family, "--ready-file", ready,
                "--max-seconds", str(max_seconds)]
        for p in ports:
            argv += ["--port", str(p)]
        for a in answers or []:
            argv += ["--answer", a]
        if upstream:
            argv += ["--upstream", upstream]
        if uid is not None:
            argv += ["--uid", str(uid)]
        if gid is not None:
            argv += ["--gid", str(gid)]
        proc = self.spawn(where, argv, name=f"dns-{'-'.join(map(str, ports))}")
        self._wait_ready(proc, ready, where, f"dns-serve {ports}")
        return proc

    def dns_query(self, where, server: str, *, name: str = "probe.weir.test", qtype: str = "A",
                  tcp: bool = False, uid: int | None = None, gid: int | None = None,
                  timeout_ms: int = 2000) -> dict:
        """weir-probe dns-query from a namespace: the parsed answer, or {"error": ...}."""
        argv = [probe_bin(), "dns-query", "--server", server, "--name", name, "--type", qtype,
                "--timeout-ms", str(timeout_ms)]
        if tcp:
            argv.append("--tcp")
        if uid is not None:
            argv += ["--uid", str(uid)]
        if gid is not None:
            argv += ["--gid", str(gid)]
        cp = self.exec(where, argv, timeout=timeout_ms / 1000 + 10)
        line = cp.stdout.strip().splitlines()[-1] if cp.stdout.strip() else ""
        try:
            return json.loads(line)
        except ValueError:
            return {"error": f"weir-probe dns-query exit {cp.returncode}: {cp.stdout.strip()} {cp.stderr.strip()}"}

    def sidecar(self, pod, *, outbound_port: int = 15001, inbound_port: int = 15006, uid: int = 1337,
                gid: int = 1337, family: str = "both", transparent: bool = False) -> Proc:
        """A stub sidecar: weir-probe listening on the outbound and inbound ports as the proxy."""
        return self.serve(pod, [outbound_port, inbound_port], uid=uid, gid=gid, family=family,
                          transparent=transparent)

    def connect(self, where, to: str, *, uid: int | None = None, gid: int | None = None,
                src: str | None = None, udp: bool = False, timeout_ms: int = 2000) -> dict:
        """weir-probe connect from a namespace; the server's report, or {"error": ...}."""
        argv = [probe_bin(), "connect", "--to", to, "--timeout-ms", str(timeout_ms)]
        if uid is not None:
            argv += ["--uid", str(uid)]
        if gid is not None:
            argv += ["--gid", str(gid)]
        if src:
            argv += ["--src", src]
        if udp:
            argv.append("--udp")
        cp = self.exec(where, argv, timeout=timeout_ms / 1000 + 10)
        line = cp.stdout.strip().splitlines()[-1] if cp.stdout.strip() else ""
        try:
            return json.loads(line)
        except ValueError:
            return {"error": f"weir-probe connect exit {cp.returncode}: {cp.stdout.strip()} {cp.stderr.strip()}"}

    def iptables_save(self, where, family: int = 4) -> str:
        tool = "iptables-legacy-save" if family == 4 else "ip6tables-legacy-save"
        return self.exec(where, [tool], check=True).stdout

    # ------------------------------------------------------------ weir's rules, either backend

    def nft_weir(self, where) -> list[dict] | None:
        """The objects of `nft --json list table inet weir` in a namespace (table,
        chains, sets, rules: each a one-key dict), or None when there is no such table."""
        cp = self.exec(where, ["nft", "--json", "list", "table", "inet", "weir"])
        if cp.returncode != 0:
            if "No such file or directory" in cp.stderr:
                return None
            raise TestbedError(f"nft --json list table inet weir in {self._ns_of(where)}: {cp.stderr.strip()}")
        return [o for o in json.loads(cp.stdout)["nftables"] if "metainfo" not in o]

    def nft_weir_rules(self, where) -> list[dict]:
        """The rules of table inet weir ([] without the table): dicts with
        "chain", "handle", "expr" and "comment" (the rule's reason)."""
        return [o["rule"] for o in self.nft_weir(where) or [] if "rule" in o]

    def weir_rules(self, where, backend: str | None = None) -> str:
        """weir's rules in a namespace as `backend` (default: the one in use,
        backend_in_use()) shows them, normalized so runs compare (counters
        zeroed, comments of iptables-save dropped):
          iptables: iptables-legacy-save + ip6tables-legacy-save, every table
                    (so a foreign rule is part of it too);
          nftables: `nft list table inet weir`, "" when there is none."""
        backend = backend or backend_in_use()
        if backend == "nftables":
            cp = self.exec(where, ["nft", "list", "table", "inet", "weir"])
            if cp.returncode != 0:
                return ""
            return re.sub(r"counter packets \d+ bytes \d+", "counter packets 0 bytes 0", cp.stdout)
        out = []
        for fam in (4, 6):
            out += [re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in self.iptables_save(where, fam).splitlines()
                    if not ln.startswith("#")]
        return "\n".join(out)

    def weir_leftovers(self, where, backend: str) -> str:
        """What of weir's sits in `backend` in a namespace: "" when nothing;
        else the WEIR_ lines of iptables-legacy-save (both families) or the
        listing of table inet weir."""
        if backend == "nftables":
            return self.weir_rules(where, "nftables")
        return "\n".join(ln for ln in self.weir_rules(where, "iptables").splitlines() if "WEIR_" in ln)

    @staticmethod
    def nft_chain(family: int, chain: str, table: str = "nat") -> str:
        """The name weir's nftables backend gives xtables chain `chain` of
        `table` for IPv4 or IPv6 (WEIR_OUTPUT of nat, IPv6: ip6_nat_WEIR_OUTPUT)."""
        return f"{'ip' if family == 4 else 'ip6'}_{table}_{chain}"

    def delete_weir_rule(self, where, family: int, chain: str = "WEIR_OUTPUT", index: int = 1,
                         table: str = "nat", backend: str | None = None) -> None:
        """Deletes weir's rule number `index` (from 1) of `chain` behind weir's
        back, as an admin would: `iptables-legacy -D` or `nft delete rule`."""
        backend = backend or backend_in_use()
        if backend == "iptables":
            tool = "iptables-legacy" if family == 4 else "ip6tables-legacy"
            self.exec(where, [tool, "-t", table, "-D", chain, str(index)], check=True)
            return
        name = self.nft_chain(family, chain, table)
        rules = [r for r in self.nft_weir_rules(where) if r["chain"] == name]
        if len(rules) < index:
            raise TestbedError(f"table inet weir chain {name} has {len(rules)} rules, not {index}")
        self.exec(where, ["nft", "delete", "rule", "inet", "weir", name, "handle", str(rules[index - 1]["handle"])],
                  check=True)

    def flush_weir_chain(self, where, family: int, chain: str = "WEIR_OUTPUT", table: str = "nat",
                         backend: str | None = None) -> None:
        """Empties one of weir's chains behind weir's back (-F, or nft flush chain)."""
        backend = backend or backend_in_use()
        if backend == "iptables":
            tool = "iptables-legacy" if family == 4 else "ip6tables-legacy"
            self.exec(where, [tool, "-t", table, "-F", chain], check=True)
            return
        self.exec(where, ["nft", "flush", "chain", "inet", "weir", self.nft_chain(family, chain, table)], check=True)

    def weir_base_jumps(self, where, family: int, builtin: str, backend: str | None = None) -> list:
        """weir's jumps from the nat base chain `builtin` (PREROUTING or OUTPUT)
        for one family: iptables-legacy-save lines, or rules of table inet weir."""
        backend = backend or backend_in_use()
        if backend == "iptables":
            return [ln for ln in self.iptables_save(where, family).splitlines()
                    if ln.startswith(f"-A {builtin} ") and "-j WEIR_" in ln]
        prefix = self.nft_chain(family, "WEIR_")
        return [r for r in self.nft_weir_rules(where) if r["chain"] == f"nat_{builtin.lower()}"
                and any(e.get("jump", {}).get("target", "").startswith(prefix) for e in r["expr"])]

    def weir_installed(self, where, backend: str | None = None) -> bool:
        """Whether weir's rules are in `backend` (default: the one in use)."""
        return self.weir_leftovers(where, backend or backend_in_use()) != ""


# ---------------------------------------------------------------- CLI

def _demo() -> int:
    require_root()
    with Testbed(role="demo") as tb:
        pod = tb.add_pod("app")
        peer = tb.add_pod("peer")
        tb.sidecar(pod)
        tb.serve(pod, [8080])
        tb.serve(peer, [8080])
        print(f"node {tb.node}; pods {pod} {peer}")
        for desc, where, to, uid in [
            ("peer -> app:8080", peer, pod.addr(8080), None),
            ("peer -> [app]:8080", peer, pod.addr(8080, 6), None),
            ("app(uid 1000) -> peer:8080", pod, peer.addr(8080), 1000),
        ]:
            print(f"{desc:30} {json.dumps(tb.connect(where, to, uid=uid))}")
        print("(no weir rules applied, so nothing is redirected)")
    return 0


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="weir's netns testbed: a node on one machine")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cleanup", help="remove leftover namespaces, processes and temp dirs")
    c.add_argument("--prefix", required=True,
                   help="e.g. wt-bed-1234- : removes EVERY namespace whose name starts with it, "
                        "including those of tests still running")
    ls = sub.add_parser("list", help="list testbed namespaces")
    ls.add_argument("--prefix", default="wt-")
    sub.add_parser("demo", help="two pods and a few connections, then cleanup")
    a = ap.parse_args(argv)
    if a.cmd == "cleanup":
        for n in cleanup(a.prefix):
            print(f"removed {n}")
        return 0
    if a.cmd == "list":
        for n in _netns_names():
            if n.startswith(a.prefix):
                print(n)
        return 0
    return _demo()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TestbedError as e:
        print(f"testbed: {e}", file=sys.stderr)
        sys.exit(1)
