// CPU GEMM on oneDNN (float32) and OpenBLAS: one ?gemm per batch matrix on strided operands (transposed
// instead of copied).
#include "kernels/cpu/blas.h"
#include "kernels/cpu/env_choice.h"

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "kernels/cpu/loops.h"
#include "kernels/cpu/onednn.h"
#include "kernels/dispatch.h"
#include "kernels/shared/gemm.h"

namespace ember::cpu {

namespace {

// Note [CPU GEMM libraries]
// Debian's OpenBLAS picks its kernels by asking the CPU what it is, and on a VM whose CPUID names no
// model it knows (this machine's "Intel(R) Xeon(R) Processor" with AVX-512) it falls back to its
// Prescott (SSE3) kernels; OPENBLAS_CORETYPE=SkylakeX fixes that, but only when set before the library
// loads, which a library linked into someone else's program cannot do. oneDNN's sgemm dispatches on the
// instruction sets the CPU reports (its JIT kernels for AVX-512, AVX2, SSE4.1) and is what LibTorch's
// oneDNN paths use. Single-threaded on this machine, while something else was compiling:
// [64, 784] x [784, 256] 0.55 ms oneDNN against 2.6 ms OpenBLAS, [256, 64] x [64, 784] 0.48 against 2.6 ms,
// 1024^3 42 ms against 198 ms. So float32 products go to oneDNN whenever ember has it (CpuGemmLibrary,
// EMBER_CPU_GEMM). oneDNN has no float64 GEMM, and matrix-vector products stay on OpenBLAS's gemv.

// -1: not read from EMBER_CPU_GEMM yet.
std::atomic<int> g_gemm_library{-1};

// Note [GEMM threading on the CPU]
// OpenBLAS threads one GEMM itself once m*n*k exceeds 65536 * GEMM_MULTITHREAD_THRESHOLD (4 by
// default); below that it runs on the calling thread. So a batch of small matrices is spread over
// OpenMP threads (each GEMM then single-threaded inside OpenBLAS), and a batch of large ones is run
// one GEMM after the other, each threaded by OpenBLAS: the two thread pools are never nested.
// The batch split is used only when OpenBLAS is the OpenMP (or sequential) build, which shares
// ember's OpenMP pool. The pthreads build keeps a pool of its own whose threads busy-wait for about
// 0.1 s after every threaded GEMM; an OpenMP region in that window gets its worker a time slice only
// now and then, and OpenBLAS's internal buffer lock, taken by every call, turns that into futex
// sleeps: measured on 2 cores, bmm of 256 16x16 matrices went from 14 us to 570 us right after a
// 1024^3 GEMM. Sequential calls do not suffer from it, so that build gets them.
constexpr double kOpenBlasSingleThreadMnk = 65536.0 * 4;
// Below this much work per batch (multiply-adds) a fork/join costs more than it saves.
constexpr double kBatchParallelMinWork = 1 << 16;

// openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP.
bool batch_split_allowed() {
  static const bool allowed = openblas_get_parallel() != 1;
  return allowed;
}

CBLAS_TRANSPOSE trans_of(const MatrixLayout& l) { return l.transposed ? CblasTrans : CblasNoTrans; }

void gemm_call(const float* a, const MatrixLayout& la, const float* b, const MatrixLayout& lb, float* c, blasint n,
               blasint m, blasint k, float alpha, float beta) {
  if (gemm_library() == CpuGemmLibrary::kOneDnn &&
      onednn::sgemm(la.transposed, lb.transposed, n, m, k, alpha, a, la.ld, b, lb.ld, beta, c, std::max<blasint>(1, m)))
    return;
  cblas_sgemm(CblasRowMajor, trans_of(la), trans_of(lb), n, m, k, alpha, a, static_cast<blasint>(la.ld), b,
              static_cast<blasint>(lb.ld), beta, c, std::max<blasint>(1, m));
}
void gemm_call(const double* a, const MatrixLayout& la, const double* b, const MatrixLayout& lb, double* c, blasint n,
               blasint m, blasint k, double alpha, double beta) {
  cblas_dgemm(CblasRowMajor, trans_of(la), trans_of(lb), n, m, k, alpha, a, static_cast<blasint>(la.ld), b,
              static_cast<blasint>(lb.ld), beta, c, std::max<blasint>(1, m));
}
void gemv_call(CBLAS_TRANSPOSE t, blasint rows, blasint cols, float alpha, const float* a, blasint lda, const float* x,
               blasint incx, float beta, float* y) {
  cblas_sgemv(CblasRowMajor, t, rows, cols, alpha, a, lda, x, incx, beta, y, 1);
}
void gemv_call(CBLAS_TRANSPOSE t, blasint rows, blasint cols, double alpha, const double* a, blasint lda,
               const double* x, blasint incx, double beta, double* y) {
  cblas_dgemv(CblasRowMajor, t, rows, cols, alpha, a, lda, x, incx, beta, y, 1);
}

// One [n, k] x [k, m] product. A matrix-vector product goes to gemv, which OpenBLAS runs faster
// than a gemm with one column.
template <class T>
void gemm_one(const T* a, const MatrixLayout& la, const T* b, const MatrixLayout& lb, T* c, blasint n, blasint m,
              blasint k, T alpha, T beta) {
  if (m == 1 || n == 1) {
    const blasint len = m == 1 ? n : m;
    // gemv's beta == 0 path scales y by zero on some OpenBLAS versions, which keeps NaNs: clear y.
    if (beta == T(0)) std::memset(c, 0, sizeof(T) * static_cast<size_t>(len));
    if (m == 1) {  // c[:, 0] = A b[:, 0]; b's column has stride ld (row-major) or 1 (transposed)
      const blasint incx = lb.transposed ? 1 : static_cast<blasint>(lb.ld);
      if (la.transposed)
        gemv_call(CblasTrans, k, n, alpha, a, static_cast<blasint>(la.ld), b, incx, beta, c);
      else
        gemv_call(CblasNoTrans, n, k, alpha, a, static_cast<blasint>(la.ld), b, incx, beta, c);
    } else {  // c[0, :] = B^T a[0, :]
      const blasint incx = la.transposed ? static_cast<blasint>(la.ld) : 1;
      if (lb.transposed)
        gemv_call(CblasNoTrans, m, k, alpha, b, static_cast<blasint>(lb.ld), a, incx, beta, c);
      else
        gemv_call(CblasTrans, k, m, alpha, b, static_cast<blasint>(lb.ld), a, incx, beta, c);
    }
    return;
  }
  gemm_call(a, la, b, lb, c, n, m, k, alpha, beta);
}

template <class T>
void scale_contiguous(T* p, int64_t n, T beta) {
  if (beta == T(1)) return;
  parallel_for(n, kParallelGrain, [&](int64_t b, int64_t e) {
    if (beta == T(0)) {
      std::memset(p + b, 0, sizeof(T) * static_cast<size_t>(e - b));
    } else {
      for (int64_t i = b; i < e; ++i) p[i] *= beta;
    }
  });
}

blasint checked_blas_int(int64_t v, const char* what) {
  EMBER_CHECK(v <= std::numeric_limits<blasint>::max(), "matmul: the ", what, " ", v,
              " exceeds what OpenBLAS (32-bit integers) can multiply");
  return static_cast<blasint>(v);
}

}  // namespace

void set_gemm_library(CpuGemmLibrary library) { g_gemm_library.store(static_cast<int>(library)); }

CpuGemmLibrary gemm_library() {
  return choice_from_env(g_gemm_library, "EMBER_CPU_GEMM", "matmul", "onednn", CpuGemmLibrary::kOneDnn, "openblas",
                         CpuGemmLibrary::kOpenBlas);
}

void gemm(const Tensor& a, const Tensor& b, const Tensor& out, double beta, double alpha) {
  const int64_t r = out.dim();
  EMBER_ASSERT(r >= 2 && a.dim() == r && b.dim() == r, "gemm: ranks ", a.dim(), ", ", b.dim(), ", ", r);
  EMBER_ASSERT(out.is_contiguous(), "gemm: the output must be contiguous");
  const int64_t n = out.size(r - 2), m = out.size(r - 1), k = a.size(r - 1);
  if (n == 0 || m == 0 || out.numel() == 0) return;
  const int64_t batch = out.numel() / (n * m);
  dispatch_floating(out.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* c = static_cast<T*>(out.raw_data());
    if (k == 0) {  // an empty sum: the product is zero, beta still scales out
      scale_contiguous(c, out.numel(), static_cast<T>(beta));
      return;
    }
    const auto la = blas_layout(n, k, a.stride(r - 2), a.stride(r - 1));
    const auto lb = blas_layout(k, m, b.stride(r - 2), b.stride(r - 1));
    EMBER_ASSERT(la && lb, "gemm: operands without a BLAS layout: strides ", a.strides(), " and ", b.strides());
    const blasint bn = checked_blas_int(n, "row count"), bm = checked_blas_int(m, "column count"),
                  bk = checked_blas_int(k, "inner dimension");
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    const T ta = static_cast<T>(alpha), tb = static_cast<T>(beta);
    if (batch == 1) {
      gemm_one(pa, *la, pb, *lb, c, bn, bm, bk, ta, tb);
      return;
    }
    // Batch element i -> element offsets of its a and b matrices (batch dims row-major).
    const int64_t nb = r - 2;
    const IntArrayRef sizes = out.sizes(), sa = a.strides(), sb = b.strides();
    auto run = [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        int64_t rem = i, oa = 0, ob = 0;
        for (int64_t d = nb - 1; d >= 0; --d) {
          const int64_t idx = rem % sizes[d];
          rem /= sizes[d];
          oa += idx * sa[d];
          ob += idx * sb[d];
        }
        gemm_one(pa + oa, *la, pb + ob, *lb, c + i * n * m, bn, bm, bk, ta, tb);
      }
    };
    const double mnk = static_cast<double>(n) * static_cast<double>(m) * static_cast<double>(k);
    const bool small = mnk <= kOpenBlasSingleThreadMnk;
    if (small && batch_split_allowed() && omp_get_max_threads() > 1 && !omp_in_parallel() &&
        mnk * static_cast<double>(batch) >= kBatchParallelMinWork) {
      // Grain in batch elements such that each chunk carries at least kBatchParallelMinWork.
      const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kBatchParallelMinWork / std::max(mnk, 1.0)));
      parallel_for(batch, grain, run);
    } else {
      run(0, batch);
    }
  });
}

}  // namespace ember::cpu
