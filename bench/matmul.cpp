// ember mm/bmm against the BLAS called directly on the same buffers (GFLOP/s): cblas_sgemm on the CPU
// (target: within 10%), cuBLAS on the GPU (float32 without TF32; target: within 5%).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include "bench/timing.h"
#include "ember.h"

#ifdef EMBER_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

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

// ---- GPU: ember::mm against cuBLAS called directly (skipped without a GPU) --------------------------
// Both in float32 with TF32 off (CUBLAS_COMPUTE_32F, ember's default), timed with CUDA events on the
// current stream after a warm-up. Inputs are random: cuBLAS runs measurably faster on zeros.


void BM_GpuMm(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor a, b;
  if (cuda::is_available()) {
    cuda::set_allow_tf32(false);
    manual_seed(0);
    a = randn({n, n}, Device::cuda());
    b = randn({n, n}, Device::cuda());
  }
  if (bench::time_on_gpu(state, 3, [&] { benchmark::DoNotOptimize(mm(a, b)); }))
    set_gflops(state, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n));
}

// Linear's forward, x [batch, in] @ W^T + bias: one cuBLASLt call with the bias epilogue (Note [cuBLASLt
// bias epilogue], kernels/cuda/matmul.cpp) against PyTorch's F.linear (bench/pytorch, linear_b*).
void BM_GpuLinear(benchmark::State& state) {
  const int64_t batch = state.range(0), in = state.range(1), out = state.range(2);
  Tensor x, w, bias;
  if (cuda::is_available()) {
    cuda::set_allow_tf32(false);
    manual_seed(0);
    x = randn({batch, in}, Device::cuda());
    w = randn({out, in}, Device::cuda());
    bias = randn({out}, Device::cuda());
  }
  if (bench::time_on_gpu(state, 3, [&] { benchmark::DoNotOptimize(addmm(bias, x, w.t())); }))
    set_gflops(state, 2.0 * static_cast<double>(batch) * static_cast<double>(in) * static_cast<double>(out));
}
BENCHMARK(BM_GpuLinear)
    ->Args({64, 784, 256})
    ->Args({512, 4096, 4096})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

#ifdef EMBER_WITH_CUDA
// A cuBLAS handle for the baseline, bound to ember's current stream (RAII).
class CublasHandle {
 public:
  CublasHandle() {
    if (cublasCreate(&handle_) != CUBLAS_STATUS_SUCCESS) handle_ = nullptr;
    if (handle_) cublasSetStream(handle_, static_cast<cudaStream_t>(cuda::current_stream().handle()));
  }
  ~CublasHandle() {
    if (handle_) cublasDestroy(handle_);
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

// The same product as cublasGemmEx into a preallocated buffer: row-major C = A B as column-major
// C^T = B^T A^T, exactly the call ember would need at the least.
void BM_GpuCublasGemmEx(benchmark::State& state) {
  const int64_t n = state.range(0);
  if (!cuda::is_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  manual_seed(0);
  const Tensor a = randn({n, n}, Device::cuda()), b = randn({n, n}, Device::cuda());
  const Tensor c = empty({n, n}, Device::cuda());  // raw_data(): device pointers (data_ptr() is host-only)
  CublasHandle handle;
  if (!handle.get()) {
    state.SkipWithError("cublasCreate failed");
    return;
  }
  const int nn = static_cast<int>(n);
  const float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  const bool ran = bench::time_on_gpu(state, 3, [&] {
    const cublasStatus_t s = cublasGemmEx(handle.get(), CUBLAS_OP_N, CUBLAS_OP_N, nn, nn, nn, &alpha, b.raw_data(),
                                          CUDA_R_32F, nn, a.raw_data(), CUDA_R_32F, nn, &beta, c.raw_data(), CUDA_R_32F,
                                          nn, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) status = s;
  });
  if (status != CUBLAS_STATUS_SUCCESS) {
    state.SkipWithError(cublasGetStatusString(status));
    return;
  }
  if (ran) set_gflops(state, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n));
}
BENCHMARK(BM_GpuCublasGemmEx)->Arg(4096)->Arg(1024)->UseManualTime()->Unit(benchmark::kMillisecond);
#endif

BENCHMARK(BM_GpuMm)->Arg(4096)->Arg(1024)->UseManualTime()->Unit(benchmark::kMillisecond);

BENCHMARK(BM_ember_mm)->Arg(1024)->Arg(256)->Arg(64)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cblas_sgemm)->Arg(1024)->Arg(256)->Arg(64)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ember_mm_transposed)->Arg(1024)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cblas_sgemm_transposed)->Arg(1024)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ember_bmm_small)->Arg(16)->Arg(32)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cblas_sgemm_loop_small)->Arg(16)->Arg(32)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
