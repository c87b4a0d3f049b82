#!/usr/bin/env bash
# Builds weir's libFuzzer targets (clang, ASan + UBSan) and runs them.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]   regression pass, then fuzz each target
#                                      SECONDS (default 30)
#   fuzz/run.sh --regress              regression pass only: each target runs
#                                      once over fuzz/corpus/<target>/ and
#                                      fuzz/crashes/<target>/ (fixed bugs)
#
# Exit 0 when every target ran clean, 1 on any crash, leak, timeout or
# sanitizer report (the log's tail and the reproducer's path are printed),
# 77 when clang or its libFuzzer runtime is missing (the reason is printed).
#
# Environment:
#   WEIR_FUZZ_BUILD_DIR  build tree (default: build-fuzz/ in the source tree)
#   WEIR_FUZZ_TARGETS    the targets to run (default: all), e.g. "spec cni_config"
#   WEIR_FUZZ_JOBS       parallel compile jobs (default 2)
#   WEIR_FUZZ_ARGS       extra libFuzzer flags for the fuzzing runs (e.g. -jobs=4)
# Each target's new inputs and reproducers stay in BUILD/fuzz-work/<target>/
# (corpus/, artifacts/); see fuzz/README.md for longer runs and minimizing.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$src/fuzz"
build="${WEIR_FUZZ_BUILD_DIR:-$src/build-fuzz}"
jobs="${WEIR_FUZZ_JOBS:-2}"
all_targets="cni_config spec iptables_save istio_flags linkerd_flags capture_flags"
targets="${WEIR_FUZZ_TARGETS:-$all_targets}"

regress_only=0
seconds=30
case "${1:-}" in
  --regress) regress_only=1 ;;
  "") ;;
  *[!0-9]* | 0)
    echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] | --regress" >&2
    exit 2
    ;;
  *) seconds="$1" ;;
esac

# The longest input each target is given: configs and dumps are larger than
# command lines. Bigger inputs are slower to run and rarely find more.
max_len() {
  case "$1" in
    cni_config | iptables_save) echo 8192 ;;
    spec) echo 4096 ;;
    *) echo 2048 ;;
  esac
}

skip() {
  echo "SKIP: $*" >&2
  exit 77
}

# -------------------------------------------------------------- toolchain
cxx="${WEIR_FUZZ_CXX:-clang++}"
cc="${WEIR_FUZZ_CC:-clang}"
command -v "$cxx" >/dev/null || skip "$cxx not found (install clang: scripts/install-deps.sh)"
command -v "$cc" >/dev/null || skip "$cc not found (install clang: scripts/install-deps.sh)"
probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
  >"$probe_dir/probe.cc"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cc" -o "$probe_dir/probe" 2>"$probe_dir/err"; then
  skip "$cxx cannot link a libFuzzer target (install libclang-rt-14-dev): $(head -c 300 "$probe_dir/err")"
fi

# ------------------------------------------------------------------ build
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  # -O1 with assertions on (no NDEBUG) and libstdc++'s bounds checks.
  cmake -S "$src" -B "$build" "${generator[@]}" "${launcher[@]}" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DWEIR_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g -D_GLIBCXX_ASSERTIONS" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" >"$build.configure.log" 2>&1 ||
    { cat "$build.configure.log" >&2; echo "FAIL: configure $build" >&2; exit 1; }
fi
echo "== building the fuzz targets in $build"
cmake --build "$build" -j "$jobs" --target fuzz

# A sanitizer report ends the run with the input saved; leaks are reports too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()

# Prints what went wrong in one run: the log's tail and the reproducer.
report_failure() {
  local target="$1" log="$2"
  echo "FAIL: $target (log: $log)" >&2
  grep -E "ERROR: |SUMMARY: |runtime error|property violated|deadly signal|Test unit written to|Base64" "$log" | head -20 >&2 || true
  echo "---- tail of $log" >&2
  tail -n 40 "$log" >&2
  local unit
  unit="$(grep -o "Test unit written to .*" "$log" | tail -n 1 | sed 's/Test unit written to //')" || true
  if [[ -n "$unit" ]]; then
    echo "reproducer: $unit" >&2
    echo "  replay:   $build/bin/${target}_fuzz $unit" >&2
    echo "  minimize: $build/bin/${target}_fuzz -minimize_crash=1 -runs=100000 -exact_artifact_path=$unit.min $unit" >&2
    echo "  keep it (once fixed) as fuzz/crashes/$target/<name> " >&2
  fi
  failed+=("$target")
}

# ------------------------------------------------------------- regression
for t in $targets; do
  bin="$build/bin/${t}_fuzz"
  work="$build/fuzz-work/$t"
  mkdir -p "$work"
  mapfile -t inputs < <(find "$fuzz_dir/corpus/$t" "$fuzz_dir/crashes/$t" -type f 2>/dev/null | sort)
  if [[ ${#inputs[@]} -eq 0 ]]; then
    echo "== $t: no seeds or reproducers"
    continue
  fi
  log="$work/regress.log"
  start=$SECONDS
  if "$bin" -timeout=10 -rss_limit_mb=2048 "${inputs[@]}" >"$log" 2>&1; then
    echo "== $t: regression pass over ${#inputs[@]} inputs ok ($((SECONDS - start)) s)"
  else
    report_failure "$t" "$log"
  fi
done

# ---------------------------------------------------------------- fuzzing
if [[ $regress_only -eq 0 ]]; then
  for t in $targets; do
    bin="$build/bin/${t}_fuzz"
    work="$build/fuzz-work/$t"
    mkdir -p "$work/corpus" "$work/artifacts"
    dirs=("$work/corpus")  # new inputs go to the first directory, never to the repo's
    for d in "$fuzz_dir/corpus/$t" "$fuzz_dir/crashes/$t"; do
      [[ -d "$d" ]] && dirs+=("$d")
    done
    dict=()
    [[ -f "$fuzz_dir/dict/$t.dict" ]] && dict=(-dict="$fuzz_dir/dict/$t.dict")
    log="$work/fuzz.log"
    echo "== $t: fuzzing for $seconds s (log: $log)"
    # shellcheck disable=SC2086  # WEIR_FUZZ_ARGS is a list of flags
    if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
      -print_final_stats=1 -artifact_prefix="$work/artifacts/" "${dict[@]}" ${WEIR_FUZZ_ARGS:-} \
      "${dirs[@]}" >"$log" 2>&1; then
      runs="$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" | grep -o "[0-9]*$" | tail -n 1)" || true
      cov="$(grep -oE "cov: [0-9]+ ft: [0-9]+" "$log" | tail -n 1)" || true
      echo "   ok: ${runs:-?} runs, ${cov:-no coverage line}"
    else
      report_failure "$t" "$log"
    fi
  done
fi

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAIL: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets clean"
