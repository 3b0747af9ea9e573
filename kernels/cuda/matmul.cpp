// CUDA GEMM on cuBLAS: row-major products as swapped column-major ones, batches as strided-batched calls.
#include "kernels/cuda/matmul.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <vector>

#include "kernels/cuda/blas_handle.h"
#include "kernels/shared/gemm.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"

namespace ember::cuda {

namespace {

struct GemmTypes {
  cudaDataType data;
  cublasComputeType_t compute;
  cudaDataType scalar;  // alpha/beta's type
};

GemmTypes gemm_types(DType t) {
  switch (t) {
    case DType::Float32:
      return {CUDA_R_32F, allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case DType::Float64: return {CUDA_R_64F, CUBLAS_COMPUTE_64F, CUDA_R_64F};
    case DType::Float16: return {CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case DType::BFloat16: return {CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    default: EMBER_THROW("matmul: cuBLAS products take float32, float64, float16 or bfloat16, got ", t);
  }
}

// alpha/beta on the host in the type cuBLAS expects for the compute type.
struct HostScalar {
  float f = 0.f;
  double d = 0.0;
  bool is_double = false;
  HostScalar(double v, cudaDataType t) : f(static_cast<float>(v)), d(v), is_double(t == CUDA_R_64F) {}
  const void* ptr() const { return is_double ? static_cast<const void*>(&d) : static_cast<const void*>(&f); }
};

// A batch dim shared by a, b and out after dropping size-1 dims and merging neighbours.
struct BatchDim {
  int64_t size;
  int64_t sa, sb, sc;
};

// Note [Batched GEMM on cuBLAS]
// Batch dims are merged where all three operands allow it (a broadcast batch dim has stride 0 in a
// or b, and two neighbouring stride-0 dims merge). The innermost merged dim is one
// cublasGemmStridedBatchedEx call (stride 0 for a broadcast operand); any outer dims that did not
// merge become a host loop of such calls. Row-major C = A B is computed as column-major
// C^T = B^T A^T: B goes first and a matrix stored transposed gets CUBLAS_OP_T.
std::vector<BatchDim> merged_batch_dims(const Tensor& a, const Tensor& b, const Tensor& out) {
  std::vector<BatchDim> dims;  // innermost first
  for (int64_t d = out.dim() - 3; d >= 0; --d) {
    const int64_t size = out.size(d);
    if (size == 1) continue;
    const BatchDim cur{size, a.stride(d), b.stride(d), out.stride(d)};
    if (!dims.empty()) {
      BatchDim& in = dims.back();
      if (cur.sa == in.sa * in.size && cur.sb == in.sb * in.size && cur.sc == in.sc * in.size) {
        in.size *= size;
        continue;
      }
    }
    dims.push_back(cur);
  }
  return dims;
}

}  // namespace

void gemm(const Tensor& a, const Tensor& b, const Tensor& out, double beta, double alpha) {
  const int64_t r = out.dim();
  EMBER_ASSERT(r >= 2 && a.dim() == r && b.dim() == r, "gemm: ranks ", a.dim(), ", ", b.dim(), ", ", r);
  EMBER_ASSERT(out.is_contiguous(), "gemm: the output must be contiguous");
  const int64_t n = out.size(r - 2), m = out.size(r - 1), k = a.size(r - 1);
  if (out.numel() == 0) return;
  const GemmTypes types = gemm_types(out.dtype());
  const HostScalar al(alpha, types.scalar), be(beta, types.scalar);
  DeviceGuard guard(out.device());
  const Stream stream = current_stream(out.device().index());
  cublasHandle_t handle = blas_handle(stream);

  if (k == 0) {  // an empty sum: out = beta * out
    if (beta == 0.0) {
      EMBER_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes(), static_cast<cudaStream_t>(stream.handle())));
    } else if (beta != 1.0) {
      EMBER_CUBLAS_CHECK(
          cublasScalEx_64(handle, out.numel(), be.ptr(), types.scalar, out.raw_data(), types.data, 1, types.scalar));
    }
    return;
  }
  const auto la = blas_layout(n, k, a.stride(r - 2), a.stride(r - 1));
  const auto lb = blas_layout(k, m, b.stride(r - 2), b.stride(r - 1));
  EMBER_ASSERT(la && lb, "gemm: operands without a BLAS layout: strides ", a.strides(), " and ", b.strides());
  const cublasOperation_t op_a = la->transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = lb->transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int64_t esize = static_cast<int64_t>(out.element_size());
  const char* pa = static_cast<const char*>(a.raw_data());
  const char* pb = static_cast<const char*>(b.raw_data());
  char* pc = static_cast<char*>(out.raw_data());

  const std::vector<BatchDim> dims = merged_batch_dims(a, b, out);
  const BatchDim inner = dims.empty() ? BatchDim{1, 0, 0, n * m} : dims.front();
  int64_t outer = 1;
  for (size_t i = 1; i < dims.size(); ++i) outer *= dims[i].size;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, oa = 0, ob = 0, oc = 0;
    for (size_t i = 1; i < dims.size(); ++i) {
      const int64_t idx = rem % dims[i].size;
      rem /= dims[i].size;
      oa += idx * dims[i].sa;
      ob += idx * dims[i].sb;
      oc += idx * dims[i].sc;
    }
    EMBER_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(handle, op_b, op_a, m, n, k, al.ptr(), pb + ob * esize, types.data,
                                                     lb->ld, inner.sb, pa + oa * esize, types.data, la->ld, inner.sa,
                                                     be.ptr(), pc + oc * esize, types.data, std::max<int64_t>(1, m),
                                                     inner.sc, inner.size, types.compute, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace ember::cuda
