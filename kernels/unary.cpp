// Element-wise unary math: neg, exp, log, sqrt, ..., activations (relu, sigmoid, tanh, gelu), pow(scalar),
// clamp and the in-place clamp_/relu_, each with its backward node.
#include <cmath>

#include "kernels/elementwise.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

const char* backward_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "NegBackward";
    case UnaryOp::Exp: return "ExpBackward";
    case UnaryOp::Log: return "LogBackward";
    case UnaryOp::Log1p: return "Log1pBackward";
    case UnaryOp::Sqrt: return "SqrtBackward";
    case UnaryOp::Rsqrt: return "RsqrtBackward";
    case UnaryOp::Square: return "SquareBackward";
    case UnaryOp::Reciprocal: return "ReciprocalBackward";
    case UnaryOp::Abs: return "AbsBackward";
    case UnaryOp::Sign: return "SignBackward";
    case UnaryOp::Sin: return "SinBackward";
    case UnaryOp::Cos: return "CosBackward";
    case UnaryOp::Relu: return "ReluBackward";
    case UnaryOp::Sigmoid: return "SigmoidBackward";
    case UnaryOp::Tanh: return "TanhBackward";
    case UnaryOp::Gelu: return "GeluBackward";
    case UnaryOp::GeluTanh: return "GeluBackward";
    case UnaryOp::Pow:
    case UnaryOp::IntPow: return "PowBackward";
    case UnaryOp::Clamp:
    case UnaryOp::ClampMin:
    case UnaryOp::ClampMax: return "ClampBackward";
  }
  return "UnaryBackward";
}

// Whether the gradient formula reads the forward output (else the input, or nothing).
bool backward_uses_output(UnaryOp op) {
  switch (op) {
    case UnaryOp::Exp:
    case UnaryOp::Sqrt:
    case UnaryOp::Rsqrt:
    case UnaryOp::Reciprocal:
    case UnaryOp::Relu:
    case UnaryOp::Sigmoid:
    case UnaryOp::Tanh: return true;
    default: return false;
  }
}
bool backward_uses_input(UnaryOp op) {
  return !backward_uses_output(op) && op != UnaryOp::Neg && op != UnaryOp::Sign;
}

// The backward of every unary op but clamp: `saved` is the output or the input (see above).
struct UnaryBackward final : Node {
  UnaryOp op = UnaryOp::Neg;
  SavedVariable saved;
  double p = 0;  // pow's exponent
  std::string name() const override { return backward_name(op); }
  void release_variables() override { saved.reset(); }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor s = saved.unpack(this);
    switch (op) {
      case UnaryOp::Neg: return {neg(g)};
      case UnaryOp::Exp: return {g * s};
      case UnaryOp::Log: return {g / s};
      case UnaryOp::Log1p: return {g / (s + 1)};
      case UnaryOp::Sqrt: return {g / (s * 2)};
      case UnaryOp::Rsqrt: return {g * (square(s) * s) * -0.5};
      case UnaryOp::Square: return {g * (s * 2)};
      case UnaryOp::Reciprocal: return {neg(g * square(s))};
      case UnaryOp::Abs: return {g * sign(s)};
      case UnaryOp::Sign: return {zeros_like(g)};
      case UnaryOp::Sin: return {g * cos(s)};
      case UnaryOp::Cos: return {neg(g * sin(s))};
      case UnaryOp::Relu: return {ew::fused_backward(BinaryOp::ReluBackward, g, s)};
      case UnaryOp::Sigmoid: return {ew::fused_backward(BinaryOp::SigmoidBackward, g, s)};
      case UnaryOp::Tanh: return {ew::fused_backward(BinaryOp::TanhBackward, g, s)};
      case UnaryOp::Gelu: return {ew::fused_backward(BinaryOp::GeluBackward, g, s)};
      case UnaryOp::GeluTanh: return {ew::fused_backward(BinaryOp::GeluTanhBackward, g, s)};
      case UnaryOp::Pow:
      case UnaryOp::IntPow:
        if (p == 0) return {zeros_like(g)};
        if (p == 1) return {g};
        if (p == 2) return {g * (s * 2)};
        return {g * (pow(s, p - 1) * p)};
      default: break;
    }
    EMBER_ASSERT(false, "UnaryBackward: unexpected op ", op_name(op));
    return {Tensor()};
  }
};

