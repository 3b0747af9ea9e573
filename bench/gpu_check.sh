#!/usr/bin/env bash
# gpu_check.sh: one device call: CUDA build, tests, compute-sanitizer, benchmarks vs cuBLAS and PyTorch, scaling
# and its projection, training.
#
# How to run it (a session whose task is lent a GPU machine; the device tool's `status` says so):
#   1. here, once per session (needs the network):   scripts/gpu_deps.sh
#      It fills .device/ (ignored by git) with the Debian packages the build needs and the Fashion-MNIST
#      files, ~39 MiB; the working tree travels too, all of it under the call's 64 MiB.
#   2. one call of the device tool's `run`:
#        command:   bash bench/gpu_check.sh
#        carry:     [".device"]
#        timeout_s: 600
#      (kind: left out, i.e. nvidia-h100-x1; nvidia-h200 works the same way.)
#   3. read the table at the end of the reply; $OUT's files come back under files_at:
#        summary.txt                the tables printed last (phases, tests, sanitizer, ember vs PyTorch, training)
#        logs.tar.gz                every log: probe, configure, build, ctest, sanitizer, benchmarks, training
#        ember_bench.json           {"ember_bench": Google Benchmark JSON of its GPU cases, "ember_scaling_<run>":
#                                   ember_scaling's JSON of each run (DataParallel, DDP, projection)}
#        torch_bench.json           the same workloads timed in PyTorch (bench/pytorch/bench_torch.py), and
#                                   under "scaling" bench/pytorch/scaling.py's runs
#        scaling.png, ratios.png    bench/plot.py's charts (when the machine's Python has matplotlib; else
#                                   make them here from the JSON files: bench/README.md)
#        fashion_mnist_ember.json   metrics of `fashion_mnist --device cuda --epochs 2`
#        fashion_mnist_torch.json   the same training in PyTorch (bench/pytorch/fashion_mnist.py)
#
# Phases, in order, with the wall time expected on the 16-core H100 machine. Each runs under `timeout`;
# a deadline (EMBER_GPU_CHECK_BUDGET s after the start) ends the run in time to pack $OUT, and each
# phase leaves the later ones their minimum share, so a slow build shortens the sanitizer, not the table.
#   probe      ~5 s      GPU, nvcc, cuDNN, NCCL, compute-sanitizer, Python with torch; unpack .device/debs
#   configure  ~20 s     Release, EMBER_CUDA=ON, CMAKE_CUDA_ARCHITECTURES=90, Ninja, EMBER_WERROR=OFF (the
#                        machine's compiler is not CI's: a new warning must not cost the run); LibTorch oracle tests off
#   build      ~150-250 s  everything (ninja -j<cores>)
#   test       ~60 s     ctest -L cuda (all CUDA tests, NCCL and mpirun ones included, -j<cores/2>), then
#                        ctest -LE cuda (the CPU suite)
#   sanitize   ~60-120 s compute-sanitizer memcheck over every test binary's CUDA tests ('*CUDA*:*MultiGPU*'),
#                        uncached (EMBER_CUDA_NO_CACHING=1) except the stream-gating tests (see
#                        sanitizer_cached_tests), racecheck over the reduction/softmax/norm/pool ones; all in
#                        parallel, each invocation under its own timeout
#   bench      ~80 s     ember_bench's GPU cases (--benchmark_filter, JSON): ops, GEMM vs cuBLAS in fp32/TF32/bf16,
#                        conv, optimizers, MLP/CNN steps at batch 64 and 256, allocator, NCCL all-reduce,
#                        DataParallel/DDP on the GPU; then ember_scaling on the GPU (DataParallel and DDP on
#                        one device, batch 256) and its projection to 1024 GPUs from that measured step
#   torch      ~50 s     the same workloads in PyTorch (CUDA events, TF32 off unless tf32), and the scaling runs
#   train      ~60 s     fashion_mnist --device cuda --epochs 2, then the same model and schedule in PyTorch
#   report     ~5 s      bench/compare.py: ember's ratio to PyTorch for every figure, the targets (GEMM within 5%
#                        of cuBLAS, element-wise >= 85% of copy bandwidth, steps at batch 256 >= PyTorch, no
#                        cudaMalloc per step), scaling side by side, training; bench/plot.py's charts
# The phase table lists every phase with its time: ok (ran, passed), FAIL/TIMEOUT (ran, failed), WARN or
# partial (ran, something missing: see the note), SKIPPED (nothing to do: the note says why) or NOT RUN
# (never started: budget, an earlier phase failed, not asked for, or the run was cut off); then the total.
#
# Knobs (environment; the defaults are for the device machine; see bench/pytorch/README.md for a run
# without a GPU):
#   EMBER_GPU_CHECK_BUDGET       seconds for the whole check (default 560; the call's limit is 600)
#   EMBER_GPU_CHECK_PHASES       comma list of phases to run (default: all of the above)
#   EMBER_GPU_CHECK_CUDA         EMBER_CUDA for the build (default ON)
#   EMBER_GPU_CHECK_PREFIX       where the .deb files are unpacked (default /tmp/ember-deps)
#   EMBER_GPU_CHECK_BUILD        build directory (default /tmp/ember-build)
#   EMBER_GPU_CHECK_WORK         logs and scratch (default /tmp/ember-gpu-check); $OUT defaults to <work>/out
#   EMBER_GPU_CHECK_JOBS         build and ctest parallelism (default: number of cores)
#   EMBER_GPU_CHECK_DEVICE       device for the training run and PyTorch (default cuda)
#   EMBER_GPU_CHECK_EPOCHS       epochs of the training run (default 2)
#   EMBER_GPU_CHECK_HIDE_SYSTEM  1: make CMake ignore /usr's copies of the packages (to prove, on a machine
#                                that has them, that the unpacked ones suffice)
#   EMBER_GPU_CHECK_CMAKE_ARGS   extra configure arguments
#   EMBER_GPU_CHECK_TORCH_TRAIN_ARGS  extra arguments for bench/pytorch/fashion_mnist.py (e.g. "--limit 4096")
#   EMBER_GPU_CHECK_CAP_SCALE    multiplies every phase's time cap (default 1; larger for a slow dry run)
#   EMBER_GPU_CHECK_KEEP_BUILD   1: reuse the build directory (default: start from an empty one)
#   EMBER_GPU_CHECK_SANITIZER    compute-sanitizer to use (default: found on PATH, in the toolkit or under /opt)
#   EMBER_PYTHON                 the Python with torch (default: the first of python3, /usr/bin/python3 that imports it)
set -uo pipefail  # no -e: a failing phase is recorded and the next one still runs

# Tests that run mpirun (multi-process) may be started by ctest; the device machine runs this as root,
# which Open MPI refuses without these. Harmless where no MPI is used.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
t_start=$(date +%s)
budget="${EMBER_GPU_CHECK_BUDGET:-560}"
all_phases=(probe configure build test sanitize bench torch train report)
phases=",${EMBER_GPU_CHECK_PHASES:-$(IFS=,; echo "${all_phases[*]}")},"
cuda_mode="${EMBER_GPU_CHECK_CUDA:-ON}"
prefix="${EMBER_GPU_CHECK_PREFIX:-/tmp/ember-deps}"
build="${EMBER_GPU_CHECK_BUILD:-/tmp/ember-build}"
work="${EMBER_GPU_CHECK_WORK:-/tmp/ember-gpu-check}"
out="${OUT:-$work/out}"
jobs="${EMBER_GPU_CHECK_JOBS:-$(nproc 2>/dev/null || echo 4)}"
train_device="${EMBER_GPU_CHECK_DEVICE:-cuda}"
epochs="${EMBER_GPU_CHECK_EPOCHS:-2}"
hide_system="${EMBER_GPU_CHECK_HIDE_SYSTEM:-0}"
cap_scale="${EMBER_GPU_CHECK_CAP_SCALE:-1}"
data_dir="$repo/.device/fashion-mnist"
logs="$work/logs"
parts="$work/summary.d"  # pieces of summary.txt, concatenated in name order

