// CUDA entry points of the matrix products (kernels/cuda/matmul.cpp, on cuBLAS).
#pragma once

#include "kernels/cuda/entry.h"
#include "runtime/tensor.h"

namespace ember::cuda {

// The contract of cpu::gemm (kernels/cpu/blas.h) for CUDA tensors: out = alpha * (a @ b) + beta * out
// per batch index, on the current stream of out's device. float32 (TF32 tensor cores only when
// cuda::allow_tf32()), float64, and float16/bfloat16 with float accumulation.
EMBER_CUDA_ENTRY(void, gemm, (const Tensor& a, const Tensor& b, const Tensor& out, double beta, double alpha))

// out = alpha * (a @ b) + bias for 2-D a [n, k], b [k, m], a contiguous bias [m] and a contiguous out
// [n, m], in one cublasLtMatmul with the bias epilogue (Linear's forward without a broadcast copy of
// the bias). Returns false, having done nothing, where cuBLASLt offers no algorithm for the case; the
// caller then takes the copy + gemm path.
EMBER_CUDA_ENTRY(bool, gemm_bias, (const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out, double alpha))

}  // namespace ember::cuda