// The gradient passes where lo <= x <= hi. `mask` is saved by clamp_ (whose input is overwritten),
// `x` by clamp.
struct ClampBackward final : Node {
  SavedVariable x, mask;
  std::optional<Scalar> lo, hi;
  std::string name() const override { return "ClampBackward"; }
  void release_variables() override {
    x.reset();
    mask.reset();
  }
  tensor_list apply(tensor_list&& grads) override;
};

Tensor in_range_mask(const Tensor& x, const std::optional<Scalar>& lo, const std::optional<Scalar>& hi) {
  if (lo && hi) return logical_and(ge(x, *lo), le(x, *hi));
  return lo ? ge(x, *lo) : le(x, *hi);
}

tensor_list ClampBackward::apply(tensor_list&& grads) {
  const Tensor& g = grads[0];
  if (!g.defined() || !needs_input_grad(0)) return {Tensor()};
  const Tensor m = mask.defined() ? mask.unpack(this) : in_range_mask(x.unpack(this), lo, hi);
  return {where(m, g, 0)};
}

void record_unary(UnaryOp op, const Tensor& input, const Tensor& out, double p = 0) {
  auto node = std::make_shared<UnaryBackward>();
  node->op = op;
  node->p = p;
  if (backward_uses_output(op))
    node->saved = SavedVariable(out);
  else if (backward_uses_input(op))
    node->saved = SavedVariable(input);
  autograd::record(node, {&out}, {&input});
}

Tensor unary_forward(UnaryOp op, const Tensor& t, const Scalar& p0 = 0, const Scalar& p1 = 0) {
  Tensor out = empty(t.sizes(), t.options());
  ew::run_unary(op, t, out, p0, p1);
  return out;
}

// An op without parameters; float_only ops refuse integer tensors, all refuse bool.
Tensor unary_op(UnaryOp op, bool float_only, const Tensor& t) {
  const char* name = op_name(op);
  if (float_only)
    ew::check_floating(name, t);
  else
    ew::check_arith(name, t);
  Tensor out = unary_forward(op, t);
  if (autograd::needs_grad(t)) record_unary(op, t, out);
  return out;
}

// The clamp variant for the given bounds, with its parameters.
UnaryOp clamp_kind(const std::optional<Scalar>& lo, const std::optional<Scalar>& hi, Scalar& p0, Scalar& p1) {
  if (lo && hi) {
    p0 = *lo;
    p1 = *hi;
    return UnaryOp::Clamp;
  }
  if (lo) {
    p0 = *lo;
    return UnaryOp::ClampMin;
  }
  p0 = *hi;
  return UnaryOp::ClampMax;
}

bool has_floating_bound(const std::optional<Scalar>& lo, const std::optional<Scalar>& hi) {
  return (lo && lo->is_floating_point()) || (hi && hi->is_floating_point());
}

}  // namespace

Tensor neg(const Tensor& t) { return unary_op(UnaryOp::Neg, false, t); }
Tensor exp(const Tensor& t) { return unary_op(UnaryOp::Exp, true, t); }
Tensor log(const Tensor& t) { return unary_op(UnaryOp::Log, true, t); }
Tensor log1p(const Tensor& t) { return unary_op(UnaryOp::Log1p, true, t); }
Tensor sqrt(const Tensor& t) { return unary_op(UnaryOp::Sqrt, true, t); }
Tensor rsqrt(const Tensor& t) { return unary_op(UnaryOp::Rsqrt, true, t); }
Tensor square(const Tensor& t) { return unary_op(UnaryOp::Square, false, t); }
Tensor reciprocal(const Tensor& t) { return unary_op(UnaryOp::Reciprocal, true, t); }
Tensor abs(const Tensor& t) { return unary_op(UnaryOp::Abs, false, t); }
Tensor sign(const Tensor& t) { return unary_op(UnaryOp::Sign, false, t); }
Tensor sin(const Tensor& t) { return unary_op(UnaryOp::Sin, true, t); }
Tensor cos(const Tensor& t) { return unary_op(UnaryOp::Cos, true, t); }
Tensor relu(const Tensor& t) { return unary_op(UnaryOp::Relu, false, t); }
Tensor sigmoid(const Tensor& t) { return unary_op(UnaryOp::Sigmoid, true, t); }
Tensor tanh(const Tensor& t) { return unary_op(UnaryOp::Tanh, true, t); }

