// nn::functional losses: cross_entropy, nll_loss, mse_loss.
#pragma once

#include <cstdint>

#include "kernels/loss.h"
#include "nn/options.h"

namespace ember::nn {

// How a loss reduces: nn::Reduction::Mean (the default everywhere), Sum, or None (per element).
using Reduction = ::ember::LossReduction;

namespace functional {

struct CrossEntropyFuncOptions {
  EMBER_ARG(Reduction, reduction) = Reduction::Mean;
  EMBER_ARG(int64_t, ignore_index) = -100;
  EMBER_ARG(double, label_smoothing) = 0.0;
};

// One fused op (log-softmax + NLL with label smoothing); Note [Cross-entropy semantics] in
// kernels/loss.h. input [N, C] / [N, C, d...] / [C] logits, target int64 [N] / [N, d...] / [].
inline Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyFuncOptions& options = {}) {
  return ::ember::cross_entropy(input, target, options.reduction(), options.ignore_index(),
                                options.label_smoothing());
}

struct NLLLossFuncOptions {
  EMBER_ARG(Reduction, reduction) = Reduction::Mean;
  EMBER_ARG(int64_t, ignore_index) = -100;
};

// Negative log-likelihood of log-probabilities (e.g. log_softmax's output), same shapes as cross_entropy.
inline Tensor nll_loss(const Tensor& input, const Tensor& target, const NLLLossFuncOptions& options = {}) {
  return ::ember::nll_loss(input, target, options.reduction(), options.ignore_index());
}
inline Tensor nll_loss(const Tensor& input, const Tensor& target, Reduction reduction, int64_t ignore_index = -100) {
  return ::ember::nll_loss(input, target, reduction, ignore_index);
}

struct MSELossFuncOptions {
  EMBER_ARG(Reduction, reduction) = Reduction::Mean;
};

// Mean (or summed, or per-element) squared error; input and target have the same shape.
inline Tensor mse_loss(const Tensor& input, const Tensor& target, const MSELossFuncOptions& options = {}) {
  return ::ember::mse_loss(input, target, options.reduction());
}
inline Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  return ::ember::mse_loss(input, target, reduction);
}

}  // namespace functional
}  // namespace ember::nn
