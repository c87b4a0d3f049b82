#!/usr/bin/env bash
# One command for weir's self-contained binaries:
#   scripts/build-static.sh   ->  out/static/{weir,weir-cni,weir-init}
# Builds the static libiptc/libnl archives once (scripts/build-static-deps.sh,
# cached in build-static-deps/), configures build-static/ with WEIR_STATIC=ON,
# builds the three executables, strips them into out/static/ and checks that
# none needs a shared library.
#
# Without libmnl.a (build-static-deps.sh could not fetch libmnl's source;
# Debian ships no libmnl.a) the binaries are built WITHOUT the nftables
# backend (-DWEIR_NFTABLES=OFF), and this script says so on its last line:
# auto then uses legacy iptables, `--backend nftables` fails with "this build
# has no nftables backend (built without libmnl.a)", and `weir --version`
# prints "nftables backend: not built in (built without libmnl.a)".
# Environment: WEIR_STATIC_BUILD_DIR (default build-static), WEIR_STATIC_OUT
# (default out/static), WEIR_STATIC_DEPS_DIR (see build-static-deps.sh),
# WEIR_JOBS (default 2), WEIR_STATIC_BUILD_TYPE (default RelWithDebInfo, the
# -O2 of the tested default build; the CI test uses None, -O0, to compile in
# half the time: linkage is the same).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${WEIR_STATIC_BUILD_DIR:-$repo/build-static}
out=${WEIR_STATIC_OUT:-$repo/out/static}
deps=${WEIR_STATIC_DEPS_DIR:-$repo/build-static-deps}
jobs=${WEIR_JOBS:-2}
build_type=${WEIR_STATIC_BUILD_TYPE:-RelWithDebInfo}
targets=(weir weir-cni weir-init)

log() { echo "build-static: $*" >&2; }

WEIR_STATIC_DEPS_DIR=$deps "$repo/scripts/build-static-deps.sh"

# The nftables backend needs libmnl.a (and libnftnl.a, which comes with it).
if [ -f "$deps/prefix/lib/libmnl.a" ] && [ -f "$deps/prefix/lib/libnftnl.a" ]; then
  nftables=ON
  nftables_note="nftables backend: built in"
else
  nftables=OFF
  nftables_note="nftables backend: NOT BUILT IN (built without libmnl.a; see $deps/prefix/.weir-no-libmnl): auto uses legacy iptables, --backend nftables fails"
  log "WARNING: $nftables_note"
fi

# The optimisation level the tested default build uses (-O2); warnings are
# gated there (WEIR_WERROR), not here.
# ccache, where installed, makes a rebuild (the CI test's second run) cheap.
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$repo" -B "$build" -G Ninja -DWEIR_STATIC=ON -DWEIR_WERROR=OFF \
  -DWEIR_STATIC_PREFIX="$deps/prefix" -DCMAKE_BUILD_TYPE="$build_type" "${launcher[@]}" \
  -DWEIR_NFTABLES=$nftables -DWEIR_NFTABLES_MISSING_WHY="built without libmnl.a" >/dev/null

# Build only the executables that exist in this tree; say which are missing.
known=$(cmake --build "$build" --target help | sed -n 's/^\([^:]*\): .*/\1/p')
present=()
for t in "${targets[@]}"; do
  if grep -qx "$t" <<<"$known"; then present+=("$t"); else log "no target $t in this tree; skipped"; fi
done
[ ${#present[@]} -gt 0 ] || { log "none of ${targets[*]} is defined"; exit 1; }
cmake --build "$build" -j "$jobs" --target "${present[@]}"

mkdir -p "$out"
status=0
for t in "${present[@]}"; do
  strip --strip-all -o "$out/$t" "$build/bin/$t"
  # A static executable is what makes it copyable onto any node.
  if ldd "$out/$t" >/dev/null 2>&1; then
    log "$t is dynamically linked:"; ldd "$out/$t" >&2; status=1
  fi
  printf '%-10s %9d bytes  %s\n' "$t" "$(stat -c %s "$out/$t")" "$(file -b "$out/$t" 2>/dev/null | cut -d, -f1-2 || true)"
done
# Last, where nobody misses it (stdout and stderr).
echo "$nftables_note"
[ "$nftables" = ON ] || log "WARNING: $nftables_note"
exit $status
