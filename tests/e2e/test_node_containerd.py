#!/usr/bin/env python3
"""weir-node with a real containerd (Debian's 1.6): a private instance (own
root, state, socket, runc root, CNI conf and bin dirs under a temporary
directory), run inside the testbed's node namespace so the bridge and veths
it makes never touch the machine's own. Pods are started over the CRI as
kubelet would (weir-cri-pods).

- pods started before weir-node (annotated for capture) are captured in place
  by the first reconcile: a real connection lands on the sidecar's 15001 with
  the right SO_ORIGINAL_DST; unannotated and host-network pods are left alone;
- a pod started after is captured by weir-cni through the conflist the agent
  wrote;
- a pod whose rules are deleted by hand is repaired by the next pass;
- `reconcile --repair report` changes nothing and counts it;
- one reconcile pass over many pods (WEIR_NODE_PODS, default 100): its time
  and the agent's peak RSS are printed;
- uninstall while pods run leaves their teardown working (every Stop/Remove,
  hence every DEL, succeeds).
Needs root, containerd, runc, busybox-static; exits 77 otherwise."""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import BACKEND, Testbed, check, finish, only_in_backend, testbed  # noqa: E402

BIN = testbed.bin_dir()
NODE = os.path.join(BIN, "weir-node")
CNI = os.path.join(BIN, "weir-cni")
PODS_TOOL = os.path.join(BIN, "weir-cri-pods")
IMAGE = "weir.test/pause:1"
ENABLED = {"weir.dev/capture": "enabled"}
# The nftables run (e2e_test_node_containerd_nft) starts 20 more pods, not
# 100: the pass over many pods is timed in the legacy run; 20 keep it a
# representative reconcile at a fifth of the CI time.
MANY = int(os.environ.get("WEIR_NODE_PODS", "100" if BACKEND == "iptables" else "20"))
DEADLINE = time.monotonic() + float(os.environ.get("WEIR_TEST_DEADLINE", "1100")) - 120


def need():
    if os.geteuid() != 0:
        return "needs root"
    for b in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter"):
        if not shutil.which(b):
            return f"{b} is not installed"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    for p in (NODE, CNI, PODS_TOOL, testbed.probe_bin()):
        if not os.access(p, os.X_OK):
            return f"{p} is not built"
    for p in ("bridge", "host-local", "loopback"):
        if not any(os.path.exists(os.path.join(d, p)) for d in testbed.plugin_dirs()):
            return f"CNI plugin {p} not found"
    return None


def blob(blobs, data: bytes):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, h), "wb") as f:
        f.write(data)
    return "sha256:" + h, len(data)


def pause_image(path: str):
    """An OCI archive whose only process sleeps: the sandbox ("pause") image."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        t.add("/bin/busybox", "bin/busybox")
        for name in ("sh", "sleep"):
            ti = tarfile.TarInfo("bin/" + name)
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(ti)
    layer = layer.getvalue()
    root = path + ".d"
    blobs = os.path.join(root, "blobs", "sha256")
    os.makedirs(blobs)
    ldig, lsize = blob(blobs, layer)
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": ["/bin/sleep", "86400"]},
              "rootfs": {"type": "layers", "diff_ids": [ldig]}}
    cdig, csize = blob(blobs, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ldig, "size": lsize}]}
    mdig, msize = blob(blobs, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "size": msize,
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "1"}}]}
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with tarfile.open(path, "w") as t:
        for name in ("oci-layout", "index.json", "blobs"):
            t.add(os.path.join(root, name), name)


class Containerd:
    def __init__(self, tb, tmp):
        self.tb, self.tmp = tb, tmp
        self.sock = os.path.join(tmp, "containerd.sock")
        self.conf_dir = os.path.join(tmp, "net.d")
        self.bin_dir = os.path.join(tmp, "cni-bin")
        self.cgroup = f"/{tb.prefix}"
        os.makedirs(self.conf_dir)
        os.makedirs(self.bin_dir)
        for p in ("bridge", "host-local", "loopback"):
            src = next(os.path.join(d, p) for d in testbed.plugin_dirs() if os.path.exists(os.path.join(d, p)))
            shutil.copy(src, self.bin_dir)
        cfg = f"""version = 2
root = "{tmp}/root"
state = "{tmp}/state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = "{tmp}/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{tmp}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{tmp}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.bin_dir}"
    conf_dir = "{self.conf_dir}"
    max_conf_num = 1
