#!/usr/bin/env bash
# Builds the static archives weir's static binaries link against, from
# Debian's own source packages (Debian ships no libip4tc.a/libip6tc.a/libnl-3.a):
#   libip4tc.a, libip6tc.a   libiptc/libip4tc.c and libip6tc.c of `iptables`
#   libnl-3.a, libnl-route-3.a   lib/ of `libnl3` (autotools, static only)
#   libmnl.a     `libmnl` (autotools, static only), for the nftables filter
#   libnftnl.a   copied from Debian's libnftnl-dev, which ships it
# into $WEIR_STATIC_DEPS_DIR/prefix (default: build-static-deps/prefix) with
# headers and pkg-config files. spdlog and fmt need no archive: the static
# build uses them header-only (cmake/static.cmake).
#
# libmnl.a is optional. Debian ships none, and libmnl's source can be missing
# from the mirror (`apt-get source libmnl` 404s on its tarball on some
# machines). Then neither libmnl.a nor libnftnl.a is installed, the reason is
# written to prefix/.weir-no-libmnl and printed loudly, and
# scripts/build-static.sh builds the binaries WITHOUT the nftables backend
# (WEIR_NFTABLES=OFF: auto uses legacy iptables, --backend nftables fails
# saying why). Later runs try libmnl again, and only libmnl.
#
# A second run with the same recipe does nothing else. Needs root the first
# time (apt-get: a deb-src list in /etc/apt/sources.list.d/weir-src.list, and
# the build tools dpkg-dev, flex, bison).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
deps=${WEIR_STATIC_DEPS_DIR:-$repo/build-static-deps}
prefix=$deps/prefix
jobs=${WEIR_JOBS:-2}
# Bump when the recipe changes, so cached archives are rebuilt.
recipe=5
stamp=$prefix/.weir-static-deps
no_mnl=$prefix/.weir-no-libmnl
src=$deps/src
# Only the archives are needed: sections per function so the final link can
# drop what weir never calls (and with it, most of glibc's NSS references).
cflags="-O2 -g -fPIC -ffunction-sections -fdata-sections"

log() { echo "build-static-deps: $*" >&2; }

# Same source version as the installed -dev headers where the archive still has
# it, so the static and the shared build see one ABI. Returns 1 (apt's message
# on stderr) when the source cannot be fetched or unpacked.
fetch() {
  local srcpkg=$1 devpkg=$2 ver
  ver=$(dpkg-query -W -f='${source:Version}' "$devpkg" 2>/dev/null || true)
  if [ -n "$ver" ] && apt-get source -qq --download-only "$srcpkg=$ver" >/dev/null 2>&1; then
    log "fetched $srcpkg $ver"
  else
    log "fetching $srcpkg (candidate version; $devpkg ${ver:-not installed} not in the archive)"
    apt-get source -qq --download-only "$srcpkg" >/dev/null || return 1
  fi
  # apt checked the files against the signed index; dpkg-source's own gpgv
  # warning about the uploader's key is noise here.
  dpkg-source -q -x "$srcpkg"_*.dsc >/dev/null 2>"$srcpkg.unpack.log" \
    || { cat "$srcpkg.unpack.log" >&2; return 1; }
}

# libmnl.a (netlink sockets and messages for the nftables filter, and what
# libnftnl.a itself calls), then libnftnl.a from Debian's libnftnl-dev: both
# or neither, libnftnl.a is of no use without libmnl.a. Returns 1, with the
# reason in $no_mnl, when libmnl's source cannot be fetched; a failing build
# of a fetched source is an error (exit 1: called in an || list, set -e does
# not apply inside).
build_mnl_nftnl() {
  local dir=$src/libmnl mnl mnlver nftnlver multiarch
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  if ! fetch libmnl libmnl-dev 2>"$dir/fetch.log"; then
    cat "$dir/fetch.log" >&2
    { echo "libmnl's source package could not be fetched (apt-get source libmnl):"
      grep -E '^E:' "$dir/fetch.log" || tail -3 "$dir/fetch.log"; } >"$no_mnl"
    cd "$src"
    return 1
  fi
  mnl=$(echo "$dir"/libmnl-*/)
  cd "$mnl"
  # Its tarball has a generated configure.
  CFLAGS="$cflags" ./configure -q --prefix="$prefix" --enable-static --disable-shared >"$dir/configure.log" 2>&1 \
    || { tail -20 "$dir/configure.log" >&2; exit 1; }
  make -j"$jobs" -C src >"$dir/make.log" 2>&1 || { tail -20 "$dir/make.log" >&2; exit 1; }
  cp src/.libs/libmnl.a "$prefix/lib/" || exit 1
  cp -r include/libmnl "$prefix/include/" || exit 1
  mnlver=$(basename "$mnl" | sed 's/^libmnl-//')
  write_pc libmnl "Minimalistic Netlink library (static, built by weir)" "$mnlver" "" "-lmnl" ""
  log "built libmnl.a ($mnlver)"

  # Debian's libnftnl-dev ships libnftnl.a, the same version as the headers
  # of the shared build. It calls libmnl, hence the Requires.
  multiarch=$(gcc -print-multiarch)
  cp "/usr/lib/$multiarch/libnftnl.a" "$prefix/lib/" || exit 1
  cp -r /usr/include/libnftnl "$prefix/include/" || exit 1
  nftnlver=$(dpkg-query -W -f='${Version}' libnftnl-dev | sed 's/-[^-]*$//')
  write_pc libnftnl "nf_tables netlink messages (Debian's static archive, copied by weir)" "$nftnlver" \
    "libmnl" "-lnftnl" ""
  log "copied libnftnl.a ($nftnlver)"
  rm -f "$no_mnl"
  cd "$src"
}

