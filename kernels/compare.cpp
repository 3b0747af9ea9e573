// Comparisons (eq ne gt lt ge le, kBool masks), logical ops, where, masked_fill, allclose and equal.
#include "kernels/elementwise.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

Tensor bool_out(const DimVector& shape, const Tensor& like) {
  return empty(shape, TensorOptions().dtype(kBool).device(like.device()));
}

Tensor compare_op(CompareOp op, const Tensor& a, const Tensor& b) {
  const char* name = op_name(op);
  ew::check_same_device(name, a, b);
  ew::check_same_dtype(name, a, b);
  Tensor out = bool_out(ew::result_shape(name, a, b), a);
  if (out.is_cuda())
    cuda::compare(op, a, b, out);
  else
    cpu::compare(op, a, b, out);
  return out;
}

Tensor compare_scalar_op(CompareOp op, const Tensor& a, const Scalar& s) {
  Tensor out = bool_out(DimVector(a.sizes()), a);
  if (out.is_cuda())
    cuda::compare_scalar(op, a, s, out);
  else
    cpu::compare_scalar(op, a, s, out);
  return out;
}

void check_mask(const char* op, const Tensor& mask) {
  EMBER_CHECK(mask.dtype() == kBool, op, ": the mask must be a kBool tensor, got ", mask.dtype(),
              " (make one with a comparison such as x.gt(0))");
}

// The gradient of where's value operands: the part of grad each one was chosen for.
struct WhereBackward final : Node {
  const char* label = "WhereBackward";
  SavedVariable mask;
  DimVector a_sizes, b_sizes;  // empty when that operand was a scalar (then there is one edge only)
  bool a_is_tensor = true, b_is_tensor = true;
  std::string name() const override { return label; }
  void release_variables() override { mask.reset(); }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    tensor_list out;
    const Tensor m = g.defined() ? mask.unpack(this) : Tensor();
    size_t edge = 0;
    if (a_is_tensor) {
      out.push_back(g.defined() && needs_input_grad(edge) ? autograd::sum_to(where(m, g, 0), a_sizes) : Tensor());
      ++edge;
    }
    if (b_is_tensor)
      out.push_back(g.defined() && needs_input_grad(edge) ? autograd::sum_to(where(m, 0, g), b_sizes) : Tensor());
    return out;
  }
};

// mask ? s : t (scalar_if_true) or mask ? t : s. `keep_dtype`: masked_fill keeps t's dtype; where
// promotes an integer t with a non-integral scalar to float32 (Note [Element-wise dtype rules]).
Tensor where_scalar_op(const char* name, const Tensor& mask, const Tensor& t_in, const Scalar& s, bool scalar_if_true,
                       bool keep_dtype) {
  check_mask(name, mask);
  ew::check_same_device(name, mask, t_in);
  Tensor promoted;
  const bool promote = !keep_dtype && !t_in.is_floating_point() && s.is_floating_point();
  const Tensor& t = promote ? (promoted = t_in.to(kFloat32)) : t_in;
  Tensor out = empty(ew::result_shape(name, mask, t), t.options());
  if (out.is_cuda())
    cuda::where_scalar(mask, t, s, scalar_if_true, out);
  else
    cpu::where_scalar(mask, t, s, scalar_if_true, out);
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<WhereBackward>();
    node->label = keep_dtype ? "MaskedFillBackward" : "WhereBackward";
    node->mask = SavedVariable(mask);
    if (scalar_if_true) {
      node->a_is_tensor = false;
      node->b_sizes = t.sizes();
    } else {
      node->b_is_tensor = false;
      node->a_sizes = t.sizes();
    }
    autograd::record(node, {&out}, {&t});
  }
  return out;
}

}  // namespace

#define EMBER_DEFINE_COMPARE(name, Op)                                                      \
  Tensor name(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Op, a, b); } \
  Tensor name(const Tensor& a, const Scalar& b) { return compare_scalar_op(CompareOp::Op, a, b); }
EMBER_DEFINE_COMPARE(eq, Eq)
EMBER_DEFINE_COMPARE(ne, Ne)
EMBER_DEFINE_COMPARE(gt, Gt)
EMBER_DEFINE_COMPARE(lt, Lt)
EMBER_DEFINE_COMPARE(ge, Ge)
EMBER_DEFINE_COMPARE(le, Le)
#undef EMBER_DEFINE_COMPARE

