// GEMM benchmarks (family "matmul"), GFLOP/s: ember's mm/bmm against the BLAS called directly on the same
// buffers, cblas_sgemm on the CPU (target: within 2%), cuBLAS on the GPU in float32, TF32 and bfloat16
// (target: within 5%), with inputs rotated past L2 (Note [Rotating inputs past L2]).
#include <cblas.h>

#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"

#ifdef EMBER_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

namespace ember::bench {
namespace {

double cube_flops(int64_t n) { return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n); }

// ember::mm, output allocation included (that is what a user's c = mm(a, b) costs).
void ember_mm(benchmark::State& state, int64_t n, bool transposed) {
  manual_seed(0);
  const Tensor a = randn({n, n}), b = randn({n, n});
  for (auto _ : state) {
    Tensor c = transposed ? mm(a, b.t()) : mm(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_gflops(state, cube_flops(n));
}

// The same product by hand: cblas_sgemm into a preallocated buffer.
void cblas_mm(benchmark::State& state, int64_t n, bool transposed) {
  manual_seed(0);
  const Tensor a = randn({n, n}), b = randn({n, n});
  Tensor c = empty({n, n});
  const int nn = static_cast<int>(n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transposed ? CblasTrans : CblasNoTrans, nn, nn, nn, 1.0f,
                a.data_ptr<float>(), nn, b.data_ptr<float>(), nn, 0.0f, c.data_ptr<float>(), nn);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_gflops(state, cube_flops(n));
}

// A batch of small matrices: ember spreads the batch over OpenMP threads (Note [GEMM threading on the CPU]).
void ember_bmm_small(benchmark::State& state, int64_t n) {
  const int64_t batch = 256;
  manual_seed(0);
  const Tensor a = randn({batch, n, n}), b = randn({batch, n, n});
  for (auto _ : state) {
    Tensor c = bmm(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_gflops(state, static_cast<double>(batch) * cube_flops(n));
}

void cblas_loop_small(benchmark::State& state, int64_t n) {
  const int64_t batch = 256;
  manual_seed(0);
  const Tensor a = randn({batch, n, n}), b = randn({batch, n, n});
  Tensor c = empty({batch, n, n});
  const int nn = static_cast<int>(n);
  for (auto _ : state) {
    for (int64_t i = 0; i < batch; ++i)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nn, nn, nn, 1.0f, a.data_ptr<float>() + i * n * n, nn,
                  b.data_ptr<float>() + i * n * n, nn, 0.0f, c.data_ptr<float>() + i * n * n, nn);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_gflops(state, static_cast<double>(batch) * cube_flops(n));
}

// ---- GPU ----------------------------------------------------------------------------------------------
// Precisions: fp32 (TF32 off: CUBLAS_COMPUTE_32F, ember's default), tf32 (cuda::set_allow_tf32(true)),
// bf16 (bfloat16 inputs and output, float32 accumulation). Inputs are random: cuBLAS runs measurably
// faster on zeros.
enum class Precision { Fp32, Tf32, Bf16 };
const char* precision_name(Precision p) { return p == Precision::Fp32 ? "fp32" : p == Precision::Tf32 ? "tf32" : "bf16"; }
DType precision_dtype(Precision p) { return p == Precision::Bf16 ? kBFloat16 : kFloat32; }

struct GpuOperands {
  std::vector<Tensor> a, b, c;
};
GpuOperands gpu_operands(int64_t n, Precision p) {
  GpuOperands o;
  const size_t bytes = 3 * static_cast<size_t>(n * n) * element_size(precision_dtype(p));
  const int copies = rotation_count(bytes);
  manual_seed(0);
  for (int i = 0; i < copies; ++i) {
    o.a.push_back(randn({n, n}, Device::cuda()).to(precision_dtype(p)));
    o.b.push_back(randn({n, n}, Device::cuda()).to(precision_dtype(p)));
    o.c.push_back(empty({n, n}, TensorOptions().dtype(precision_dtype(p)).device(Device::cuda())));
  }
  return o;
}

void gpu_mm(benchmark::State& state, int64_t n, Precision p) {
  skip_on_error(state, [&] {
    cuda::set_allow_tf32(p == Precision::Tf32);
    GpuOperands o = gpu_operands(n, p);
    size_t i = 0;
    run_timed(state, Device::cuda(0), 3, [&] {
      const size_t k = i++ % o.a.size();
      benchmark::DoNotOptimize(mm(o.a[k], o.b[k]));
    });
    cuda::set_allow_tf32(false);
    set_gflops(state, cube_flops(n));
    state.counters["rotated_copies"] = static_cast<double>(o.a.size());
  });
}

// Linear's forward, x [batch, in] @ W^T + bias: one cuBLASLt call with the bias epilogue (Note [cuBLASLt
// bias epilogue], kernels/cuda/matmul.cpp) against PyTorch's F.linear (bench/pytorch, linear_b*).
void gpu_linear(benchmark::State& state, int64_t batch, int64_t in, int64_t out) {
  skip_on_error(state, [&] {
    cuda::set_allow_tf32(false);
    manual_seed(0);
    const Tensor x = randn({batch, in}, Device::cuda()), w = randn({out, in}, Device::cuda()),
                 bias = randn({out}, Device::cuda());
    run_timed(state, Device::cuda(0), 3, [&] { benchmark::DoNotOptimize(addmm(bias, x, w.t())); });
    set_gflops(state, 2.0 * static_cast<double>(batch) * static_cast<double>(in) * static_cast<double>(out));
  });
}

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
void cublas_mm(benchmark::State& state, int64_t n, Precision p) {
  skip_on_error(state, [&] {
    GpuOperands o = gpu_operands(n, p);
    CublasHandle handle;
    if (!handle.get()) {
      state.SkipWithError("cublasCreate failed");
      return;
    }
    const int nn = static_cast<int>(n);
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType_t type = p == Precision::Bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t compute = p == Precision::Tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
    size_t i = 0;
    run_timed(state, Device::cuda(0), 3, [&] {
      const size_t k = i++ % o.a.size();
      const cublasStatus_t s =
          cublasGemmEx(handle.get(), CUBLAS_OP_N, CUBLAS_OP_N, nn, nn, nn, &alpha, o.b[k].raw_data(), type, nn,
                       o.a[k].raw_data(), type, nn, &beta, o.c[k].raw_data(), type, nn, compute, CUBLAS_GEMM_DEFAULT);
      if (s != CUBLAS_STATUS_SUCCESS) status = s;
    });
    if (status != CUBLAS_STATUS_SUCCESS) {
      state.SkipWithError(cublasGetStatusString(status));
      return;
    }
    set_gflops(state, cube_flops(n));
    state.counters["rotated_copies"] = static_cast<double>(o.a.size());
  });
}
#endif

}  // namespace

void register_matmul() {
  using benchmark::RegisterBenchmark;
  for (int64_t n : {1024, 256, 64}) {
    const std::string s = std::to_string(n);
    RegisterBenchmark(("matmul/mm_" + s + "/cpu").c_str(), ember_mm, n, false)
        ->UseRealTime()  // OpenBLAS threads: the main thread's CPU time would overstate the rate
        ->Unit(benchmark::kMicrosecond);
    RegisterBenchmark(("matmul/cblas_sgemm_" + s + "/cpu").c_str(), cblas_mm, n, false)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
  // A transposed operand: ember passes CblasTrans instead of copying.
  RegisterBenchmark("matmul/mm_transposed_1024/cpu", ember_mm, 1024, true)->UseRealTime()->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("matmul/cblas_sgemm_transposed_1024/cpu", cblas_mm, 1024, true)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  for (int64_t n : {16, 32}) {
    const std::string s = std::to_string(n);
    RegisterBenchmark(("matmul/bmm_256x" + s + "/cpu").c_str(), ember_bmm_small, n)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    RegisterBenchmark(("matmul/cblas_sgemm_loop_256x" + s + "/cpu").c_str(), cblas_loop_small, n)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }

  if (!cuda::is_available()) return;
  for (Precision p : {Precision::Fp32, Precision::Tf32, Precision::Bf16}) {
    for (int64_t n : {4096, 1024}) {
      const std::string tag = std::string(precision_name(p)) + "_" + std::to_string(n);
      RegisterBenchmark(("matmul/mm_" + tag + "/cuda").c_str(), gpu_mm, n, p)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
#ifdef EMBER_WITH_CUDA
      RegisterBenchmark(("matmul/cublas_" + tag + "/cuda").c_str(), cublas_mm, n, p)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
#endif
    }
  }
  RegisterBenchmark("matmul/linear_b64_784x256/cuda", gpu_linear, 64, 784, 256)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("matmul/linear_b512_4096x4096/cuda", gpu_linear, 512, 4096, 4096)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace ember::bench
