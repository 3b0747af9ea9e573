// nn::functional linear (x @ W^T + b).
#pragma once

#include "kernels/ops.h"

namespace ember::nn::functional {

// input [*, in_features], weight [out_features, in_features], bias [out_features] (optional)
// -> [*, out_features]. A 2-D input is one GEMM with the bias fused (addmm: bias + x @ W^T); higher
// ranks fold their leading dims into rows (a view for contiguous inputs) and take the same path.
inline Tensor linear(const Tensor& input, const Tensor& weight, const Tensor& bias = {}) {
  EMBER_CHECK(input.defined() && weight.defined(), "linear: got an undefined tensor");
  EMBER_CHECK(weight.dim() == 2, "linear: expected a weight of shape [out_features, in_features], got shape ",
              weight.sizes());
  const int64_t in = weight.size(1), out = weight.size(0);
  EMBER_CHECK(input.dim() >= 1 && input.size(-1) == in, "linear: input of shape ", input.sizes(),
              " does not match weight of shape ", weight.sizes(), " (expected the last dim to be in_features = ", in,
              ")");
  EMBER_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == out), "linear: expected a bias of shape [",
              out, "], got shape ", bias.sizes());
  const Tensor wt = weight.t();
  if (input.dim() == 2) return bias.defined() ? addmm(bias, input, wt) : mm(input, wt);
  if (input.dim() == 1) {
    const Tensor y = matmul(input, wt);
    return bias.defined() ? add(y, bias) : y;
  }
  DimVector shape(input.sizes());
  shape.back() = out;
  const Tensor rows = input.reshape({product(input.sizes().slice(0, static_cast<size_t>(input.dim() - 1))), in});
  return (bias.defined() ? addmm(bias, rows, wt) : mm(rows, wt)).view(shape);
}

}  // namespace ember::nn::functional
