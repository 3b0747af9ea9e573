// dropout and dropout_: a Bernoulli mask from the device generator, scaled by 1 / (1 - p), and its backward.
#include "kernels/dropout.h"

#include <string>

#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

struct DropoutBackward final : Node {
  SavedVariable mask;  // already scaled by 1 / (1 - p)
  std::string name() const override { return "NativeDropoutBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined()) return {Tensor()};
    return {mul(grads[0], mask.unpack(this))};
  }
  void release_variables() override { mask.reset(); }
};

void check_dropout(const char* op, const Tensor& x, double p) {
  EMBER_CHECK(x.defined(), op, ": got an undefined tensor");
  EMBER_CHECK(p >= 0.0 && p <= 1.0, op, ": dropout probability has to be between 0 and 1, but got ", p);
  EMBER_CHECK(x.is_floating_point(), op, ": expected a floating-point input, got ", x.dtype());
}

// mask ~ Bernoulli(1 - p) / (1 - p) with x's shape, dtype and device; zeros when p == 1.
Tensor scaled_mask(const Tensor& x, double p) {
  NoGradGuard no_grad;
  Tensor mask = empty(x.sizes(), x.options());
  if (p == 1.0) {
    mask.zero_();
  } else {
    bernoulli_(mask, 1.0 - p);
    mask.mul_(1.0 / (1.0 - p));
  }
  return mask;
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training) {
  check_dropout("dropout", x, p);
  if (!training || p == 0.0) return x;
  const Tensor mask = scaled_mask(x, p);
  Tensor out;
  {
    NoGradGuard no_grad;
    out = mul(x, mask);
  }
  if (autograd::needs_grad(x)) {
    auto node = std::make_shared<DropoutBackward>();
    node->mask = SavedVariable(mask);
    autograd::record(node, {&out}, {&x});
  }
  return out;
}

Tensor& dropout_(Tensor& x, double p, bool training) {
  check_dropout("dropout_", x, p);
  if (!training || p == 0.0) return x;
  return x.mul_(scaled_mask(x, p));
}

}  // namespace ember
