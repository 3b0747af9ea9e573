// Element-wise binary arithmetic: add, sub, mul, div, rsub, rdiv, maximum, minimum, pow(tensor) and the
// in-place add_/sub_/mul_/div_, with NumPy broadcasting and their backward nodes.
//
// Note [Element-wise dtype rules]
// Tensor-tensor arithmetic needs one dtype (an error names both otherwise); bool tensors are refused.
// Integer tensors keep their dtype for add/sub/mul/maximum/minimum; division is true division, so
// int / int gives float32 (as PyTorch). A tensor-scalar op keeps a floating tensor's dtype whatever
// the scalar; an integer tensor with a non-integral scalar gives float32. In-place ops never change
// self's dtype: where the result would be float32 for an integer self they throw.
#include "kernels/elementwise.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace ew {

void throw_device_mismatch(const char* op, Device a, Device b) {
  EMBER_THROW(op, ": expected all tensors to be on the same device, but found ", a, " and ", b);
}
void throw_dtype_mismatch(const char* op, DType a, DType b) {
  EMBER_THROW(op, ": dtype mismatch: ", a, " and ", b, " (convert one with .to(dtype))");
}
void throw_bool_arith(const char* op) {
  EMBER_THROW(op, ": arithmetic on bool tensors is not supported; convert with .to(kFloat32) first, or use the "
                  "logical ops");
}
void throw_not_floating(const char* op, DType t) {
  EMBER_THROW(op, ": expected a floating-point tensor, got ", t);
}
void throw_inplace_shape(const char* op, IntArrayRef self, IntArrayRef broadcast) {
  EMBER_THROW(op, ": output with shape ", self, " doesn't match the broadcast shape ", broadcast,
              " (an in-place op cannot grow self)");
}

void check_inplace_shape(const char* op, const Tensor& self, const Tensor& other) {
  if (other.sizes() == self.sizes()) return;
  const DimVector b = broadcast_shapes(op, self.sizes(), other.sizes());
  if (b.ref() != self.sizes()) throw_inplace_shape(op, self.sizes(), b);
}

Tensor fused_backward(BinaryOp op, const Tensor& grad, const Tensor& saved) {
  Tensor out = empty(result_shape(op_name(op), grad, saved), grad.options());
  run_binary(op, grad, saved, out);
  return out;
}

}  // namespace ew

namespace {

bool is_one(const Scalar& s) { return s.is_floating_point() ? s.to_double() == 1.0 : s.to_int() == 1; }
Scalar negate(const Scalar& s) { return s.is_floating_point() ? Scalar(-s.to_double()) : Scalar(-s.to_int()); }

// ---- backward nodes -------------------------------------------------------------------------------

// out = a + alpha * b (sub: alpha negated).
struct AddBackward final : Node {
  const char* label = "AddBackward";
  DimVector a_sizes, b_sizes;
  Scalar alpha = 1;
  std::string name() const override { return label; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    Tensor ga, gb;
    if (needs_input_grad(0)) ga = autograd::sum_to(g, a_sizes);
    if (needs_input_grad(1)) gb = autograd::sum_to(is_one(alpha) ? g : g * alpha, b_sizes);
    return {ga, gb};
  }
};

// out = f(a, scalar) with a constant derivative: grad, -grad, grad * s or grad / s.
struct ScalarBackward final : Node {
  enum class Kind : uint8_t { Identity, Neg, Mul, Div };
  const char* label = "AddBackward";
  Kind kind = Kind::Identity;
  Scalar s = 1;
  std::string name() const override { return label; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined() || !needs_input_grad(0)) return {Tensor()};
    switch (kind) {
      case Kind::Identity: return {g};
      case Kind::Neg: return {neg(g)};
      case Kind::Mul: return {g * s};
      case Kind::Div: return {g / s};
    }
    return {Tensor()};
  }
};

// out = s / a: d/da = -s / a^2.
struct RdivBackward final : Node {
  SavedVariable a;
  Scalar s = 1;
  std::string name() const override { return "RdivBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor x = a.unpack(this);
    return {(g * negate(s)) / square(x)};
  }
};

