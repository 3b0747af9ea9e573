// batch_norm and layer_norm: argument checks, the device switch, and their backward nodes.
#include "kernels/norm.h"

#include <string>

#include "kernels/cpu/norm.h"
#include "kernels/cuda/norm.h"
#include "runtime/autograd/node.h"
#include "runtime/cuda/cuda.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

// The dtype of saved statistics (Note [Normalisation kernel contract]).
DType stat_dtype(DType t) { return t == kFloat64 ? kFloat64 : kFloat32; }

// An optional per-channel (or per-element) parameter: same device and dtype as the input, the given shape.
void check_param(const char* op, const char* what, const Tensor& p, const Tensor& input, IntArrayRef shape) {
  if (!p.defined()) return;
  EMBER_CHECK(p.device() == input.device(), op, ": expected ", what, " on ", input.device(),
              " (the input's device), got ", p.device());
  EMBER_CHECK(p.dtype() == input.dtype(), op, ": expected ", what, " of dtype ", input.dtype(),
              " (the input's dtype), got ", p.dtype());
  EMBER_CHECK(p.sizes() == shape, op, ": expected ", what, " of shape ", shape, ", got ", p.sizes(),
              " (input shape ", input.sizes(), ")");
}

Tensor contiguous_nograd(const Tensor& t) {
  if (!t.defined() || t.is_contiguous()) return t;
  NoGradGuard no_grad;
  return t.contiguous();
}

// A tensor shaped like `like` for a kernel output, or undefined when not wanted.
Tensor maybe_empty(bool wanted, IntArrayRef sizes, const TensorOptions& options) {
  return wanted ? empty(sizes, options) : Tensor();
}

struct BatchNormBackward final : Node {
  SavedVariable input, weight, save_mean, save_invstd;
  bool training = true;
  std::string name() const override { return "NativeBatchNormBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor()};
    const Tensor x = input.unpack(this);
    const Tensor w = weight.unpack(this);
    const Tensor g = grads[0].contiguous();
    const Tensor mean = save_mean.unpack(this), invstd = save_invstd.unpack(this);
    const DimVector cshape{x.size(1)};
    Tensor gi = maybe_empty(needs_input_grad(0), x.sizes(), x.options());
    Tensor gw = maybe_empty(needs_input_grad(1), cshape, x.options());
    Tensor gb = maybe_empty(needs_input_grad(2), cshape, x.options());
    if (x.is_cuda())
      cuda::batch_norm_backward(g, x, w, mean, invstd, training, gi, gw, gb);
    else
      cpu::batch_norm_backward(g, x, w, mean, invstd, training, gi, gw, gb);
    return {gi, gw, gb};
  }
  void release_variables() override {
    input.reset();
    weight.reset();
    save_mean.reset();
    save_invstd.reset();
  }
};

struct LayerNormBackward final : Node {
  SavedVariable input, weight, mean, rstd;
  int64_t M = 0, N = 0;
  DimVector param_shape;
  std::string name() const override { return "NativeLayerNormBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor()};
    const Tensor x = input.unpack(this);
    const Tensor w = weight.unpack(this);
    const Tensor g = grads[0].contiguous();
    const Tensor m = mean.unpack(this), r = rstd.unpack(this);
    Tensor gi = maybe_empty(needs_input_grad(0), x.sizes(), x.options());
    Tensor gw = maybe_empty(needs_input_grad(1), param_shape, x.options());
    Tensor gb = maybe_empty(needs_input_grad(2), param_shape, x.options());
    if (M == 0 || N == 0) {  // nothing to normalise: every gradient is zero
      for (Tensor* t : {&gi, &gw, &gb})
        if (t->defined()) t->zero_();
      return {gi, gw, gb};
    }
    if (x.is_cuda())
      cuda::layer_norm_backward(g, x, m, r, w, M, N, gi, gw, gb);
    else
      cpu::layer_norm_backward(g, x, m, r, w, M, N, gi, gw, gb);
    return {gi, gw, gb};
  }
  void release_variables() override {
    input.reset();
    weight.reset();
    mean.reset();
    rstd.reset();
  }
};

