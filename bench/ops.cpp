// Op benchmarks (family "ops"): element-wise add/mul and copy in GB/s against a plain loop, reductions,
// softmax, and the overhead of a tiny op with and without autograd; on a GPU the same against a
// device-to-device copy, with CUDA-event timing and inputs rotated past L2.
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"

namespace ember::bench {
namespace {

constexpr int64_t k16M = 16 * 1024 * 1024;
constexpr int64_t k64M = 64 * 1024 * 1024;
constexpr int64_t kF = sizeof(float);

// ---- CPU ----------------------------------------------------------------------------------------------

// The reference: a plain OpenMP loop that allocates and writes a fresh output buffer, as an op must.
void plain_loop_add(benchmark::State& state) {
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
  set_gbps(state, 3.0 * kF * k16M);
}

// `make` returns the op to time (it captures its inputs); `bytes` moves per call.
void cpu_op(benchmark::State& state, const std::function<std::function<Tensor()>()>& make, double bytes) {
  manual_seed(0);
  auto op = make();
  for (auto _ : state) {
    Tensor r = op();
    benchmark::DoNotOptimize(r.raw_data());
  }
  if (bytes > 0) set_gbps(state, bytes);
}

// Everything but the arithmetic: checks, output allocation, dispatch (and recording the graph node).
void tiny_op(benchmark::State& state, Device device, bool autograd, bool mul) {
  skip_on_error(state, [&] {
    Tensor a = ones({1}, device), b = ones({1}, device);
    if (autograd) {
      a.requires_grad_();
      if (mul) b.requires_grad_();
    }
    for (auto _ : state) {
      Tensor c = mul ? a * b : a + b;
      benchmark::DoNotOptimize(c.raw_data());
    }
    if (device.is_cuda()) cuda::synchronize();
    state.counters["Mops/s"] = benchmark::Counter(1e-6, benchmark::Counter::kIsIterationInvariantRate);
  });
}

void tiny_view(benchmark::State& state) {
  Tensor a = ones({4, 4});
  for (auto _ : state) {
    Tensor v = a.view({16});
    benchmark::DoNotOptimize(v.impl());
  }
}

// ---- GPU: bandwidth next to a device-to-device copy ----------------------------------------------------

// `make(i)` builds the i-th copy of the inputs and returns the op on them; copies rotate past L2.
void gpu_op(benchmark::State& state, const std::function<std::function<void()>(int)>& make, size_t input_bytes,
            double bytes) {
  skip_on_error(state, [&] {
    manual_seed(0);
    const int n = rotation_count(input_bytes);
    std::vector<std::function<void()>> ops;
    for (int i = 0; i < n; ++i) ops.push_back(make(i));
    size_t it = 0;
    run_timed(state, Device::cuda(0), n, [&] { ops[it++ % ops.size()](); });
    set_gbps(state, bytes);
    state.counters["rotated_copies"] = n;
  });
}

void reg_cpu(const std::string& name, std::function<std::function<Tensor()>()> make, double bytes,
             benchmark::TimeUnit unit = benchmark::kMillisecond) {
  benchmark::RegisterBenchmark(("ops/" + name + "/cpu").c_str(), cpu_op, std::move(make), bytes)
      ->Unit(unit)
      ->UseRealTime();  // the work runs on several threads
}

void reg_gpu(const std::string& name, std::function<std::function<void()>(int)> make, size_t input_bytes,
             double bytes) {
  benchmark::RegisterBenchmark(("ops/" + name + "/cuda").c_str(), gpu_op, std::move(make), input_bytes, bytes)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

void register_ops() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("ops/plain_loop_add_16M/cpu", plain_loop_add)->Unit(benchmark::kMillisecond)->UseRealTime();
  reg_cpu("copy_16M", [] {
    Tensor a = ones({k16M});
    return [a] { return a.clone(); };
  }, 2.0 * kF * k16M);
  reg_cpu("add_16M", [] {
    Tensor a = rand({k16M}), b = rand({k16M});
    return [a, b] { return a + b; };
  }, 3.0 * kF * k16M);
  reg_cpu("mul_16M", [] {
    Tensor a = rand({k16M}), b = rand({k16M});
    return [a, b] { return a * b; };
  }, 3.0 * kF * k16M);
  reg_cpu("mul_scalar_16M", [] {
    Tensor a = rand({k16M});
    return [a] { return a * 3.0; };
  }, 2.0 * kF * k16M);
  reg_cpu("sum_16M", [] {
    Tensor a = rand({k16M});
    return [a] { return a.sum(); };
  }, 1.0 * kF * k16M);
  reg_cpu("sum_rows_4096x4096", [] {  // over dim 1
    Tensor a = rand({4096, 4096});
    return [a] { return a.sum({1}); };
  }, 1.0 * kF * 4096 * 4096);
  reg_cpu("sum_cols_4096x4096", [] {  // over dim 0: the bias-gradient layout
    Tensor a = rand({4096, 4096});
    return [a] { return a.sum({0}); };
  }, 1.0 * kF * 4096 * 4096);
  reg_cpu("softmax_4096x1000", [] {  // a classifier's logits
    Tensor a = randn({4096, 1000});
    return [a] { return a.softmax(1); };
  }, 2.0 * kF * 4096 * 1000);
  reg_cpu("log_softmax_4096x1000", [] {
    Tensor a = randn({4096, 1000});
    return [a] { return a.log_softmax(1); };
  }, 2.0 * kF * 4096 * 1000);
  RegisterBenchmark("ops/tiny_add/cpu", tiny_op, Device::cpu(), false, false);
  RegisterBenchmark("ops/tiny_add_autograd/cpu", tiny_op, Device::cpu(), true, false);
  RegisterBenchmark("ops/tiny_mul_autograd/cpu", tiny_op, Device::cpu(), true, true);
  RegisterBenchmark("ops/tiny_view/cpu", tiny_view);

  if (!cuda::is_available()) return;
  const Device g = Device::cuda(0);
  reg_gpu("copy_64M", [g](int) {
    Tensor a = ones({k64M}, g), b = empty({k64M}, g);
    return [a, b]() mutable { b.copy_(a); };
  }, kF * k64M, 2.0 * kF * k64M);
  reg_gpu("add_64M", [g](int) {
    Tensor a = rand({k64M}, g), b = rand({k64M}, g);
    return [a, b] { benchmark::DoNotOptimize(a + b); };
  }, 2 * kF * k64M, 3.0 * kF * k64M);
  reg_gpu("mul_64M", [g](int) {
    Tensor a = rand({k64M}, g), b = rand({k64M}, g);
    return [a, b] { benchmark::DoNotOptimize(a * b); };
  }, 2 * kF * k64M, 3.0 * kF * k64M);
  reg_gpu("sum_64M", [g](int) {
    Tensor a = rand({k64M}, g);
    return [a] { benchmark::DoNotOptimize(a.sum()); };
  }, kF * k64M, 1.0 * kF * k64M);
  reg_gpu("sum_rows_8192x8192", [g](int) {
    Tensor a = rand({8192, 8192}, g);
    return [a] { benchmark::DoNotOptimize(a.sum({1})); };
  }, kF * k64M, 1.0 * kF * k64M);
  reg_gpu("softmax_4096x1000", [g](int) {
    Tensor a = randn({4096, 1000}, g);
    return [a] { benchmark::DoNotOptimize(a.softmax(1)); };
  }, kF * 4096 * 1000, 2.0 * kF * 4096 * 1000);
  reg_gpu("log_softmax_4096x1000", [g](int) {
    Tensor a = randn({4096, 1000}, g);
    return [a] { benchmark::DoNotOptimize(a.log_softmax(1)); };
  }, kF * 4096 * 1000, 2.0 * kF * 4096 * 1000);
  // Launch overhead as the host sees it (wall time per op, the queue kept busy).
  RegisterBenchmark("ops/tiny_add/cuda", tiny_op, g, false, false)->UseRealTime();
  RegisterBenchmark("ops/tiny_add_autograd/cuda", tiny_op, g, true, false)->UseRealTime();
}

}  // namespace ember::bench
