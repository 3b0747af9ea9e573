// CPU GEMM on OpenBLAS: batched, strided, broadcast-aware (the backend of mm, bmm, matmul and addmm).
#pragma once

#include "runtime/tensor.h"

namespace ember::cpu {

// out = alpha * (a @ b) + beta * out for every batch index, float32/float64.
//   a: [batch..., n, k], b: [batch..., k, m], out: [batch..., n, m] contiguous.
// a and b carry out's batch dims exactly (stride 0 where a batch dim is broadcast) and matrix dims
// that blas_layout() accepts (kernels/shared/gemm.h). beta == 0 ignores out's contents (NaNs too);
// k == 0 leaves beta * out.
void gemm(const Tensor& a, const Tensor& b, const Tensor& out, double beta, double alpha);

}  // namespace ember::cpu
