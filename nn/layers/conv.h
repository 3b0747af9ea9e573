// nn::Conv2d: 2-D convolution layer with PyTorch's defaults and initialisation.
#pragma once

#include <cstdint>
#include <iosfwd>

#include "nn/cloneable.h"
#include "nn/expanding_array.h"
#include "nn/holder.h"
#include "nn/options.h"

namespace ember::nn {

// Conv2dOptions(in, out, k).stride(s).padding(p).dilation(d).groups(g).bias(b); spatial values take one
// int for both dims or {h, w}. Zero padding only (PyTorch's padding_mode="zeros").
struct Conv2dOptions {
  Conv2dOptions(int64_t in_channels, int64_t out_channels, ExpandingArray<2> kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  EMBER_ARG(int64_t, in_channels);
  EMBER_ARG(int64_t, out_channels);
  EMBER_ARG(ExpandingArray<2>, kernel_size);
  EMBER_ARG(ExpandingArray<2>, stride) = 1;
  EMBER_ARG(ExpandingArray<2>, padding) = 0;
  EMBER_ARG(ExpandingArray<2>, dilation) = 1;
  EMBER_ARG(int64_t, groups) = 1;
  EMBER_ARG(bool, bias) = true;
};

class Conv2dImpl : public Cloneable<Conv2dImpl> {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, ExpandingArray<2> kernel_size);
  explicit Conv2dImpl(const Conv2dOptions& options);

  // Registers weight [out, in / groups, kH, kW] (and bias [out]) and initialises them.
  void reset() override;
  // PyTorch's init: weight kaiming_uniform_(a = sqrt(5)), which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
  // fan_in = in / groups * kH * kW, and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  void reset_parameters();
  // [N, in, H, W] (or [in, H, W]) -> [N, out, H_out, W_out].
  Tensor forward(const Tensor& input);
  // Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
  void pretty_print(std::ostream& os) const override;

  Conv2dOptions options;
  Tensor weight, bias;  // bias undefined when options.bias() is false
};
EMBER_MODULE(Conv2d);

}  // namespace ember::nn
