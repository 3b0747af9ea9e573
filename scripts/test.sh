#!/usr/bin/env bash
# test.sh: the README's test command (and CI's, via .ci/run): installs what is missing, configures build/
# (Release, Ninja, ccache, the CUDA backend whenever nvcc is found), builds everything (library, tests,
# benchmarks, examples) and runs the whole test suite with CTest. Exits non-zero on any failure.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -LE cuda        arguments go to ctest: here, skip the GPU tests
#   scripts/test.sh -R Tensor       only tests whose name matches
# Then the sanitizer builds (scripts/sanitize.sh asan, tsan) and the fuzzers (scripts/fuzz.sh); the ctest
# arguments apply only to the main build's run. EMBER_SANITIZERS=0 skips them.
# Knobs (EMBER_BUILD_DIR, EMBER_CUDA, EMBER_JOBS, EMBER_WITH_TORCH, ...): see scripts/common.sh.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap report_phases EXIT

phase deps
ember_deps
phase configure
ember_configure
phase build
# shellcheck disable=SC2119  # no targets: build everything
ember_build
phase test
# Tests are mostly single-threaded and short; one per core keeps both cores busy. Each test has its own
# timeout (set in CMake), so a hang fails that test instead of stalling CI.
ctest --test-dir "$build_dir" --output-on-failure --parallel "$build_jobs" --no-tests=error "$@"

# The sanitizer builds and the fuzzers (CPU-only, each in its own build directory; EMBER_SANITIZERS=0 skips
# them, e.g. for a quick local run): ASan + UBSan over the whole suite, TSan over the threaded suites, and
# every fuzz target for EMBER_FUZZ_SECONDS (default 20) from the committed corpus.
if [[ "${EMBER_SANITIZERS:-1}" != "0" ]]; then
  EMBER_SKIP_DEPS=1 "$ember_root/scripts/sanitize.sh" asan
  EMBER_SKIP_DEPS=1 "$ember_root/scripts/sanitize.sh" tsan
  EMBER_SKIP_DEPS=1 "$ember_root/scripts/fuzz.sh" "${EMBER_FUZZ_SECONDS:-20}"
fi
