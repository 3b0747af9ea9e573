#!/usr/bin/env bash
# fuzz.sh [SECONDS_PER_TARGET]: builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan, and runs each
# for SECONDS_PER_TARGET seconds (default 30) on a scratch copy of its committed corpus (fuzz/corpus/<target>,
# never written to). Exits non-zero when a target finds a crash, and prints how to keep the reproducer as a
# regression input (fuzz/regressions/<target>/, replayed by ember_fuzz_replay_tests in the normal suite).
#
# Environment knobs (besides those of scripts/common.sh: EMBER_JOBS, EMBER_SKIP_DEPS, CCACHE_DISABLE, ...):
#   EMBER_FUZZ_BUILD_DIR  build directory (default: build-fuzz, inside the repository)
#   EMBER_FUZZ_TARGETS    targets to run (default: "safetensors idx device shapes")
#   EMBER_FUZZ_JOBS       parallel fuzzing processes per target (default: 1; libFuzzer -fork=N when > 1)
#   EMBER_FUZZ_ARGS       extra libFuzzer flags, e.g. "-max_len=4096"
#   EMBER_BUILD_TYPE      CMAKE_BUILD_TYPE (default here: RelWithDebInfo, for symbolised reports)
set -euo pipefail

export EMBER_BUILD_DIR="${EMBER_FUZZ_BUILD_DIR:-build-fuzz}"
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap report_phases EXIT

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -lt 1 ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET]  (got '$seconds')" >&2
  exit 2
fi
targets=(${EMBER_FUZZ_TARGETS:-safetensors idx device shapes})

phase deps
ember_deps
for tool in clang clang++; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fuzz.sh: $tool not found (Debian: clang libclang-rt-14-dev libomp-14-dev)" >&2
    exit 1
  fi
done

phase configure
# Another build directory's compiler cannot change: the fuzz build has its own, always configured with clang.
export CC=clang CXX=clang++
export EMBER_CUDA=OFF
export EMBER_BUILD_TYPE="${EMBER_BUILD_TYPE:-RelWithDebInfo}"
EMBER_CMAKE_ARGS="-DEMBER_SANITIZE=address;undefined -DEMBER_BUILD_FUZZERS=ON -DEMBER_BUILD_TESTS=OFF \
-DEMBER_BUILD_BENCH=OFF -DEMBER_BUILD_EXAMPLES=OFF -DEMBER_WERROR=OFF ${EMBER_CMAKE_ARGS:-}"
export EMBER_CMAKE_ARGS
ember_configure

phase build
fuzzers=()
for t in "${targets[@]}"; do fuzzers+=("fuzz_$t"); done
ember_build "${fuzzers[@]}"

phase fuzz
export OMP_NUM_THREADS=1
# Reports: symbolised, and fatal at the first finding; leaks count as findings too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
run_dir="$build_dir/fuzz-runs"
rm -rf "$run_dir"
mkdir -p "$run_dir"
failed=()
summary=()
for t in "${targets[@]}"; do
  work="$run_dir/$t"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -r "$ember_root/fuzz/corpus/$t/." "$work/corpus/" 2>/dev/null || true
  if [[ -d "$ember_root/fuzz/regressions/$t" ]]; then
    cp -r "$ember_root/fuzz/regressions/$t/." "$work/corpus/" 2>/dev/null || true
  fi
  args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
        -artifact_prefix="$work/artifacts/")
  [[ -f "$ember_root/fuzz/$t.dict" ]] && args+=(-dict="$ember_root/fuzz/$t.dict")
  if [[ "${EMBER_FUZZ_JOBS:-1}" -gt 1 ]]; then args+=(-fork="$EMBER_FUZZ_JOBS"); fi
  # shellcheck disable=SC2206  # split on spaces on purpose
  args+=(${EMBER_FUZZ_ARGS:-})
  echo "---- fuzz_$t: ${seconds}s" >&2
  rc=0
  "$build_dir/fuzz/fuzz_$t" "${args[@]}" "$work/corpus" >"$work/log.txt" 2>&1 || rc=$?
  # Final figures: the last status line (cov/ft/corp) and -print_final_stats' execution count.
  status_line="$(grep -E '^#[0-9]+.*(cov|corp):' "$work/log.txt" | tail -n 1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log.txt" | tail -n 1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status_line")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status_line")"
  corp="$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$status_line")"
  summary+=("$(printf '%-12s execs %-10s cov %-6s ft %-6s corpus %-12s %s' "$t" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)")")")
  if [[ $rc -ne 0 ]]; then
    failed+=("$t")
    tail -n 60 "$work/log.txt" >&2
    for artifact in "$work"/artifacts/*; do
      [[ -e "$artifact" ]] || continue
      name="$(basename "$artifact")"
      echo "fuzz_$t: reproducer $artifact" >&2
      echo "  rerun:  $build_dir/fuzz/fuzz_$t $artifact" >&2
      echo "  keep it as a regression test (after fixing): mkdir -p fuzz/regressions/$t &&" \
           "cp $artifact fuzz/regressions/$t/$name" >&2
    done
  fi
done
phase_end

echo "==== fuzz results (${seconds}s per target; logs and corpora in $run_dir)" >&2
printf '  %s\n' "${summary[@]}" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: findings in: ${failed[*]}" >&2
  exit 1
fi