rm -rf "$logs" "$parts"
rm -f "$out"/{summary.txt,logs.tar.gz,ember_bench.json,torch_bench.json,fashion_mnist_ember.json,fashion_mnist_torch.json}
rm -f "$out"/{scaling.png,ratios.png}
mkdir -p "$logs" "$parts" "$out" || { echo "gpu_check: cannot create $logs or $out" >&2; exit 1; }
orig_ld_library_path="${LD_LIBRARY_PATH-}"
orig_ld_set="${LD_LIBRARY_PATH+set}"

# ---- bookkeeping -------------------------------------------------------------------------------------
elapsed() { echo $(($(date +%s) - t_start)); }
left() { echo $((budget - $(elapsed))); }
want() { [[ "$phases" == *",$1,"* ]]; }
log() { printf '[%4ss] %s\n' "$(elapsed)" "$*"; }

# limit CAP RESERVE: the timeout for a step that would like CAP seconds while RESERVE seconds stay for
# the phases after it; prints 0 when fewer than 10 seconds remain for it. The reserves below are the
# sums of the later phases' least useful shares: training 35 s + 35 s, PyTorch 40 s, benchmarks 40 s,
# tests 60 s, report 5 s; the sanitizer takes what is left over and the build all it needs up to that.
limit() {
  local cap=$(($1 * cap_scale)) reserve="$2" avail
  avail=$(($(left) - reserve))
  ((avail > cap)) && avail=$cap
  ((avail < 10)) && avail=0
  echo "$avail"
}

declare -A phase_row=() phase_status=() not_run_why=()
finished=0 interrupted=0 current_phase="" current_since=0
# run_phase PHASE COMMAND...: runs a phase, marked as started in summary.txt first (so a run cut off
# from outside still shows where it was).
run_phase() {
  current_phase="$1" current_since=$(elapsed)
  shift
  write_summary
  "$@"
}
# record PHASE STATUS SECONDS NOTE: one row of the phase table, and summary.txt rewritten.
record() {
  phase_row[$1]="$(printf '%-10s %-8s %5ss  %s' "$1" "$2" "$3" "$4")"
  phase_status[$1]="$2"
  log "$1: $2 ($3 s) $4"
  write_summary
}
# not_run PHASE WHY: PHASE will not start; the table says so (unless it was recorded already).
not_run() { [[ -n "${phase_row[$1]:-}" || -n "${not_run_why[$1]:-}" ]] || not_run_why[$1]="$2"; }
# phase_table: every phase in order, its recorded row or NOT RUN and why; the total; a plain summary.
phase_table() {
  local p why ran=() failed=() other=()
  echo "phase      status     time  note"
  for p in "${all_phases[@]}"; do
    if [[ -n "${phase_row[$p]:-}" ]]; then
      echo "${phase_row[$p]}"
      case "${phase_status[$p]}" in
        ok | WARN | partial) ran+=("$p") ;;
        SKIPPED) other+=("$p(skipped)") ;;
        *) failed+=("$p") ;;
      esac
      continue
    fi
    why="${not_run_why[$p]:-}"
    if [[ -z "$why" && "$p" == "$current_phase" ]]; then
      if ((interrupted)); then
        printf '%-10s %-8s %5ss  %s\n' "$p" "CUT OFF" "$(($(elapsed) - current_since))" "started at ${current_since} s, interrupted at $(elapsed) s"
      else
        printf '%-10s %-8s %5ss  %s\n' "$p" "RUNNING" "$(($(elapsed) - current_since))" "started at ${current_since} s (if this is the final summary, the run was cut off)"
      fi
      failed+=("$p")
      continue
    fi
    if [[ -z "$why" ]]; then
      if ((interrupted)); then
        why="the run was interrupted at $(elapsed) s"
      elif ((finished)); then
        why="never reached"
      else
        why="not reached yet (if this is the final summary, the run was cut off at $(elapsed) s)"
      fi
    fi
    printf '%-10s %-8s %5s   %s\n' "$p" "NOT RUN" "-" "$why"
    other+=("$p")
  done
  printf '%-10s %-8s %5ss  %s\n' total "" "$(elapsed)" "budget ${budget}s; the device call's limit is 600 s"
  echo "ran: ${ran[*]:-none}; ran and failed: ${failed[*]:-none}; did not run: ${other[*]:-none}"
}
# part NAME: stdin becomes a section of summary.txt.
part() { cat >"$parts/$1.txt"; write_summary; }
write_summary() {
  {
    echo "== ember GPU check: $(date -u '+%Y-%m-%d %H:%M UTC'), ${gpu_name:-no GPU seen}, $(elapsed) s of $budget"
    phase_table
    local f
    for f in "$parts"/*.txt; do
      [[ -s "$f" ]] || continue
      echo
      cat "$f"
    done
  } >"$out/summary.txt"
}
# rc_status RC: ok / FAIL(rc) / TIMEOUT.
rc_status() {
  case "$1" in
    0) echo ok ;;
    skipped) echo skipped ;;
    124 | 137) echo TIMEOUT ;;
    *) echo "FAIL($1)" ;;
  esac
}
# tail_of FILE N: the last N lines, each cut to 200 characters.
tail_of() { tail -n "$2" "$1" 2>/dev/null | cut -c1-200; }

pack() {
  [[ -n "${packed:-}" ]] && return
  packed=1
  finished=1
  cp -f "$build/CMakeCache.txt" "$logs/" 2>/dev/null
  tar -czf "$out/logs.tar.gz" -C "$work" logs summary.d 2>/dev/null
  write_summary
}
trap 'pack' EXIT
# Interrupted: the sanitizer's background runs (each a `timeout`, which passes the signal on) end too.
trap 'interrupted=1; log "interrupted"; kill $(jobs -p) 2>/dev/null; exit 130' INT TERM

# py ARGS...: the Python with torch, with the LD_LIBRARY_PATH it had before this script changed it (the
# unpacked libraries are for ember's programs, not for torch). pyrun is the same as a command prefix.
pyrun=()
set_python() {
  python="$1"
  if [[ "$orig_ld_set" == set ]]; then
    pyrun=(env "LD_LIBRARY_PATH=$orig_ld_library_path" PYTHONDONTWRITEBYTECODE=1 "$python")
  else
    pyrun=(env -u LD_LIBRARY_PATH PYTHONDONTWRITEBYTECODE=1 "$python")
  fi
}
# Under a timeout (a wedged GPU must not hang a torch import): 120 s, or the budget left plus 20 s.
py() {
  [[ -n "$python" ]] || return 1
  local t=$(($(left) + 20))
  ((t > 120)) && t=120
  ((t < 10)) && t=10
  timeout -k 5 "$t" "${pyrun[@]}" "$@"
}

build_ok=0
python=""
gpu_name=""
write_summary

# ---- probe: what the machine has; unpack the carried packages ----------------------------------------
arch="$(c++ -print-multiarch 2>/dev/null || true)"
[[ -n "$arch" ]] || arch="$(uname -m)-linux-gnu"

# extract DEB DIR: unpacks a .deb without installing it (dpkg -x, or ar + tar where dpkg is missing).
extract() {
  if command -v dpkg-deb >/dev/null 2>&1; then
    dpkg-deb -x "$1" "$2"
  else
    local member
    member="$(ar t "$1" | grep '^data\.tar')" || return 1
    case "$member" in
      *.xz) ar p "$1" "$member" | tar -xJ -C "$2" ;;
      *.zst) ar p "$1" "$member" | zstd -dc | tar -x -C "$2" ;;
      *.gz) ar p "$1" "$member" | tar -xz -C "$2" ;;
      *) ar p "$1" "$member" | tar -x -C "$2" ;;
    esac
  fi
}

# first_file GLOB...: the first existing file (not a folder) among the globs' expansions.
first_file() {
  local g f
  for g in "$@"; do
    for f in $g; do
      [[ -f "$f" ]] && { echo "$f"; return 0; }
    done
  done
  return 1
}

# so_version LIB: the version in a shared library's file name once links are followed
# (libnccl.so -> libnccl.so.2.21.5 gives 2.21.5), else its SONAME's (libcudnn.so.9 gives 9); "" if neither.
so_version() {
  local real soname
  real="$(readlink -f "$1")"
  if [[ "${real##*/}" == *.so.[0-9]* ]]; then
    echo "${real##*.so.}"
    return
  fi
  soname="$(readelf -d "$real" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')"
  [[ "$soname" == *.so.[0-9]* ]] && echo "${soname##*.so.}"
}

