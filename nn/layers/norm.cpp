// BatchNorm1d/2d and LayerNorm: registration, initialisation, input checks, forward and printing.
#include "nn/layers/norm.h"

#include <ostream>

#include "nn/functional/norm.h"
#include "nn/init.h"
#include "nn/layers/repr.h"

namespace ember::nn {

template <class Derived>
BatchNormImplBase<Derived>::BatchNormImplBase(const BatchNormOptions& options_) : options(options_) {
  EMBER_CHECK(options.num_features() >= 0, Derived::kName, ": num_features must be non-negative, got ",
              options.num_features());
  reset();
}

template <class Derived>
void BatchNormImplBase<Derived>::reset() {
  NoGradGuard no_grad;
  const int64_t c = options.num_features();
  if (options.affine()) {
    weight = this->register_parameter("weight", empty({c}));
    bias = this->register_parameter("bias", empty({c}));
  } else {
    weight = Tensor();
    bias = Tensor();
  }
  if (options.track_running_stats()) {
    running_mean = this->register_buffer("running_mean", empty({c}));
    running_var = this->register_buffer("running_var", empty({c}));
    num_batches_tracked = this->register_buffer("num_batches_tracked", empty({}, kInt64));
  } else {
    running_mean = Tensor();
    running_var = Tensor();
    num_batches_tracked = Tensor();
  }
  reset_parameters();
}

template <class Derived>
void BatchNormImplBase<Derived>::reset_running_stats() {
  if (!options.track_running_stats()) return;
  NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

template <class Derived>
void BatchNormImplBase<Derived>::reset_parameters() {
  reset_running_stats();
  if (options.affine()) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

template <class Derived>
void BatchNormImplBase<Derived>::check_input(const Tensor& input) const {
  EMBER_CHECK(input.defined(), Derived::kName, ": got an undefined input");
  EMBER_CHECK(Derived::rank_ok(input.dim()), Derived::kName, ": expected ", Derived::kExpected, ", got ", input.dim(),
              "D input of shape ", input.sizes());
  EMBER_CHECK(input.size(1) == options.num_features(), Derived::kName, ": expected an input with ",
              options.num_features(), " channels (num_features) in dim 1, got shape ", input.sizes());
}

template <class Derived>
Tensor BatchNormImplBase<Derived>::forward(const Tensor& input) {
  check_input(input);
  double factor = 0.0;
  const bool training = this->is_training();
  if (training && options.track_running_stats()) {
    NoGradGuard no_grad;
    num_batches_tracked.add_(1);
    // momentum None: a cumulative average, which needs the count on the host (a sync on CUDA, as PyTorch).
    factor = options.momentum() ? *options.momentum() : 1.0 / num_batches_tracked.item<double>();
  }
  // As PyTorch: batch statistics in training, and in eval when no running statistics are tracked.
  const bool use_batch_stats = training || !running_mean.defined();
  return functional::batch_norm(input, running_mean, running_var, weight, bias, use_batch_stats, factor,
                                options.eps());
}

template <class Derived>
void BatchNormImplBase<Derived>::pretty_print(std::ostream& os) const {
  os << Derived::kName << "(" << options.num_features() << ", eps=" << detail::python_float(options.eps())
     << ", momentum=" << (options.momentum() ? detail::python_float(*options.momentum()) : std::string("None"))
     << ", affine=" << detail::python_bool(options.affine())
     << ", track_running_stats=" << detail::python_bool(options.track_running_stats()) << ")";
}

template class BatchNormImplBase<BatchNorm1dImpl>;
template class BatchNormImplBase<BatchNorm2dImpl>;

LayerNormImpl::LayerNormImpl(const LayerNormOptions& options_) : options(options_) {
  EMBER_CHECK(!options.normalized_shape().empty(), "LayerNorm: normalized_shape must have at least one dim");
  for (int64_t s : options.normalized_shape())
    EMBER_CHECK(s >= 0, "LayerNorm: normalized_shape must be non-negative, got ",
                detail::python_tuple(options.normalized_shape()));
  reset();
}

void LayerNormImpl::reset() {
  NoGradGuard no_grad;
  if (options.elementwise_affine()) {
    weight = register_parameter("weight", ember::empty(IntArrayRef(options.normalized_shape())));
    bias = register_parameter("bias", ember::empty(IntArrayRef(options.normalized_shape())));
  } else {
    weight = Tensor();
    bias = Tensor();
  }
  reset_parameters();
}

void LayerNormImpl::reset_parameters() {
  if (!options.elementwise_affine()) return;
  init::ones_(weight);
  init::zeros_(bias);
}

Tensor LayerNormImpl::forward(const Tensor& input) {
  const std::vector<int64_t>& shape = options.normalized_shape();
  const int64_t nd = static_cast<int64_t>(shape.size());
  EMBER_CHECK(input.defined() && input.dim() >= nd &&
                  input.sizes().slice(static_cast<size_t>(input.dim() - nd)) == IntArrayRef(shape),
              "LayerNorm: expected an input whose trailing dims are ", IntArrayRef(shape),
              " (normalized_shape), got shape ",
              input.defined() ? input.shape_str() : std::string("undefined"));
  return functional::layer_norm(input, shape, weight, bias, options.eps());
}

void LayerNormImpl::pretty_print(std::ostream& os) const {
  os << "LayerNorm(" << detail::python_tuple(options.normalized_shape()) << ", eps=" << detail::python_float(options.eps())
     << ", elementwise_affine=" << detail::python_bool(options.elementwise_affine()) << ")";
}

}  // namespace ember::nn
