#!/usr/bin/env bash
# The README's test command: installs missing dependencies, builds weir with
# warnings as errors, and runs every test (unit tests, root tests in namespaces
# they create, end-to-end tests of the real binaries). Root tests say they are
# skipped when not run as root.
#   WEIR_SANITIZE=1 scripts/test.sh   builds with ASan/UBSan into build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

build=build
flags=(-DWEIR_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${WEIR_SANITIZE:-0}" = 1 ]; then
  build=build-asan
  flags+=(-DWEIR_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
  # Every process runs several times slower: the explain/kernel agreement
  # test checks every 4th flow per spec (offsets differ across specs).
  export WEIR_EXPLAIN_FLOW_STRIDE=${WEIR_EXPLAIN_FLOW_STRIDE:-4}
fi

cmake -S . -B "$build" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j 2 "$@"
