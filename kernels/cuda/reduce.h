// CUDA entry point of the reductions (kernels/cuda/reduce.cu): the contract of kernels/cpu/reduce.h.
#pragma once

#include "kernels/cuda/entry.h"
#include "kernels/shared/reduce_ops.h"
#include "runtime/tensor.h"

namespace ember::cuda {

// Note [Reduction kernel contract] (kernels/cpu/reduce.h); asynchronous on the current stream of in's device.
EMBER_CUDA_ENTRY(void, reduce,
                 (ReduceKind kind, const Tensor& in, const ReduceGeometry& geom, const Tensor& out,
                  const Tensor& indices, double correction))

}  // namespace ember::cuda
