# common.sh: shared by scripts/test.sh and scripts/run.sh (sourced): dependencies, configure, build, timing.
# shellcheck shell=bash
#
# Environment knobs (all optional):
#   EMBER_BUILD_DIR     build directory (default: build, inside the repository)
#   EMBER_BUILD_TYPE    CMAKE_BUILD_TYPE (default: Release)
#   EMBER_CUDA          AUTO|ON|OFF (default: ON when nvcc is found, else OFF)
#   EMBER_CMAKE_ARGS    extra arguments for the cmake configure step, e.g. "-DCMAKE_CUDA_ARCHITECTURES=80;90"
#   EMBER_JOBS          parallel compile jobs (default: number of cores)
#   EMBER_SKIP_DEPS=1   do not run scripts/deps.sh
#   EMBER_WITH_TORCH=1  also install libtorch-dev (the LibTorch oracle tests then build)
#   CCACHE_DISABLE=1    compile without ccache even when it is installed

ember_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${EMBER_BUILD_DIR:-build}"
case "$build_dir" in /*) ;; *) build_dir="$ember_root/$build_dir" ;; esac
build_jobs="${EMBER_JOBS:-$(nproc 2>/dev/null || echo 2)}"

phase_names=()
phase_secs=()
phase_start=0
phase_name=""

# phase NAME: starts timing a phase (and closes the previous one).
phase() {
  phase_end
  phase_name="$1"
  phase_start=$(date +%s)
  echo "==== ${phase_name}" >&2
}
phase_end() {
  if [[ -n "$phase_name" ]]; then
    phase_names+=("$phase_name")
    phase_secs+=($(($(date +%s) - phase_start)))
    phase_name=""
  fi
}
# Prints how long each phase took; installed as an EXIT trap so that it also reports after a failure.
report_phases() {
  local rc=$?
  phase_end
  echo "==== timings ($(basename "$0"), exit $rc)" >&2
  local i total=0
  for i in "${!phase_names[@]}"; do
    printf '  %-10s %4d:%02d\n' "${phase_names[$i]}" $((phase_secs[i] / 60)) $((phase_secs[i] % 60)) >&2
    total=$((total + phase_secs[i]))
  done
  printf '  %-10s %4d:%02d\n' total $((total / 60)) $((total % 60)) >&2
}

ember_deps() {
  if [[ "${EMBER_SKIP_DEPS:-0}" == "1" ]]; then
    echo "deps: skipped (EMBER_SKIP_DEPS=1)" >&2
    return 0
  fi
  "$ember_root/scripts/deps.sh"
}

# A CUDA toolkit in the usual place counts as present even when it is not on PATH.
ember_find_nvcc() {
  if ! command -v nvcc >/dev/null 2>&1 && [[ -z "${CUDACXX:-}" ]]; then
    local dir
    for dir in /usr/local/cuda/bin /usr/lib/cuda/bin; do
      if [[ -x "$dir/nvcc" ]]; then
        export PATH="$dir:$PATH"
        break
      fi
    done
  fi
  command -v nvcc 2>/dev/null || echo "${CUDACXX:-}"
}

# ember_configure [CMAKE ARGS...]: configures $build_dir; arguments are added after the usual ones.
ember_configure() {
  local nvcc cuda
  nvcc="$(ember_find_nvcc)"
  # With nvcc present, ON (not AUTO): CUDA code that does not compile, or a missing cuDNN/NCCL, then fails
  # the build loudly instead of silently giving a CPU-only one.
  if [[ -n "${EMBER_CUDA:-}" ]]; then cuda="$EMBER_CUDA"; elif [[ -n "$nvcc" ]]; then cuda=ON; else cuda=OFF; fi
  echo "configure: $build_dir (CUDA backend: $cuda${nvcc:+, nvcc: $nvcc})" >&2

  local args=(-S "$ember_root" -B "$build_dir" -DCMAKE_BUILD_TYPE="${EMBER_BUILD_TYPE:-Release}" -DEMBER_CUDA="$cuda")
  # The generator of an existing build directory cannot change; choose Ninja only for a new one.
  if [[ ! -f "$build_dir/CMakeCache.txt" ]] && command -v ninja >/dev/null 2>&1; then
    args+=(-G Ninja)
  fi
  if [[ "${CCACHE_DISABLE:-0}" != "1" ]] && command -v ccache >/dev/null 2>&1; then
    args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  else
    args+=(-UCMAKE_CXX_COMPILER_LAUNCHER -UCMAKE_CUDA_COMPILER_LAUNCHER)
  fi
  # shellcheck disable=SC2206  # EMBER_CMAKE_ARGS is split on spaces on purpose
  args+=(${EMBER_CMAKE_ARGS:-})
  cmake "${args[@]}" "$@"
}

# ember_build [TARGET...]: builds the given targets (everything when none).
ember_build() {
  local targets=()
  local t
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "$build_dir" --parallel "$build_jobs" "${targets[@]}"
}
