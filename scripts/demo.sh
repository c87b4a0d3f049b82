#!/usr/bin/env bash
# The README's main job: builds weir-cni and the traffic probe, then plays a
# Kubernetes node on this machine (netns-testbed/demo.py): two pods attached
# through bridge + host-local + weir-cni, one captured by annotation and one
# not, real connections showing where traffic lands, then cleanup. Everything
# happens in network namespaces it creates; this machine's network is not
# touched. Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: must run as root (it creates network namespaces and runs CNI plugins); try: sudo $0" >&2
  exit 1
fi

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# Progress lines are hidden, errors shown. pipefail makes a failed build fail
# the demo (an old binary left in build/bin must not stand in for it); only
# grep's "nothing left to print" is forgiven.
if ! cmake --build build --target weir-cni weir-probe -j "$(nproc)" | { grep -v '^\[' || true; }; then
  echo "demo.sh: build failed" >&2
  exit 1
fi
test -x build/bin/weir-cni -a -x build/bin/weir-probe || { echo "demo.sh: build failed" >&2; exit 1; }
WEIR_BIN_DIR="$PWD/build/bin" exec python3 netns-testbed/demo.py
