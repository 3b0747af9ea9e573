// CUDA GEMM on cuBLAS: row-major products as swapped column-major ones, batches as strided-batched calls.
#include "kernels/cuda/matmul.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <map>
#include <mutex>
#include <tuple>
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

// ---- Linear's forward: GEMM with the bias epilogue (cuBLASLt) ------------------------------------

namespace {

// Note [cuBLASLt bias epilogue]
// addmm(bias, x, W^T), Linear's forward, would otherwise broadcast the bias into the output (one
// kernel writing n*m elements) and run the GEMM with beta = 1 (reading them back). cublasLtMatmul's
// CUBLASLT_EPILOGUE_BIAS adds the bias while the GEMM writes its tile: one launch, no extra pass.
// The row-major product is the column-major D^T = op(B) op(A) as in gemm() above, so the bias runs
// along D^T's rows (m of them), which is the vector cuBLASLt's bias epilogue adds. The algorithm
// comes from cuBLASLt's heuristic once per (device, dtype, shape, layout, alignment, TF32 setting)
// and is cached; where the heuristic offers none, gemm_bias returns false and addmm falls back.

template <class H, cublasStatus_t (*Destroy)(H)>
struct LtHandle {
  H h = nullptr;
  LtHandle() = default;
  LtHandle(const LtHandle&) = delete;
  LtHandle& operator=(const LtHandle&) = delete;
  ~LtHandle() {
    if (h) Destroy(h);
  }
};
using LtDesc = LtHandle<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using LtLayout = LtHandle<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using LtPref = LtHandle<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;

template <class T>
void set_attr(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)));
}
template <class T>
void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const T& value) {
  EMBER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
}

// The largest power of two (up to 256) that divides the address: what cuBLASLt may assume.
uint32_t alignment_of(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && addr % a != 0) a /= 2;
  return a;
}

// (device, dtype, compute type, n, m, k, op_a, op_b, lda, ldb, alignments of a, b, bias, out, workspace)
using AlgoKey = std::tuple<int, int, int, int64_t, int64_t, int64_t, int, int, int64_t, int64_t, uint32_t, uint32_t,
                           uint32_t, uint32_t, size_t>;
struct AlgoEntry {
  bool found = false;
  cublasLtMatmulAlgo_t algo{};
};
std::mutex algo_mutex;
std::map<AlgoKey, AlgoEntry>& algo_cache() {
  static auto* cache = new std::map<AlgoKey, AlgoEntry>();  // leaked: used until process exit
  return *cache;
}

}  // namespace

bool gemm_bias(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out, double alpha) {
  EMBER_ASSERT(a.dim() == 2 && b.dim() == 2 && out.dim() == 2 && bias.dim() == 1, "gemm_bias: ranks ", a.dim(), ", ",
               b.dim(), ", ", bias.dim(), ", ", out.dim());
  const int64_t n = out.size(0), m = out.size(1), k = a.size(1);
  // One-row products stay on cublasGemmEx (as PyTorch's addmm does), and the bias must be 16-byte
  // aligned (the bias epilogue reads it in vectors; cuBLASLt has no preference attribute for it).
  if (n <= 1 || m == 0 || k == 0 || !out.is_contiguous() || !bias.is_contiguous() || bias.size(0) != m ||
      alignment_of(bias.raw_data()) < 16)
    return false;
  const auto la = blas_layout(n, k, a.stride(0), a.stride(1));
  const auto lb = blas_layout(k, m, b.stride(0), b.stride(1));
  if (!la || !lb) return false;
  const GemmTypes types = gemm_types(out.dtype());
  const HostScalar al(alpha, types.scalar), be(0.0, types.scalar);
  const int device = out.device().index();
  DeviceGuard guard(out.device());
  const Stream stream = current_stream(device);
  cublasLtHandle_t lt = blaslt_handle(device);
  const BlasWorkspace ws = blas_workspace(stream);
  const cublasOperation_t op_a = la->transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = lb->transposed ? CUBLAS_OP_T : CUBLAS_OP_N;

  // Column-major: D^T [m, n] = op(B_lt) [m, k] * op(A_lt) [k, n], with B_lt = b and A_lt = a as in gemm().
  LtDesc desc;
  EMBER_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc.h, types.compute, types.scalar));
  set_attr(desc.h, CUBLASLT_MATMUL_DESC_TRANSA, op_b);
  set_attr(desc.h, CUBLASLT_MATMUL_DESC_TRANSB, op_a);
  set_attr(desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
  const void* bias_ptr = bias.raw_data();
  set_attr(desc.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias_ptr);
  LtLayout first, second, result;
  const auto rows_cols = [](bool plain, int64_t r, int64_t c) { return plain ? std::pair{r, c} : std::pair{c, r}; };
  const auto [r1, c1] = rows_cols(op_b == CUBLAS_OP_N, m, k);
  const auto [r2, c2] = rows_cols(op_a == CUBLAS_OP_N, k, n);
  EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&first.h, types.data, static_cast<uint64_t>(r1),
                                                static_cast<uint64_t>(c1), lb->ld));
  EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&second.h, types.data, static_cast<uint64_t>(r2),
                                                static_cast<uint64_t>(c2), la->ld));
  EMBER_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&result.h, types.data, static_cast<uint64_t>(m), static_cast<uint64_t>(n), m));

  const uint32_t align_a = alignment_of(a.raw_data()), align_b = alignment_of(b.raw_data());
  const uint32_t align_bias = alignment_of(bias_ptr), align_out = alignment_of(out.raw_data());
  const AlgoKey key{device, static_cast<int>(out.dtype()), static_cast<int>(types.compute), n, m, k,
                    static_cast<int>(op_a), static_cast<int>(op_b), la->ld, lb->ld, align_a, align_b, align_bias,
                    align_out, ws.bytes};
  AlgoEntry entry;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(algo_mutex);
    auto it = algo_cache().find(key);
    if (it != algo_cache().end()) {
      entry = it->second;
      cached = true;
    }
  }
  if (!cached) {
    LtPref pref;
    EMBER_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.h));
    set_pref(pref.h, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(ws.bytes));
    set_pref(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_b);  // cuBLASLt's A is our b
    set_pref(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_a);
    set_pref(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_out);
    set_pref(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_out);
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, desc.h, first.h, second.h, result.h, result.h,
                                                             pref.h, 1, &heuristic, &found);
    // NOT_SUPPORTED: no algorithm for this case (a bias alignment, say); anything else is a real error.
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) EMBER_CUBLAS_CHECK(st);
    entry.found = st == CUBLAS_STATUS_SUCCESS && found > 0 && heuristic.state == CUBLAS_STATUS_SUCCESS;
    if (entry.found) entry.algo = heuristic.algo;
    std::lock_guard<std::mutex> lock(algo_mutex);
    algo_cache().emplace(key, entry);
  }
  if (!entry.found) return false;
  EMBER_CUBLAS_CHECK(cublasLtMatmul(lt, desc.h, al.ptr(), b.raw_data(), first.h, a.raw_data(), second.h, be.ptr(),
                                    out.raw_data(), result.h, out.raw_data(), result.h, &entry.algo, ws.data, ws.bytes,
                                    static_cast<cudaStream_t>(stream.handle())));
  return true;
}

}  // namespace ember::cuda
