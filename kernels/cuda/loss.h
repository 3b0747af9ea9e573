// CUDA entry points of the classification losses (kernels/cuda/loss.cu): the contract of kernels/cpu/loss.h
// (Note [Classification loss kernel contract]); bad targets give NaN instead of an error (no sync).
#pragma once

#include "kernels/cuda/entry.h"
#include "kernels/loss.h"

namespace ember::cuda {

EMBER_CUDA_ENTRY(void, class_loss_forward,
                 (const Tensor& input, const Tensor& target, LossReduction reduction, int64_t ignore_index,
                  double smoothing, bool log_probs, const Tensor& out, const Tensor& lse, const Tensor& count))
EMBER_CUDA_ENTRY(void, class_loss_backward,
                 (const Tensor& grad, const Tensor& input, const Tensor& target, const Tensor& lse,
                  const Tensor& count, LossReduction reduction, int64_t ignore_index, double smoothing,
                  bool log_probs, const Tensor& grad_input))

}  // namespace ember::cuda
