#!/usr/bin/env bash
# run.sh: the README's run command: installs what is missing, configures build/, builds the main example
# and runs it with good defaults. Arguments replace the default arguments:
#
#   scripts/run.sh                   the main job with its defaults
#   scripts/run.sh --help            the program's own options
#   EMBER_RUN_TARGET=readme_example scripts/run.sh    another example
# Knobs (EMBER_BUILD_DIR, EMBER_CUDA, EMBER_JOBS, ...): see scripts/common.sh.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The main job and its default arguments: the CNN on Fashion-MNIST, 5 epochs (about 92% test accuracy;
# about 1.5 minutes on a 2-core CPU), with the metrics written next to the build.
main_target=fashion_mnist
main_args=(--model cnn --epochs 5 --metrics-json "$build_dir/fashion_mnist_metrics.json")

target="${EMBER_RUN_TARGET:-$main_target}"
args=()
if [[ $# -gt 0 ]]; then
  args=("$@")
elif [[ "$target" == "$main_target" ]]; then
  args=("${main_args[@]}")
fi

trap report_phases EXIT
phase deps
ember_deps
phase configure
ember_configure
phase build
ember_build "$target"
phase run
program="$build_dir/examples/$target"
echo "run: $program ${args[*]}" >&2
"$program" "${args[@]}"
