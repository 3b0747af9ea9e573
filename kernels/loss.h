// Loss ops: fused cross_entropy (log-softmax + NLL with label smoothing), nll_loss and mse_loss.
#pragma once

#include <cstdint>

#include "kernels/ops.h"

namespace ember {

// How a loss reduces its per-element values (nn::Reduction is this enum).
enum class LossReduction : uint8_t { None, Mean, Sum };

// Note [Cross-entropy semantics]
// input: logits [N, C], [N, C, d1, ...] or unbatched [C]; target: int64 class indices [N], [N, d1, ...]
// or 0-d. Per target position r with class t (PyTorch 1.13's formula):
//   loss_r = (1 - eps) * (lse_r - x_rt) + eps / C * sum_j (lse_r - x_rj),   lse_r = log sum_j exp(x_rj)
// Positions whose target equals ignore_index contribute 0 and are not counted; Mean divides the sum
// by the number of counted positions (NaN when there is none, as PyTorch). None returns [N, d1, ...].
// A target outside [0, C) that is not ignore_index: ember::Error on the CPU naming it and C; on CUDA
// (where checking would need a device-to-host sync) the loss of that position, hence a Mean or Sum,
// is NaN, and so is its gradient row.
Tensor cross_entropy(const Tensor& input, const Tensor& target, LossReduction reduction = LossReduction::Mean,
                     int64_t ignore_index = -100, double label_smoothing = 0.0);

// Negative log-likelihood of log-probabilities (the input of the same shapes as cross_entropy's):
// loss_r = -x_rt, with the same ignore_index, reduction and bad-target rules.
Tensor nll_loss(const Tensor& input, const Tensor& target, LossReduction reduction = LossReduction::Mean,
                int64_t ignore_index = -100);

// (input - target)^2, reduced; input and target must have the same shape (dtype and device).
Tensor mse_loss(const Tensor& input, const Tensor& target, LossReduction reduction = LossReduction::Mean);

}  // namespace ember
