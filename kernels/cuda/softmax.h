// CUDA entry points of softmax and log_softmax (kernels/cuda/softmax.cu): the contract of kernels/cpu/softmax.h.
#pragma once

#include <cstdint>

#include "kernels/cuda/entry.h"
#include "runtime/tensor.h"

namespace ember::cuda {

// Note [Softmax kernel contract] (kernels/cpu/softmax.h); asynchronous on the current stream of in's device.
EMBER_CUDA_ENTRY(void, softmax_forward,
                 (const Tensor& in, const Tensor& out, int64_t outer, int64_t dim_size, int64_t inner, bool log))
EMBER_CUDA_ENTRY(void, softmax_backward,
                 (const Tensor& grad_out, const Tensor& out, const Tensor& grad_in, int64_t outer, int64_t dim_size,
                  int64_t inner, bool log))

}  // namespace ember::cuda
