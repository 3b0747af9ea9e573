// ember mm/bmm on the CPU against cblas_sgemm called directly on the same buffers (GFLOP/s; target: within 10%).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include "ember.h"

namespace {

using namespace ember;

// Shown as FLOP/s=<x>G/s (x GFLOP/s), over real time: OpenBLAS threads, so the main thread's CPU time
// would overstate the rate.
void set_gflops(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iteration, benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
}

// ember::mm, output allocation included (that is what a user's c = mm(a, b) costs).
void BM_ember_mm(benchmark::State& state) {
  const int64_t n = state.range(0);
  manual_seed(0);
  const Tensor a = randn({n, n}), b = randn({n, n});
  for (auto _ : state) {
    Tensor c = mm(a, b);
    benchmark::DoNotOptimize(c.data_ptr<float>());
  }
  set_gflops(state, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n));
}

// The same product by hand: cblas_sgemm into a preallocated buffer.
void BM_cblas_sgemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  manual_seed(0);
  const Tensor a = randn({n, n}), b = randn({n, n});
  Tensor c = empty({n, n});
  const int nn = static_cast<int>(n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nn, nn, nn, 1.0f, a.data_ptr<float>(), nn,
                b.data_ptr<float>(), nn, 0.0f, c.data_ptr<float>(), nn);
    benchmark::DoNotOptimize(c.data_ptr<float>());
  }
  set_gflops(state, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n));
}

// A transposed operand: ember passes CblasTrans instead of copying.
void BM_ember_mm_transposed(benchmark::State& state) {
  const int64_t n = state.range(0);
  manual_seed(0);
  const Tensor a = randn({n, n}), b = randn({n, n});
  for (auto _ : state) {
    Tensor c = mm(a, b.t());
    benchmark::DoNotOptimize(c.data_ptr<float>());
  }
  set_gflops(state, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n));
}

void BM_cblas_sgemm_transposed(benchmark::State& state) {
  const int64_t n = state.range(0);
  manual_seed(0);
  const Tensor a = randn({n, n}), b = randn({n, n});
  Tensor c = empty({n, n});
  const int nn = static_cast<int>(n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nn, nn, nn, 1.0f, a.data_ptr<float>(), nn, b.data_ptr<float>(),
                nn, 0.0f, c.data_ptr<float>(), nn);
    benchmark::DoNotOptimize(c.data_ptr<float>());
  }
  set_gflops(state, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n));
}

// A batch of small matrices: ember spreads the batch over OpenMP threads (Note [GEMM threading on the CPU]).
void BM_ember_bmm_small(benchmark::State& state) {
  const int64_t batch = 256, n = state.range(0);
  manual_seed(0);
  const Tensor a = randn({batch, n, n}), b = randn({batch, n, n});
  for (auto _ : state) {
    Tensor c = bmm(a, b);
    benchmark::DoNotOptimize(c.data_ptr<float>());
  }
  set_gflops(state, 2.0 * static_cast<double>(batch * n * n * n));
}

void BM_cblas_sgemm_loop_small(benchmark::State& state) {
  const int64_t batch = 256, n = state.range(0);
  manual_seed(0);
  const Tensor a = randn({batch, n, n}), b = randn({batch, n, n});
  Tensor c = empty({batch, n, n});
  const int nn = static_cast<int>(n);
  for (auto _ : state) {
    for (int64_t i = 0; i < batch; ++i)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nn, nn, nn, 1.0f, a.data_ptr<float>() + i * n * n, nn,
                  b.data_ptr<float>() + i * n * n, nn, 0.0f, c.data_ptr<float>() + i * n * n, nn);
    benchmark::DoNotOptimize(c.data_ptr<float>());
  }
  set_gflops(state, 2.0 * static_cast<double>(batch * n * n * n));
}

BENCHMARK(BM_ember_mm)->Arg(1024)->Arg(256)->Arg(64)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cblas_sgemm)->Arg(1024)->Arg(256)->Arg(64)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ember_mm_transposed)->Arg(1024)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cblas_sgemm_transposed)->Arg(1024)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ember_bmm_small)->Arg(16)->Arg(32)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cblas_sgemm_loop_small)->Arg(16)->Arg(32)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
