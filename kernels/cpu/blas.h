// CPU GEMM: batched, strided, broadcast-aware (the backend of mm, bmm, matmul and addmm); float32 on oneDNN,
// float64 and matrix-vector products on OpenBLAS (Note [CPU GEMM libraries] in blas.cpp).
#pragma once

#include "runtime/tensor.h"

namespace ember::cpu {

// out = alpha * (a @ b) + beta * out for every batch index, float32/float64.
//   a: [batch..., n, k], b: [batch..., k, m], out: [batch..., n, m] contiguous.
// a and b carry out's batch dims exactly (stride 0 where a batch dim is broadcast) and matrix dims
// that blas_layout() accepts (kernels/shared/gemm.h). beta == 0 ignores out's contents (NaNs too);
// k == 0 leaves beta * out.
void gemm(const Tensor& a, const Tensor& b, const Tensor& out, double beta, double alpha);

// Which library runs a float32 GEMM. kOneDnn (the default when ember is built with oneDNN): oneDNN's
// sgemm; kOpenBlas: OpenBLAS's, the reference the tests compare oneDNN with. Process-wide; the initial
// value comes from the environment variable EMBER_CPU_GEMM (onednn or openblas; anything else is an
// error at the first product). float64 and matrix-vector products run on OpenBLAS either way, as does
// everything in a build without oneDNN.
enum class CpuGemmLibrary { kOneDnn, kOpenBlas };
void set_gemm_library(CpuGemmLibrary library);
CpuGemmLibrary gemm_library();

}  // namespace ember::cpu
