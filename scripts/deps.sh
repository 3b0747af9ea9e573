#!/usr/bin/env bash
# deps.sh: installs the Debian packages ember builds and tests against, only those that are missing.
#
#   scripts/deps.sh                     the build, test, benchmark and example dependencies
#   EMBER_WITH_TORCH=1 scripts/deps.sh  also libtorch-dev, for the LibTorch oracle tests (tests/torch;
#                                       about 280 more packages, ~210 MB download, ~850 MB on disk)
#   scripts/deps.sh --print             lists the packages and exits
#
# Fast and silent when everything is there (one dpkg-query, no apt-get update). Otherwise it runs
# apt-get update + install as root, through sudo when not root; when that is impossible or fails it says
# exactly which packages are missing and the command to install them, and exits 1.
# The CUDA toolkit, cuDNN and NCCL are not Debian packages here: the CUDA backend is built when nvcc is
# found (see README.md); without it ember builds CPU-only.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config  # toolchain
  libopenblas-openmp-dev zlib1g-dev nlohmann-json3-dev  # the library: CPU GEMM (OpenMP build), checkpoints, JSON
  libdnnl-dev                                          # the library: CPU convolution, pooling (oneDNN, as LibTorch)
  libopenmpi-dev openmpi-bin                           # multi-process training (distributed::)
  libgtest-dev libgmock-dev libbenchmark-dev           # tests and benchmarks
  libcli11-dev dataset-fashion-mnist                   # examples: command lines, the Fashion-MNIST data
  clang libclang-rt-dev libomp-dev                     # the fuzzers (libFuzzer, clang's sanitizer runtimes, OpenMP)
)
if [[ "${EMBER_WITH_TORCH:-0}" == "1" ]]; then
  packages+=(libtorch-dev)  # the oracle tests compare ember with LibTorch 1.13
fi

if [[ "${1:-}" == "--print" ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

say() { echo "deps: $*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  say "this is not a Debian-like system (no dpkg-query/apt-get), so nothing can be installed automatically."
  say "install the equivalents of these Debian packages, then run again with EMBER_SKIP_DEPS=1:"
  say "  ${packages[*]}"
  exit 1
fi

# One dpkg-query for all packages; unknown ones print nothing and count as missing.
mapfile -t installed < <(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" 2>/dev/null |
                         awk '$1 == "installed" { print $2 }')
missing=()
for p in "${packages[@]}"; do
  found=0
  for q in "${installed[@]}"; do
    if [[ "$p" == "$q" ]]; then found=1; break; fi
  done
  if [[ $found == 0 ]]; then missing+=("$p"); fi
done
if [[ ${#missing[@]} == 0 ]]; then
  say "all ${#packages[@]} packages present"
  exit 0
fi

install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
explain() {
  say "$1"
  say "missing packages: ${missing[*]}"
  say "install them with (as root):"
  say "  $install_cmd"
  exit 1
}

if [[ $(id -u) == 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [[ -t 0 ]]; }; then
  sudo=(sudo)  # asks for a password only when run from a terminal
else
  explain "cannot install: not root, and sudo is unavailable or needs a password that cannot be asked for here."
fi

say "installing ${#missing[@]} missing package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -q; then
  explain "apt-get update failed (network or apt sources?)."
fi
if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  explain "apt-get install failed (see above; dataset-fashion-mnist and libtorch-dev are in Debian 12 'main')."
fi
say "done"
