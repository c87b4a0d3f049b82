#!/usr/bin/env bash
# bench/report.sh: every benchmark of weir in one run, with a table and plots.
# As root, on namespaces it creates (wt-bench-<pid>-*) and removes, also on
# failure and Ctrl-C. About 10 minutes with the default sizes, 2 with --quick.
#
#   bench/report.sh [--quick] [--bin-dir DIR] [--out DIR] [--sections LIST]
#
#   --bin-dir DIR   time the binaries in DIR (weir, weir-cni, weir-init,
#                   weir-node, weir-cri-pods and the bench tools); default:
#                   build them in build-release/ (CMAKE_BUILD_TYPE=Release, -O2)
#   --out DIR       where report.md, the .dat files and the PNGs go
#                   (default bench/results)
#   --sections L    a comma list of pod,inproc,closewait,scale,node,data
#                   (default: all)
#   --quick         fewer runs and pods (figures noisier; say so when quoting)
#
# Needs gnuplot for the plots: scripts/install-deps.sh --bench installs it
# (this script runs that when gnuplot is missing).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="" out="$src/bench/results" quick="" sections="pod,inproc,closewait,scale,node,data"
argv="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=--quick ;;
    --bin-dir) bin_dir=$(cd "$2" && pwd); shift ;;
    --out) mkdir -p "$2"; out=$(cd "$2" && pwd); shift ;;
    --sections) sections=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "report.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$(id -u)" -ne 0 ]; then
  echo "report.sh: must run as root (creates network namespaces)" >&2
  exit 1
fi

prefix="wt-bench-$$"
cleanup() {
  # What report.py did not remove (it was killed): the node section's pods
  # (processes in its cgroup, their cni-* namespaces found by inode, the
  # cgroup dirs, its containerd's mounts), then namespaces named $prefix-*.
  local n p ino f
  local pods=""
  [ -d /sys/fs/cgroup/pids/"$prefix"-node ] &&
    pods=$(find /sys/fs/cgroup/pids/"$prefix"-node -name cgroup.procs -exec cat {} + 2>/dev/null)
  for p in $pods; do
    ino=$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null) || continue
    for f in /var/run/netns/cni-*; do
      [ -e "$f" ] && [ "$(stat -L -c %i "$f" 2>/dev/null)" = "$ino" ] && ip netns delete "$(basename "$f")" 2>/dev/null
    done
    kill -9 "$p" 2>/dev/null || true
  done
  for d in /sys/fs/cgroup/*/"$prefix"-node/*/; do
    # A pod sandbox's cgroup is named by its id: the runtime's CNI result files too.
    [ -d "$d" ] && rm -f /var/lib/cni/results/*-"$(basename "$d")"-* 2>/dev/null
  done
  sleep 0.5  # the killed processes leave their cgroups
  for d in /sys/fs/cgroup/*/"$prefix"-node; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  for d in /tmp/weir-testbed-"$prefix"-*; do
    [ -d "$d" ] || continue
    mount | awk -v d="$d" 'index($3, d) == 1 {print $3}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  done
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix-" || true); do
    ip netns delete "$n" 2>/dev/null || true
  done
  rm -rf /tmp/weir-bench-"$prefix"-* /tmp/weir-testbed-"$prefix"-* 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

targets=(weir weir-cni weir-init weir-node weir-cri-pods weir-probe weir_nft_apply_bench weir-nft-test-apply
         weir_bench_spawn weir_nft_close_wait)
if [ -z "$bin_dir" ]; then
  build="$src/build-release"
  if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" >/dev/null
  fi
  echo "report.sh: building ${targets[*]} in $build" >&2
  cmake --build "$build" -j"${WEIR_JOBS:-2}" --target "${targets[@]}" >/dev/null
  bin_dir="$build/bin"
fi
for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || { echo "report.sh: $bin_dir/$t is missing (build target $t)" >&2; exit 1; }
done

# Which build the timed binaries are: the CMake cache beside them, and static or not.
build_type="unknown build type"
cache="$(dirname "$bin_dir")/CMakeCache.txt"
if [ -f "$cache" ]; then
  bt=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
  fl=$(sed -n "s/^CMAKE_CXX_FLAGS_$(echo "${bt:-none}" | tr a-z A-Z):[A-Z]*=//p" "$cache")
  build_type="CMAKE_BUILD_TYPE=${bt:-none} (${fl:-no flags})"
fi
if ldd "$bin_dir/weir-cni" 2>&1 | grep -q "not a dynamic executable"; then
  build_type="$build_type, static"
else
  build_type="$build_type, dynamically linked"
fi

if ! command -v gnuplot >/dev/null; then
  "$src/scripts/install-deps.sh" --bench
fi

t0=$(date +%s)
python3 "$src/bench/report.py" --bin-dir "$bin_dir" --build-type "$build_type" --out "$out" \
  --prefix "$prefix" --sections "$sections" --argv "$argv" $quick
if command -v gnuplot >/dev/null; then
  (cd "$out" && gnuplot "$src/bench/plots.gp")
  echo "report.sh: plots in $out: $(cd "$out" && ls *.png | tr '\n' ' ')"
else
  echo "report.sh: gnuplot missing, no plots" >&2
fi
echo "report.sh: done in $(( $(date +%s) - t0 )) s; table: $out/report.md"
