#!/usr/bin/env bash
# scaling.sh: ember_scaling --ddp at 1..K ranks (one `mpirun -np k` each, every rank the same fixed number
# of steps), the merged table with efficiencies, DataParallel over K logical devices (or GPUs), and the
# projection to 1024 GPUs validated against the measured DDP runs. Results go to OUT_DIR.
#
#   bench/scaling.sh [K] [OUT_DIR]          K ranks at most (default 3), OUT_DIR default bench-results/
#
# Environment: BUILD (build dir, default build; SCALING_BIN overrides the program's path), MODELS ("mlp cnn"), BATCH (per device, 64), STEPS (timed
# steps per run; default 100 for mlp, whose steps take about a millisecond, and 20 for cnn),
# WARMUP (3), REPEATS (runs of each rank count, interleaved; the merge keeps the median, 1), THREADS
# (OpenMP threads per rank, 1), DEVICE (cpu or cuda: DDP ranks' device; cuda makes the
# DataParallel run use every GPU), MPIRUN (default mpirun), MPI_FLAGS (default: Open MPI's flags for
# a container: root allowed, more ranks than cores, no binding, shared memory), PROJECT_ARGS (extra
# ember_scaling --project options: link figures, --gpus-per-node, ...).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K="${1:-3}"
out="${2:-bench-results}"
build="${BUILD:-$repo/build}"
bin="${SCALING_BIN:-$build/bench/ember_scaling}"
models="${MODELS:-mlp cnn}"
batch="${BATCH:-64}"
warmup="${WARMUP:-3}"
threads="${THREADS:-1}"
repeats="${REPEATS:-1}"
device="${DEVICE:-cpu}"
mpirun="${MPIRUN:-mpirun}"
[[ -x "$bin" ]] || { echo "scaling.sh: $bin not found (ebuild ember_scaling)" >&2; exit 2; }
mpi_flags=(${MPI_FLAGS:-})
if [[ -z "${MPI_FLAGS:-}" ]] && "$mpirun" --version 2>/dev/null | grep -q "Open MPI\|OpenRTE"; then
  mpi_flags=(--oversubscribe --bind-to none --mca btl self,vader)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mkdir -p "$out"
export OMP_NUM_THREADS="$threads"
for m in $models; do
  files=()
  if [[ -n "${STEPS:-}" ]]; then steps="$STEPS"; elif [[ "$m" == mlp ]]; then steps=100; else steps=20; fi
  for ((r = 1; r <= repeats; ++r)); do
    for ((k = 1; k <= K; ++k)); do
      f="$out/ddp_${m}_${k}.json"
      ((repeats > 1)) && f="$out/ddp_${m}_${k}_run$r.json"
      echo "== $m: DDP on $k rank(s)${repeats/#/, run $r of }"
      "$mpirun" -np "$k" "${mpi_flags[@]}" "$bin" --ddp --devices "$device" --model "$m" --batch-size "$batch" \
        --max-devices "$K" --steps "$steps" --warmup "$warmup" --json "$f"
      files+=("$f")
    done
  done
  echo "== $m: DDP, 1..$K ranks merged"
  "$bin" --merge "${files[@]}" --json "$out/ddp_${m}.json"
  echo "== $m: projection from the one-rank step, validated against the DDP runs"
  # shellcheck disable=SC2086
  "$bin" --project --from "$out/ddp_${m}.json" --json "$out/projection_${m}.json" ${PROJECT_ARGS:-}
  echo "== $m: DataParallel"
  if [[ "$device" == cuda ]]; then dp_devices=cuda; else
    dp_devices="$(seq -s, 0 $((K - 1)) | sed 's/\([0-9]\+\)/cpu:\1/g')"
  fi
  # DataParallel's threads share the cores: all of them, not one per rank.
  OMP_NUM_THREADS="${DP_THREADS:-$(getconf _NPROCESSORS_ONLN)}" "$bin" --devices "$dp_devices" --model "$m" --batch-size "$batch" \
    --steps "$steps" --warmup "$warmup" --json "$out/dp_${m}.json"
done
echo "scaling.sh: results in $out (plot them: python3 bench/plot.py $out)"
