// nn::MaxPool2d, nn::AvgPool2d, nn::AdaptiveAvgPool2d: pooling layers with PyTorch's defaults and reprs.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <tuple>

#include "nn/cloneable.h"
#include "nn/expanding_array.h"
#include "nn/holder.h"
#include "nn/options.h"

namespace ember::nn {

// MaxPool2dOptions(k).stride(s).padding(p).dilation(d).ceil_mode(c); stride defaults to kernel_size.
struct MaxPool2dOptions {
  MaxPool2dOptions(ExpandingArray<2> kernel_size) : kernel_size_(kernel_size), stride_(kernel_size) {}  // NOLINT
  EMBER_ARG(ExpandingArray<2>, kernel_size);
  EMBER_ARG(ExpandingArray<2>, stride);
  EMBER_ARG(ExpandingArray<2>, padding) = 0;
  EMBER_ARG(ExpandingArray<2>, dilation) = 1;
  EMBER_ARG(bool, ceil_mode) = false;
};

class MaxPool2dImpl : public Cloneable<MaxPool2dImpl> {
 public:
  explicit MaxPool2dImpl(ExpandingArray<2> kernel_size) : MaxPool2dImpl(MaxPool2dOptions(kernel_size)) {}
  explicit MaxPool2dImpl(const MaxPool2dOptions& options);
  void reset() override {}
  Tensor forward(const Tensor& input);
  // Values and argmax indices (flat h * W + w within each input plane).
  std::tuple<Tensor, Tensor> forward_with_indices(const Tensor& input);
  // MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  void pretty_print(std::ostream& os) const override;
  MaxPool2dOptions options;
};
EMBER_MODULE(MaxPool2d);

// AvgPool2dOptions(k).stride(s).padding(p).ceil_mode(c).count_include_pad(b).divisor_override(d).
struct AvgPool2dOptions {
  AvgPool2dOptions(ExpandingArray<2> kernel_size) : kernel_size_(kernel_size), stride_(kernel_size) {}  // NOLINT
  EMBER_ARG(ExpandingArray<2>, kernel_size);
  EMBER_ARG(ExpandingArray<2>, stride);
  EMBER_ARG(ExpandingArray<2>, padding) = 0;
  EMBER_ARG(bool, ceil_mode) = false;
  EMBER_ARG(bool, count_include_pad) = true;
  EMBER_ARG(std::optional<int64_t>, divisor_override) = std::nullopt;
};

class AvgPool2dImpl : public Cloneable<AvgPool2dImpl> {
 public:
  explicit AvgPool2dImpl(ExpandingArray<2> kernel_size) : AvgPool2dImpl(AvgPool2dOptions(kernel_size)) {}
  explicit AvgPool2dImpl(const AvgPool2dOptions& options);
  void reset() override {}
  Tensor forward(const Tensor& input);
  // AvgPool2d(kernel_size=2, stride=2, padding=0) -- PyTorch's repr shows only these three.
  void pretty_print(std::ostream& os) const override;
  AvgPool2dOptions options;
};
EMBER_MODULE(AvgPool2d);

struct AdaptiveAvgPool2dOptions {
  AdaptiveAvgPool2dOptions(ExpandingArray<2> output_size) : output_size_(output_size) {}  // NOLINT
  EMBER_ARG(ExpandingArray<2>, output_size);
};

class AdaptiveAvgPool2dImpl : public Cloneable<AdaptiveAvgPool2dImpl> {
 public:
  explicit AdaptiveAvgPool2dImpl(ExpandingArray<2> output_size)
      : AdaptiveAvgPool2dImpl(AdaptiveAvgPool2dOptions(output_size)) {}
  explicit AdaptiveAvgPool2dImpl(const AdaptiveAvgPool2dOptions& options);
  void reset() override {}
  Tensor forward(const Tensor& input);
  // AdaptiveAvgPool2d(output_size=3) or AdaptiveAvgPool2d(output_size=(3, 4))
  void pretty_print(std::ostream& os) const override;
  AdaptiveAvgPool2dOptions options;
};
EMBER_MODULE(AdaptiveAvgPool2d);

}  // namespace ember::nn
