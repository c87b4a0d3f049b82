#!/usr/bin/env python3
"""The self-contained binaries: scripts/build-static.sh builds weir, weir-cni and
weir-init statically; each must need no shared library at all (ldd: "not a
dynamic executable", no ELF interpreter, no DT_NEEDED) and must work where
nothing else exists: run inside an empty chroot, they print the version, the
plan, the CNI VERSION answer and a dry run identical to the dynamic build's.
Then the static weir-init and weir-cni install capture in a namespace testbed
and a real connection lands on the proxy port with SO_ORIGINAL_DST intact, so
the static libiptc/libnl really talk to the kernel.

The nftables backend is in the static binaries only when libmnl.a could be
built (Debian ships none; libmnl's source can be missing from the mirror):
`weir --version` must say which, agreeing with the deps prefix. Without it,
auto must capture through legacy iptables and `--native-nftables` must fail
naming why; with it, auto must capture through nftables.

Builds land in the ctest build tree (<build>/static-deps, <build>/static), so
a second run rebuilds nothing. Exit 77 (skipped) when not root (the first
build needs apt-get) or when Debian's source packages cannot be fetched.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("WEIR_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
BIN = os.environ.get("WEIR_BIN_DIR") or os.path.join(SRC, "build", "bin")
BUILD = os.path.dirname(os.path.abspath(BIN))
TARGETS = ["weir", "weir-cni", "weir-init"]

failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def run(argv, timeout=60, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def build():
    """Runs scripts/build-static.sh into the build tree; returns the out dir."""
    env = dict(os.environ)
    # A deps prefix already built at the repo's default place is reused.
    default_deps = os.path.join(SRC, "build-static-deps")
    if os.path.exists(os.path.join(default_deps, "prefix", ".weir-static-deps")):
        env["WEIR_STATIC_DEPS_DIR"] = default_deps
    else:
        env["WEIR_STATIC_DEPS_DIR"] = os.path.join(BUILD, "static-deps")
    env["WEIR_STATIC_BUILD_DIR"] = os.path.join(BUILD, "static")
    # -O0 halves the compile time in CI; what is tested (no shared library, runs
    # anywhere, talks to the kernel) does not depend on the optimisation level.
    env.setdefault("WEIR_STATIC_BUILD_TYPE", "None")
    out = os.path.join(BUILD, "static", "out")
    env["WEIR_STATIC_OUT"] = out
    stamp = os.path.join(env["WEIR_STATIC_DEPS_DIR"], "prefix", ".weir-static-deps")
    if os.geteuid() != 0 and not os.path.exists(stamp):
        skip("not root: the first static build installs tools and fetches Debian sources with apt-get")

    deps = run([os.path.join(SRC, "scripts", "build-static-deps.sh")], timeout=480, env=env)
    if deps.returncode != 0:
        err = deps.stderr
        if any(s in err for s in ("Failed to fetch", "Unable to fetch", "Temporary failure", "Could not resolve",
                                   "Unable to find a source package", "You must put some 'deb-src'")):
            skip("Debian's source packages cannot be fetched here:\n" + err[-1500:])
        print(err[-4000:])
        check(False, "scripts/build-static-deps.sh succeeds")
        sys.exit(1)
    if "NO nftables backend" in deps.stderr:
        print(deps.stderr[-1500:].strip())
    r = run([os.path.join(SRC, "scripts", "build-static.sh")], timeout=660, env=env)
    print(r.stdout.strip())
    if r.returncode != 0:
        print(r.stderr[-6000:])
    check(r.returncode == 0, "scripts/build-static.sh succeeds (ldd finds every binary static)")
    have_mnl = os.path.exists(os.path.join(env["WEIR_STATIC_DEPS_DIR"], "prefix", "lib", "libmnl.a"))
    lines = r.stdout.strip().splitlines()
    note = lines[-1] if lines else ""
    if not have_mnl:
        print("note: no libmnl.a (see build-static-deps' message above): checking the build WITHOUT nftables")
        note = note.split(";")[0]
    return out, have_mnl, note


def elf_is_static(path):
    """No PT_INTERP and no DT_NEEDED: the kernel runs it without ld.so."""
    hdr = run(["readelf", "-lW", path]).stdout
    dyn = run(["readelf", "-dW", path]).stdout
    return "INTERP" not in hdr and "(NEEDED)" not in dyn


def in_chroot(root, argv, stdin=None, env=None):
    """Runs a binary in a directory holding nothing but it (no libc, no /lib)."""
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    if os.geteuid() == 0 and os.access(chroot, os.X_OK):
        argv = [chroot, root] + argv
    else:
        argv = [os.path.join(root, argv[0].lstrip("/"))] + argv[1:]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30,
                          env=env if env is not None else {"PATH": "/"})


NFT_BUILT = "nftables backend: built in"
NFT_NOT_BUILT = "nftables backend: not built in (built without libmnl.a)"


def without_test_switch(argv):
    """argv with the backend test switch of ctest removed: auto as on a node."""
    return ["env", "-u", "WEIR_TEST_UNAVAILABLE_BACKEND"] + argv


def traffic(out, nft_built):
    """The static weir-init and weir-cni install capture; real connections prove it."""
    sys.path.insert(0, os.path.join(SRC, "netns-testbed"))
    from testbed import Testbed, TestbedError, bin_dir
    probe = os.path.join(bin_dir(), "weir-probe")
    if not os.access(probe, os.X_OK):
        print(f"note: {probe} not built; traffic checks skipped")
        return
    try:
        with Testbed(role="static") as tb:
            # weir-init (static), run inside the pod as an init container would be.
            a = tb.add_pod("init")
            peer = tb.add_pod("peer")
            tb.sidecar(a)
            tb.serve(peer, [8080])
            cp = tb.exec(a, [os.path.join(out, "weir-init"), "--outbound-port", "15001", "--inbound-port", "15006",
                             "--proxy-uid", "1337", "--inbound-ports", "*", "--outbound-cidrs", "*"])
            check(cp.returncode == 0, f"static weir-init applies in {a.netns} ({cp.stderr.strip()[-300:]})")
            r = tb.connect(a, peer.addr(8080), uid=1000)
            check(r.get("landed") == 15001 and r.get("orig_dst") == peer.addr(8080),
                  f"outbound from the weir-init pod lands on 15001 with SO_ORIGINAL_DST {peer.addr(8080)}: {r}")
            tb.serve(a, [8080])
            r = tb.connect(peer, a.addr(8080))
            check(r.get("landed") == 15006 and r.get("orig_dst") == a.addr(8080),
                  f"inbound to the weir-init pod lands on 15006 with SO_ORIGINAL_DST {a.addr(8080)}: {r}")
            cp = tb.exec(a, [os.path.join(out, "weir-init"), "--cleanup"])
            check(cp.returncode == 0, f"static weir-init --cleanup ({cp.stderr.strip()[-300:]})")
            r = tb.connect(a, peer.addr(8080), uid=1000)
            check(r.get("landed") == 8080 and not r.get("orig_dst"),
                  f"after --cleanup outbound goes straight to the peer: {r}")

            # auto as on a node (no test switch): nftables when built in, else legacy iptables.
            init_argv = [os.path.join(out, "weir-init"), "--outbound-port", "15001", "--inbound-port", "15006",
                         "--proxy-uid", "1337", "--inbound-ports", "*", "--outbound-cidrs", "*"]
            if not nft_built:
                cp = tb.exec(a, without_test_switch(init_argv + ["--backend", "nftables"]))
                check(cp.returncode != 0 and "this build has no nftables backend (built without libmnl.a)" in cp.stderr,
                      f"static weir-init --backend nftables fails naming why (rc {cp.returncode}, "
                      f"{cp.stderr.strip()[-300:]!r})")
                r = tb.connect(a, peer.addr(8080), uid=1000)
                check(r.get("landed") == 8080, f"... and installs nothing: outbound goes straight to the peer: {r}")
            cp = tb.exec(a, without_test_switch(init_argv))
            check(cp.returncode == 0, f"static weir-init applies with backend auto ({cp.stderr.strip()[-300:]})")
            legacy = "WEIR_" in tb.exec(a, ["iptables-legacy-save", "-t", "nat"]).stdout
            nft = tb.exec(a, ["nft", "list", "table", "inet", "weir"]).returncode == 0 if shutil.which("nft") else None
            want = "nftables" if nft_built else "iptables"
            check(legacy == (not nft_built) and nft in (None, nft_built),
                  f"auto installed weir's rules with {want} (legacy rules: {legacy}, inet weir table: {nft})")
            r = tb.connect(a, peer.addr(8080), uid=1000)
            check(r.get("landed") == 15001 and r.get("orig_dst") == peer.addr(8080),
                  f"with auto, outbound lands on 15001 with SO_ORIGINAL_DST {peer.addr(8080)}: {r}")
            cp = tb.exec(a, without_test_switch([os.path.join(out, "weir-init"), "--cleanup"]))
            check(cp.returncode == 0, f"static weir-init --cleanup with auto ({cp.stderr.strip()[-300:]})")

            # weir-cni (static) chained after bridge/host-local, as a runtime runs it.
            weir = {"type": os.path.join(out, "weir-cni"),
                    "capabilities": {"io.kubernetes.cri.pod-annotations": True},
                    "capture": {"outboundPort": 15001, "inboundPort": 15006, "proxyUids": [1337]}}
            c = tb.add_pod_cni("cni", [tb.bridge_conf(), weir], annotations={"weir.dev/capture": "enabled"})
            tb.sidecar(c)
            r = tb.connect(c, peer.addr(8080), uid=1000)
            check(r.get("landed") == 15001 and r.get("orig_dst") == peer.addr(8080),
                  f"outbound from the weir-cni pod lands on 15001 with SO_ORIGINAL_DST {peer.addr(8080)}: {r}")
            calls = tb.remove_pod(c)
            check(all(x.ok for x in calls), f"CNI DEL through the static weir-cni succeeds: {calls}")
    except TestbedError as e:
        check(False, f"testbed: {e}")


def main():
    if not sys.platform.startswith("linux"):
        skip("Linux only")
    if shutil.which("readelf") is None:
        skip("readelf (binutils) not installed")
    out, have_mnl, note = build()
    check(note == (NFT_BUILT if have_mnl else
                   "nftables backend: NOT BUILT IN (built without libmnl.a"),
          f"build-static.sh's last line says whether the nftables backend is built in: {note!r}")
    nft_built = have_mnl
    present = [t for t in TARGETS if os.path.exists(os.path.join(out, t))]
    for t in TARGETS:
        if t not in present:
            print(f"note: {t} was not built (no such target yet, or the build failed above); not checked")
    if not check(bool(present), "at least one static binary was built"):
        sys.exit(1)

    for t in present:
        p = os.path.join(out, t)
        # A static glibc cannot load NSS modules: user, group and host look-ups
        # would silently fail on a node. (libnl's getprotobynumber, for protocol
        # names in its debug dumps, is the one NSS call left; it falls back to
        # numbers.) Checked on the unstripped binary.
        unstripped = os.path.join(BUILD, "static", "bin", t)
        if shutil.which("nm") and os.path.exists(unstripped):
            syms = set(run(["nm", unstripped]).stdout.split())
            nss = sorted(syms & {"getpwnam", "getpwuid", "getpwnam_r", "getpwuid_r", "getgrnam", "getgrgid",
                                 "getgrnam_r", "getgrgid_r", "getaddrinfo", "gethostbyname", "getservbyname"})
            check(not nss, f"{t}: no NSS look-ups linked ({nss or 'none'})")
        ldd = run(["ldd", p])
        check("not a dynamic executable" in (ldd.stdout + ldd.stderr), f"ldd {t}: {(ldd.stdout + ldd.stderr).strip()}")
        check(elf_is_static(p), f"{t}: no ELF interpreter, no DT_NEEDED")
        print(f"      {t}: {os.path.getsize(p)} bytes")

    with tempfile.TemporaryDirectory(prefix="weir-static-") as root:
        for t in present:
            shutil.copy2(os.path.join(out, t), os.path.join(root, t))
        if "weir" in present:
            r = in_chroot(root, ["/weir", "--version"])
            check(r.returncode == 0 and r.stdout.strip() != "", f"weir --version in an empty root: {r.stdout.strip()!r}")
            lines = r.stdout.strip().splitlines()
            nft_built = lines[-1:] == [NFT_BUILT]
            check(lines[-1:] == [NFT_BUILT if have_mnl else NFT_NOT_BUILT],
                  f"weir --version says whether the nftables backend is built in, as the deps prefix "
                  f"({'has' if have_mnl else 'has no'} libmnl.a) says: {lines[-1:]}")
            plan_args = ["plan", "--outbound-port", "15001", "--inbound-port", "15006", "--proxy-uid", "1337",
                         "--inbound-ports", "*", "--outbound-cidrs", "*"]
            r = in_chroot(root, ["/weir"] + plan_args)
            check(r.returncode == 0 and "--to-ports 15001" in r.stdout and "--to-ports 15006" in r.stdout,
                  f"weir plan in an empty root redirects to 15001/15006 (rc {r.returncode}, {r.stderr.strip()[-200:]})")
            dyn = os.path.join(BIN, "weir")
            if os.access(dyn, os.X_OK):
                d = run([dyn] + plan_args)
                check(d.returncode == 0 and d.stdout == r.stdout, "static weir plan prints what the dynamic build prints")
        if "weir-cni" in present:
            r = in_chroot(root, ["/weir-cni"], stdin='{"cniVersion": "1.0.0"}',
                          env={"CNI_COMMAND": "VERSION", "PATH": "/"})
            try:
                versions = json.loads(r.stdout).get("supportedVersions", [])
            except ValueError:
                versions = []
            check(r.returncode == 0 and "1.0.0" in versions and "0.3.1" in versions,
                  f"weir-cni VERSION in an empty root: {r.stdout.strip()!r}")
        if "weir-init" in present:
            r = in_chroot(root, ["/weir-init", "--dry-run", "--inbound-ports", "*", "--outbound-cidrs", "*"])
            check(r.returncode == 0 and "--to-ports 15006" in r.stdout,
                  f"weir-init --dry-run in an empty root (rc {r.returncode}, {r.stderr.strip()[-200:]})")

    if os.geteuid() == 0 and {"weir-init", "weir-cni"} <= set(present):
        traffic(out, nft_built)
    else:
        print("note: traffic checks need root and both weir-init and weir-cni")

    print(f"{len(failures)} failed" if failures else "all static checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
