// CUDA entry point of cat/stack (kernels/cuda/join.cu).
#pragma once

#include <vector>

#include "kernels/cuda/entry.h"
#include "runtime/tensor.h"

namespace ember::cuda {

// The contract of cpu::cat (kernels/cpu/join.h) for CUDA tensors, on the current stream of out's device:
// contiguous inputs are copied by one fused kernel launch per group of inputs, strided ones by the copy path.
EMBER_CUDA_ENTRY(void, cat, (const Tensor& out, const std::vector<Tensor>& inputs, int64_t dim))

}  // namespace ember::cuda
