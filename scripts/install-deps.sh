#!/usr/bin/env bash
# Installs what weir needs to build and test on Debian 12. Does nothing when
# everything is already there. Run as root (or with sudo available).
#   --bench: also what bench/report.sh needs (gnuplot for its plots); CI does
#            not need it.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config
  libiptc-dev libip4tc-dev libip6tc-dev libxtables-dev
  libnl-3-dev libnl-route-3-dev
  libnftnl-dev libmnl-dev  # the nftables filter (kernel/nft/), in-process over netlink
  nftables  # tests only: they look at what weir did with nft; weir never runs it
  nlohmann-json3-dev libcli11-dev libspdlog-dev doctest-dev
  iptables iproute2 containernetworking-plugins python3 python3-yaml procps util-linux
  # weir-node: the CRI client (gRPC C++ and protobuf), /readyz and /metrics
  # (cpp-httplib), and a private containerd for its end-to-end test.
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libcpp-httplib-dev
  containerd runc busybox-static
  # The fuzz targets (fuzz/run.sh, ctest fuzz_smoke): clang and its libFuzzer,
  # ASan and UBSan runtimes (only recommended by clang, so named here).
  clang libclang-rt-14-dev
)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(gnuplot-nox)  # bench/report.sh: PNG plots of its figures
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