struct MulBackward final : Node {
  SavedVariable a, b;  // a saved when b needs a gradient and the other way round
  DimVector a_sizes, b_sizes;
  std::string name() const override { return "MulBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    Tensor ga, gb;
    if (needs_input_grad(0)) ga = autograd::sum_to(g * b.unpack(this), a_sizes);
    if (needs_input_grad(1)) gb = autograd::sum_to(g * a.unpack(this), b_sizes);
    return {ga, gb};
  }
};

// out = a / b: d/da = 1 / b, d/db = -a / b^2.
struct DivBackward final : Node {
  SavedVariable a, b;
  DimVector a_sizes, b_sizes;
  std::string name() const override { return "DivBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    const Tensor y = b.unpack(this);
    Tensor ga, gb;
    if (needs_input_grad(0)) ga = autograd::sum_to(g / y, a_sizes);
    if (needs_input_grad(1)) gb = autograd::sum_to(neg((g * a.unpack(this)) / square(y)), b_sizes);
    return {ga, gb};
  }
};

// PyTorch's rule: the gradient goes to the larger (smaller) input, split in half on ties.
struct MaxMinBackward final : Node {
  bool is_max = true;
  SavedVariable a, b;
  DimVector a_sizes, b_sizes;
  std::string name() const override { return is_max ? "MaximumBackward" : "MinimumBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    const Tensor x = a.unpack(this), y = b.unpack(this);
    const Tensor tie = where(eq(x, y), g * 0.5, 0);
    Tensor ga, gb;
    if (needs_input_grad(0)) ga = autograd::sum_to(where(is_max ? gt(x, y) : lt(x, y), g, tie), a_sizes);
    if (needs_input_grad(1)) gb = autograd::sum_to(where(is_max ? lt(x, y) : gt(x, y), g, tie), b_sizes);
    return {ga, gb};
  }
};

// out = a ** b: d/da = b a^(b-1); d/db = out log(a), zero where a == 0 and b >= 0 (as PyTorch).
struct PowTensorBackward final : Node {
  SavedVariable a, b, out;
  DimVector a_sizes, b_sizes;
  std::string name() const override { return "PowBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    const Tensor x = a.unpack(this), y = b.unpack(this);
    Tensor ga, gb;
    if (needs_input_grad(0)) ga = autograd::sum_to(g * y * pow(x, y - 1), a_sizes);
    if (needs_input_grad(1)) {
      const Tensor d = out.unpack(this) * log(x);
      gb = autograd::sum_to(g * where(logical_and(eq(x, 0), ge(y, 0)), 0, d), b_sizes);
    }
    return {ga, gb};
  }
};

// ---- forward helpers ------------------------------------------------------------------------------

void check_binary(const char* name, const Tensor& a, const Tensor& b) {
  ew::check_same_device(name, a, b);
  ew::check_same_dtype(name, a, b);
  ew::check_arith(name, a);
}

void check_alpha(const char* name, const Tensor& t, const Scalar& alpha) {
  EMBER_CHECK(t.is_floating_point() || alpha.is_integral(), name, ": alpha must be an integer for ", t.dtype(),
              " tensors, got ", alpha);
}

// int op float-scalar and int division compute in float32 (Note [Element-wise dtype rules]).
bool scalar_promotes(BinaryOp op, const Tensor& t, const Scalar& s) {
  return !t.is_floating_point() && (s.is_floating_point() || op == BinaryOp::Div);
}

Tensor binary_forward(BinaryOp op, const char* name, const Tensor& a, const Tensor& b, const Scalar& alpha = 1) {
  Tensor out = empty(ew::result_shape(name, a, b), a.options());
  ew::run_binary(op, a, b, out, alpha);
  return out;
}

// a (op) s, or s (op) a; `a` of a floating dtype or of an integer dtype the result keeps.
Tensor scalar_forward(BinaryOp op, const Tensor& a, const Scalar& s, bool scalar_first) {
  Tensor out = empty(a.sizes(), a.options());
  ew::run_binary_scalar(op, a, s, scalar_first, out);
  return out;
}