void check_floating_input(const char* op, const Tensor& input) {
  EMBER_CHECK(input.defined(), op, ": got an undefined input");
  EMBER_CHECK(input.is_floating_point(), op, ": expected a floating-point input, got ", input.dtype(), " (shape ",
              input.sizes(), ")");
  if (input.is_cuda()) cuda::check_device(input.device(), op);
  EMBER_CHECK(input.is_cuda() || input.dtype() == kFloat32 || input.dtype() == kFloat64, op, ": ", input.dtype(),
              " inputs are supported on CUDA only; convert to float32 on ", input.device());
}

}  // namespace

Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  check_floating_input("batch_norm", input);
  EMBER_CHECK(input.dim() >= 2, "batch_norm: expected an input of shape [N, C] or [N, C, *], got shape ",
              input.sizes());
  const int64_t C = input.size(1);
  const DimVector cshape{C};
  check_param("batch_norm", "weight", weight, input, cshape);
  check_param("batch_norm", "bias", bias, input, cshape);
  check_param("batch_norm", "running_mean", running_mean, input, cshape);
  check_param("batch_norm", "running_var", running_var, input, cshape);
  EMBER_CHECK(training || (running_mean.defined() && running_var.defined()),
              "batch_norm: running_mean and running_var must be defined in evaluation mode (training=false)");
  const int64_t per_channel = C > 0 ? input.numel() / C : 0;
  if (training)
    EMBER_CHECK(per_channel > 1, "batch_norm: expected more than 1 value per channel when training, got input of shape ",
                input.sizes());
  // The running statistics are updated in place: refuse tensors that autograd tracks.
  for (const Tensor* r : {&running_mean, &running_var})
    if (training && r->defined()) {
      EMBER_CHECK(!r->requires_grad(), "batch_norm: running statistics must not require grad");
      EMBER_CHECK(r->is_contiguous(), "batch_norm: running statistics must be contiguous, got strides ",
                  r->strides());
    }

  const Tensor x = contiguous_nograd(input);
  const Tensor w = contiguous_nograd(weight), b = contiguous_nograd(bias);
  Tensor out = empty(x.sizes(), x.options());
  const TensorOptions sopts = x.options().dtype(stat_dtype(x.dtype()));
  Tensor save_mean = empty(cshape, sopts), save_invstd = empty(cshape, sopts);
  // Running stats are read in eval mode: a non-contiguous one is copied (only training writes them).
  const Tensor rm = training ? running_mean : contiguous_nograd(running_mean);
  const Tensor rv = training ? running_var : contiguous_nograd(running_var);
  if (x.is_cuda())
    cuda::batch_norm_forward(x, w, b, rm, rv, training, momentum, eps, out, save_mean, save_invstd);
  else
    cpu::batch_norm_forward(x, w, b, rm, rv, training, momentum, eps, out, save_mean, save_invstd);
  if (training) {
    if (running_mean.defined()) autograd::bump_version(running_mean);
    if (running_var.defined()) autograd::bump_version(running_var);
  }
  if (autograd::needs_grad({&input, &weight, &bias})) {
    auto node = std::make_shared<BatchNormBackward>();
    node->input = SavedVariable(x);
    node->weight = SavedVariable(w);
    node->save_mean = SavedVariable(save_mean);
    node->save_invstd = SavedVariable(save_invstd);
    node->training = training;
    autograd::record(node, {&out}, {&input, &weight, &bias});
  }
  return out;
}

Tensor layer_norm(const Tensor& input, IntArrayRef normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  check_floating_input("layer_norm", input);
  const int64_t nd = static_cast<int64_t>(normalized_shape.size());
  EMBER_CHECK(nd >= 1, "layer_norm: normalized_shape must have at least one dim, got ", normalized_shape);
  const int64_t lead = input.dim() - nd;
  EMBER_CHECK(lead >= 0 && input.sizes().slice(static_cast<size_t>(lead)) == normalized_shape,
              "layer_norm: expected an input whose trailing dims are normalized_shape ", normalized_shape,
              " (shape [*, ", normalized_shape, "]), got shape ", input.sizes());
  check_param("layer_norm", "weight", weight, input, normalized_shape);
  check_param("layer_norm", "bias", bias, input, normalized_shape);

  const Tensor x = contiguous_nograd(input);
  const Tensor w = contiguous_nograd(weight), b = contiguous_nograd(bias);
  int64_t N = 1;
  for (int64_t s : normalized_shape) N *= s;
  const int64_t M = N > 0 ? x.numel() / N : product(input.sizes().slice(0, static_cast<size_t>(lead)));
  Tensor out = empty(x.sizes(), x.options());
  const TensorOptions sopts = x.options().dtype(stat_dtype(x.dtype()));
  Tensor mean = empty({M}, sopts), rstd = empty({M}, sopts);
  if (M > 0 && N > 0) {
    if (x.is_cuda())
      cuda::layer_norm_forward(x, w, b, M, N, eps, out, mean, rstd);
    else
      cpu::layer_norm_forward(x, w, b, M, N, eps, out, mean, rstd);
  }
  if (autograd::needs_grad({&input, &weight, &bias})) {
    auto node = std::make_shared<LayerNormBackward>();
    node->input = SavedVariable(x);
    node->weight = SavedVariable(w);
    node->mean = SavedVariable(mean);
    node->rstd = SavedVariable(rstd);
    node->M = M;
    node->N = N;
    node->param_shape = DimVector(normalized_shape);
    autograd::record(node, {&out}, {&input, &weight, &bias});
  }
  return out;
}

}  // namespace ember