# header_version NAME INCDIR: the version its headers declare (cuDNN: CUDNN_MAJOR.MINOR.PATCHLEVEL of
# cudnn_version.h, or of cudnn.h before cuDNN 8; NCCL: NCCL_MAJOR.MINOR.PATCH of nccl.h); "" if unknown.
header_version() {
  local name="$1" inc="$2" f prefix_ parts=()
  case "$name" in
    cudnn) prefix_=CUDNN f="$inc/cudnn_version.h"; [[ -f "$f" ]] || f="$inc/cudnn.h" ;;
    nccl) prefix_=NCCL f="$inc/nccl.h" ;;
    *) return 0 ;;
  esac
  local c v
  for c in MAJOR MINOR PATCH; do
    [[ "$name" == cudnn && "$c" == PATCH ]] && c=PATCHLEVEL
    v="$(sed -n "s/^#define ${prefix_}_${c}[[:space:]]\{1,\}\([0-9]\{1,\}\).*/\1/p" "$f" 2>/dev/null | head -1)"
    [[ -n "$v" ]] || break
    parts+=("$v")
  done
  (IFS=.; echo "${parts[*]}")
}

# lib_version NAME LIB: so_version, and for NCCL, when the file name shows no minor version (the pip
# wheel's libnccl.so.2), the "2.21.5+cuda12.4" string the library carries.
lib_version() {
  local v embedded
  v="$(so_version "$2")"
  if [[ "$1" == nccl && "$v" != *.* ]]; then
    embedded="$(timeout 20 grep -a -o -m1 -E '[0-9]+\.[0-9]+\.[0-9]+\+cuda[0-9.]+' "$(readlink -f "$2")" 2>/dev/null | head -1)"
    [[ -n "$embedded" ]] && v="${embedded%%+*}"
  fi
  echo "$v"
}