std::shared_ptr<ScalarBackward> scalar_node(const char* label, ScalarBackward::Kind kind, const Scalar& s = 1) {
  auto node = std::make_shared<ScalarBackward>();
  node->label = label;
  node->kind = kind;
  node->s = s;
  return node;
}

Tensor add_sub(const char* name, const Tensor& a, const Tensor& b, const Scalar& alpha, bool subtract) {
  check_binary(name, a, b);
  check_alpha(name, a, alpha);
  const Scalar scale = subtract ? negate(alpha) : alpha;
  Tensor out;
  if (is_one(alpha))
    out = binary_forward(subtract ? BinaryOp::Sub : BinaryOp::Add, name, a, b);
  else
    out = binary_forward(BinaryOp::AddAlpha, name, a, b, scale);
  if (autograd::needs_grad(a, b)) {
    auto node = std::make_shared<AddBackward>();
    node->label = subtract ? "SubBackward" : "AddBackward";
    node->a_sizes = a.sizes();
    node->b_sizes = b.sizes();
    node->alpha = scale;
    autograd::record(node, {&out}, {&a, &b});
  }
  return out;
}

// Shared by the scalar add/sub/mul/div/rsub/rdiv.
Tensor scalar_op(BinaryOp op, const char* name, const Tensor& a_in, const Scalar& s, bool scalar_first) {
  ew::check_arith(name, a_in);
  Tensor promoted;
  const Tensor& a = scalar_promotes(op, a_in, s) ? (promoted = a_in.to(kFloat32)) : a_in;
  Tensor out = scalar_forward(op, a, s, scalar_first);
  if (autograd::needs_grad(a)) {
    std::shared_ptr<Node> node;
    switch (op) {
      case BinaryOp::Add: node = scalar_node("AddBackward", ScalarBackward::Kind::Identity); break;
      case BinaryOp::Sub:
        node = scalar_first ? scalar_node("RsubBackward", ScalarBackward::Kind::Neg)
                            : scalar_node("SubBackward", ScalarBackward::Kind::Identity);
        break;
      case BinaryOp::Mul: node = scalar_node("MulBackward", ScalarBackward::Kind::Mul, s); break;
      case BinaryOp::Div:
        if (scalar_first) {
          auto rdiv_node = std::make_shared<RdivBackward>();
          rdiv_node->a = SavedVariable(a);
          rdiv_node->s = s;
          node = rdiv_node;
        } else {
          node = scalar_node("DivBackward", ScalarBackward::Kind::Div, s);
        }
        break;
      default: EMBER_ASSERT(false, "scalar_op: unexpected op ", name);
    }
    autograd::record(node, {&out}, {&a});
  }
  return out;
}

Tensor max_min(bool is_max, const Tensor& a, const Tensor& b) {
  const char* name = is_max ? "maximum" : "minimum";
  check_binary(name, a, b);
  Tensor out = binary_forward(is_max ? BinaryOp::Maximum : BinaryOp::Minimum, name, a, b);
  if (autograd::needs_grad(a, b)) {
    auto node = std::make_shared<MaxMinBackward>();
    node->is_max = is_max;
    node->a = SavedVariable(a);
    node->b = SavedVariable(b);
    node->a_sizes = a.sizes();
    node->b_sizes = b.sizes();
    autograd::record(node, {&out}, {&a, &b});
  }
  return out;
}

// ---- in place -------------------------------------------------------------------------------------

// Checks of a tensor-tensor in-place op; returns the operand to read, a snapshot when `other` shares
// memory with self (an element-wise write could otherwise clobber elements not yet read, e.g.
// x.add_(x.t()); the snapshot is a differentiable clone, so gradients still reach `other`).
Tensor prepare_inplace(const char* name, Tensor& self, const Tensor& other) {
  check_binary(name, self, other);
  ew::check_inplace_shape(name, self, other);
  autograd::check_inplace(name, self);
  if (other.is_alias_of(self)) return other.clone();
  return other;
}

void check_inplace_scalar(const char* name, Tensor& self, const Scalar& s, BinaryOp op) {
  ew::check_arith(name, self);
  EMBER_CHECK(!scalar_promotes(op, self, s), name, ": the result is float32 and cannot be written in place into the ",
              self.dtype(), " tensor (", op == BinaryOp::Div ? "true division" : "a non-integral scalar", ")");
  autograd::check_inplace(name, self);
}

