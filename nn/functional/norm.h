// nn::functional normalisation: batch_norm, layer_norm.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "kernels/norm.h"
#include "nn/options.h"

namespace ember::nn::functional {

// Options of batch_norm (LibTorch's F::BatchNormFuncOptions): eval mode by default, as F.batch_norm.
struct BatchNormFuncOptions {
  EMBER_ARG(Tensor, weight) = {};
  EMBER_ARG(Tensor, bias) = {};
  EMBER_ARG(bool, training) = false;
  EMBER_ARG(double, momentum) = 0.1;
  EMBER_ARG(double, eps) = 1e-5;
};

// Batch normalisation over dim 1 of [N, C] / [N, C, *] (see ember::batch_norm in kernels/norm.h):
// training uses batch statistics and updates the running ones in place (unbiased variance).
inline Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                         const BatchNormFuncOptions& options = {}) {
  return ::ember::batch_norm(input, running_mean, running_var, options.weight(), options.bias(), options.training(),
                             options.momentum(), options.eps());
}
inline Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                         const Tensor& weight, const Tensor& bias, bool training = false, double momentum = 0.1,
                         double eps = 1e-5) {
  return ::ember::batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps);
}

// Options of layer_norm (LibTorch's F::LayerNormFuncOptions).
struct LayerNormFuncOptions {
  explicit LayerNormFuncOptions(std::vector<int64_t> normalized_shape)
      : normalized_shape_(std::move(normalized_shape)) {}
  EMBER_ARG(std::vector<int64_t>, normalized_shape);
  EMBER_ARG(Tensor, weight) = {};
  EMBER_ARG(Tensor, bias) = {};
  EMBER_ARG(double, eps) = 1e-5;
};

// Normalises over the trailing dims normalized_shape (see ember::layer_norm in kernels/norm.h).
inline Tensor layer_norm(const Tensor& input, const LayerNormFuncOptions& options) {
  return ::ember::layer_norm(input, options.normalized_shape(), options.weight(), options.bias(), options.eps());
}
inline Tensor layer_norm(const Tensor& input, IntArrayRef normalized_shape, const Tensor& weight = {},
                         const Tensor& bias = {}, double eps = 1e-5) {
  return ::ember::layer_norm(input, normalized_shape, weight, bias, eps);
}

}  // namespace ember::nn::functional
