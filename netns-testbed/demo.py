#!/usr/bin/env python3
"""weir's main job, end to end on one machine (run by scripts/demo.sh, as root).

A container runtime attaches two pods to a node exactly as containerd does:
bridge + host-local give each pod its address, then weir-cni, chained after
them, decides from the pod's annotations whether to capture its traffic. One pod
asks for capture, the other does not. Real TCP connections then show where
traffic lands. Everything lives in network namespaces created here and removed
at the end (also on error or Ctrl-C); the machine's own network is not touched."""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testbed import GATEWAY4, GATEWAY6, Testbed, TestbedError, bin_dir  # noqa: E402

APP_UID, PROXY_UID = 1000, 1337


def heading(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}")


def main() -> int:
    if os.geteuid() != 0:
        print("demo: must run as root (it creates network namespaces); try: sudo scripts/demo.sh", file=sys.stderr)
        return 1
    for b in ("weir-cni", "weir-probe"):
        if not os.access(os.path.join(bin_dir(), b), os.X_OK):
            print(f"demo: {bin_dir()}/{b} missing; scripts/demo.sh builds it", file=sys.stderr)
            return 1
    t0 = time.monotonic()
    with Testbed(role="demo") as tb:
        weir = {"type": "weir-cni", "capabilities": {"io.kubernetes.cri.pod-annotations": True}}
        plugins = [tb.bridge_conf(), weir]
        conflist = {"cniVersion": "1.0.0", "name": "weir-demo", "plugins": plugins}

        heading("1. The node's CNI config: bridge + host-local give the pod an address, then weir-cni")
        print(json.dumps(conflist, indent=2))

        heading("2. The runtime attaches two pods (ADD through the chain; weir-cni's log line for each)")
        captured = tb.add_pod_cni("app", plugins, network_name="weir-demo", k8s_namespace="shop",
                                  annotations={"weir.dev/capture": "enabled"})
        plain = tb.add_pod_cni("plain", plugins, network_name="weir-demo", k8s_namespace="shop", annotations={})
        for pod, note in ((captured, 'annotation weir.dev/capture: "enabled"'), (plain, "no capture annotation")):
            log = pod.cni_calls[-1].stderr.strip().splitlines()
            print(f"pod shop/{pod.name:6} {pod.ip4:14} {pod.ip6:20} ({note})")
            print(f"    weir-cni: {log[-1] if log else '(no log line)'}")

        heading("3. The rules weir installed in pod 'app' (iptables-legacy-save -t nat, inside the pod)")
        nat = tb.exec(captured, ["iptables-legacy-save", "-t", "nat"], check=True).stdout
        for line in nat.splitlines():
            if line.startswith(("#", "COMMIT", "*")) or (line.startswith(":") and "WEIR_" not in line):
                continue
            print("   ", line)
        v6 = [line for line in tb.iptables_save(captured, 6).splitlines() if line.startswith("-A") and "WEIR_" in line]
        v4_plain = [line for line in tb.iptables_save(plain, 4).splitlines() if "WEIR_" in line]
        print(f"    (+ the same {len(v6)} rules for IPv6; pod 'plain' has {len(v4_plain)} weir rules)")

        heading("4. Real connections (a stub sidecar listens on 15001/15006 as UID 1337 and reports SO_ORIGINAL_DST)")
        tb.sidecar(captured)
        tb.serve(captured, [8080], uid=APP_UID, gid=APP_UID)
        tb.serve(plain, [8080], uid=APP_UID, gid=APP_UID)
        tb.serve(tb.node, [8080])  # a service outside the pods, on the node's bridge address
        node = ("node", lambda port, fam: f"{GATEWAY4}:{port}" if fam == 4 else f"[{GATEWAY6}]:{port}")
        app_to, plain_to = ("app", captured.addr), ("plain", plain.addr)
        rows = [
            # from, namespace, uid, (name, address), family, expected landing port, meaning
            ("plain", plain, APP_UID, app_to, 4, 15006, "inbound capture: to app's sidecar (inbound port)"),
            ("plain", plain, APP_UID, app_to, 6, 15006, "inbound capture, IPv6"),
            ("app (uid 1000)", captured, APP_UID, plain_to, 4, 15001, "outbound capture: to app's sidecar (outbound port)"),
            ("app (uid 1000)", captured, APP_UID, node, 6, 15001, "outbound capture, IPv6"),
            ("app (proxy, uid 1337)", captured, PROXY_UID, plain_to, 4, 8080, "the proxy's own traffic bypasses capture"),
            ("app (proxy, uid 1337)", captured, PROXY_UID, node, 6, 8080, "the proxy's own traffic bypasses capture, IPv6"),
            ("plain (uid 1000)", plain, APP_UID, node, 4, 8080, "pod 'plain' is not captured"),
        ]
        header = f"{'from':22} {'to':32} {'landed on':17} {'original destination':28} meaning"
        print(header)
        print("-" * (len(header) + 30))
        wrong = 0
        for label, frm, uid, (to_name, addr), fam, want, meaning in rows:
            to = addr(8080, fam)
            r = tb.connect(frm, to, uid=uid)
            if "error" in r:
                landed, orig, ok = "error", r["error"], False
            else:
                landed = f"sidecar :{r['landed']}" if r["landed"] in (15001, 15006) else f"{to_name} :{r['landed']}"
                orig = r["orig_dst"] or "- (not redirected)"
                ok = r["landed"] == want and (r["orig_dst"] == to if want != 8080 else r["orig_dst"] is None)
            wrong += not ok
            mark = "" if ok else "  <-- UNEXPECTED"
            print(f"{label:22} {to_name + ' ' + to:32} {landed:17} {orig:28} {meaning}{mark}")

        heading("5. The runtime deletes the pods (DEL in reverse order through the chain)")
        for pod in (captured, plain):
            calls = tb.cni_chain("DEL", pod.cni_plugins, pod=pod)
            left = [line for line in tb.iptables_save(pod, 4).splitlines() + tb.iptables_save(pod, 6).splitlines()
                    if "WEIR_" in line]
            status = "ok" if all(c.ok for c in calls) else f"FAILED: {calls}"
            print(f"pod {pod.name:6} DEL {status}; weir rules left: {len(left)}")
            wrong += (not all(c.ok for c in calls)) + bool(left)
    print(f"\nAll namespaces removed. {'Every connection went where expected' if not wrong else f'{wrong} unexpected result(s)'}"
          f" ({time.monotonic() - t0:.1f}s).")
    return 1 if wrong else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TestbedError as e:
        print(f"demo: {e}", file=sys.stderr)
        sys.exit(1)
