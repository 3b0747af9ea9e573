// CPU softmax / log_softmax kernels (kernels/cpu/softmax.cpp); the contract of kernels/cuda/softmax.h.
#pragma once

#include <cstdint>

#include "runtime/tensor.h"

namespace ember::cpu {

// Note [Softmax kernel contract]
// Every tensor is contiguous, of one floating dtype, and seen as [outer, dim_size, inner]; the softmax runs
// along the middle dim. Arithmetic in float (double for float64), numerically stable: the row's max is
// subtracted before exponentiating, so logits of 1e4 neither overflow nor lose the result.
//   forward:  out = exp(x - max) / sum(exp(x - max))   or, log,  x - max - log(sum(exp(x - max)))
//   backward: grad_in = out * (grad_out - sum(grad_out * out))   or, log,  grad_out - exp(out) * sum(grad_out)
void softmax_forward(const Tensor& in, const Tensor& out, int64_t outer, int64_t dim_size, int64_t inner, bool log);
void softmax_backward(const Tensor& grad_out, const Tensor& out, const Tensor& grad_in, int64_t outer, int64_t dim_size,
                      int64_t inner, bool log);

}  // namespace ember::cpu
