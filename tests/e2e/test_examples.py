#!/usr/bin/env python3
"""Every file in examples/ is exercised:

- parsed: the conflist as JSON, the manifests as YAML (PyYAML, in this Python or
  Debian's /usr/bin/python3 with python3-yaml), the Dockerfile's stages and the
  paths it copies; the README lists every file;
- each weir-init command line in the manifests runs through the real binary:
  first in its dry-run form (--dry-run, istio-iptables -n, proxy-init
  --simulate), then for real in a testbed pod with a stub proxy on the ports the
  command line names, where real connections must land on the proxy with
  SO_ORIGINAL_DST intact and the proxy's own UID must bypass;
- the example conflist is run as a runtime runs it (bridge + host-local, then
  weir-cni) for an annotated pod and a plain one, with real traffic, CHECK and DEL;
- the validation pod's init command runs as UID 1000 with no capabilities: exit
  0 in the captured pod, 42 in the plain one.

Parts whose binary is not built yet are skipped with a note; the whole test
exits 77 only when nothing could be checked beyond parsing and not as root.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

SRC = os.environ.get("WEIR_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
BIN = os.environ.get("WEIR_BIN_DIR") or os.path.join(SRC, "build", "bin")
EX = os.path.join(SRC, "examples")
WEIR_INIT = os.path.join(BIN, "weir-init")

failures = []
notes = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def note(what):
    print("note  " + what, flush=True)
    notes.append(what)


def have(path):
    return os.access(path, os.X_OK)


# ------------------------------------------------------------------ parsing

def load_yaml_docs(path):
    """All documents of a YAML file, or None when no YAML parser is available."""
    try:
        import yaml  # noqa: PLC0415
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except ImportError:
        pass
    deb = "/usr/bin/python3"
    if os.access(deb, os.X_OK):
        code = ("import json,sys,yaml;"
                "print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))")
        r = subprocess.run([deb, "-c", code, path], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return json.loads(r.stdout)
        if "No module named 'yaml'" not in r.stderr:
            raise ValueError(r.stderr.strip())
    return None


def init_containers(docs):
    """(container, pod spec) of every weir-init container in the manifests."""
    out = []
    for d in docs:
        spec = d.get("spec", {})
        if d.get("kind") in ("DaemonSet", "Deployment"):
            spec = spec["template"]["spec"]
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            cmd = c.get("command") or []
            if cmd and os.path.basename(cmd[0]) == "weir-init":
                out.append(c)
    return out


def parse_all():
    """Returns {manifest file: [weir-init containers]} and the conflist."""
    files = sorted(p for p in glob.glob(os.path.join(EX, "**", "*"), recursive=True) if os.path.isfile(p))
    check(len(files) >= 8, f"examples/ has its files ({len(files)})")
    readme = open(os.path.join(EX, "README.md")).read()
    for p in files:
        rel = os.path.relpath(p, EX)
        if rel not in ("README.md", "Dockerfile.dockerignore"):
            check(rel in readme, f"examples/README.md lists {rel}")

    conflists = [p for p in files if p.endswith((".conflist", ".json"))]
    conflist = None
    for p in conflists:
        try:
            c = json.load(open(p))
        except ValueError as e:
            check(False, f"{p}: JSON: {e}")
            continue
        types = [pl.get("type") for pl in c.get("plugins", [])]
        check(types and types[-1] == "weir-cni", f"{os.path.basename(p)}: weir-cni is the last plugin ({types})")
        w = c["plugins"][-1]
        check(w.get("capabilities", {}).get("io.kubernetes.cri.pod-annotations") is True,
              f"{os.path.basename(p)}: weir-cni declares the pod-annotations capability")
        ipam = c["plugins"][0].get("ipam", {})
        subnets = [r["subnet"] for rs in ipam.get("ranges", []) for r in rs]
        check(subnets == ["198.18.0.0/24"], f"{os.path.basename(p)}: host-local on 198.18.0.0/24 ({subnets})")
        conflist = c

    manifests = {}
    yamls = [p for p in files if p.endswith((".yaml", ".yml"))]
    for p in yamls:
        rel = os.path.relpath(p, EX)
        try:
            docs = load_yaml_docs(p)
        except Exception as e:  # noqa: BLE001 - any parser error is the finding
            check(False, f"{rel}: YAML: {e}")
            continue
        if docs is None:
            note(f"{rel}: no YAML parser (install python3-yaml); only weir-init command lines found by text")
            continue
        for d in docs:
            check(isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"),
                  f"{rel}: {d.get('kind')} {d.get('metadata', {}).get('name')} has apiVersion, kind and name")
        manifests[rel] = init_containers(docs)

    def by_file(rel):
        return manifests.get(rel, [])

    inits = {rel: [c.get("args", []) for c in cs] for rel, cs in manifests.items()}
    check(inits.get("k8s/pod-istio-init.yaml", [[]])[0][:1] == ["istio-iptables"], "Istio pod runs weir-init istio-iptables")
    check(inits.get("k8s/pod-linkerd-init.yaml", [[]])[0][:1] == ["proxy-init"], "Linkerd pod runs weir-init proxy-init")
    val = by_file("k8s/pod-validate.yaml")
    if check(bool(val) and (val[0].get("args") or [None])[0] == "validate", "validate pod's first init container is weir-init validate"):
        sc = val[0].get("securityContext", {})
        check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) not in (0, 1337)
              and sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"),
              "validate runs as a non-root, non-proxy UID with every capability dropped")
    ds = manifests.get("k8s/weir-cni-daemonset.yaml")
    if ds is not None:
        docs = load_yaml_docs(os.path.join(EX, "k8s/weir-cni-daemonset.yaml"))
        spec = docs[0]["spec"]["template"]["spec"]
        paths = [v.get("hostPath", {}).get("path") for v in spec.get("volumes", [])]
        check(docs[0]["kind"] == "DaemonSet" and "/opt/cni/bin" in paths and "/etc/cni/net.d" in paths,
              "DaemonSet mounts the node's /opt/cni/bin and /etc/cni/net.d")
        c = spec["containers"][0]
        args = c.get("args", [])
        probe = c.get("readinessProbe", {}).get("httpGet", {})
        check(args[:1] == ["run"] and probe.get("path") == "/readyz" and f"--listen=127.0.0.1:{probe.get('port')}" in args,
              "DaemonSet runs weir-node run, its readiness probe on /readyz at the --listen port")
        check(spec.get("terminationGracePeriodSeconds", 30) >= 10 and spec.get("automountServiceAccountToken") is False
              and "serviceAccountName" not in spec, "DaemonSet: time to uninstall on SIGTERM, no API credentials")
        run_node_daemonset(args)

    # Dockerfile: a Debian 12 build stage running the one build command, a minimal final stage.
    df = open(os.path.join(EX, "Dockerfile")).read()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", df, re.M | re.I)
    check(froms and froms[0][0].startswith("debian:bookworm"), f"Dockerfile builds in Debian 12 ({froms[:1]})")
    check(froms and froms[-1][0] in ("scratch", "gcr.io/distroless/static-debian12"), f"final stage is minimal ({froms[-1:]})")
    check("scripts/build-static.sh" in df, "Dockerfile runs scripts/build-static.sh")
    for src in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", df, re.M):
        for part in src.split():
            if part != ".":
                check(os.path.exists(os.path.join(SRC, part)), f"Dockerfile copies {part}, which exists")
    return manifests, conflist


def run_node_daemonset(args):
    """The DaemonSet's weir-node command line, run here with temporary
    directories as the node's (conf dir, bin dir, state dir) and a free port:
    the entry goes in, and out again on SIGTERM, binary last."""
    import signal  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    import time  # noqa: PLC0415
    node, cni = os.path.join(BIN, "weir-node"), os.path.join(BIN, "weir-cni")
    if not (have(node) and have(cni)):
        note("weir-node or weir-cni not built: the DaemonSet's command line is not run")
        return
    with tempfile.TemporaryDirectory(prefix="weir-ds-") as host:
        for d in ("etc/cni/net.d", "opt/cni/bin", "state"):
            os.makedirs(os.path.join(host, d))
        primary = os.path.join(host, "etc/cni/net.d/10-bridge.conflist")
        with open(primary, "w") as f:
            f.write('{"cniVersion": "1.0.0", "name": "b", "plugins": [{"type": "bridge"}]}\n')
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        argv = [a.replace("/host/", host + "/").replace("/var/run/weir", host + "/state").replace(":15081", f":{port}")
                for a in args]
        p = subprocess.Popen([node, *argv, "--plugin-binary", cni], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            entry = False
            for _ in range(300):
                try:
                    doc = json.load(open(primary))
                    entry = [pl.get("type") for pl in doc["plugins"]] == ["bridge", "weir-cni"]
                except ValueError:
                    entry = False
                if entry and have(os.path.join(host, "opt/cni/bin/weir-cni")):
                    break
                time.sleep(0.01)
            check(entry, "DaemonSet's weir-node run: weir's entry last in the node's primary conflist, weir-cni installed")
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                _, err = p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
        doc = json.load(open(primary))
        check(p.returncode == 0 and [pl.get("type") for pl in doc["plugins"]] == ["bridge"]
              and not os.path.exists(os.path.join(host, "opt/cni/bin/weir-cni")),
              f"DaemonSet's weir-node on SIGTERM: entry out, binary removed (rc {p.returncode}, {err.strip()[-300:]})")


# ------------------------------------------------------------------ command lines

def dry_run_argv(args):
    if args[:1] == ["istio-iptables"]:
        return [args[0], "-n"] + args[1:]
    if args[:1] == ["proxy-init"]:
        return [args[0], "--simulate"] + args[1:]
    return args + ["--dry-run"]


def container_env(c):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "WEIR_TEST_UNAVAILABLE_BACKEND": os.environ.get("WEIR_TEST_UNAVAILABLE_BACKEND", "")}
    for e in c.get("env", []):
        env[e["name"]] = str(e.get("value", ""))
    return env


def capture_ports(args):
    """(outbound port, inbound port, proxy uid) a command line asks for."""
    def val(*names, default=None):
        for i, a in enumerate(args):
            for n in names:
                if a == n and i + 1 < len(args):
                    return args[i + 1]
                if a.startswith(n + "="):
                    return a.split("=", 1)[1]
        return default
    if args[:1] == ["istio-iptables"]:
        return int(val("-p", "--envoy-port", default=15001)), int(val("-z", "--inbound-capture-port", default=15006)), \
            int(val("-u", "--proxy-uid", default=1337))
    if args[:1] == ["proxy-init"]:
        return int(val("--outgoing-proxy-port")), int(val("--incoming-proxy-port")), int(val("--proxy-uid"))
    return int(val("--outbound-port", default=15001)), int(val("--inbound-port", default=15006)), \
        int(val("--proxy-uid", default=1337))


def check_dry_runs(manifests):
    for rel, cs in manifests.items():
        for c in cs:
            args = c.get("args", [])
            if args[:1] == ["validate"]:
                r = subprocess.run([WEIR_INIT, "validate", "--help"], capture_output=True, text=True, timeout=30)
                flags = [a.split("=")[0] for a in args[1:] if a.startswith("--")]
                check(r.returncode == 0 and all(f in r.stdout for f in flags),
                      f"{rel}: weir-init validate accepts {flags}")
                continue
            argv = [WEIR_INIT] + dry_run_argv(args)
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=container_env(c))
            out_port, in_port, _ = capture_ports(args)
            check(r.returncode == 0 and f"--to-ports {out_port}" in r.stdout and f"--to-ports {in_port}" in r.stdout,
                  f"{rel}: {' '.join(dry_run_argv(args))!s} -> rc {r.returncode}, redirects to {out_port}/{in_port}"
                  + ("" if r.returncode == 0 else f" ({r.stderr.strip()[-300:]})"))


def nonroot(argv, uid=1000):
    """argv as an unprivileged UID with no capabilities at all."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs"] + argv


