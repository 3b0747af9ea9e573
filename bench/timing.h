// Timing shared by the bench programs: device time from CUDA events on a GPU, the benchmark's own clock
// on the CPU.
#pragma once

#include <benchmark/benchmark.h>

#include "ember.h"

namespace ember::bench {

// `warmup` untimed calls of `step` (algorithm choice, allocator cache, kernel load), then one call per
// iteration. On a CUDA device each call is timed with events on the current stream (register such
// benchmarks with UseManualTime); on the CPU Google Benchmark's clock times the loop.
template <class F>
void run_timed(benchmark::State& state, Device device, int warmup, F&& step) {
  for (int i = 0; i < warmup; ++i) step();
  if (!device.is_cuda()) {
    for (auto _ : state) step();
    return;
  }
  cuda::synchronize();
  cuda::Event start(/*enable_timing=*/true), stop(/*enable_timing=*/true);
  for (auto _ : state) {
    start.record();
    step();
    stop.record();
    stop.synchronize();
    state.SetIterationTime(static_cast<double>(start.elapsed_ms(stop)) / 1e3);
  }
}

// Skips the benchmark (returns false) when no GPU is usable.
inline bool require_gpu(benchmark::State& state) {
  if (cuda::is_available()) return true;
  state.SkipWithError("no CUDA device (or ember built without CUDA)");
  return false;
}

// A GPU-only benchmark of `op` on cuda:0; false (and the benchmark skipped) without a GPU.
template <class F>
bool time_on_gpu(benchmark::State& state, int warmup, F&& op) {
  if (!require_gpu(state)) return false;
  run_timed(state, Device::cuda(0), warmup, op);
  return true;
}

}  // namespace ember::bench
