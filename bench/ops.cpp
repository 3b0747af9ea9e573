// Op benchmarks: element-wise add vs a plain loop, tiny-op overhead (with and without autograd),
// reductions and softmax; on the GPU also bandwidth against a device-to-device copy.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "bench/timing.h"
#include "ember.h"

using namespace ember;

namespace {

constexpr int64_t k16M = 16 * 1024 * 1024;

// The reference: a plain loop that allocates and writes a fresh output buffer, like an op must.
void BM_PlainLoopAdd16M(benchmark::State& state) {
  std::vector<float> a(k16M, 1.0f), b(k16M, 2.0f);
  for (auto _ : state) {
    std::unique_ptr<float[]> out(static_cast<float*>(std::aligned_alloc(64, k16M * sizeof(float))));
    float* o = out.get();
    const float* pa = a.data();
    const float* pb = b.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < k16M; ++i) o[i] = pa[i] + pb[i];
    benchmark::DoNotOptimize(o);
    benchmark::ClobberMemory();
    std::free(out.release());
  }
  state.SetBytesProcessed(state.iterations() * k16M * 3 * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_PlainLoopAdd16M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_EmberAdd16M(benchmark::State& state) {
  Tensor a = ones({k16M}), b = full({k16M}, 2.0);
  for (auto _ : state) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.raw_data());
  }
  state.SetBytesProcessed(state.iterations() * k16M * 3 * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_EmberAdd16M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_EmberAddScalar16M(benchmark::State& state) {
  Tensor a = ones({k16M});
  for (auto _ : state) {
    Tensor c = a * 3.0;
    benchmark::DoNotOptimize(c.raw_data());
  }
  state.SetBytesProcessed(state.iterations() * k16M * 2 * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_EmberAddScalar16M)->Unit(benchmark::kMillisecond)->UseRealTime();

// Overhead of a tiny op: everything but the arithmetic (checks, allocation, dispatch).
void BM_TinyAdd(benchmark::State& state) {
  Tensor a = ones({1}), b = ones({1});
  for (auto _ : state) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.raw_data());
  }
}
BENCHMARK(BM_TinyAdd);

void BM_TinyAddRecordingAutograd(benchmark::State& state) {
  Tensor a = ones({1}).requires_grad_(), b = ones({1});
  for (auto _ : state) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.raw_data());
  }
}
BENCHMARK(BM_TinyAddRecordingAutograd);

void BM_TinyMulRecordingAutograd(benchmark::State& state) {
  Tensor a = ones({1}).requires_grad_(), b = ones({1}).requires_grad_();
  for (auto _ : state) {
    Tensor c = a * b;
    benchmark::DoNotOptimize(c.raw_data());
  }
}
BENCHMARK(BM_TinyMulRecordingAutograd);

void BM_TinyView(benchmark::State& state) {
  Tensor a = ones({4, 4});
  for (auto _ : state) {
    Tensor v = a.view({16});
    benchmark::DoNotOptimize(v.impl());
  }
}
BENCHMARK(BM_TinyView);

void BM_SumAll16M(benchmark::State& state) {
  Tensor a = rand({k16M});
  for (auto _ : state) {
    Tensor s = a.sum();
    benchmark::DoNotOptimize(s.raw_data());
  }
  state.SetBytesProcessed(state.iterations() * k16M * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_SumAll16M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SumRows(benchmark::State& state) {  // [4096, 4096] over dim 1
  Tensor a = rand({4096, 4096});
  for (auto _ : state) {
    Tensor s = a.sum({1});
    benchmark::DoNotOptimize(s.raw_data());
  }
  state.SetBytesProcessed(state.iterations() * 4096 * 4096 * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_SumRows)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SumCols(benchmark::State& state) {  // [4096, 4096] over dim 0 (bias-gradient layout)
  Tensor a = rand({4096, 4096});
  for (auto _ : state) {
    Tensor s = a.sum({0});
    benchmark::DoNotOptimize(s.raw_data());
  }
  state.SetBytesProcessed(state.iterations() * 4096 * 4096 * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_SumCols)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LogSoftmax(benchmark::State& state) {  // a classifier's logits
  Tensor a = randn({4096, 1000});
  for (auto _ : state) {
    Tensor s = a.log_softmax(1);
    benchmark::DoNotOptimize(s.raw_data());
  }
  state.SetBytesProcessed(state.iterations() * 4096 * 1000 * 2 * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_LogSoftmax)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- GPU: bandwidth relative to a device-to-device copy (skipped without a GPU) ----------------
constexpr int64_t k64M = 64 * 1024 * 1024;

template <class F>
void gpu_bandwidth(benchmark::State& state, int64_t bytes_per_iter, F&& op) {
  if (bench::time_on_gpu(state, 1, op)) state.SetBytesProcessed(state.iterations() * bytes_per_iter);
}

void BM_GpuCopy64M(benchmark::State& state) {
  Tensor a, b;
  if (cuda::is_available()) {
    a = ones({k64M}, Device::cuda());
    b = empty({k64M}, Device::cuda());
  }
  gpu_bandwidth(state, 2 * k64M * 4, [&] { b.copy_(a); });
}
BENCHMARK(BM_GpuCopy64M)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_GpuAdd64M(benchmark::State& state) {
  Tensor a, b, c;
  if (cuda::is_available()) {
    a = ones({k64M}, Device::cuda());
    b = ones({k64M}, Device::cuda());
  }
  gpu_bandwidth(state, 3 * k64M * 4, [&] { c = a + b; });
}
BENCHMARK(BM_GpuAdd64M)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_GpuSum64M(benchmark::State& state) {
  Tensor a, s;
  if (cuda::is_available()) a = ones({k64M}, Device::cuda());
  gpu_bandwidth(state, k64M * 4, [&] { s = a.sum(); });
}
BENCHMARK(BM_GpuSum64M)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_GpuSumRows64M(benchmark::State& state) {
  Tensor a, s;
  if (cuda::is_available()) a = ones({8192, 8192}, Device::cuda());
  gpu_bandwidth(state, k64M * 4, [&] { s = a.sum({1}); });
}
BENCHMARK(BM_GpuSumRows64M)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_GpuLogSoftmax(benchmark::State& state) {  // a classifier's logits, [4096, 1000] (fits in L2)
  Tensor a, s;
  if (cuda::is_available()) a = randn({4096, 1000}, Device::cuda());
  gpu_bandwidth(state, 4096 * 1000 * 2 * 4, [&] { s = a.log_softmax(1); });
}
BENCHMARK(BM_GpuLogSoftmax)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