"""
        self.config = os.path.join(tmp, "containerd.toml")
        with open(self.config, "w") as f:
            f.write(cfg)
        self.log = open(os.path.join(tmp, "containerd.log"), "w")
        # nsenter --net only: containerd must stay in the machine's mount
        # namespace, where it bind-mounts the pods' namespaces.
        self.proc = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{tb.node}", "containerd", "--config", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(300):
            if os.path.exists(self.sock):
                break
            time.sleep(0.05)
        image = os.path.join(tmp, "pause.tar")
        pause_image(image)
        r = subprocess.run(["ctr", "-a", self.sock, "-n", "k8s.io", "images", "import", "--snapshotter", "native", image],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"ctr images import: {r.stdout} {r.stderr}")
        self.pods_tool = subprocess.Popen([PODS_TOOL, "unix://" + self.sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True)
        self.pods = {}  # name -> (id, netns path)

    def call(self, req):
        self.pods_tool.stdin.write(json.dumps(req) + "\n")
        self.pods_tool.stdin.flush()
        return json.loads(self.pods_tool.stdout.readline())

    def run_pod(self, name, annotations=None, host_network=False, namespace="default"):
        before = set(glob.glob("/var/run/netns/cni-*"))
        r = self.call({"op": "run", "name": name, "namespace": namespace, "uid": f"uid-{name}",
                       "annotations": annotations or {}, "hostNetwork": host_network, "cgroupParent": self.cgroup})
        if "error" in r:
            return r
        new = sorted(set(glob.glob("/var/run/netns/cni-*")) - before)
        self.pods[name] = (r["id"], new[0] if new else None)
        return r

    def remove_pod(self, name):
        pid, _ = self.pods.pop(name)
        a = self.call({"op": "stop", "id": pid})
        b = self.call({"op": "remove", "id": pid})
        return a, b

    def shim_pids(self):
        """Our containerd's shims (their command line names our socket), by pid."""
        pids = []
        for d in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                argv = open(d, "rb").read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and self.sock.encode() in argv:
                pids.append(int(d.split("/")[2]))
        return pids

    def close(self):
        for name in list(self.pods):
            try:
                self.remove_pod(name)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if self.pods_tool.poll() is None:
            self.pods_tool.stdin.close()
            self.pods_tool.wait(timeout=10)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Shims of pods that could not be removed, still holding our state dir.
        for pid in self.shim_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for ctl in glob.glob("/sys/fs/cgroup/*" + self.cgroup):
            for d in sorted(glob.glob(ctl + "/**/", recursive=True), key=len, reverse=True):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        for f in glob.glob("/var/lib/cni/results/wtnode-*"):
            os.unlink(f)
        for d in ("/var/lib/cni/results", "/var/lib/cni"):
            try:
                os.rmdir(d)
            except OSError:
                pass
        subprocess.run(["umount", "-R", os.path.join(self.tmp, "state")], capture_output=True, check=False)


def drop_outbound_jump(tb, netns):
    """Deletes weir's jump from nat OUTPUT behind weir's back, in the backend
    in use (flush nat OUTPUT, or table inet weir's nat_output chain)."""
    if BACKEND == "iptables":
        tb.exec(netns, ["iptables-legacy", "-t", "nat", "-F", "OUTPUT"], check=True)
    else:
        tb.exec(netns, ["nft", "flush", "chain", "inet", "weir", "nat_output"], check=True)


def captured(tb, netns, dst="198.18.99.1:80"):
    """A connection from the pod (as an app UID) lands on the sidecar's 15001 with the right SO_ORIGINAL_DST."""
    name = os.path.basename(netns)
    side = tb.sidecar(name)
    try:
        rep = tb.connect(name, dst, uid=1000, timeout_ms=1500)
    finally:
        side.stop()
        tb.procs.remove(side)
    return rep.get("landed") == 15001 and rep.get("orig_dst") == dst, rep