Tensor logical_not(const Tensor& t) { return compare_scalar_op(CompareOp::Eq, t, 0); }

Tensor logical_and(const Tensor& a, const Tensor& b) {
  ew::check_same_device("logical_and", a, b);
  if (a.dtype() != b.dtype()) return compare_op(CompareOp::LogicalAnd, ne(a, 0), ne(b, 0));
  return compare_op(CompareOp::LogicalAnd, a, b);
}

Tensor logical_or(const Tensor& a, const Tensor& b) {
  ew::check_same_device("logical_or", a, b);
  if (a.dtype() != b.dtype()) return compare_op(CompareOp::LogicalOr, ne(a, 0), ne(b, 0));
  return compare_op(CompareOp::LogicalOr, a, b);
}

Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b) {
  check_mask("where", mask);
  ew::check_same_device("where", mask, a);
  ew::check_same_device("where", a, b);
  ew::check_same_dtype("where", a, b);
  Tensor out = empty(broadcast_shapes("where", {mask.sizes(), a.sizes(), b.sizes()}), a.options());
  if (out.is_cuda())
    cuda::where(mask, a, b, out);
  else
    cpu::where(mask, a, b, out);
  if (autograd::needs_grad(a, b)) {
    auto node = std::make_shared<WhereBackward>();
    node->mask = SavedVariable(mask);
    node->a_sizes = a.sizes();
    node->b_sizes = b.sizes();
    autograd::record(node, {&out}, {&a, &b});
  }
  return out;
}

Tensor where(const Tensor& mask, const Tensor& a, const Scalar& b) {
  return where_scalar_op("where", mask, a, b, /*scalar_if_true=*/false, /*keep_dtype=*/false);
}

Tensor where(const Tensor& mask, const Scalar& a, const Tensor& b) {
  return where_scalar_op("where", mask, b, a, /*scalar_if_true=*/true, /*keep_dtype=*/false);
}

Tensor masked_fill(const Tensor& t, const Tensor& mask, const Scalar& value) {
  return where_scalar_op("masked_fill", mask, t, value, /*scalar_if_true=*/true, /*keep_dtype=*/true);
}

Tensor& masked_fill_(Tensor& t, const Tensor& mask, const Scalar& value) {
  check_mask("masked_fill_", mask);
  ew::check_same_device("masked_fill_", t, mask);
  ew::check_inplace_shape("masked_fill_", t, mask);
  autograd::check_inplace("masked_fill_", t);
  // Each element is read and written by the same step, so t may be both input and output; a mask
  // sharing t's memory (a bool t) is snapshotted first.
  Tensor m = mask.is_alias_of(t) ? mask.clone() : mask;
  if (t.is_cuda())
    cuda::where_scalar(m, t, value, true, t);
  else
    cpu::where_scalar(m, t, value, true, t);
  autograd::bump_version(t);
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<WhereBackward>();
    node->label = "MaskedFillBackward";
    node->mask = SavedVariable(m);
    node->a_is_tensor = false;
    node->b_sizes = t.sizes();
    autograd::rebase_history(t, node, {&t});
  }
  return t;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  ew::check_same_device("allclose", a, b);
  ew::check_same_dtype("allclose", a, b);
  NoGradGuard no_grad;
  Tensor close = bool_out(ew::result_shape("allclose", a, b), a);
  if (close.numel() == 0) return true;
  if (close.is_cuda())
    cuda::isclose(a, b, close, rtol, atol);
  else
    cpu::isclose(a, b, close, rtol, atol);
  return all(close).item<bool>();
}

// Same shape, same dtype and equal elements (NaN is unequal to everything, as PyTorch).
bool equal(const Tensor& a, const Tensor& b) {
  ew::check_same_device("equal", a, b);
  if (a.sizes() != b.sizes() || a.dtype() != b.dtype()) return false;
  if (a.numel() == 0) return true;
  NoGradGuard no_grad;
  return all(eq(a, b)).item<bool>();
}

}  // namespace ember
