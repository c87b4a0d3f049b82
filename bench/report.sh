#!/usr/bin/env bash
# bench/report.sh: every benchmark of weir in one run, with a table and plots.
# As root, on namespaces it creates (wt-bench-<pid>-*) and removes, also on
# failure and Ctrl-C. About 10 minutes with the default sizes, 2 with --quick.
#
#   bench/report.sh [--quick] [--bin-dir DIR] [--out DIR] [--sections LIST]
#
#   --bin-dir DIR   time the binaries in DIR (weir, weir-cni, weir-init,
#                   weir-node; the bench's own tools too when DIR has them,
#                   else they come from build-release/); default: build
#                   everything in build-release/ (CMAKE_BUILD_TYPE=Release, -O2)
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

# What is timed (--bin-dir may replace these) and the bench's own tools (always
# from a tree that has them: --bin-dir when it does, else build-release/).
product=(weir weir-cni weir-init weir-node)
tools=(weir-cri-pods weir-probe weir_nft_apply_bench weir-nft-test-apply weir_bench_spawn weir_nft_close_wait)
build="$src/build-release"
build_release() {
  if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" >/dev/null
  fi
  echo "report.sh: building $* in $build" >&2
  cmake --build "$build" -j"${WEIR_JOBS:-2}" --target "$@" >/dev/null
}
has_all() {
  local d=$1 t
  shift
  for t in "$@"; do [ -x "$d/$t" ] || return 1; done
}
build_of() {  # the build type of the binaries in $1: the CMake cache beside them, static or not
  local d=$1 bt fl out="unknown build type"
  local cache="$(dirname "$d")/CMakeCache.txt"
  if [ -f "$cache" ]; then
    bt=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
    fl=$(sed -n "s/^CMAKE_CXX_FLAGS_$(echo "${bt:-none}" | tr a-z A-Z):[A-Z]*=//p" "$cache")
    out="CMAKE_BUILD_TYPE=${bt:-none} (${fl:-no flags})"
  fi
  local libs
  libs=$(ldd "$d/weir-cni" 2>&1 || true)  # (not in a pipe: grep -q would SIGPIPE ldd under pipefail)
  case "$libs" in
    *"not a dynamic executable"*) echo "$out, static" ;;
    *) echo "$out, dynamically linked" ;;
  esac
}
if [ -z "$bin_dir" ]; then
  build_release "${product[@]}" "${tools[@]}"
  bin_dir="$build/bin"
  build_type=$(build_of "$bin_dir")
elif has_all "$bin_dir" "${product[@]}" "${tools[@]}"; then
  build_type=$(build_of "$bin_dir")
else
  # A directory of product binaries only (e.g. scripts/build-static.sh's):
  # one directory of links, its binaries first, the rest from build-release/.
  build_release "${tools[@]}" weir-node
  merged="/tmp/weir-bench-$prefix-bin"
  mkdir -p "$merged"
  from_release=()
  for t in "${product[@]}"; do
    if [ -x "$bin_dir/$t" ]; then ln -s "$bin_dir/$t" "$merged/$t"; else ln -s "$build/bin/$t" "$merged/$t"; from_release+=("$t"); fi
  done
  for t in "${tools[@]}"; do ln -s "$build/bin/$t" "$merged/$t"; done
  build_type="$(build_of "$bin_dir") from $bin_dir; the bench tools (and so the in-process figures)${from_release:+ and ${from_release[*]}} from $build/bin, $(build_of "$build/bin" | sed 's/, [a-z ]*linked$//; s/, static$//')"
  bin_dir="$merged"
fi
for t in "${product[@]}" "${tools[@]}"; do
  [ -x "$bin_dir/$t" ] || { echo "report.sh: $bin_dir/$t is missing (build target $t)" >&2; exit 1; }
done

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