def main():
    why = need()
    if why:
        print(f"skip: {why}")
        return 77
    with Testbed(role="node") as tb:
        tmp = tb.tmp
        cd = None
        agent = None
        try:
            cd = Containerd(tb, tmp)
            with open(os.path.join(cd.conf_dir, "10-wtnode.conflist"), "w") as f:
                json.dump({"cniVersion": "1.0.0", "name": "wtnode", "plugins": [
                    {"type": "bridge", "bridge": "wtn0", "isGateway": True, "isDefaultGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.64.0/24"}]], "dataDir": f"{tmp}/ipam"}}]}, f)
            for name, ann, host in (("early", ENABLED, False), ("plain", {}, False), ("hostnet", ENABLED, True)):
                r = cd.run_pod(name, ann, host)
                check(f"pod {name} started before weir-node", "error" not in r, r)
            ok, rep = captured(tb, cd.pods["early"][1])
            check("before weir-node: the early pod is not captured", not ok, rep)

            state = os.path.join(tmp, "weir-state")
            log_path = os.path.join(tmp, "agent.log")
            agent_log = open(log_path, "w")
            flags = ["--cni-conf-dir", cd.conf_dir, "--cni-bin-dir", cd.bin_dir, "--plugin-binary", CNI, "--state-dir", state,
                     "--cri-endpoint", "unix://" + cd.sock]
            agent = subprocess.Popen([NODE, "run", *flags, "--listen", "off", "--reconcile-interval", "2s"],
                                     stdout=agent_log, stderr=subprocess.STDOUT)

            def log():
                with open(log_path) as f:
                    return f.read()

            def wait_log(pattern, timeout=20, after=0):
                end = time.monotonic() + timeout
                while time.monotonic() < end:
                    m = re.search(pattern, log()[after:])
                    if m:
                        return m
                    time.sleep(0.05)
                return None

            n = len(cd.pods)
            m = wait_log(rf"reconcile \(--repair inplace\): pods={n} captured=1 repaired=1")
            check(f"first reconcile: {n} pods seen, the early one repaired in place", m is not None, log()[-2000:])
            check("one log line for the repaired pod", len(re.findall(r"pod default/early: not captured .*repaired in place", log())) == 1,
                  log()[-2000:])
            ok, rep = captured(tb, cd.pods["early"][1])
            check("early pod: a real connection lands on 15001 with SO_ORIGINAL_DST 198.18.99.1:80", ok, rep)
            ok, rep = captured(tb, cd.pods["plain"][1])
            check("unannotated pod: left alone", not ok, rep)

            r = cd.run_pod("late", ENABLED)
            check("pod started after weir-node", "error" not in r, r)
            ok, rep = captured(tb, cd.pods["late"][1])
            check("late pod: captured by weir-cni through the conflist weir-node wrote", ok, rep)
            check("late pod: nothing for reconcile to repair", "pod default/late" not in log())

            early_ns = os.path.basename(cd.pods["early"][1])
            only_in_backend(tb, early_ns, "early pod")
            mark = len(log())
            drop_outbound_jump(tb, early_ns)
            m = wait_log(r"pod default/early: capture drifted .*repaired in place", timeout=10, after=mark)
            check("rules deleted by hand: repaired by the next pass", m is not None, log()[mark:][-1500:])
            ok, rep = captured(tb, cd.pods["early"][1])
            check("repaired pod: connection lands on 15001 again", ok, rep)

            # --repair report (the agent stopped and uninstalled: nothing else repairs).
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
            agent = None
            drop_outbound_jump(tb, early_ns)
            r = subprocess.run([NODE, "reconcile", *flags, "--repair", "report"], capture_output=True, text=True, timeout=60)
            check("reconcile --repair report: counts the pod and changes nothing",
                  r.returncode == 0 and "needs_repair=1" in r.stderr and not captured(tb, cd.pods["early"][1])[0], r.stderr[-1500:])
            r = subprocess.run([NODE, "reconcile", *flags], capture_output=True, text=True, timeout=60)
            check("reconcile (inplace) after report: repaired", "repaired=1" in r.stderr and captured(tb, cd.pods["early"][1])[0],
                  r.stderr[-1500:])

            # Many pods, then one pass and the agent's peak RSS.
            started = 0
            t0 = time.monotonic()
            for i in range(MANY):
                if time.monotonic() > DEADLINE - 300:
                    break
                r = cd.run_pod(f"many-{i}", ENABLED if i % 2 == 0 else {})
                if "error" in r:
                    check(f"pod many-{i} started", False, r)
                    break
                started += 1
            print(f"     started {started} more pods in {time.monotonic() - t0:.1f} s")
            agent_log = open(log_path, "a")
            mark = len(log())
            agent = subprocess.Popen([NODE, "run", *flags, "--listen", "off", "--reconcile-interval", "5s"],
                                     stdout=agent_log, stderr=subprocess.STDOUT)
            total = len(cd.pods)
            m = wait_log(rf"reconcile \(--repair inplace\): pods={total} .*duration=([0-9.]+)ms", timeout=120, after=mark)
            check(f"one pass over {total} pods", m is not None, log()[mark:][-1500:])
            m2 = wait_log(rf"reconcile \(--repair inplace\): pods={total} .*repaired=0 .*duration=([0-9.]+)ms", timeout=30,
                          after=m.end() + mark if m else mark)
            hwm = "?"
            try:
                with open(f"/proc/{agent.pid}/status") as f:
                    hwm = re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)
            except (OSError, AttributeError):
                pass
            if m:
                repaired = re.search(r"repaired=(\d+)", m.group(0)).group(1)
                print(f"     reconcile pass over {total} pods: {float(m.group(1)):.1f} ms (first, repairing {repaired} in place)"
                      + (f", {float(m2.group(1)):.1f} ms (steady)" if m2 else "") + f"; agent peak RSS {hwm} kB")

            # Uninstall while pods run: every Stop/Remove (so every DEL) succeeds.
            agent.send_signal(signal.SIGTERM)
            rc = agent.wait(timeout=30)
            agent = None
            conf = json.load(open(os.path.join(cd.conf_dir, "10-wtnode.conflist")))
            check("SIGTERM: entry out, binary removed", rc == 0 and [p["type"] for p in conf["plugins"]] == ["bridge"] and
                  not os.path.exists(os.path.join(cd.bin_dir, "weir-cni")), log()[-800:])
            failures = []
            for name in list(cd.pods):
                a, b = cd.remove_pod(name)
                if "error" in a or "error" in b:
                    failures.append((name, a, b))
            check("after uninstall: every pod's teardown (StopPodSandbox, RemovePodSandbox) succeeds", not failures, failures[:3])
        finally:
            if agent and agent.poll() is None:
                agent.kill()
                agent.wait()
            if cd:
                cd.close()
    return finish()


if __name__ == "__main__":
    sys.exit(main())