Tensor& add_sub_inplace(const char* name, Tensor& self, const Tensor& other_in, const Scalar& alpha, bool subtract) {
  const Tensor other = prepare_inplace(name, self, other_in);
  check_alpha(name, self, alpha);
  const Scalar scale = subtract ? negate(alpha) : alpha;
  if (is_one(alpha))
    ew::run_binary(subtract ? BinaryOp::Sub : BinaryOp::Add, self, other, self);
  else
    ew::run_binary(BinaryOp::AddAlpha, self, other, self, scale);
  autograd::bump_version(self);
  if (autograd::needs_grad(self, other)) {
    auto node = std::make_shared<AddBackward>();
    node->label = subtract ? "SubBackward" : "AddBackward";
    node->a_sizes = self.sizes();
    node->b_sizes = other.sizes();
    node->alpha = scale;
    autograd::rebase_history(self, node, {&self, &other});
  }
  return self;
}

Tensor& scalar_inplace(BinaryOp op, const char* name, Tensor& self, const Scalar& s) {
  check_inplace_scalar(name, self, s, op);
  ew::run_binary_scalar(op, self, s, false, self);
  autograd::bump_version(self);
  if (autograd::needs_grad(self)) {
    std::shared_ptr<Node> node;
    switch (op) {
      case BinaryOp::Add: node = scalar_node("AddBackward", ScalarBackward::Kind::Identity); break;
      case BinaryOp::Sub: node = scalar_node("SubBackward", ScalarBackward::Kind::Identity); break;
      case BinaryOp::Mul: node = scalar_node("MulBackward", ScalarBackward::Kind::Mul, s); break;
      case BinaryOp::Div: node = scalar_node("DivBackward", ScalarBackward::Kind::Div, s); break;
      default: EMBER_ASSERT(false, "scalar_inplace: unexpected op ", name);
    }
    autograd::rebase_history(self, node, {&self});
  }
  return self;
}

}  // namespace

// ---- out of place ---------------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b, const Scalar& alpha) { return add_sub("add", a, b, alpha, false); }
Tensor sub(const Tensor& a, const Tensor& b, const Scalar& alpha) { return add_sub("sub", a, b, alpha, true); }
Tensor add(const Tensor& a, const Scalar& b) { return scalar_op(BinaryOp::Add, "add", a, b, false); }
Tensor sub(const Tensor& a, const Scalar& b) { return scalar_op(BinaryOp::Sub, "sub", a, b, false); }
Tensor mul(const Tensor& a, const Scalar& b) { return scalar_op(BinaryOp::Mul, "mul", a, b, false); }
Tensor div(const Tensor& a, const Scalar& b) { return scalar_op(BinaryOp::Div, "div", a, b, false); }
Tensor rsub(const Tensor& a, const Scalar& b) { return scalar_op(BinaryOp::Sub, "rsub", a, b, true); }
Tensor rdiv(const Tensor& a, const Scalar& b) { return scalar_op(BinaryOp::Div, "rdiv", a, b, true); }

Tensor mul(const Tensor& a, const Tensor& b) {
  check_binary("mul", a, b);
  Tensor out = binary_forward(BinaryOp::Mul, "mul", a, b);
  if (autograd::needs_grad(a, b)) {
    auto node = std::make_shared<MulBackward>();
    if (b.requires_grad()) node->a = SavedVariable(a);
    if (a.requires_grad()) node->b = SavedVariable(b);
    node->a_sizes = a.sizes();
    node->b_sizes = b.sizes();
    autograd::record(node, {&out}, {&a, &b});
  }
  return out;
}

