#!/usr/bin/env bash
# gpu_deps.sh: fetches (never installs) what bench/gpu_check.sh needs on the lent GPU machine into .device/.
#
# The GPU machine has the CUDA toolkit, CMake, Ninja and PyTorch but no package registry and none of
# ember's Debian build dependencies, so they travel with the device call (`carry: [".device"]`):
#
#   .device/debs/*.deb          Debian 12 packages, unpacked there with `dpkg -x` into a private prefix
#   .device/fashion-mnist/*.gz  the four Fashion-MNIST IDX files (for the training run)
#
# Run it here (a Debian 12 machine with network), from anywhere; it replaces what .device/ held. Needs
# apt-get (run `apt-get update` first if the package lists are stale) and dpkg-deb. `.device/` is
# ignored by git, so nothing here is committed. Prints the total size: the carried files and the
# working tree must stay under the device call's 64 MiB together.
#
# What the build really needs (checked against cmake/EmberDependencies.cmake, tests/, bench/ and
# examples/CMakeLists.txt): GoogleTest + GoogleMock (static libs, headers, GTestConfig.cmake),
# Google Benchmark (shared lib + config), the OpenMP build of OpenBLAS (cblas.h + libopenblas.so; its
# libgfortran5/libquadmath0 come along in case the machine lacks them), nlohmann-json and CLI11
# (header-only), zlib headers (used there only when the machine has none). Not carried: the
# `googletest` source package (libgtest-dev ships the built libraries) and OpenBLAS's 58 MB static
# archive, which is cut out of libopenblas-openmp-dev (see repack_without_static below).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.device"

packages=(
  libgtest-dev libgmock-dev                       # tests (GTest::gtest, GTest::gmock)
  libbenchmark-dev libbenchmark1debian            # bench/ (benchmark::benchmark)
  libopenblas-openmp-dev libopenblas0-openmp      # the CPU GEMM (cmake/EmberDependencies.cmake)
  libgfortran5 libquadmath0 libgomp1              # OpenBLAS's runtime deps, unpacked only if missing there
  nlohmann-json3-dev libcli11-dev                 # header-only: safetensors JSON, examples' command lines
  zlib1g-dev zlib1g                               # checkpoints (ZLIB::ZLIB), unpacked only if missing there
)

say() { echo "gpu_deps: $*" >&2; }

if ! git -C "$root" check-ignore -q .device/x 2>/dev/null; then
  say "warning: .device/ is not ignored by git here; add '/.device/' to .gitignore before committing"
fi
for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null 2>&1 || { say "needs $tool (a Debian-like machine)"; exit 1; }
done

rm -rf "$dest/debs" "$dest/fashion-mnist"
mkdir -p "$dest/debs" "$dest/fashion-mnist"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

say "downloading ${#packages[@]} packages"
# apt-get download writes into the current directory; as root it warns that the _apt user cannot
# write there (harmless). It never installs anything.
if ! (cd "$dest/debs" && apt-get download "${packages[@]}" 2> >(grep -v "unsandboxed as root" >&2)); then
  say "apt-get download failed; refresh the package lists (apt-get update, as root) and try again"
  exit 1
fi

# repack_without_static DEB: rebuilds DEB without static archives (*.a). libopenblas-openmp-dev is 5 MB
# of which the static libopenblas is nearly all; ember links the shared library.
repack_without_static() {
  local deb="$1" dir="$tmp/repack"
  rm -rf "$dir"
  mkdir -p "$dir"
  dpkg-deb -R "$deb" "$dir"
  find "$dir" \( -name '*.a' -o -lname '*.a' \) -delete
  rm -rf "$dir/usr/share/doc"
  dpkg-deb -Zxz --root-owner-group -b "$dir" "${deb%.deb}_noa.deb" >/dev/null
  rm -f "$deb"
}
for deb in "$dest"/debs/libopenblas-openmp-dev_*.deb; do
  repack_without_static "$deb"
done

# The dataset: from the installed package when there is one, else from its .deb (about 30 MB either way;
# the .gz files are what the data loader reads, so they travel as they are).
fmnist="${EMBER_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}"  # override: to test the download path
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have_all=1
for f in "${files[@]}"; do [[ -f "$fmnist/$f" ]] || have_all=0; done
if [[ $have_all == 0 ]]; then
  say "downloading dataset-fashion-mnist (about 31 MB) for its four .gz files"
  (cd "$tmp" && apt-get download dataset-fashion-mnist 2> >(grep -v "unsandboxed as root" >&2))
  dpkg-deb -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/fm"
  fmnist="$tmp/fm/usr/share/datasets/fashion-mnist"
fi
for f in "${files[@]}"; do cp "$fmnist/$f" "$dest/fashion-mnist/"; done

tree_bytes=$(cd "$root" && git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
             awk '{s += $1} END {print s + 0}')
debs_bytes=$(du -cb "$dest/debs" | tail -1 | cut -f1)
data_bytes=$(du -cb "$dest/fashion-mnist" | tail -1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "gpu_deps: .device/debs          $(find "$dest/debs" -name "*.deb" | wc -l) packages, $(mib "$debs_bytes")"
echo "gpu_deps: .device/fashion-mnist $(mib "$data_bytes")"
echo "gpu_deps: working tree          $(mib "$tree_bytes") (tracked + untracked, not ignored)"
total=$((tree_bytes + debs_bytes + data_bytes))
echo "gpu_deps: total                 $(mib "$total") of the 64 MiB a device call may carry"
if ((total > 60 * 1048576)); then
  say "too close to the 64 MiB limit: remove large untracked files from the working tree"
  exit 1
fi
