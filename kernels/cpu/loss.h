// CPU kernels of the classification losses (kernels/cpu/loss.cpp); the contract of kernels/cuda/loss.h.
#pragma once

#include "kernels/loss.h"

namespace ember::cpu {

// Note [Classification loss kernel contract]
// input: contiguous [N, C, S] (S: the product of the dims after the class dim; 1 for [N, C]);
// target: contiguous int64 with N * S elements. log_probs = false: cross entropy from logits with
// label smoothing `smoothing`; log_probs = true: NLL of log-probabilities (smoothing 0).
// Forward writes `out` (reduction None: N * S elements, else 0-d; input dtype), `count` (0-d, stat
// dtype: the number of non-ignored targets) and, for logits, `lse` (N * S, stat dtype: float64 for
// float64 inputs, float32 otherwise), the row log-sum-exp the backward reuses.
// Backward writes grad_input (contiguous [N, C, S]) from `grad` (contiguous: N * S elements for
// None, else 0-d). CPU kernels throw ember::Error (naming the target and C) on a bad target.
void class_loss_forward(const Tensor& input, const Tensor& target, LossReduction reduction, int64_t ignore_index,
                        double smoothing, bool log_probs, const Tensor& out, const Tensor& lse, const Tensor& count);
void class_loss_backward(const Tensor& grad, const Tensor& input, const Tensor& target, const Tensor& lse,
                         const Tensor& count, LossReduction reduction, int64_t ignore_index, double smoothing,
                         bool log_probs, const Tensor& grad_input);

}  // namespace ember::cpu
