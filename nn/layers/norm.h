// Normalisation layers: BatchNorm1d, BatchNorm2d (running statistics as buffers) and LayerNorm.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nn/cloneable.h"
#include "nn/holder.h"
#include "nn/options.h"

namespace ember::nn {

struct BatchNormOptions {
  BatchNormOptions(int64_t num_features) : num_features_(num_features) {}  // NOLINT: BatchNorm2d(32)
  EMBER_ARG(int64_t, num_features);
  EMBER_ARG(double, eps) = 1e-5;
  // nullopt: a cumulative moving average (momentum 1 / num_batches_tracked), as PyTorch's None.
  EMBER_ARG(std::optional<double>, momentum) = 0.1;
  EMBER_ARG(bool, affine) = true;
  EMBER_ARG(bool, track_running_stats) = true;
};

// What BatchNorm1d and BatchNorm2d share; Derived supplies the input-rank rule.
template <class Derived>
class BatchNormImplBase : public Cloneable<Derived> {
 public:
  explicit BatchNormImplBase(const BatchNormOptions& options);

  // Registers weight/bias (affine) and running_mean/running_var/num_batches_tracked (track_running_stats).
  void reset() override;
  // running_mean 0, running_var 1, num_batches_tracked 0.
  void reset_running_stats();
  // reset_running_stats(), weight 1, bias 0.
  void reset_parameters();
  // Training: batch statistics, running statistics updated (momentum, unbiased variance) and
  // num_batches_tracked incremented; eval: the running statistics (batch ones without tracking).
  Tensor forward(const Tensor& input);
  // BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
  void pretty_print(std::ostream& os) const override;

  BatchNormOptions options;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 protected:
  // Throws naming the layer, the expected and the actual shape.
  void check_input(const Tensor& input) const;
};

// Over [N, C] or [N, C, L].
class BatchNorm1dImpl : public BatchNormImplBase<BatchNorm1dImpl> {
 public:
  explicit BatchNorm1dImpl(int64_t num_features) : BatchNorm1dImpl(BatchNormOptions(num_features)) {}
  explicit BatchNorm1dImpl(const BatchNormOptions& options) : BatchNormImplBase(options) {}
  static constexpr const char* kName = "BatchNorm1d";
  static bool rank_ok(int64_t dim) { return dim == 2 || dim == 3; }
  static constexpr const char* kExpected = "2D or 3D input ([N, C] or [N, C, L])";
};
EMBER_MODULE(BatchNorm1d);

// Over [N, C, H, W].
class BatchNorm2dImpl : public BatchNormImplBase<BatchNorm2dImpl> {
 public:
  explicit BatchNorm2dImpl(int64_t num_features) : BatchNorm2dImpl(BatchNormOptions(num_features)) {}
  explicit BatchNorm2dImpl(const BatchNormOptions& options) : BatchNormImplBase(options) {}
  static constexpr const char* kName = "BatchNorm2d";
  static bool rank_ok(int64_t dim) { return dim == 4; }
  static constexpr const char* kExpected = "4D input ([N, C, H, W])";
};
EMBER_MODULE(BatchNorm2d);

struct LayerNormOptions {
  LayerNormOptions(std::vector<int64_t> normalized_shape)  // NOLINT: LayerNorm({d})
      : normalized_shape_(std::move(normalized_shape)) {}
  EMBER_ARG(std::vector<int64_t>, normalized_shape);
  EMBER_ARG(double, eps) = 1e-5;
  EMBER_ARG(bool, elementwise_affine) = true;
};

class LayerNormImpl : public Cloneable<LayerNormImpl> {
 public:
  explicit LayerNormImpl(const LayerNormOptions& options);
  explicit LayerNormImpl(std::vector<int64_t> normalized_shape)
      : LayerNormImpl(LayerNormOptions(std::move(normalized_shape))) {}

  // Registers weight and bias (of shape normalized_shape) when elementwise_affine.
  void reset() override;
  // weight 1, bias 0.
  void reset_parameters();
  // Normalises over the trailing dims normalized_shape.
  Tensor forward(const Tensor& input);
  // LayerNorm((4,), eps=1e-05, elementwise_affine=True)
  void pretty_print(std::ostream& os) const override;

  LayerNormOptions options;
  Tensor weight, bias;
};

// The holder; besides LayerNorm(LayerNormOptions({d}).eps(...)) it takes the shape directly: LayerNorm({d}).
class LayerNorm : public ModuleHolder<LayerNormImpl> {
 public:
  using ModuleHolder<LayerNormImpl>::ModuleHolder;
  using Impl_t = LayerNormImpl;
  LayerNorm(std::vector<int64_t> normalized_shape)  // NOLINT
      : ModuleHolder<LayerNormImpl>(std::make_shared<LayerNormImpl>(LayerNormOptions(std::move(normalized_shape)))) {}
  // LayerNorm({d}): an exact match for a braced list, so it beats the holder's forwarding constructor.
  LayerNorm(std::initializer_list<int64_t> normalized_shape)  // NOLINT
      : LayerNorm(std::vector<int64_t>(normalized_shape)) {}
};

}  // namespace ember::nn
