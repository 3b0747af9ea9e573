// CUDA entry points of the pooling ops (kernels/cuda/pool.cu); same contract as kernels/cpu/pool.h.
#pragma once

#include "kernels/cuda/entry.h"
#include "kernels/shared/pool.h"
#include "runtime/tensor.h"

namespace ember::cuda {

// Contiguous [N, C, H, W] tensors on one CUDA device, float32/float64/float16/bfloat16 (accumulating
// in float for the 16-bit types); run on the current stream of that device. Backward kernels gather
// (one thread per input element), so they are deterministic and overwrite grad_input entirely.
EMBER_CUDA_ENTRY(void, max_pool2d,
                 (const Tensor& input, const Tensor& out, const Tensor& indices, const pool::Pool2dGeometry& g))
EMBER_CUDA_ENTRY(void, max_pool2d_backward,
                 (const Tensor& grad_output, const Tensor& indices, const Tensor& grad_input,
                  const pool::Pool2dGeometry& g))
EMBER_CUDA_ENTRY(void, avg_pool2d, (const Tensor& input, const Tensor& out, const pool::Pool2dGeometry& g))
EMBER_CUDA_ENTRY(void, avg_pool2d_backward,
                 (const Tensor& grad_output, const Tensor& grad_input, const pool::Pool2dGeometry& g))
EMBER_CUDA_ENTRY(void, adaptive_avg_pool2d, (const Tensor& input, const Tensor& out))
EMBER_CUDA_ENTRY(void, adaptive_avg_pool2d_backward, (const Tensor& grad_output, const Tensor& grad_input))

}  // namespace ember::cuda