Tensor div(const Tensor& a_in, const Tensor& b_in) {
  check_binary("div", a_in, b_in);
  // True division: integer operands are divided in float32.
  Tensor a_f, b_f;
  const bool promote = !a_in.is_floating_point();
  const Tensor& a = promote ? (a_f = a_in.to(kFloat32)) : a_in;
  const Tensor& b = promote ? (b_f = b_in.to(kFloat32)) : b_in;
  Tensor out = binary_forward(BinaryOp::Div, "div", a, b);
  if (autograd::needs_grad(a, b)) {
    auto node = std::make_shared<DivBackward>();
    node->b = SavedVariable(b);
    if (b.requires_grad()) node->a = SavedVariable(a);
    node->a_sizes = a.sizes();
    node->b_sizes = b.sizes();
    autograd::record(node, {&out}, {&a, &b});
  }
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) { return max_min(true, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return max_min(false, a, b); }

Tensor pow(const Tensor& a, const Tensor& exponent) {
  check_binary("pow", a, exponent);
  ew::check_floating("pow", a);
  Tensor out = binary_forward(BinaryOp::Pow, "pow", a, exponent);
  if (autograd::needs_grad(a, exponent)) {
    auto node = std::make_shared<PowTensorBackward>();
    node->a = SavedVariable(a);
    node->b = SavedVariable(exponent);
    if (exponent.requires_grad()) node->out = SavedVariable(out);
    node->a_sizes = a.sizes();
    node->b_sizes = exponent.sizes();
    autograd::record(node, {&out}, {&a, &exponent});
  }
  return out;
}

// ---- in place -------------------------------------------------------------------------------------

Tensor& add_(Tensor& self, const Tensor& other, const Scalar& alpha) {
  return add_sub_inplace("add_", self, other, alpha, false);
}
Tensor& sub_(Tensor& self, const Tensor& other, const Scalar& alpha) {
  return add_sub_inplace("sub_", self, other, alpha, true);
}
Tensor& add_(Tensor& self, const Scalar& other) { return scalar_inplace(BinaryOp::Add, "add_", self, other); }
Tensor& sub_(Tensor& self, const Scalar& other) { return scalar_inplace(BinaryOp::Sub, "sub_", self, other); }
Tensor& mul_(Tensor& self, const Scalar& other) { return scalar_inplace(BinaryOp::Mul, "mul_", self, other); }
Tensor& div_(Tensor& self, const Scalar& other) { return scalar_inplace(BinaryOp::Div, "div_", self, other); }

Tensor& mul_(Tensor& self, const Tensor& other_in) {
  const Tensor other = prepare_inplace("mul_", self, other_in);
  const bool record = autograd::needs_grad(self, other);
  // d/d(other) needs self's value from before the write.
  Tensor self_before;
  if (record && other.requires_grad()) {
    NoGradGuard no_grad;
    self_before = self.clone();
  }
  ew::run_binary(BinaryOp::Mul, self, other, self);
  autograd::bump_version(self);
  if (record) {
    auto node = std::make_shared<MulBackward>();
    if (self_before.defined()) node->a = SavedVariable(self_before);
    if (self.requires_grad()) node->b = SavedVariable(other);
    node->a_sizes = self.sizes();
    node->b_sizes = other.sizes();
    autograd::rebase_history(self, node, {&self, &other});
  }
  return self;
}

Tensor& div_(Tensor& self, const Tensor& other_in) {
  EMBER_CHECK(self.dtype() == kBool || self.is_floating_point(), "div_: the result of true division is float32 and "
              "cannot be written in place into the ", self.dtype(), " tensor");
  const Tensor other = prepare_inplace("div_", self, other_in);
  const bool record = autograd::needs_grad(self, other);
  // d/d(other) needs self's value from before the write (as PyTorch, which saves a copy of it,
  // rather than the quotient, so that later in-place ops on the result stay legal).
  Tensor self_before;
  if (record && other.requires_grad()) {
    NoGradGuard no_grad;
    self_before = self.clone();
  }
  ew::run_binary(BinaryOp::Div, self, other, self);
  autograd::bump_version(self);
  if (record) {
    auto node = std::make_shared<DivBackward>();
    node->b = SavedVariable(other);
    if (self_before.defined()) node->a = SavedVariable(self_before);
    node->a_sizes = self.sizes();
    node->b_sizes = other.sizes();
    autograd::rebase_history(self, node, {&self, &other});
  }
  return self;
}

}  // namespace ember
