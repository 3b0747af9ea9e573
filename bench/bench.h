// What the parts of ember_bench share: their registration functions, the process group, counters,
// and helpers for GPU cases (input rotation past L2, errors turned into skips).
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <initializer_list>
#include <vector>

#include "ember.h"

namespace ember::bench {

// Note [Benchmark names]
// Every benchmark is named <family>/<case>/<device>: family is the part of ember_bench that registers
// it (ops, matmul, conv, optim, train_step, allocator, allreduce, dp, ddp), device is cpu or cuda (or
// what the case spans: 3cpu, 2ranks). So --benchmark_filter=/cuda selects the GPU cases, ^ops/ one
// family (what the old per-family programs, now thin aliases, pass), and bench/compare.py finds the
// same case in PyTorch's and LibTorch's results by this name. GPU cases are registered only when a
// GPU is usable, collectives only when there is something to communicate with.

// One per source file; main() calls them all, after the process group exists.
void register_ops();
void register_matmul();
void register_conv();
void register_optim();
void register_train_step();
void register_allocator();
void register_allreduce();
void register_data_parallel();

// The process group ember_bench runs in: a world of one, or the ranks of `mpirun -np K ember_bench`.
std::shared_ptr<distributed::ProcessGroup>& world();

inline std::string device_tag(Device d) { return d.is_cuda() ? "cuda" : "cpu"; }

// Joins the parts of a benchmark name (plain appends: GCC 12's -Wrestrict misfires on chains of operator+).
inline std::string join(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) s.append(p);
  return s;
}

// A rate counter: `per_iteration` units per iteration, shown per second of the benchmark's time.
inline void set_rate(benchmark::State& state, const char* name, double per_iteration) {
  state.counters[name] = benchmark::Counter(per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}
// GB/s and GFLOP/s as plain numbers (Google Benchmark's own bytes_per_second is kept where it was used).
inline void set_gbps(benchmark::State& state, double bytes_per_iteration) {
  set_rate(state, "GB/s", bytes_per_iteration / 1e9);
}
inline void set_gflops(benchmark::State& state, double flops_per_iteration) {
  set_rate(state, "GFLOP/s", flops_per_iteration / 1e9);
}

// Runs `body`; an ember::Error (an op a dtype lacks, a library that declined) becomes a skip with its
// message instead of ending the whole program. GPU cases, which this machine cannot run, use it.
template <class F>
void skip_on_error(benchmark::State& state, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Note [Rotating inputs past L2]
// A GPU benchmark whose inputs fit in L2 (50 MB on an H100) measures the cache, not the memory or
// the kernel as a training step meets it. Cases with small inputs therefore keep several copies and
// use copy i % n in iteration i, with n chosen so the copies span at least kRotateBytes.
inline constexpr size_t kRotateBytes = size_t{256} << 20;
inline int rotation_count(size_t bytes_per_copy, int max_copies = 64) {
  if (bytes_per_copy == 0) return 1;
  const size_t n = (kRotateBytes + bytes_per_copy - 1) / bytes_per_copy;
  return static_cast<int>(std::clamp<size_t>(n, 1, static_cast<size_t>(max_copies)));
}

}  // namespace ember::bench