# write_pc NAME DESCRIPTION VERSION REQUIRES LIBS INCLUDE_SUBDIR: a .pc file
# in $prefix/lib/pkgconfig for the static archive NAME.
write_pc() {
  [ -n "$prefix" ] || { log "no prefix"; exit 1; }
  {
    echo "prefix=$prefix"
    echo "libdir=\${prefix}/lib"
    echo "includedir=\${prefix}/include"
    echo
    echo "Name: $1"
    echo "Description: $2"
    echo "Version: $3"
    [ -z "$4" ] || echo "Requires: $4"
    echo "Libs: -L\${libdir} $5"
    echo "Cflags: -I\${includedir}$6"
  } >"$prefix/lib/pkgconfig/$1.pc"
}

# Says loudly that the static binaries will have no nftables backend.
warn_no_mnl() {
  log "####################################################################"
  log "WARNING: no libmnl.a, so the static binaries get NO nftables backend"
  sed 's/^/build-static-deps:   /' "$no_mnl" >&2
  log "(scripts/build-static.sh builds with WEIR_NFTABLES=OFF: auto uses"
  log " legacy iptables; --backend nftables fails saying why)"
  log "####################################################################"
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ]; then
  if [ -f "$no_mnl" ]; then
    log "up to date in $prefix, but without libmnl.a: trying libmnl again"
    if ! build_mnl_nftnl; then
      warn_no_mnl
      exit 0
    fi
  fi
  log "up to date in $prefix"
  exit 0
fi

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

# Build tools: dpkg-source to unpack, flex/bison for libnl's grammars.
need=()
for p in dpkg-dev flex bison build-essential pkg-config xz-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Source index: our own deb-src list, updated on its own so other lists stay as they are.
srclist=/etc/apt/sources.list.d/weir-src.list
if [ ! -f "$srclist" ]; then
  log "adding $srclist"
  $sudo tee "$srclist" >/dev/null <<'EOF'
# Added by weir's scripts/build-static-deps.sh: Debian source packages for the
# static libiptc/libnl archives of weir's self-contained binaries.
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
EOF
fi
if ! apt-cache showsrc iptables 2>/dev/null | grep -q '^Package: iptables'; then
  log "updating source index"
  $sudo apt-get update -qq -o Dir::Etc::sourcelist="$srclist" -o Dir::Etc::sourceparts=- \
    -o APT::Get::List-Cleanup=0
fi

rm -rf "$src" "$prefix"
mkdir -p "$src" "$prefix/lib/pkgconfig" "$prefix/include"
cd "$src"

fetch iptables libip4tc-dev || exit 1
fetch libnl3 libnl-3-dev || exit 1

# libiptc: two translation units, each #including libiptc.c; compiled directly
# rather than configuring all of iptables.
ipt=$(echo "$src"/iptables-*/)
for lib in libip4tc libip6tc; do
  # shellcheck disable=SC2086
  gcc $cflags -D_LARGEFILE_SOURCE=1 -D_LARGE_FILES -D_FILE_OFFSET_BITS=64 -D_REENTRANT \
    -I"$ipt/include" -c "$ipt/libiptc/$lib.c" -o "$src/$lib.o"
  ar rcs "$prefix/lib/$lib.a" "$src/$lib.o"
done
cp -r "$ipt/include/libiptc" "$prefix/include/"
iptver=$(basename "$ipt" | sed 's/^iptables-//')
for lib in libip4tc libip6tc; do
  cat >"$prefix/lib/pkgconfig/$lib.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: $lib
Description: iptables ruleset ADT and kernel interface (static, built by weir)
Version: $iptver
Libs: -L\${libdir} -l${lib#lib}
Cflags: -I\${includedir}
EOF
done
log "built libip4tc.a libip6tc.a ($iptver)"

# libnl: Debian's patches touch Makefile.am only for the shared objects'
# symbol versions and /etc paths; keep the shipped generated files instead
# of needing automake.
nl=$(echo "$src"/libnl3-*/)
cd "$nl"
touch aclocal.m4 && sleep 1 && touch configure Makefile.in
CFLAGS="$cflags" ./configure -q --prefix="$prefix" --sysconfdir=/etc \
  --enable-static --disable-shared --disable-cli --disable-debug >"$src/libnl-configure.log" 2>&1 \
  || { tail -20 "$src/libnl-configure.log" >&2; exit 1; }
make -j"$jobs" lib/libnl-3.la lib/libnl-route-3.la >"$src/libnl-make.log" 2>&1 \
  || { tail -20 "$src/libnl-make.log" >&2; exit 1; }
cp lib/.libs/libnl-3.a lib/.libs/libnl-route-3.a "$prefix/lib/"
mkdir -p "$prefix/include/libnl3"
cp -r include/netlink "$prefix/include/libnl3/"
nlver=$(basename "$nl" | sed 's/^libnl3-//')
cat >"$prefix/lib/pkgconfig/libnl-3.0.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: libnl
Description: Netlink sockets (static, built by weir)
Version: $nlver
Libs: -L\${libdir} -lnl-3 -lpthread -lm
Cflags: -I\${includedir}/libnl3
EOF
cat >"$prefix/lib/pkgconfig/libnl-route-3.0.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: libnl-route
Description: Netlink routing family (static, built by weir)
Version: $nlver
Requires: libnl-3.0
Libs: -L\${libdir} -lnl-route-3
Cflags: -I\${includedir}/libnl3
EOF
log "built libnl-3.a libnl-route-3.a ($nlver)"

# Optional (see the top): without it, no nftables backend.
build_mnl_nftnl || true

echo "$recipe" >"$stamp"
[ ! -f "$no_mnl" ] || warn_no_mnl
log "done: $prefix"
