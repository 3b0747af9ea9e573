// nn::functional dropout.
#pragma once

#include "kernels/dropout.h"
#include "nn/options.h"

namespace ember::nn::functional {

struct DropoutFuncOptions {
  EMBER_ARG(double, p) = 0.5;
  EMBER_ARG(bool, training) = true;
  EMBER_ARG(bool, inplace) = false;
};

// Zeroes elements with probability p and scales the rest by 1 / (1 - p) when training; x itself otherwise.
inline Tensor dropout(const Tensor& input, double p = 0.5, bool training = true) {
  return ::ember::dropout(input, p, training);
}
inline Tensor dropout(Tensor input, const DropoutFuncOptions& options) {
  if (options.inplace()) return ::ember::dropout_(input, options.p(), options.training());
  return ::ember::dropout(input, options.p(), options.training());
}

}  // namespace ember::nn::functional
