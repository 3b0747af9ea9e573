// CUDA entry points of the matrix products (kernels/cuda/matmul.cpp, on cuBLAS).
#pragma once

#include "kernels/cuda/entry.h"
#include "runtime/tensor.h"

namespace ember::cuda {

// The contract of cpu::gemm (kernels/cpu/blas.h) for CUDA tensors: out = alpha * (a @ b) + beta * out
// per batch index, on the current stream of out's device. float32 (TF32 tensor cores only when
// cuda::allow_tf32()), float64, and float16/bfloat16 with float accumulation.
EMBER_CUDA_ENTRY(void, gemm, (const Tensor& a, const Tensor& b, const Tensor& out, double beta, double alpha))

}  // namespace ember::cuda