# versions_agree HEADER_VERSION LIB_VERSION: yes / no / unknown, comparing the components both show
# (a library named only by its major version is compared on the major).
versions_agree() {
  [[ -n "$1" && -n "$2" ]] || { echo unknown; return; }
  local -a h l
  IFS=. read -r -a h <<<"$1"
  IFS=. read -r -a l <<<"$2"
  local i n=$((${#h[@]} < ${#l[@]} ? ${#h[@]} : ${#l[@]}))
  for ((i = 0; i < n; ++i)); do
    [[ "${h[$i]}" == "${l[$i]}" ]] || { echo no; return; }
  done
  echo yes
}

# find_cuda_library NAME HEADER: finds HEADER and lib<NAME>.so* under ONE root among the toolkit,
# /usr/local/cuda, /usr, /usr/local and the Python wheels (nvidia/*): a header of one version with the
# library of another compiles and then fails at run time. Takes the first root with both whose versions
# agree (else the first with both, with a warning). Makes <prefix>/<NAME>/include hold links to that
# root's <NAME>* headers only (a link to /usr/include itself, passed as -isystem, would break
# libstdc++'s #include_next) and <prefix>/<NAME>/lib/lib<NAME>.so point at the library (pip wheels ship
# only lib<NAME>.so.<major>, which find_library does not take); sets found_inc[NAME] and found_lib[NAME]
# for configure. Prints the root, header, library and versions taken, and the other roots seen.
declare -A found_inc=() found_lib=()
system_lib_roots=(/usr/local/cuda /usr /usr/local)  # after the toolkit, before the wheels
find_cuda_library() {
  local name="$1" header="$2" d real sp
  local roots=("$cuda_root" "${system_lib_roots[@]}")
  for sp in "${site_dirs[@]}"; do roots+=("$sp/nvidia/$name" "$sp/nvidia/cu13" "$sp/nvidia/cu12"); done
  local -A seen=()
  local candidates=() others=() hdr lib hv lv agree
  for d in "${roots[@]}"; do
    [[ -n "$d" && -d "$d" ]] || continue
    real="$(readlink -f "$d")"
    [[ -n "${seen[$real]:-}" ]] && continue
    seen[$real]=1
    hdr="$(first_file "$d/include/$header" "$d/include/$arch/$header" "$d/targets/x86_64-linux/include/$header")"
    lib="$(first_file "$d/lib64/lib$name.so" "$d/lib/lib$name.so" "$d/lib/$arch/lib$name.so" \
      "$d/targets/x86_64-linux/lib/lib$name.so" "$d/lib64/lib$name.so.[0-9]*" "$d/lib/lib$name.so.[0-9]*" \
      "$d/lib/$arch/lib$name.so.[0-9]*" "$d/targets/x86_64-linux/lib/lib$name.so.[0-9]*")"
    if [[ -n "$hdr" && -n "$lib" ]]; then
      hv="$(header_version "$name" "${hdr%/*}")"
      lv="$(lib_version "$name" "$lib")"
      agree="$(versions_agree "$hv" "$lv")"
      candidates+=("$agree|$d|$hdr|$lib|$hv|$lv")
    elif [[ -n "$hdr" ]]; then
      others+=("$d (header only: $hdr)")
    elif [[ -n "$lib" ]]; then
      others+=("$d (library only: $lib)")
    fi
  done
  local pick="" want c
  for want in yes unknown no; do
    for c in "${candidates[@]}"; do
      [[ "${c%%|*}" == "$want" ]] && { pick="$c"; break 2; }
    done
  done
  for c in "${candidates[@]}"; do
    [[ "$c" == "$pick" ]] || others+=("$(IFS='|' read -r agree d hdr lib hv lv <<<"$c"; echo "$d (header ${hv:-?}, library ${lv:-?})")")
  done
  if [[ -z "$pick" ]]; then
    echo "$name: NOT FOUND (no root has both $header and lib$name.so*)${others[*]:+; seen: ${others[*]}}"
    return 1
  fi
  IFS='|' read -r agree d hdr lib hv lv <<<"$pick"
  local inc="${hdr%/*}" e
  rm -rf "${prefix:?}/${name:?}"
  mkdir -p "$prefix/$name/include" "$prefix/$name/lib"
  for e in "$inc/$name"*; do ln -s "$e" "$prefix/$name/include/"; done
  ln -sf "$lib" "$prefix/$name/lib/lib$name.so"
  found_inc[$name]="$prefix/$name/include"
  found_lib[$name]="$lib"
  extra_ld+=("$(dirname "$(readlink -f "$lib")")")
  local verdict="versions agree"
  case "$agree" in
    no) verdict="WARNING: VERSIONS DIFFER (no root had a matching pair)" ;;
    unknown) verdict="versions not compared (${hv:-header version unknown}, ${lv:-library version unknown})" ;;
  esac
  echo "$name: root $d: header $hdr (${hv:-?}), library $lib -> $(basename "$(readlink -f "$lib")") (${lv:-?}); $verdict"
  ((${#others[@]})) && echo "  $name: also seen, not taken: ${others[*]}"
  return 0
}

# shim_toolkit_library NAME: when the toolkit has no lib<NAME>.so (CUDA from pip wheels ships only
# lib<NAME>.so.<major>), links one into <prefix>/cudalibs/lib, which CMAKE_PREFIX_PATH then offers
# to FindCUDAToolkit.
shim_toolkit_library() {
  local name="$1" lib sp
  first_file "$cuda_root/lib64/lib$name.so" "$cuda_root/lib/lib$name.so" \
    "$cuda_root/targets/x86_64-linux/lib/lib$name.so" "/usr/lib/$arch/lib$name.so" >/dev/null && return 0
  local globs=("$cuda_root/lib64/lib$name.so.[0-9]*" "$cuda_root/lib/lib$name.so.[0-9]*"
    "$cuda_root/targets/x86_64-linux/lib/lib$name.so.[0-9]*")
  for sp in "${site_dirs[@]}"; do
    globs+=("$sp/nvidia/cu13/lib/lib$name.so.[0-9]*" "$sp/nvidia/cublas/lib/lib$name.so.[0-9]*"
      "$sp/nvidia/cuda_runtime/lib/lib$name.so.[0-9]*")
  done
  lib="$(first_file "${globs[@]}")" || { echo "lib$name.so: NOT FOUND in the toolkit or the Python wheels"; return 1; }
  mkdir -p "$prefix/cudalibs/lib"
  ln -sf "$lib" "$prefix/cudalibs/lib/lib$name.so"
  extra_ld+=("$(dirname "$(readlink -f "$lib")")")
  echo "lib$name.so: linked to $lib (the toolkit has none)"
}

probe() {
  local t0 note=""
  t0=$(date +%s)
  {
    echo "== machine"
    uname -a
    nproc
    free -g | head -2
    echo "== GPU"
    timeout -k 5 30 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu \
      --format=csv 2>&1 || echo "nvidia-smi failed"
  } >"$logs/probe.log" 2>&1
  gpu_name="$(timeout -k 5 30 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"

  nvcc="${CUDACXX:-$(command -v nvcc || first_file /usr/local/cuda/bin/nvcc '/usr/local/cuda-*/bin/nvcc')}"
  cuda_root=""
  [[ -n "$nvcc" ]] && cuda_root="$(dirname "$(dirname "$(readlink -f "$nvcc")")")"
  sanitizer="${EMBER_GPU_CHECK_SANITIZER:-}"
  [[ -n "$sanitizer" ]] || sanitizer="$(command -v compute-sanitizer || first_file "$cuda_root/bin/compute-sanitizer" \
    "$cuda_root/compute-sanitizer/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer \
    /usr/local/cuda/compute-sanitizer/compute-sanitizer '/usr/local/cuda-*/compute-sanitizer/compute-sanitizer' ||
    timeout 30 find /usr/local /opt -maxdepth 6 -name compute-sanitizer -type f -perm -u+x 2>/dev/null | head -1)"
  if [[ -n "${EMBER_PYTHON:-}" ]]; then
    set_python "$EMBER_PYTHON"
  else
    local p
    for p in python3 /usr/bin/python3 /opt/torch/.venv/bin/python3; do
      if timeout -k 5 90 env -u LD_LIBRARY_PATH "$p" -c 'import torch' >/dev/null 2>&1; then
        set_python "$(command -v "$p")"
        break
      fi
    done
  fi
  site_dirs=()
  if [[ -n "$python" ]]; then
    mapfile -t site_dirs < <(py -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null)
  fi

  # Unpack the carried packages into the private prefix. Runtime libraries the machine already has
  # (zlib, libgfortran, libquadmath, libgomp) are left out: an older copy first on the library path
  # could break programs built against the newer one.
  rm -rf "$prefix"
  mkdir -p "$prefix/rt"
  local deb base unpacked=() skipped=()
  local have_zlib=0 ld_cache
  # Read once: `ldconfig -p | grep -q` fails at random under pipefail (grep exits early, SIGPIPE).
  ld_cache="$(timeout 30 ldconfig -p 2>/dev/null)"
  if [[ "$hide_system" != 1 ]] && echo '#include <zlib.h>' | timeout 30 c++ -E -x c++ - >/dev/null 2>&1; then have_zlib=1; fi
  for deb in "$repo"/.device/debs/*.deb; do
    [[ -e "$deb" ]] || { note="no .device/debs: run scripts/gpu_deps.sh first and carry .device"; break; }
    base="$(basename "$deb")"
    case "$base" in
      zlib1g-dev_* | zlib1g_*)
        if ((have_zlib)); then skipped+=("${base%%_*}"); continue; fi
        extract "$deb" "$prefix" ;;
      libgfortran5_* | libquadmath0_* | libgomp1_*)
        local so
        case "$base" in
          libgfortran5_*) so=libgfortran.so.5 ;;
          libquadmath0_*) so=libquadmath.so.0 ;;
          *) so=libgomp.so.1 ;;
        esac
        if [[ "$ld_cache" == *"$so "* ]]; then skipped+=("${base%%_*}"); continue; fi
        extract "$deb" "$prefix/rt" ;;
      *) extract "$deb" "$prefix" ;;
    esac || note="unpacking $base failed"
    unpacked+=("${base%%_*}")
  done
  # What Debian's alternatives would link: libopenblas.so in the library folder (FindBLAS, used by the
  # installed package's config in the install test, looks there).
  local ob="$prefix/usr/lib/$arch/openblas-openmp"
  if [[ -e "$ob/libopenblas.so" ]]; then
    ln -sf openblas-openmp/libopenblas.so "$prefix/usr/lib/$arch/libopenblas.so"
    ln -sf openblas-openmp/libopenblas.so.0 "$prefix/usr/lib/$arch/libopenblas.so.0"
  fi

  extra_ld=()
  local found
  find_cuda_library cudnn cudnn.h >"$work/found.txt" 2>&1
  find_cuda_library nccl nccl.h >>"$work/found.txt" 2>&1
  if [[ -n "$cuda_root" && "$cuda_mode" != OFF ]]; then
    local l
    for l in cudart cublas cublasLt; do shim_toolkit_library "$l" >>"$work/found.txt" 2>&1; done
  fi
  found="$(cat "$work/found.txt")"
  # FindCUDNN/FindNCCL look in the toolkit first, then here (also for the install test's consumer).
  export CUDNN_ROOT="$prefix/cudnn" NCCL_ROOT="$prefix/nccl"
  # Runtime search path for ember's programs: OpenBLAS's Fortran runtime (when unpacked: OpenBLAS
  # needs it, and a RUNPATH does not serve a library's own dependencies), cuDNN's and NCCL's folders
  # (cuDNN loads its sub-libraries from there). The unpacked libraries themselves (OpenBLAS,
  # benchmark, zlib) are found through the programs' RUNPATH; kept off this path, an older zlib
  # cannot shadow the machine's for its own tools.
  local ld=("$prefix/rt/usr/lib/$arch" "${extra_ld[@]}")
  LD_LIBRARY_PATH="$(IFS=:; echo "${ld[*]}")${orig_ld_library_path:+:$orig_ld_library_path}"
  export LD_LIBRARY_PATH
  # The installed-package test configures a separate project: it finds zlib and BLAS through this.
  export CMAKE_PREFIX_PATH="$prefix/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  [[ -d "$prefix/cudalibs" ]] && CMAKE_PREFIX_PATH="$prefix/cudalibs:$CMAKE_PREFIX_PATH"

  {
    echo "== tools"
    echo "nvcc: ${nvcc:-NOT FOUND} ($(timeout 30 "${nvcc:-false}" --version 2>/dev/null | tail -2 | head -1))"
    echo "c++: $(c++ --version 2>/dev/null | head -1)"
    echo "cmake: $(cmake --version 2>/dev/null | head -1), ninja $(ninja --version 2>/dev/null)"
    echo "compute-sanitizer: ${sanitizer:-NOT FOUND}"
    echo "python with torch: ${python:-NOT FOUND} $(py -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())' 2>/dev/null)"
    echo "site-packages: ${site_dirs[*]}"
    echo "== libraries"
    echo "$found"
    # shellcheck disable=SC2012  # a listing for people
    ls -l "$cuda_root"/lib*/libcublas* "$cuda_root"/lib*/libcudart* 2>&1 | head -8
    echo "unpacked into $prefix: ${unpacked[*]}"
    echo "left out (the machine has them): ${skipped[*]}"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "CMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH"
    echo "CUDNN_ROOT=$CUDNN_ROOT NCCL_ROOT=$NCCL_ROOT"
  } >>"$logs/probe.log" 2>&1
  {
    echo "== probe"
    echo "GPU: ${gpu_name:-none seen by nvidia-smi}; nvcc: ${nvcc:-NOT FOUND}; sanitizer: ${sanitizer:-NOT FOUND}"
    echo "python: ${python:-NO PYTHON WITH TORCH} $(py -c 'import torch; print("torch", torch.__version__)' 2>/dev/null)"
    echo "$found"
    [[ ${#skipped[@]} -gt 0 ]] && echo "packages the machine has (not unpacked): ${skipped[*]}"
  } | part 10-probe
  local status=ok
  [[ -n "$note" ]] && status=WARN
  record probe "$status" $(($(date +%s) - t0)) "$note"
}

# ---- configure + build -------------------------------------------------------------------------------
configure() {
  local t0 lim rc
  t0=$(date +%s)
  lim=$(limit 120 260)
  local args=(
    -S "$repo" -B "$build" -G Ninja
    -DCMAKE_BUILD_TYPE=Release
    -DEMBER_CUDA="$cuda_mode"
    -DCMAKE_CUDA_ARCHITECTURES=90
    -DEMBER_WERROR=OFF  # the machine's compiler is not CI's: its new warnings must not fail the one GPU run
    -DEMBER_BUILD_TORCH_TESTS=OFF
    -DEMBER_OPENBLAS_ROOT="$prefix/usr"
    -DGTest_DIR="$prefix/usr/lib/$arch/cmake/GTest"
    -Dbenchmark_DIR="$prefix/usr/lib/$arch/cmake/benchmark"
    -Dnlohmann_json_DIR="$prefix/usr/share/cmake/nlohmann_json"
    -DCLI11_DIR="$prefix/usr/share/cmake/CLI11"
  )
  [[ -n "${nvcc:-}" ]] && args+=(-DCMAKE_CUDA_COMPILER="$nvcc")
  # The header and library find_cuda_library took from one root (FindCUDNN/FindNCCL would search the
  # toolkit first and could pair its header with another root's library).
  [[ -n "${found_lib[cudnn]:-}" ]] && args+=(-DCUDNN_INCLUDE_DIR="${found_inc[cudnn]}" -DCUDNN_LIBRARY="${found_lib[cudnn]}")
  [[ -n "${found_lib[nccl]:-}" ]] && args+=(-DNCCL_INCLUDE_DIR="${found_inc[nccl]}" -DNCCL_LIBRARY="${found_lib[nccl]}")
  if [[ "$hide_system" == 1 ]]; then
    # Proof that the unpacked packages suffice: CMake may not take these from /usr.
    args+=("-DCMAKE_IGNORE_PREFIX_PATH=/usr"
      "-DCMAKE_IGNORE_PATH=/usr/include;/usr/lib/$arch;/usr/include/$arch/openblas-openmp;/usr/lib/$arch/openblas-openmp;/usr/lib/$arch/cmake/GTest;/usr/lib/$arch/cmake/benchmark;/usr/share/cmake/nlohmann_json;/usr/lib/cmake/nlohmann_json;/usr/share/cmake/CLI11;/usr/lib/cmake/CLI11")
  fi
  # shellcheck disable=SC2206  # word splitting of the extra arguments is wanted
  args+=(${EMBER_GPU_CHECK_CMAKE_ARGS:-})
  [[ "${EMBER_GPU_CHECK_KEEP_BUILD:-0}" == 1 ]] || rm -rf "$build"
  if ((lim == 0)); then
    not_run configure "budget: no time left after the probe"
    return 1
  fi
  timeout -k 5 "$lim" cmake "${args[@]}" >"$logs/configure.log" 2>&1
  rc=$?
  {
    echo "== where CMake found the dependencies (CMakeCache.txt)"
    grep -E '^(GTest_DIR|benchmark_DIR|nlohmann_json_DIR|CLI11_DIR|ZLIB_INCLUDE_DIR|ZLIB_LIBRARY_RELEASE|ZLIB_LIBRARY|EMBER_OPENBLAS_LIBRARY|EMBER_OPENBLAS_INCLUDE_DIR|CUDNN_LIBRARY|CUDNN_INCLUDE_DIR|NCCL_LIBRARY|NCCL_INCLUDE_DIR|CUDAToolkit_NVCC_EXECUTABLE|CMAKE_CUDA_COMPILER|CMAKE_CXX_COMPILER):' \
      "$build/CMakeCache.txt" 2>/dev/null | sed 's/:[A-Z]*=/ = /'
    grep -E 'ember: CUDA backend' "$logs/configure.log"
    if ((rc != 0)); then
      echo "configure failed; the end of its log:"
      grep -B2 -A12 'CMake Error' "$logs/configure.log" | head -40 | cut -c1-200
    fi
  } | part 20-configure
  record configure "$(rc_status $rc)" $(($(date +%s) - t0)) ""
  return $rc
}

build_all() {
  local t0 lim rc
  t0=$(date +%s)
  lim=$(limit 420 160)
  if ((lim == 0)); then
    not_run build "budget: no time left after configure"
    return 1
  fi
  # -k 0: one broken target (a benchmark, say) must not keep the tests from being built.
  timeout -k 5 "$lim" ninja -C "$build" -j "$jobs" -k 0 >"$logs/build.log" 2>&1
  rc=$?
  if ((rc != 0)); then
    {
      echo "== build failed ($(rc_status $rc)); first errors:"
      grep -A15 '^FAILED:' "$logs/build.log" | head -50 | cut -c1-200
      ((rc == 124)) && tail_of "$logs/build.log" 3
    } | part 30-build
  fi
  record build "$(rc_status $rc)" $(($(date +%s) - t0)) "$(grep -c '^\[' "$logs/build.log") steps, -j$jobs, limit ${lim}s"
  return $rc
}

# ---- (a) tests ---------------------------------------------------------------------------------------
# ctest_summary LOG LABEL: one line (passed/failed/skipped) and the failed tests' names.
ctest_summary() {
  local logf="$1" label="$2" line skipped
  line="$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$logf" | tail -1)"
  skipped="$(grep -c '\*\*\*Skipped' "$logf")"
  echo "$label: ${line:-no result (see the log)}; skipped: $skipped"
  local total
  total="$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$logf" | tail -1)"
  if [[ -n "$total" ]] && ((total > 0 && skipped * 2 > total)); then
    echo "  WARNING: most of these tests skipped (no GPU seen by ember?); see logs/devices.log"
  fi
  sed -n '/The following tests FAILED:/,$p' "$logf" | sed -n '2,31p' | cut -c1-160
}

run_tests() {
  local t0 lim rc_cuda rc_cpu half
  t0=$(date +%s)
  lim=$(limit 180 165)
  if ((lim == 0)); then
    not_run test "budget: no time left after the build"
    return
  fi
  half=$((jobs / 2 > 1 ? jobs / 2 : 1))
  # Does ember itself see the GPU? (Otherwise every CUDA test skips and "passes".)
  [[ -x "$build/examples/devices" ]] && timeout -k 5 60 "$build/examples/devices" >"$logs/devices.log" 2>&1
  # One after the other: two ctest runs in one build folder would both rewrite the test lists that
  # gtest_discover_tests (PRE_TEST) generates, and read them half-written. Each CUDA test is its own
  # process with its own CUDA context, so they run several at a time too.
  (cd "$build" && OMP_NUM_THREADS=2 timeout -k 5 "$lim" ctest -L cuda --output-on-failure -j "$half" --timeout 200 \
    --output-junit "$logs/ctest_cuda.xml" >"$logs/ctest_cuda.log" 2>&1)
  rc_cuda=$?
  lim=$(limit 120 165)
  if ((lim > 0)); then
    (cd "$build" && OMP_NUM_THREADS=2 timeout -k 5 "$lim" ctest -LE cuda --output-on-failure -j "$jobs" --timeout 300 \
      --output-junit "$logs/ctest_cpu.xml" >"$logs/ctest_cpu.log" 2>&1)
    rc_cpu=$?
  else
    rc_cpu=skipped
  fi
  {
    echo "== tests"
    grep -E '^CUDA:|devices:' "$logs/devices.log" 2>/dev/null | tr '\n' ' ' | sed 's/ $/\n/'
    ctest_summary "$logs/ctest_cuda.log" "ctest -L cuda  ($(rc_status $rc_cuda))"
    ctest_summary "$logs/ctest_cpu.log" "ctest -LE cuda ($(rc_status $rc_cpu))"
  } | part 40-tests
  local status=ok cpu_note
  cpu_note="$(rc_status $rc_cpu)"
  [[ "$rc_cpu" == skipped ]] && status=partial cpu_note="not run (budget)"
  [[ "$rc_cuda" != 0 || ("$rc_cpu" != 0 && "$rc_cpu" != skipped) ]] && status=FAIL
  record test "$status" $(($(date +%s) - t0)) "cuda $(rc_status $rc_cuda), cpu $cpu_note, limit ${lim}s"
}

# ---- (b) compute-sanitizer ---------------------------------------------------------------------------
# Tests that block a stream on a host-side gate, kept off the uncached memcheck run: StreamGate
# (tests/runtime/cuda_runtime_test.cpp) enqueues a host function that spins until the test's own
# thread opens the gate, later. With EMBER_CUDA_NO_CACHING=1 a free inside the gated section is a
# cudaFree, which waits for the whole device, i.e. for the gate that same thread has not opened yet:
# memcheck deadlocks there and the binary's results are lost (issue 9: RecordStreamDefersReuse_CUDA,
# and PinnedMemory_CUDA, whose gated section calls cudaHostAlloc, which the pinned cache does not avoid).
# So these run with the caching allocator on, each in its own memcheck invocation with a short
# timeout (a hang costs only that test); all other CUDA tests run uncached. Entries: binary|gtest filter.
# gated_tests_in_sources adds any test it finds using StreamGate or cudaLaunchHostFunc that is missing
# here, and the report names it: add it here then.
sanitizer_cached_tests=(
  "ember_runtime_tests|CudaRuntime.StreamsAndEvents_CUDA"
  "ember_runtime_tests|CudaRuntime.RecordStreamDefersReuse_CUDA"
  "ember_runtime_tests|CudaRuntime.PinnedMemory_CUDA"
)
sanitizer_gated_cap=90  # seconds for one gated test under memcheck (times EMBER_GPU_CHECK_CAP_SCALE)

# gated_tests_in_sources: binary|filter of every test under tests/<folder>/ whose body starts a
# StreamGate or calls cudaLaunchHostFunc.
gated_tests_in_sources() {
  local f folder
  for f in "$repo"/tests/*/*.cpp; do
    [[ -e "$f" ]] || continue
    folder="$(basename "$(dirname "$f")")"
    awk -v bin="ember_${folder}_tests" '
      /^(TYPED_)?TEST(_F|_P)?\(/ {
        p = ($0 ~ /^TEST_P/); s = $0; sub(/^[A-Z_]*\(/, "", s); n = split(s, a, /[ ,)]+/)
        if (a[2] == "" && (getline line) > 0) { sub(/^[ \t]+/, "", line); split(line, b, /[ ,)]+/); a[2] = b[1] }
        cur = a[1] "." a[2]; next
      }
      /^}/ { cur = "" }
      cur != "" && /StreamGate [A-Za-z_][A-Za-z0-9_]*[({]|cudaLaunchHostFunc/ { print bin "|" (p ? "*/" cur "/*" : cur); cur = "" }
    ' "$f"
  done
}

# with_exclusion FILTER PATTERNS: FILTER with PATTERNS (':'-separated) added to its negative part.
with_exclusion() {
  if [[ -z "$2" ]]; then echo "$1"; elif [[ "$1" == *-* ]]; then echo "$1:$2"; else echo "$1-$2"; fi
}

run_sanitizer() {
  local t0 lim gated_lim
  t0=$(date +%s)
  if [[ -z "${sanitizer:-}" ]]; then
    record sanitize SKIPPED 0 "compute-sanitizer not found"
    return
  fi
  lim=$(limit 120 165)
  if ((lim == 0)); then
    not_run sanitize "budget: no time left after the tests"
    return
  fi
  gated_lim=$((sanitizer_gated_cap * cap_scale < lim ? sanitizer_gated_cap * cap_scale : lim))
  # The gated tests (the list above, plus any the sources show), and per binary what the uncached
  # memcheck run leaves out.
  local cached=("${sanitizer_cached_tests[@]}") detected=() e
  while IFS= read -r e; do
    [[ -n "$e" && " ${cached[*]} " != *" $e "* ]] || continue
    cached+=("$e")
    detected+=("${e#*|}")
  done < <(gated_tests_in_sources)
  local -A gated_of=()
  for e in "${cached[@]}"; do gated_of[${e%%|*}]+="${gated_of[${e%%|*}]:+:}${e#*|}"; done
  # name|tool|binary|filter|shards|caching|limit. memcheck over every CUDA test, uncached, the two large
  # binaries split into gtest shards (GTEST_TOTAL_SHARDS) so that all runs finish together; NCCL tests
  # (one-GPU communicators) apart, so that a slow or stuck NCCL under the sanitizer costs only them;
  # the gated tests one by one, cached; racecheck where kernels share memory. About 15 processes on 16
  # cores: the sanitizer's cost is mostly on the host.
  local mc='*CUDA*:*MultiGPU*' nccl='*Nccl*CUDA*:*Nccl*MultiGPU*'
  local jobs_list=(
    "memcheck-runtime|memcheck|ember_runtime_tests|$mc|1|uncached|$lim"
    "memcheck-kernels|memcheck|ember_kernels_tests|$mc|3|uncached|$lim"
    "memcheck-nn|memcheck|ember_nn_tests|$mc|3|uncached|$lim"
    "memcheck-data|memcheck|ember_data_tests|$mc|1|uncached|$lim"
    "memcheck-parallel|memcheck|ember_parallel_tests|$mc-$nccl|1|uncached|$lim"
    "memcheck-nccl|memcheck|ember_parallel_tests|$nccl|1|uncached|$lim"
    "racecheck-kernels|racecheck|ember_kernels_tests|*Reduce*CUDA*:*Softmax*CUDA*|1|cached|$lim"
    "racecheck-nn|racecheck|ember_nn_tests|*Norm*CUDA*:*Pool*CUDA*:*Loss*CUDA*|1|cached|$lim"
  )
  local tname
  for e in "${cached[@]}"; do
    tname="${e#*|}"
    tname="${tname//[^A-Za-z0-9_.]/}"
    jobs_list+=("memcheck-cached-${tname#*.}|memcheck|${e%%|*}|${e#*|}|1|cached|$gated_lim")
  done
  local pids=() names=() modes=() limits=() summary_lines=() entry name tool binary filter shards caching cap shard count
  for entry in "${jobs_list[@]}"; do
    IFS='|' read -r name tool binary filter shards caching cap <<<"$entry"
    [[ -x "$build/tests/$binary" ]] || continue
    [[ "$tool" == memcheck && "$caching" == uncached ]] && filter="$(with_exclusion "$filter" "${gated_of[$binary]:-}")"
    # No process for a filter that selects nothing (no NCCL tests yet, a gated test renamed).
    count="$(timeout -k 5 30 "$build/tests/$binary" --gtest_list_tests --gtest_filter="$filter" 2>/dev/null | grep -c '^  ')"
    if ((count == 0)); then
      summary_lines+=("$(printf '%-44s %-9s %-17s no test matches %s' "$name" "$caching" "not run" "$filter" | cut -c1-200)")
      continue
    fi
    for ((shard = 0; shard < shards; ++shard)); do
      local tag="$name"
      ((shards > 1)) && tag="$name-$shard"
      # memcheck sees true allocation bounds only without the caching allocator (Note [Uncached CUDA memory]).
      # (Tests that check the allocator's statistics then fail by design; the sanitizer verdict is what counts.)
      local no_caching=0
      [[ "$caching" == uncached ]] && no_caching=1
      EMBER_CUDA_NO_CACHING="$no_caching" GTEST_TOTAL_SHARDS="$shards" GTEST_SHARD_INDEX="$shard" OMP_NUM_THREADS=2 \
        timeout -k 5 "$cap" "$sanitizer" \
        --tool "$tool" --error-exitcode 86 --print-limit 30 "$build/tests/$binary" --gtest_filter="$filter" \
        >"$logs/sanitizer-$tag.log" 2>&1 &
      pids+=($!)
      names+=("$tag")
      modes+=("$caching")
      limits+=("$cap")
    done
  done
  local i rc worst=0
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    rc=$?
    local f="$logs/sanitizer-${names[$i]}.log" errs okc skipc failc verdict
    errs="$(grep -Eo 'ERROR SUMMARY: [0-9]+ error|RACECHECK SUMMARY: [0-9]+ hazard' "$f" | tail -1)"
    okc="$(grep -c '^\[       OK \]' "$f")"
    skipc="$(grep -c '^\[  SKIPPED \] [A-Za-z]' "$f")"
    failc="$(grep -c '^\[  FAILED  \] [A-Za-z]' "$f")"
    case "$rc" in
      0) verdict=clean ;;
      86) verdict="SANITIZER ERRORS" ;;
      124 | 137) verdict="TIMEOUT after ${limits[$i]}s" ;;
      *) verdict="exit $rc" ;;
    esac
    ((rc != 0 && worst == 0)) && worst=$rc
    summary_lines+=("$(printf '%-44s %-9s %-17s %3s ok %3s skip %3s fail; %s' "${names[$i]}" "${modes[$i]}" "$verdict" "$okc" "$skipc" "$failc" "${errs:-no summary line}")")
  done
  {
    echo "== compute-sanitizer (filter per binary; logs/sanitizer-*.log; uncached = EMBER_CUDA_NO_CACHING=1)"
    printf '%s\n' "${summary_lines[@]}"
    ((${#detected[@]})) && echo "NOTE: stream-gating tests missing from sanitizer_cached_tests, run cached: ${detected[*]}"
    local f
    for f in "$logs"/sanitizer-*.log; do
      [[ -e "$f" ]] || continue
      grep -m2 -E '^========= (Invalid|Race|Error|Uninitialized|Program hit)' "$f" | sed "s|^|$(basename "$f" .log): |" | cut -c1-160
    done
  } | part 50-sanitizer
  record sanitize "$(rc_status $worst)" $(($(date +%s) - t0)) "${#pids[@]} runs in parallel, limit ${lim}s each (gated tests ${gated_lim}s)"
}

# ---- (c) ember's GPU benchmarks, scaling and projection -------------------------------------------------
# ember_bench's GPU cases are the names with /cuda, gpu or _cuda in them (Note [Benchmark names] in
# bench/bench.h); without a GPU (a dry run: EMBER_GPU_CHECK_DEVICE=cpu), quick CPU cases instead.
scaling_models=(mlp cnn)
run_benchmarks() {
  local t0 lim rc worst=0 filter ran=() budget_cut=() dev
  t0=$(date +%s)
  filter='/cuda|gpu|_cuda'
  dev=cuda
  if [[ "$train_device" == cpu ]]; then
    filter='^ops/tiny|^matmul/mm_64/|^conv/conv2d_fwd/b64_1to32_28x28/cpu|^optim/.*/cpu|^train_step/mlp_b64/cpu|^allocator/caching'
    dev=cpu
  fi
  lim=$(limit 120 130)
  if [[ -x "$build/bench/ember_bench" ]] && ((lim > 0)); then
    timeout -k 5 "$lim" "$build/bench/ember_bench" --benchmark_filter="$filter" --benchmark_min_time=0.2 \
      --benchmark_out="$logs/ember_bench.json" --benchmark_out_format=json >"$logs/ember_bench.txt" 2>&1
    rc=$?
    ((rc != 0 && worst == 0)) && worst=$rc
    ran+=("ember_bench:$(rc_status $rc)")
  elif [[ -x "$build/bench/ember_bench" ]]; then
    budget_cut+=(ember_bench)
  fi
  # ember_scaling on the device it has: DataParallel over every GPU (k = 1..n), DDP in a world of one,
  # and the projection from that DDP step (one GPU: no multi-rank run to validate against; the output
  # says so). Batch 256 per device on a GPU.
  local m sdir="$logs/scaling" sargs=(--batch-size 256 --steps 30 --warmup 5) dp_devices=cuda
  mkdir -p "$sdir"
  [[ "$dev" == cpu ]] && sargs=(--batch-size 64 --steps 5 --warmup 2) dp_devices=cpu:0,cpu:1
  if [[ -x "$build/bench/ember_scaling" ]]; then
    for m in "${scaling_models[@]}"; do
      lim=$(limit 60 110)
      if ((lim == 0)); then
        budget_cut+=("ember_scaling:$m")
        continue
      fi
      {
        timeout -k 5 "$lim" "$build/bench/ember_scaling" --model "$m" --devices "$dp_devices" "${sargs[@]}" \
          --json "$sdir/dp_$m.json" &&
          timeout -k 5 "$lim" "$build/bench/ember_scaling" --ddp --devices "$dev" --model "$m" "${sargs[@]}" \
            --json "$sdir/ddp_${m}_1.json" &&
          "$build/bench/ember_scaling" --merge "$sdir/ddp_${m}_1.json" --json "$sdir/ddp_$m.json" &&
          "$build/bench/ember_scaling" --project --from "$sdir/ddp_$m.json" --json "$sdir/projection_$m.json"
      } >"$logs/scaling_$m.txt" 2>&1
      rc=$?
      ((rc != 0 && worst == 0)) && worst=$rc
      ran+=("ember_scaling:$m:$(rc_status $rc)")
    done
    {
      echo "== ember_scaling on $dev (${sargs[*]}; projection from the measured one-device DDP step)"
      for m in "${scaling_models[@]}"; do
        grep -vE '^wrote ' "$logs/scaling_$m.txt" 2>/dev/null | cut -c1-160
      done
    } | part 65-scaling
  fi
  # One file for ember's results (the call returns at most 8 files).
  if [[ -n "$python" ]]; then
    py - "$out/ember_bench.json" "$logs" <<'EOF'
import json, os, sys
out, logs = sys.argv[1], sys.argv[2]
merged = {}
paths = [os.path.join(logs, "ember_bench.json")]
sdir = os.path.join(logs, "scaling")
if os.path.isdir(sdir):
    paths += [os.path.join(sdir, n) for n in sorted(os.listdir(sdir)) if n.endswith(".json")]
for path in paths:
    if not os.path.exists(path):
        continue
    key = os.path.basename(path)[:-5]
    key = key if key == "ember_bench" else "ember_scaling_" + key
    try:
        with open(path) as f:
            merged[key] = json.load(f)
    except ValueError as e:  # a program cut off by its timeout leaves a partial file
        merged[key] = {"error": "unreadable JSON: %s" % e}
with open(out, "w") as f:
    json.dump(merged, f, indent=1)
EOF
  fi
  local status
  status="$(rc_status $worst)"
  if ((${#ran[@]} == 0 && ${#budget_cut[@]} == 0)); then
    record bench SKIPPED $(($(date +%s) - t0)) "no ember_bench or ember_scaling in $build/bench"
    return
  fi
  if ((${#budget_cut[@]})); then
    status=partial
    ((${#ran[@]})) || status=TIMEOUT
    ((worst != 0)) && status="$(rc_status $worst)"
  fi
  record bench "$status" $(($(date +%s) - t0)) "${ran[*]}${budget_cut[*]:+; not run (budget): ${budget_cut[*]}}"
}

# ---- (d) PyTorch on the same workloads ---------------------------------------------------------------
run_torch() {
  local t0 lim rc
  t0=$(date +%s)
  if [[ -z "$python" ]]; then
    record torch SKIPPED 0 "no Python with torch"
    return
  fi
  lim=$(limit 90 75)
  if ((lim == 0)); then
    not_run torch "budget: no time left"
    return
  fi
  timeout -k 5 "$lim" "${pyrun[@]}" "$repo/bench/pytorch/bench_torch.py" --device "$train_device" \
    --json "$out/torch_bench.json" >"$logs/torch_bench.log" 2>&1
  rc=$?
  # ember_scaling's runs in PyTorch (bench/pytorch/scaling.py): DataParallel over the GPUs, DDP in a world
  # of one; added to torch_bench.json under "scaling".
  local m rc_s=0 sdir="$logs/scaling_torch" devs sargs=(--batch-size 256 --steps 30 --warmup 5)
  mkdir -p "$sdir"
  devs="$("${pyrun[@]}" -c 'import torch; n = torch.cuda.device_count(); print(",".join("cuda:%d" % i for i in range(n)) or "cpu")' 2>/dev/null)"
  [[ "$train_device" == cpu || -z "$devs" ]] && devs=cpu sargs=(--batch-size 64 --steps 5 --warmup 2)
  for m in "${scaling_models[@]}"; do
    lim=$(limit 40 70)
    ((lim == 0)) && break
    timeout -k 5 "$lim" "${pyrun[@]}" "$repo/bench/pytorch/scaling.py" --model "$m" --devices "$devs" "${sargs[@]}" \
      --json "$sdir/dp_$m.json" >>"$logs/scaling_torch.log" 2>&1 || rc_s=$?
    timeout -k 5 "$lim" "${pyrun[@]}" "$repo/bench/pytorch/scaling.py" --ddp --model "$m" \
      --devices "$([[ $devs == cpu ]] && echo cpu || echo cuda)" "${sargs[@]}" --json "$sdir/ddp_$m.json" \
      >>"$logs/scaling_torch.log" 2>&1 || rc_s=$?
  done
  py - "$out/torch_bench.json" "$sdir" <<'EOF'
import json, os, sys
path, sdir = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        doc = json.load(f)
except (OSError, ValueError):
    doc = {}
doc["scaling"] = {}
for name in sorted(os.listdir(sdir)):
    if name.endswith(".json"):
        try:
            with open(os.path.join(sdir, name)) as f:
                doc["scaling"][name[:-5]] = json.load(f)
        except ValueError:
            pass
with open(path, "w") as f:
    json.dump(doc, f, indent=1)
EOF
  ((rc == 0 && rc_s != 0)) && rc=$rc_s
  record torch "$(rc_status $rc)" $(($(date +%s) - t0)) "$(tail -1 "$logs/torch_bench.log" | cut -c1-60); scaling $(rc_status $rc_s)"
}

# ---- (e) training run --------------------------------------------------------------------------------
run_training() {
  local t0 lim rc rc_t=0
  t0=$(date +%s)
  lim=$(limit 150 40)
  if [[ ! -e "$data_dir/train-images-idx3-ubyte.gz" ]]; then
    record train SKIPPED 0 "no $data_dir: run scripts/gpu_deps.sh and carry .device"
    return
  fi
  if ((build_ok && lim > 0)) && [[ -x "$build/examples/fashion_mnist" ]]; then
    timeout -k 5 "$lim" "$build/examples/fashion_mnist" --device "$train_device" --epochs "$epochs" --data "$data_dir" \
      --metrics-json "$out/fashion_mnist_ember.json" >"$logs/train_ember.log" 2>&1
    rc=$?
  else
    rc=skipped
  fi
  lim=$(limit 150 5)
  if [[ -n "$python" ]] && ((lim > 0)); then
    local extra=()
    read -r -a extra <<<"${EMBER_GPU_CHECK_TORCH_TRAIN_ARGS:-}"
    timeout -k 5 "$lim" "${pyrun[@]}" "$repo/bench/pytorch/fashion_mnist.py" --device "$train_device" --epochs "$epochs" \
      --data "$data_dir" --metrics-json "$out/fashion_mnist_torch.json" "${extra[@]}" \
      >"$logs/train_torch.log" 2>&1
    rc_t=$?
  fi
  {
    echo "== training (last lines of logs/train_ember.log)"
    grep -E '^epoch [0-9]+/[0-9]+:|^summary:' "$logs/train_ember.log" 2>/dev/null | cut -c1-200
    [[ "$rc" != 0 && "$rc" != skipped ]] && tail_of "$logs/train_ember.log" 8
  } | part 70-train
  local status=ok
  [[ "$rc" == skipped ]] && status=partial
  [[ "$rc" != 0 && "$rc" != skipped || "$rc_t" != 0 ]] && status=FAIL
  record train "$status" $(($(date +%s) - t0)) "ember $(rc_status $rc), torch $(rc_status $rc_t)"
}

report() {
  local t0 rc
  t0=$(date +%s)
  if [[ -z "$python" ]]; then
    record report SKIPPED 0 "no Python to run bench/compare.py"
    return
  fi
  # The scaling runs side by side: ember_scaling's files and bench/pytorch/scaling.py's, in pairs.
  local ours=() theirs=() m kind note=""
  for m in "${scaling_models[@]}"; do
    for kind in dp ddp; do
      [[ -e "$logs/scaling/${kind}_$m.json" && -e "$logs/scaling_torch/${kind}_$m.json" ]] || continue
      ours+=("$logs/scaling/${kind}_$m.json")
      theirs+=("$logs/scaling_torch/${kind}_$m.json")
    done
  done
  # py: under a timeout of its own
  py "$repo/bench/compare.py" --ember "$out/ember_bench.json" --peer "$out/torch_bench.json" \
    ${ours[0]+--scaling "${ours[@]}" --scaling-peer "${theirs[@]}"} \
    --train-ember "$out/fashion_mnist_ember.json" --train-torch "$out/fashion_mnist_torch.json" \
    --json "$logs/ratios.json" 2>"$logs/compare.err" | part 60-compare
  rc=${PIPESTATUS[0]}
  # Charts, when this Python has matplotlib (else: bench/README.md, from the returned JSON files).
  if py "$repo/bench/plot.py" "$logs/scaling" --ratios "$logs/ratios.json" --out "$logs/charts" \
    >"$logs/plot.log" 2>&1; then
    cp -f "$logs/charts/scaling.png" "$logs/charts/ratios.png" "$out/" 2>/dev/null
  else
    note="; no charts: $(tail -1 "$logs/plot.log" | cut -c1-60)"
  fi
  record report "$(rc_status "$rc")" $(($(date +%s) - t0)) "$( ((rc == 0)) || tail -1 "$logs/compare.err" | cut -c1-100)$note"
}

# ---- main --------------------------------------------------------------------------------------------
log "ember GPU check: budget ${budget}s, phases ${phases//,/ }"
nvcc="" cuda_root="" sanitizer="" site_dirs=() extra_ld=()
for p in "${all_phases[@]}"; do want "$p" || not_run "$p" "not in EMBER_GPU_CHECK_PHASES"; done
want probe && run_phase probe probe
if want configure && run_phase configure configure; then
  want build && run_phase build build_all
elif want configure; then
  not_run build "configure failed"
fi
# A failed build still runs the tests and benchmarks it produced (each phase skips what is missing).
compgen -G "$build/tests/ember_*_tests" >/dev/null && build_ok=1
if ((build_ok)); then
  want test && run_phase test run_tests
  want sanitize && run_phase sanitize run_sanitizer
  want bench && run_phase bench run_benchmarks
else
  for p in test sanitize bench; do not_run "$p" "no test binaries in $build (configure or build failed or did not run)"; done
fi
want torch && run_phase torch run_torch
want train && run_phase train run_training
want report && run_phase report report
pack
log "done; files in $out: $(cd "$out" && echo *)"
echo
cat "$out/summary.txt"