def check_in_testbed(manifests, conflist):
    sys.path.insert(0, os.path.join(SRC, "netns-testbed"))
    from testbed import BRIDGE, Testbed, TestbedError, backend_in_use, other_backend  # noqa: PLC0415
    with Testbed(role="examples") as tb:
        peer = tb.add_pod("peer")
        tb.serve(peer, [8080])

        # Each weir-init command line, applied for real inside its own pod.
        for rel, cs in manifests.items():
            for c in cs:
                args = c.get("args", [])
                if args[:1] == ["validate"]:
                    continue
                name = os.path.basename(rel).replace("pod-", "").replace(".yaml", "")[:8]
                pod = tb.add_pod(name)
                out_port, in_port, uid = capture_ports(args)
                tb.serve(pod, [out_port, in_port], uid=uid, gid=uid)
                tb.serve(pod, [8080])
                env = " ".join(f"{k}={v}" for k, v in container_env(c).items() if k != "PATH")
                cp = tb.exec(pod, ["env"] + ([e for e in env.split()] if env else []) + [WEIR_INIT] + args)
                if not check(cp.returncode == 0, f"{rel}: weir-init {' '.join(args[:1])} applies in {pod.netns}"
                             + ("" if cp.returncode == 0 else f": {cp.stderr.strip()[-400:]}")):
                    continue
                backend = backend_in_use()
                check(tb.weir_installed(pod, backend) and tb.weir_leftovers(pod, other_backend(backend)) == "",
                      f"{rel}: weir's rules are in the {backend} backend (this run's), none in the other")
                r = tb.connect(pod, peer.addr(8080), uid=1000)
                check(r.get("landed") == out_port and r.get("orig_dst") == peer.addr(8080),
                      f"{rel}: app's outbound lands on {out_port}, SO_ORIGINAL_DST {peer.addr(8080)}: {r}")
                r = tb.connect(pod, peer.addr(8080), uid=uid, gid=uid)
                check(r.get("landed") == 8080 and not r.get("orig_dst"), f"{rel}: proxy UID {uid} bypasses: {r}")
                r = tb.connect(peer, pod.addr(8080))
                check(r.get("landed") == in_port and r.get("orig_dst") == pod.addr(8080),
                      f"{rel}: inbound lands on {in_port}, SO_ORIGINAL_DST {pod.addr(8080)}: {r}")

        if conflist is None:
            return
        if not have(os.path.join(BIN, "weir-cni")):
            note("weir-cni not built: the example conflist is not run")
            return
        # The conflist as it is, but for where host-local keeps its state and the
        # testbed's bridge name (the node is a namespace here).
        plugins = json.loads(json.dumps(conflist["plugins"]))
        plugins[0]["bridge"] = BRIDGE
        plugins[0]["ipam"]["dataDir"] = os.path.join(tb.tmp, "example-host-local")
        kw = {"cni_version": conflist["cniVersion"], "network_name": conflist["name"]}
        app = tb.add_pod_cni("app", plugins, annotations={"weir.dev/capture": "enabled"}, **kw)
        plain = tb.add_pod_cni("plain", plugins, annotations={}, **kw)
        for p in (app, plain):
            tb.serve(p, [8080, 15020])
        sidecar = tb.sidecar(app)
        r = tb.connect(app, plain.addr(8080), uid=1000)
        check(r.get("landed") == 15001 and r.get("orig_dst") == plain.addr(8080),
              f"conflist: annotated pod's outbound lands on 15001, SO_ORIGINAL_DST {plain.addr(8080)}: {r}")
        r = tb.connect(app, plain.addr(8080), uid=1337, gid=1337)
        check(r.get("landed") == 8080 and not r.get("orig_dst"), f"conflist: proxy UID 1337 bypasses: {r}")
        r = tb.connect(plain, app.addr(8080))
        check(r.get("landed") == 15006 and r.get("orig_dst") == app.addr(8080),
              f"conflist: inbound to the annotated pod lands on 15006: {r}")
        r = tb.connect(plain, app.addr(15020))
        check(r.get("landed") == 15020 and not r.get("orig_dst"), f"conflist: excluded inbound port 15020 is not captured: {r}")
        r = tb.connect(plain, peer.addr(8080), uid=1000)
        check(r.get("landed") == 8080 and not r.get("orig_dst"), f"conflist: the pod without the annotation is not captured: {r}")

        # The validation pod's command line, as UID 1000 with no capabilities. It
        # runs before the proxy starts (it listens on the proxy's ports itself).
        sidecar.stop()
        val = [c for c in manifests.get("k8s/pod-validate.yaml", [])]
        if val and have(WEIR_INIT):
            args = val[0]["args"]
            cp = tb.exec(app, nonroot([WEIR_INIT] + args))
            check(cp.returncode == 0, f"validate (UID 1000, no capabilities) passes in the captured pod: rc {cp.returncode} "
                  f"{cp.stderr.strip()[-300:]}")
            cp = tb.exec(plain, nonroot([WEIR_INIT] + args + ["--timeout=2s"]), timeout=30)
            check(cp.returncode == 42, f"validate fails with 42 in the uncaptured pod: rc {cp.returncode} "
                  f"{cp.stderr.strip()[-300:]}")

        calls = tb.cni_chain("CHECK", plugins[1:], pod=app)
        check(all(c.ok for c in calls), f"conflist: weir-cni CHECK passes on the annotated pod: {calls}")
        for p in (app, plain):
            calls = tb.remove_pod(p)
            check(all(c.ok for c in calls), f"conflist: DEL of {p.name} through the chain: {calls}")


def main():
    manifests, conflist = parse_all()
    ran_binaries = False
    if have(WEIR_INIT):
        check_dry_runs(manifests)
        ran_binaries = True
    else:
        note(f"{WEIR_INIT} not built: the manifests' command lines are not run")
    if os.geteuid() != 0:
        note("not root: the testbed parts (real traffic) are skipped")
    elif not have(os.path.join(BIN, "weir-probe")):
        note("weir-probe not built: the testbed parts are skipped")
    elif shutil.which("setpriv") is None:
        note("setpriv (util-linux) missing: the testbed parts are skipped")
    else:
        try:
            check_in_testbed(manifests if have(WEIR_INIT) else {}, conflist)
            ran_binaries = True
        except Exception as e:  # noqa: BLE001 - the testbed's error is the finding
            check(False, f"testbed: {type(e).__name__}: {e}")
    print(f"{len(failures)} failed, {len(notes)} notes" if failures else f"all example checks passed ({len(notes)} notes)")
    if failures:
        sys.exit(1)
    if not ran_binaries:
        print("SKIP: examples parsed, but no binary was there to run them")
        sys.exit(77)
    sys.exit(0)


if __name__ == "__main__":
    main()