Tensor gelu(const Tensor& t, const std::string& approximate) {
  if (approximate == "none") return unary_op(UnaryOp::Gelu, true, t);
  if (approximate == "tanh") return unary_op(UnaryOp::GeluTanh, true, t);
  EMBER_THROW("gelu: approximate must be \"none\" or \"tanh\", got \"", approximate, "\"");
}

Tensor pow(const Tensor& t, const Scalar& exponent) {
  ew::check_arith("pow", t);
  if (!t.is_floating_point()) {
    if (!exponent.is_integral()) return pow(t.to(kFloat32), exponent);
    EMBER_CHECK(exponent.to_int() >= 0, "pow: integers to negative integer powers are not allowed (a ", t.dtype(),
                " tensor to the power ", exponent, ")");
    return unary_forward(UnaryOp::IntPow, t, exponent);  // integer tensors never require grad
  }
  // Fast cases run cheaper kernels than std::pow (and are exact where pow may not be).
  const double e = exponent.to_double();
  Tensor out;
  if (e == 2.0) {
    out = unary_forward(UnaryOp::Square, t);
  } else if (e == 0.5) {
    out = unary_forward(UnaryOp::Sqrt, t);
  } else if (e == -1.0) {
    out = unary_forward(UnaryOp::Reciprocal, t);
  } else if (e == 1.0) {
    NoGradGuard no_grad;
    out = t.clone();
  } else if (e == 0.0) {
    out = ones(t.sizes(), t.options());
  } else {
    out = unary_forward(UnaryOp::Pow, t, exponent);
  }
  if (autograd::needs_grad(t)) record_unary(UnaryOp::Pow, t, out, e);
  return out;
}

Tensor clamp(const Tensor& t_in, std::optional<Scalar> lo, std::optional<Scalar> hi) {
  EMBER_CHECK(lo || hi, "clamp: at least one of the bounds (lo, hi) must be given");
  ew::check_arith("clamp", t_in);
  Tensor promoted;
  const Tensor& t = !t_in.is_floating_point() && has_floating_bound(lo, hi) ? (promoted = t_in.to(kFloat32)) : t_in;
  Scalar p0, p1;
  const UnaryOp kind = clamp_kind(lo, hi, p0, p1);
  Tensor out = unary_forward(kind, t, p0, p1);
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<ClampBackward>();
    node->x = SavedVariable(t);
    node->lo = lo;
    node->hi = hi;
    autograd::record(node, {&out}, {&t});
  }
  return out;
}

Tensor clamp_min(const Tensor& t, const Scalar& lo) { return clamp(t, lo, std::nullopt); }
Tensor clamp_max(const Tensor& t, const Scalar& hi) { return clamp(t, std::nullopt, hi); }

Tensor& clamp_(Tensor& self, std::optional<Scalar> lo, std::optional<Scalar> hi) {
  EMBER_CHECK(lo || hi, "clamp_: at least one of the bounds (lo, hi) must be given");
  ew::check_arith("clamp_", self);
  EMBER_CHECK(self.is_floating_point() || !has_floating_bound(lo, hi), "clamp_: a non-integral bound cannot be "
              "applied in place to the ", self.dtype(), " tensor (the result would be float32)");
  autograd::check_inplace("clamp_", self);
  const bool record = autograd::needs_grad(self);
  Tensor mask;  // the input is about to be overwritten: keep where the gradient passes
  if (record) {
    NoGradGuard no_grad;
    mask = in_range_mask(self, lo, hi);
  }
  Scalar p0, p1;
  ew::run_unary(clamp_kind(lo, hi, p0, p1), self, self, p0, p1);
  autograd::bump_version(self);
  if (record) {
    auto node = std::make_shared<ClampBackward>();
    node->mask = SavedVariable(mask);
    autograd::rebase_history(self, node, {&self});
  }
  return self;
}

Tensor& relu_(Tensor& self) {
  ew::check_arith("relu_", self);
  autograd::check_inplace("relu_", self);
  ew::run_unary(UnaryOp::Relu, self, self);
  autograd::bump_version(self);
  if (autograd::needs_grad(self)) {
    auto node = std::make_shared<UnaryBackward>();
    node->op = UnaryOp::Relu;
    node->saved = SavedVariable(self);  // the output, at its new version
    autograd::rebase_history(self, node, {&self});
  }
  return self;
}

}  // namespace ember
