#!/usr/bin/env python3
"""weir-node against real files in temporary conf and bin dirs (never the
machine's /etc/cni/net.d or /opt/cni/bin): install and uninstall, `run`
keeping weir's entry and binary in place while a primary CNI agent rewrites,
deletes, converts and writes its config late, SIGTERM taking the entry out
before the binary, malformed primaries, an unwritable conf dir, a full disk,
own-file mode, /readyz and /metrics, and weir-cni STATUS gated on the agent's
readiness. Prints the median time from a primary rewrite to the entry being
back. The unwritable and full-disk cases use a private mount namespace
(unshare) so nothing is mounted on the machine; without root they are skipped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, testbed  # noqa: E402

BIN = testbed.bin_dir()
NODE = os.path.join(BIN, "weir-node")
CNI = os.path.join(BIN, "weir-cni")

CALICO = """{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "calico",
      "mtu": 1440,
      "ratio": 0.10,
      "ipam": {"type": "calico-ipam"}
    },
    {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
  ]
}
"""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Node:
    """One temporary node: conf dir, two bin dirs, state dir, and the agent."""

    def __init__(self, root: str, name: str):
        self.dir = os.path.join(root, name)
        self.conf = os.path.join(self.dir, "net.d")
        self.bins = [os.path.join(self.dir, "bin1"), os.path.join(self.dir, "bin2")]
        self.state = os.path.join(self.dir, "state")
        for d in [self.conf, *self.bins]:
            os.makedirs(d)
        self.port = free_port()
        self.proc = None
        self.log = os.path.join(self.dir, "agent.log")

    def flags(self, *extra):
        f = ["--cni-conf-dir", self.conf, "--state-dir", self.state, "--plugin-binary", CNI]
        for b in self.bins:
            f += ["--cni-bin-dir", b]
        return f + list(extra)

    def cmd(self, sub, *extra, timeout=30):
        return subprocess.run([NODE, sub, *self.flags(*extra)], capture_output=True, text=True, timeout=timeout)

    def start(self, *extra):
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen([NODE, "run", *self.flags("--repair", "off", "--listen", f"127.0.0.1:{self.port}", *extra)],
                                     stdout=self.logf, stderr=subprocess.STDOUT)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def log_text(self):
        with open(self.log) as f:
            return f.read()

    def write(self, name, text, atomic=True):
        path = os.path.join(self.conf, name)
        if atomic:  # as Calico's install-cni does: temp file and rename
            tmp = os.path.join(self.conf, "." + name + ".calico-tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, path)
        else:
            with open(path, "w") as f:
                f.write(text)

    def files(self):
        return sorted(os.listdir(self.conf))

    def read(self, name):
        try:
            with open(os.path.join(self.conf, name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def entries(self, name):
        text = self.read(name)
        if text is None:
            return -1
        try:
            doc = json.loads(text)
        except ValueError:
            return -2
        return sum(1 for p in doc.get("plugins", []) if isinstance(p, dict) and p.get("type") == "weir-cni")

    def binaries_intact(self):
        want = open(CNI, "rb").read()
        for b in self.bins:
            try:
                if open(os.path.join(b, "weir-cni"), "rb").read() != want:
                    return False
            except FileNotFoundError:
                return False
        return True

    def good(self, name):
        return self.entries(name) == 1 and self.binaries_intact()

    def wait(self, cond, timeout=1.0, step=0.002):
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if cond():
                return time.monotonic() - start
            time.sleep(step)
        return None

    def http(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)


def cni_status(entry: dict):
    stdin = dict(entry, cniVersion="1.1.0", name="k8s-pod-network")
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": "/nonexistent", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    r = subprocess.run([CNI], input=json.dumps(stdin), capture_output=True, text=True, env=env, timeout=30)
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        doc = {}
    return r.returncode, doc


def weir_entry_of(node, name):
    doc = json.loads(node.read(name))
    return [p for p in doc["plugins"] if p.get("type") == "weir-cni"][0]


def test_install_uninstall(root):
    n = Node(root, "once")
    n.write("10-calico.conflist", CALICO)
    r = n.cmd("install")
    check("install: exits 0", r.returncode == 0, r.stderr)
    check("install: one weir entry, last", n.entries("10-calico.conflist") == 1 and
          json.loads(n.read("10-calico.conflist"))["plugins"][-1]["type"] == "weir-cni", n.read("10-calico.conflist"))
    check("install: the binary in both bin dirs, identical and executable", n.binaries_intact() and
          all(os.access(os.path.join(b, "weir-cni"), os.X_OK) for b in n.bins))
    text = n.read("10-calico.conflist")
    check("install: every other byte kept (numbers as spelled)", text.startswith(CALICO[:CALICO.index("\n  ]\n}")]) and
          '"ratio": 0.10' in text, text)
    check("install: idempotent", n.cmd("install").returncode == 0 and n.read("10-calico.conflist") == text)
    st = n.cmd("status", "--output", "json")
    doc = json.loads(st.stdout) if st.returncode == 0 else {}
    check("status --output json: primary and entry", doc.get("primary") == "10-calico.conflist" and doc.get("entryInUse") is True, st.stdout)
    r = n.cmd("uninstall")
    check("uninstall: exits 0", r.returncode == 0, r.stderr)
    check("uninstall: the primary is byte for byte as before install", n.read("10-calico.conflist") == CALICO, n.read("10-calico.conflist"))
    check("uninstall: binaries removed", not any(os.path.exists(os.path.join(b, "weir-cni")) for b in n.bins))
    check("uninstall: idempotent", n.cmd("uninstall").returncode == 0)

    # A config that still names weir-cni (written by hand) keeps the binary.
    n.cmd("install")
    n.write("99-by-hand.conf", '{"cniVersion": "1.0.0", "name": "w", "type": "weir-cni"}')
    r = n.cmd("uninstall")
    check("uninstall: binary kept while a config still names weir-cni", r.returncode == 0 and n.binaries_intact() and
          "99-by-hand.conf" in r.stderr, r.stderr)

    # No primary yet: install waits and never writes a standalone config.
    e = Node(root, "empty")
    r = e.cmd("install", "--wait-timeout", "600ms")
    check("install without a primary: fails after --wait-timeout, writes no config", r.returncode == 1 and e.files() == [] and
          "no primary CNI config" in r.stderr, r.stderr)

    # .conf conversion.
    c = Node(root, "conf")
    c.write("10-flannel.conf", '{\n  "name": "cbr0",\n  "cniVersion": "0.3.1",\n  "type": "flannel"\n}\n')
    r = c.cmd("install")
    doc = json.loads(c.read("10-flannel.conflist") or "{}")
    check(".conf: turned into 10-flannel.conflist (the .conf removed), as libcni converts it",
          r.returncode == 0 and c.files() == ["10-flannel.conflist"] and doc.get("name") == "cbr0" and
          doc.get("cniVersion") == "0.3.1" and [p["type"] for p in doc.get("plugins", [])] == ["flannel", "weir-cni"], c.files())


def test_malformed_and_unwritable(root):
    n = Node(root, "malformed")
    broken = '{"name": "x", "plugins": [ {"type": "calico"'
    n.write("05-broken.conflist", broken)
    n.write("10-calico.conflist", CALICO)
    r = n.cmd("install")
    check("malformed primary: skipped with a log line naming it, the next one used",
          r.returncode == 0 and n.entries("10-calico.conflist") == 1 and "05-broken.conflist" in r.stderr, r.stderr)
    check("malformed primary: left byte for byte", n.read("05-broken.conflist") == broken)
    m = Node(root, "only-broken")
    m.write("10-calico.conflist", broken)
    r = m.cmd("install", "--wait-timeout", "300ms")
    check("only malformed configs: nothing written, nothing standalone", r.returncode == 1 and m.files() == ["10-calico.conflist"] and
          m.read("10-calico.conflist") == broken, r.stderr)
    bad = Node(root, "bad-plugin-config")
    bad.write("10-calico.conflist", CALICO)
    pc = os.path.join(bad.dir, "plugin.json")
    with open(pc, "w") as f:
        f.write('{"capture": {"outbondPort": 1}}')
    r = bad.cmd("install", "--plugin-config", pc)
    check("--plugin-config that weir-cni would refuse: refused before anything is written",
          r.returncode == 1 and "outbondPort" in r.stderr and bad.read("10-calico.conflist") == CALICO, r.stderr)

    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("skip: unwritable conf dir and full disk need root and unshare")
        return
    u = Node(root, "readonly")
    u.write("10-calico.conflist", CALICO)
    script = f'mount --bind "{u.conf}" "{u.conf}" && mount -o remount,bind,ro "{u.conf}" && exec "$@"'
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", NODE, "install", *u.flags()],
                       capture_output=True, text=True, timeout=30)
    check("unwritable conf dir: exits 1, the error names the directory and the cause",
          r.returncode == 1 and u.conf in r.stderr and "Read-only file system" in r.stderr, r.stderr)
    check("unwritable conf dir: primary unchanged, no temporary file", u.read("10-calico.conflist") == CALICO and
          u.files() == ["10-calico.conflist"], u.files())

    f = Node(root, "full")
    primary = os.path.join(f.dir, "primary")
    with open(primary, "w") as fh:
        fh.write(CALICO)
    script = (f'mount -t tmpfs -o size=16k tmpfs "{f.conf}" && cp "{primary}" "{f.conf}/10-calico.conflist" && '
              f'(dd if=/dev/zero of="{f.conf}/filler" bs=1k 2>/dev/null; true) && "$@"; rc=$?; rm -f "{f.conf}/filler"; '
              f'ls -A "{f.conf}"; cat "{f.conf}/10-calico.conflist"; exit $rc')
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", NODE, "install", *f.flags()],
                       capture_output=True, text=True, timeout=30)
    check("full disk: exits 1 with 'No space left on device'", r.returncode == 1 and "No space left on device" in r.stderr, r.stderr)
    check("full disk: primary intact, no temporary file left", r.stdout == "10-calico.conflist\n" + CALICO, r.stdout)


def test_run(root):
    n = Node(root, "run")
    n.start()
    try:
        time.sleep(0.3)
        check("run before any primary: writes no config", n.files() == [], n.files())
        code, _ = n.http("/readyz")
        check("run before any primary: /readyz is 503", code == 503, code)
        # The first copy of the (unstripped, ~30 MB) test build into two dirs, fsynced: not a repair budget.
        t = n.wait(lambda: n.binaries_intact(), timeout=15, step=0.05)
        check("run: binaries installed even before the primary", t is not None)

        n.write("10-calico.conflist", CALICO)
        t = n.wait(lambda: n.good("10-calico.conflist"))
        check("primary written after the agent started: entry within 1 s", t is not None, n.read("10-calico.conflist"))
        t = n.wait(lambda: n.http("/readyz")[0] == 200, timeout=2)
        check("/readyz 200 once installed", t is not None)
        code, metrics = n.http("/metrics")
        check("/metrics: Prometheus text with readiness and repairs", code == 200 and "weir_node_ready 1" in metrics and
              "# TYPE weir_node_config_repairs_total counter" in metrics, metrics[:300])

        # STATUS as containerd 2.x calls it, with the entry the agent wrote.
        entry = weir_entry_of(n, "10-calico.conflist")
        rc, doc = cni_status(entry)
        check("weir-cni STATUS succeeds while the agent is ready", rc == 0, doc)

        times = []
        for i in range(50):
            text = CALICO.replace("1440", str(1400 + i))
            n.write("10-calico.conflist", text, atomic=(i % 5 != 0))
            start = time.monotonic()
            while time.monotonic() - start < 2.0:
                if n.entries("10-calico.conflist") == 1 and str(1400 + i) in (n.read("10-calico.conflist") or ""):
                    break
                time.sleep(0.001)
            times.append(time.monotonic() - start)
        ok = all(t < 1.0 for t in times) and n.binaries_intact()
        check("50 rewrites of the primary: each time exactly one entry within 1 s, binary intact", ok, times)
        print(f"     repair time after a rewrite: median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms")
        check("rewrites: each repair logged", n.log_text().count("repair (") >= 40)

        os.unlink(os.path.join(n.conf, "10-calico.conflist"))
        time.sleep(0.3)
        check("primary deleted: no standalone config written", n.files() == [], n.files())
        n.write("10-calico.conflist", CALICO)
        check("primary recreated: entry within 1 s", n.wait(lambda: n.good("10-calico.conflist")) is not None)

        os.unlink(os.path.join(n.conf, "10-calico.conflist"))
        n.write("10-calico.conf", '{"cniVersion": "0.3.1", "name": "k8s-pod-network", "type": "calico"}')
        t = n.wait(lambda: n.good("10-calico.conflist") and n.files() == ["10-calico.conflist"])
        check("primary replaced by a .conf: converted, entry in within 1 s, .conf gone", t is not None, n.files())

        os.unlink(os.path.join(n.bins[0], "weir-cni"))
        check("binary removed: back within 1 s, identical", n.wait(n.binaries_intact) is not None)
        with open(os.path.join(n.bins[1], "weir-cni"), "r+b") as f:
            f.truncate(1000)
        check("binary truncated in place: back within 1 s", n.wait(n.binaries_intact) is not None)

        # Keep-on-exit leaves everything; STATUS then fails with 50.
        n.stop()
        n.start("--keep-on-exit")
        n.wait(lambda: n.http("/readyz")[0] == 200, timeout=3)
        rc = n.stop()
        check("--keep-on-exit: exits 0 leaving entry and binary", rc == 0 and n.good("10-calico.conflist"))
        rc, doc = cni_status(weir_entry_of(n, "10-calico.conflist"))
        check("weir-cni STATUS fails with 50 while the agent is stopped", rc == 1 and doc.get("code") == 50 and
              "weir-node is not ready" in doc.get("msg", ""), doc)
        ready = os.path.join(n.state, "node-ready")
        with open(ready, "w") as f:
            f.write('{"ready": true, "reason": "old"}\n')
        os.utime(ready, (time.time() - 60, time.time() - 60))
        rc, doc = cni_status(weir_entry_of(n, "10-calico.conflist"))
        check("weir-cni STATUS fails with 50 when the readiness file is stale", rc == 1 and doc.get("code") == 50 and
              "stale" in doc.get("msg", ""), doc)

        # SIGTERM: entry out before the binary goes; watch the order closely.
        n.start()
        n.wait(lambda: n.http("/readyz")[0] == 200, timeout=3)
        n.proc.send_signal(signal.SIGTERM)
        bad_states = 0
        start = time.monotonic()
        while time.monotonic() - start < 5:
            # The binary first: once it is gone, the entry must already be out.
            binary_in = all(os.path.exists(os.path.join(b, "weir-cni")) for b in n.bins)
            entry_in = n.entries("10-calico.conflist") > 0
            if entry_in and not binary_in:
                bad_states += 1
            if not entry_in and not binary_in:
                break
        rc = n.stop()
        check("SIGTERM: the entry is gone before the binary (never an entry naming a missing binary)",
              bad_states == 0 and rc == 0 and n.entries("10-calico.conflist") == 0 and not n.binaries_intact(), bad_states)
        check("SIGTERM: uninstall logged, entry first", n.log_text().rfind("uninstall: wrote") < n.log_text().rfind("uninstall: removed"))
    finally:
        n.stop(signal.SIGKILL)


def test_own_mode(root):
    n = Node(root, "own")
    n.write("10-calico.conflist", CALICO)
    n.start("--conflist-mode", "own")
    try:
        t = n.wait(lambda: n.good("00-weir.conflist"), timeout=3)
        check("own mode: 00-weir.conflist with the primary's plugins and weir's entry", t is not None and
              [p["type"] for p in json.loads(n.read("00-weir.conflist"))["plugins"]] == ["calico", "portmap", "weir-cni"])
        check("own mode: the primary untouched", n.read("10-calico.conflist") == CALICO)
        n.write("10-calico.conflist", CALICO.replace("1440", "1300"))
        t = n.wait(lambda: '"mtu": 1300' in (n.read("00-weir.conflist") or ""))
        check("own mode: kept in step with the primary within 1 s", t is not None)
        os.unlink(os.path.join(n.conf, "00-weir.conflist"))
        check("own mode: deleted own file back within 1 s", n.wait(lambda: n.good("00-weir.conflist")) is not None)
        # Cilium's exclusive mode renames the others aside.
        os.rename(os.path.join(n.conf, "00-weir.conflist"), os.path.join(n.conf, "00-weir.conflist.cilium_bak"))
        n.wait(lambda: n.good("00-weir.conflist"))
        time.sleep(0.1)
        check("Cilium's exclusive mode: one clear log line naming cni.exclusive=false", "cni.exclusive=false" in n.log_text())
        rc = n.stop()
        check("own mode: SIGTERM removes the own file, the primary stays", rc == 0 and "00-weir.conflist" not in n.files() and
              n.entries("10-calico.conflist") == 0)
    finally:
        n.stop(signal.SIGKILL)


def main():
    for p in (NODE, CNI):
        if not os.access(p, os.X_OK):
            print(f"skip: {p} is not built")
            return 77
    root = tempfile.mkdtemp(prefix=f"wt-node-{os.getpid()}-")
    try:
        test_install_uninstall(root)
        test_malformed_and_unwritable(root)
        test_run(root)
        test_own_mode(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
