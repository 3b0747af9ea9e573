#!/usr/bin/env bash
# test.sh: the README's test command (and CI's, via .ci/run): installs what is missing, configures build/
# (Release, Ninja, ccache, the CUDA backend whenever nvcc is found), builds everything (library, tests,
# benchmarks, examples) and runs the whole test suite with CTest. Exits non-zero on any failure.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -LE cuda        arguments go to ctest: here, skip the GPU tests
#   scripts/test.sh -R Tensor       only tests whose name matches
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
