#!/usr/bin/env bash
# sanitize.sh: the sanitizer builds, CPU-only, each in its own build directory (scripts/test.sh runs both).
#
#   scripts/sanitize.sh asan [ctest args]   AddressSanitizer + UndefinedBehaviorSanitizer: the whole suite
#                                           (build-asan/; every test, example and benchmark smoke test)
#   scripts/sanitize.sh tsan [ctest args]   ThreadSanitizer: the threaded parts (build-tsan/; the runtime,
#                                           data, parallel and distributed suites; see below)
#
# Both use the system compiler (GCC on Debian), -O1 with line tables, ccache when installed, and fail on
# the first report: ASan and LSan errors, any UBSan finding (-fno-sanitize-recover), any TSan race.
#
# Note [ThreadSanitizer and OpenMP]
# TSan sees only instrumented code and the synchronisation it knows (pthreads, atomics). GCC's libgomp is
# neither, so inside an OpenMP region with several threads every hand-off by libgomp's barriers looks like a
# race (145 reports in the runtime and data suites, all in OpenMP loops). The alternative, LLVM's OpenMP
# with its TSan annotations (libarcher), would mean a clang build whose libomp then also runs the
# libgomp-built OpenBLAS and oneDNN. So this build runs with one OpenMP thread (OMP_NUM_THREADS=1; OpenBLAS
# and oneDNN follow it): each OpenMP region runs on the thread that enters it, libgomp starts no threads, and
# every thread TSan watches is one of ember's own: DataParallel's per-device workers (parallel_apply), the
# in-process communicator's rendezvous, the reducer's bucket hooks, DDP's communication thread, the data
# loader's prefetch thread, the autograd engine's device threads, the caching allocators' shared pools.
# What it gives up is the OpenMP loops themselves: each writes disjoint slices of its output, which the
# ASan build checks for bounds and the value tests for results.
#
# Knobs: EMBER_JOBS (compile jobs), EMBER_SKIP_DEPS=1, CCACHE_DISABLE=1 (see scripts/common.sh);
# EMBER_ASAN_BUILD_DIR / EMBER_TSAN_BUILD_DIR (defaults build-asan, build-tsan).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mode="${1:-}"
case "$mode" in
  asan|tsan) shift ;;
  *) echo "usage: scripts/sanitize.sh asan|tsan [ctest arguments]" >&2; exit 2 ;;
esac
trap report_phases EXIT

supp="$ember_root/scripts/sanitizers"
# -Werror stays with the main build: GCC's flow-based warnings misfire on instrumented code (TSan at -O1:
# "used uninitialized" for copies of an empty std::optional), so here warnings are printed, not fatal.
common_cmake=(-DEMBER_CUDA=OFF -DEMBER_BUILD_TORCH_TESTS=OFF -DEMBER_WERROR=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
              "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
if [[ "$mode" == asan ]]; then
  build_dir="${EMBER_ASAN_BUILD_DIR:-$ember_root/build-asan}"
  cmake_args=("${common_cmake[@]}" "-DEMBER_SANITIZE=address;undefined")
  targets=()   # everything the suite runs
  # detect_leaks: LSan runs at every exit, with no suppressions (scripts/sanitizers/lsan.supp is empty).
  # Processes under mpirun run without it (cmake/EmberSanitizers.cmake: Open MPI's unloaded plugins).
  export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:abort_on_error=0:halt_on_error=1:print_summary=1"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
else
  build_dir="${EMBER_TSAN_BUILD_DIR:-$ember_root/build-tsan}"
  cmake_args=("${common_cmake[@]}" -DEMBER_SANITIZE=thread -DEMBER_BUILD_BENCH=OFF -DEMBER_BUILD_EXAMPLES=OFF
              "-DEMBER_TEST_SUITES=runtime;data;parallel;distributed")
  targets=(ember_runtime_tests ember_data_tests ember_parallel_tests ember_distributed_tests)
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$supp/tsan.supp"
  # Note [ThreadSanitizer and OpenMP]: one OpenMP thread.
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fi
case "$build_dir" in /*) ;; *) build_dir="$ember_root/$build_dir" ;; esac
export EMBER_CUDA=OFF

phase deps
ember_deps
phase "$mode-configure"
ember_configure "${cmake_args[@]}"
phase "$mode-build"
ember_build "${targets[@]}"
phase "$mode-test"
ctest --test-dir "$build_dir" --output-on-failure --parallel "$build_jobs" --no-tests=error "$@"
