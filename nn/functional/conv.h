// nn::functional convolution and pooling: conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d.
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>

#include "kernels/conv.h"
#include "kernels/ops.h"
#include "kernels/pool.h"
#include "nn/expanding_array.h"
#include "nn/options.h"

namespace ember::nn::functional {

// Each op comes in LibTorch's options spelling, `conv2d(x, w, Conv2dFuncOptions().stride(2).padding(1))`,
// and with plain arguments, `conv2d(x, w, b, /*stride=*/2, /*padding=*/1)`. Spatial arguments take one
// value for both dims or {h, w}. Semantics (and errors) are the ops' in kernels/conv.h and kernels/pool.h.

// ---- conv2d ----------------------------------------------------------------------------------------

struct Conv2dFuncOptions {
  EMBER_ARG(Tensor, bias);
  EMBER_ARG(ExpandingArray<2>, stride) = 1;
  EMBER_ARG(ExpandingArray<2>, padding) = 0;
  EMBER_ARG(ExpandingArray<2>, dilation) = 1;
  EMBER_ARG(int64_t, groups) = 1;
};

// input [N, C_in, H, W] or [C_in, H, W], weight [C_out, C_in / groups, kH, kW].
inline Tensor conv2d(const Tensor& input, const Tensor& weight, const Conv2dFuncOptions& options = {}) {
  return ember::conv2d(input, weight, options.bias(), options.stride(), options.padding(), options.dilation(),
                       options.groups());
}
// The bias may be an undefined Tensor ({}): no bias.
inline Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, IntArrayRef stride = 1,
                     IntArrayRef padding = 0, IntArrayRef dilation = 1, int64_t groups = 1) {
  return ember::conv2d(input, weight, bias, stride, padding, dilation, groups);
}

// ---- max_pool2d ------------------------------------------------------------------------------------

struct MaxPool2dFuncOptions {
  // stride defaults to kernel_size, as PyTorch's stride=None.
  MaxPool2dFuncOptions(ExpandingArray<2> kernel_size) : kernel_size_(kernel_size), stride_(kernel_size) {}  // NOLINT
  EMBER_ARG(ExpandingArray<2>, kernel_size);
  EMBER_ARG(ExpandingArray<2>, stride);
  EMBER_ARG(ExpandingArray<2>, padding) = 0;
  EMBER_ARG(ExpandingArray<2>, dilation) = 1;
  EMBER_ARG(bool, ceil_mode) = false;
};

inline Tensor max_pool2d(const Tensor& input, const MaxPool2dFuncOptions& o) {
  return ember::max_pool2d(input, o.kernel_size(), o.stride(), o.padding(), o.dilation(), o.ceil_mode());
}
// An empty stride ({}) means stride = kernel_size.
inline Tensor max_pool2d(const Tensor& input, IntArrayRef kernel_size, IntArrayRef stride = {}, IntArrayRef padding = 0,
                         IntArrayRef dilation = 1, bool ceil_mode = false) {
  return ember::max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode);
}
// Values and the argmax of each window (flat h * W + w within its input plane, int64).
inline std::tuple<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, const MaxPool2dFuncOptions& o) {
  return ember::max_pool2d_with_indices(input, o.kernel_size(), o.stride(), o.padding(), o.dilation(), o.ceil_mode());
}

// ---- avg_pool2d ------------------------------------------------------------------------------------

struct AvgPool2dFuncOptions {
  AvgPool2dFuncOptions(ExpandingArray<2> kernel_size) : kernel_size_(kernel_size), stride_(kernel_size) {}  // NOLINT
  EMBER_ARG(ExpandingArray<2>, kernel_size);
  EMBER_ARG(ExpandingArray<2>, stride);
  EMBER_ARG(ExpandingArray<2>, padding) = 0;
  EMBER_ARG(bool, ceil_mode) = false;
  EMBER_ARG(bool, count_include_pad) = true;
  EMBER_ARG(std::optional<int64_t>, divisor_override) = std::nullopt;
};

inline Tensor avg_pool2d(const Tensor& input, const AvgPool2dFuncOptions& o) {
  return ember::avg_pool2d(input, o.kernel_size(), o.stride(), o.padding(), o.ceil_mode(), o.count_include_pad(),
                           o.divisor_override());
}
inline Tensor avg_pool2d(const Tensor& input, IntArrayRef kernel_size, IntArrayRef stride = {}, IntArrayRef padding = 0,
                         bool ceil_mode = false, bool count_include_pad = true,
                         std::optional<int64_t> divisor_override = std::nullopt) {
  return ember::avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override);
}

// ---- adaptive_avg_pool2d ---------------------------------------------------------------------------

struct AdaptiveAvgPool2dFuncOptions {
  AdaptiveAvgPool2dFuncOptions(ExpandingArray<2> output_size) : output_size_(output_size) {}  // NOLINT
  EMBER_ARG(ExpandingArray<2>, output_size);
};

inline Tensor adaptive_avg_pool2d(const Tensor& input, const AdaptiveAvgPool2dFuncOptions& o) {
  return ember::adaptive_avg_pool2d(input, o.output_size());
}
inline Tensor adaptive_avg_pool2d(const Tensor& input, IntArrayRef output_size) {
  return ember::adaptive_avg_pool2d(input, output_size);
}

}  // namespace ember::nn::functional
