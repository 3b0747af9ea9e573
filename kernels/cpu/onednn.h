// oneDNN behind ember's CPU convolution and float32 GEMM: the entry points (each may decline a case) and its primitive cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/conv.h"
#include "runtime/tensor.h"

namespace ember::cpu::onednn {

// Whether ember was built with oneDNN (cmake/FindDNNL.cmake; EMBER_DNNL). Without it every entry point
// below declines, and the callers run their own loops.
bool compiled();
// The oneDNN version ember runs with ("2.6.3"), or "" without oneDNN.
std::string version();

// Convolution through oneDNN (Note [oneDNN convolution] in onednn.cpp), with the contract of
// kernels/cpu/conv.h: contiguous NCHW tensors, the outputs that are defined written (bias gradient
// included). Each returns false, having written nothing, when oneDNN does not take the case: not
// float32, called from inside an OpenMP parallel region, or no oneDNN implementation for the
// geometry. The caller then runs the im2col path.
bool conv2d_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& out,
                    const Conv2dParams& p);
bool conv2d_backward(const Tensor& grad_output, const Tensor& input, const Tensor& weight, const Conv2dParams& p,
                     const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias);

// Row-major float32 GEMM through oneDNN's sgemm: c[n, m] = alpha * op(a)[n, k] op(b)[k, m] + beta * c, op
// transposing when asked, leading dimensions as BLAS's. beta == 0 ignores c's contents. Returns false,
// having written nothing, without oneDNN; throws ember::Error when oneDNN reports a failure.
bool sgemm(bool trans_a, bool trans_b, int64_t n, int64_t m, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// The primitive cache (Note [oneDNN convolution]): how many plans it holds (declined geometries
// included), and emptying it (tests; plans in use stay alive until their calls return).
size_t cached_plans();
void clear_cache();
// The implementation behind this thread's last conv2d_forward here ("jit:avx512_core", "gemm:jit", ...),
// or "" when oneDNN declined that call; for tests and benchmarks.
std::string last_forward_impl();

}  // namespace ember::cpu::onednn
