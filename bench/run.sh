#!/bin/sh
# Builds and runs weir's apply benchmark (root: it creates network namespaces,
# named wt-bed-<pid>-b*, and removes them). Extra arguments go to the benchmark,
# e.g. bench/run.sh --runs 500.
#   BUILD_DIR   build directory (default: build)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build}
if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build" --target weir_apply_bench -j2
exec "$build/bin/weir_apply_bench" "$@"
