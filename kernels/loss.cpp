// cross_entropy, nll_loss and mse_loss: argument checks, the device switch, and the backward node.
#include "kernels/loss.h"

#include <limits>
#include <string>

#include "kernels/cpu/loss.h"
#include "kernels/cuda/loss.h"
#include "runtime/autograd/node.h"
#include "runtime/cuda/cuda.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

DType stat_dtype(DType t) { return t == kFloat64 ? kFloat64 : kFloat32; }

struct ClassLossBackward final : Node {
  SavedVariable input, target, lse, count;  // input: the contiguous [N, C, *] the kernel read
  DimVector input_sizes;                   // the caller's shape ([C] when unbatched)
  LossReduction reduction = LossReduction::Mean;
  int64_t ignore_index = -100;
  double smoothing = 0.0;
  bool log_probs = false;
  std::string name() const override { return log_probs ? "NllLossBackward" : "CrossEntropyLossBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor x = input.unpack(this);
    const Tensor g = grads[0].contiguous();
    Tensor gi = empty(x.sizes(), x.options());
    if (x.numel() > 0) {
      const Tensor t = target.unpack(this), l = lse.unpack(this), c = count.unpack(this);
      if (x.is_cuda())
        cuda::class_loss_backward(g, x, t, l, c, reduction, ignore_index, smoothing, log_probs, gi);
      else
        cpu::class_loss_backward(g, x, t, l, c, reduction, ignore_index, smoothing, log_probs, gi);
    }
    return {gi.view(input_sizes)};
  }
  void release_variables() override {
    input.reset();
    target.reset();
    lse.reset();
    count.reset();
  }
};

Tensor class_loss(const char* op, const Tensor& input, const Tensor& target, LossReduction reduction,
                  int64_t ignore_index, double smoothing, bool log_probs) {
  EMBER_CHECK(input.defined() && target.defined(), op, ": got an undefined tensor");
  EMBER_CHECK(input.is_floating_point(), op, ": expected a floating-point input, got ", input.dtype(),
              " (shape ", input.sizes(), ")");
  EMBER_CHECK(input.is_cuda() || input.dtype() == kFloat32 || input.dtype() == kFloat64, op, ": ", input.dtype(),
              " inputs are supported on CUDA only; convert to float32 on ", input.device());
  EMBER_CHECK(target.dtype() == kInt64, op, ": expected target of dtype int64 (class indices), got ",
              target.dtype(), " (target shape ", target.sizes(), ")");
  EMBER_CHECK(input.device() == target.device(), op, ": expected input and target on the same device, got ",
              input.device(), " and ", target.device());
  if (input.is_cuda()) cuda::check_device(input.device(), op);
  EMBER_CHECK(input.dim() >= 1, op, ": expected an input of shape [C], [N, C] or [N, C, d1, ...], got shape ",
              input.sizes());
  EMBER_CHECK(smoothing >= 0.0 && smoothing <= 1.0, op, ": label_smoothing must be in [0, 1], got ", smoothing);

  // Unbatched [C] input with a 0-d target: a batch of one.
  const bool unbatched = input.dim() == 1;
  if (unbatched) {
    EMBER_CHECK(target.dim() == 0, op, ": an unbatched input of shape ", input.sizes(),
                " expects a 0-d target, got target shape ", target.sizes());
  } else {
    EMBER_CHECK(target.dim() >= 1 && target.size(0) == input.size(0), op, ": input batch size ", input.size(0),
                " does not match target batch size ", target.dim() >= 1 ? target.size(0) : int64_t{0},
                " (input shape ", input.sizes(), ", target shape ", target.sizes(), ")");
    DimVector expected{input.size(0)};
    for (int64_t d = 2; d < input.dim(); ++d) expected.push_back(input.size(d));
    EMBER_CHECK(target.sizes() == expected.ref(), op, ": expected target of shape ", expected,
                " for input of shape ", input.sizes(), " ([N, C, d1, ...] -> [N, d1, ...]), got target shape ",
                target.sizes());
  }

  Tensor x, t;
  {
    NoGradGuard no_grad;
    x = unbatched ? input.reshape({1, input.size(0)}) : input.contiguous();
    t = unbatched ? target.reshape({1}) : target.contiguous();
  }
  const TensorOptions sopts = x.options().dtype(stat_dtype(x.dtype()));
  const int64_t rows = t.numel();
  Tensor out = reduction == LossReduction::None ? empty(target.sizes(), x.options()) : empty({}, x.options());
  Tensor lse = log_probs ? Tensor() : empty({rows}, sopts);
  Tensor count = empty({}, sopts);
  if (x.numel() == 0 || rows == 0) {
    // No positions (or no classes with nothing to pick): sums are 0, a mean is 0 / 0.
    NoGradGuard no_grad;
    EMBER_CHECK(rows == 0, op, ": target of shape ", target.sizes(), " indexes an input with 0 classes (shape ",
                input.sizes(), ")");
    count.zero_();
    if (reduction == LossReduction::Mean)
      out.fill_(std::numeric_limits<double>::quiet_NaN());
    else
      out.zero_();
  } else if (x.is_cuda()) {
    cuda::class_loss_forward(x, t, reduction, ignore_index, smoothing, log_probs, out, lse, count);
  } else {
    cpu::class_loss_forward(x, t, reduction, ignore_index, smoothing, log_probs, out, lse, count);
  }
  if (autograd::needs_grad(input)) {
    auto node = std::make_shared<ClassLossBackward>();
    node->input = SavedVariable(x);
    node->target = SavedVariable(t);
    node->lse = SavedVariable(lse);
    node->count = SavedVariable(count);
    node->input_sizes = input.sizes();
    node->reduction = reduction;
    node->ignore_index = ignore_index;
    node->smoothing = smoothing;
    node->log_probs = log_probs;
    autograd::record(node, {&out}, {&input});
  }
  return out;
}

}  // namespace

Tensor cross_entropy(const Tensor& input, const Tensor& target, LossReduction reduction, int64_t ignore_index,
                     double label_smoothing) {
  return class_loss("cross_entropy", input, target, reduction, ignore_index, label_smoothing, false);
}

Tensor nll_loss(const Tensor& input, const Tensor& target, LossReduction reduction, int64_t ignore_index) {
  return class_loss("nll_loss", input, target, reduction, ignore_index, 0.0, true);
}

Tensor mse_loss(const Tensor& input, const Tensor& target, LossReduction reduction) {
  EMBER_CHECK(input.defined() && target.defined(), "mse_loss: got an undefined tensor");
  EMBER_CHECK(input.sizes() == target.sizes(), "mse_loss: expected input and target of the same shape, got ",
              input.sizes(), " and ", target.sizes());
  EMBER_CHECK(input.device() == target.device(), "mse_loss: expected input and target on the same device, got ",
              input.device(), " and ", target.device());
  EMBER_CHECK(input.dtype() == target.dtype() && input.is_floating_point(),
              "mse_loss: expected floating-point input and target of one dtype, got ", input.dtype(), " and ",
              target.dtype());
  const Tensor d = sub(input, target);
  const Tensor sq = mul(d, d);
  switch (reduction) {
    case LossReduction::None: return sq;
    case LossReduction::Sum: return sum(sq);
    case LossReduction::Mean: return mean(sq);
  }
  EMBER_THROW("mse_loss: unknown reduction");
}

}  // namespace ember
