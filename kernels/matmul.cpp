// Matrix products: mm, bmm, matmul (PyTorch's semantics, batch broadcasting) and addmm, with their backward nodes.
#include "kernels/cuda/matmul.h"

#include <string>

#include "kernels/cpu/blas.h"
#include "kernels/ops.h"
#include "kernels/shared/gemm.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

[[noreturn]] void throw_shapes(const char* op, const Tensor& a, const Tensor& b, const char* why = "") {
  EMBER_THROW(op, ": shapes ", a.sizes(), " and ", b.sizes(), " cannot be multiplied", why);
}

// Same device, same dtype, a dtype the GEMM backends multiply.
void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  EMBER_CHECK(a.defined() && b.defined(), op, ": got an undefined tensor");
  EMBER_CHECK(a.device() == b.device(), op, ": expected both tensors on the same device, got ", a.device(), " and ",
              b.device(), " (shapes ", a.sizes(), " and ", b.sizes(), ")");
  EMBER_CHECK(a.dtype() == b.dtype(), op, ": expected both tensors to have the same dtype, got ", a.dtype(), " and ",
              b.dtype(), " (shapes ", a.sizes(), " and ", b.sizes(), ")");
  const DType t = a.dtype();
  if (t == kFloat32 || t == kFloat64 || (a.is_cuda() && is_reduced_float(t))) return;
  if (is_reduced_float(t))
    EMBER_THROW(op, ": ", t, " matrix products run on CUDA only; convert to float32 on ", a.device());
  EMBER_THROW(op, ": expected floating-point tensors (float32 or float64), got ", t);
}

bool has_blas_layout(const Tensor& t) {
  const int64_t r = t.dim();
  return blas_layout(t.size(r - 2), t.size(r - 1), t.stride(r - 2), t.stride(r - 1)).has_value();
}

// `t` itself when BLAS reads its matrix dims in place (Note [BLAS layouts]), else a contiguous copy.
Tensor blas_operand(const char* op, const Tensor& t) {
  if (t.numel() == 0 || has_blas_layout(t)) return t;
  Tensor c;
  {
    NoGradGuard no_grad;
    c = clone(t);
  }
  EMBER_CHECK(has_blas_layout(c), op, ": matrices of shape ", t.sizes(),
              " are too large for BLAS (a matrix dim beyond 2^31 - 1)");
  return c;
}

// A view of t ([..., r, c]) with exactly the batch dims `batch` (stride 0 where broadcast); no autograd.
Tensor expand_batch(const Tensor& t, IntArrayRef batch) {
  const int64_t nb = static_cast<int64_t>(batch.size()), tb = t.dim() - 2;
  if (nb == tb && t.sizes().slice(0, static_cast<size_t>(tb)) == batch) return t;
  DimVector sizes(static_cast<size_t>(nb + 2)), strides(static_cast<size_t>(nb + 2));
  for (int64_t i = 0; i < nb; ++i) {
    const int64_t ti = i - (nb - tb);
    sizes[i] = batch[i];
    strides[i] = ti >= 0 && t.size(ti) == batch[i] ? t.stride(ti) : 0;
  }
  for (int64_t i = 0; i < 2; ++i) {
    sizes[nb + i] = t.size(tb + i);
    strides[nb + i] = t.stride(tb + i);
  }
  return make_tensor(t.storage(), sizes, strides, t.storage_offset(), t.dtype());
}

// The broadcast batch shape of a ([..., n, k]) and b ([..., k, m]).
DimVector batch_shape(const char* op, const Tensor& a, const Tensor& b) {
  const int64_t na = a.dim() - 2, nb = b.dim() - 2, n = std::max(na, nb);
  DimVector out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t ia = i - (n - na), ib = i - (n - nb);
    const int64_t sa = ia >= 0 ? a.size(ia) : 1, sb = ib >= 0 ? b.size(ib) : 1;
    if (sa != sb && sa != 1 && sb != 1) throw_shapes(op, a, b, " (their batch dims do not broadcast)");
    out[i] = sa == 1 ? sb : sa;
  }
  return out;
}

// out = alpha * (a @ b) + beta * out; a and b broadcast over out's batch dims. No autograd.
void gemm_into(const Tensor& out, const Tensor& a, const Tensor& b, double beta, double alpha) {
  const IntArrayRef batch = out.sizes().slice(0, static_cast<size_t>(out.dim() - 2));
  const Tensor ea = expand_batch(blas_operand("matmul", a), batch);
  const Tensor eb = expand_batch(blas_operand("matmul", b), batch);
  if (out.is_cuda())
    cuda::gemm(ea, eb, out, beta, alpha);
  else
    cpu::gemm(ea, eb, out, beta, alpha);
}

// alpha * (a @ b) for a: [..., n, k], b: [..., k, m] (k checked by the caller), batch dims broadcast.
Tensor multiply(const char* op, const Tensor& a, const Tensor& b, double alpha = 1.0) {
  DimVector shape = batch_shape(op, a, b);
  shape.push_back(a.size(-2));
  shape.push_back(b.size(-1));
  Tensor out = empty(shape, a.options());
  gemm_into(out, a, b, 0.0, alpha);
  return out;
}

// Gradients of out = alpha * (a @ b) with batch broadcasting (mm, bmm and matmul):
// dA = alpha * dC @ B^T and dB = alpha * A^T @ dC, summed over the batch dims each input was broadcast along.
struct MatmulBackward final : Node {
  const char* node_name = "MatmulBackward";
  SavedVariable a, b;  // a is saved only when b needs a gradient, and the other way round
  DimVector a_sizes, b_sizes;
  std::string name() const override { return node_name; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    Tensor ga, gb;
    if (needs_input_grad(0)) ga = autograd::sum_to(multiply("matmul", g, b.unpack(this).transpose(-2, -1)), a_sizes);
    if (needs_input_grad(1)) gb = autograd::sum_to(multiply("matmul", a.unpack(this).transpose(-2, -1), g), b_sizes);
    return {ga, gb};
  }
  void release_variables() override {
    a.reset();
    b.reset();
  }
};

// out = a @ b (>= 2-D each, k already checked) recorded for autograd as `node_name`.
Tensor product_op(const char* op, const char* node_name, const Tensor& a, const Tensor& b) {
  Tensor out = multiply(op, a, b);
  if (autograd::needs_grad(a, b)) {
    auto node = std::make_shared<MatmulBackward>();
    node->node_name = node_name;
    if (b.requires_grad()) node->a = SavedVariable(a);
    if (a.requires_grad()) node->b = SavedVariable(b);
    node->a_sizes = a.sizes();
    node->b_sizes = b.sizes();
    autograd::record(node, {&out}, {&a, &b});
  }
  return out;
}

// Whether the dims before the last of t merge into one by a view (no copy).
bool leading_dims_fold(const Tensor& t) {
  int64_t expected = -1;  // stride the next (outer) non-trivial dim must have
  for (int64_t d = t.dim() - 2; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (expected >= 0 && t.stride(d) != expected) return false;
    expected = t.stride(d) * t.size(d);
  }
  return true;
}

struct AddmmBackward final : Node {
  SavedVariable a, b;
  DimVector self_sizes;
  double beta = 1.0, alpha = 1.0;
  std::string name() const override { return "AddmmBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor(), Tensor()};
    Tensor gs, ga, gb;
    if (needs_input_grad(0)) gs = autograd::sum_to(beta == 1.0 ? g : g * beta, self_sizes);
    if (needs_input_grad(1)) ga = multiply("addmm", g, b.unpack(this).t(), alpha);
    if (needs_input_grad(2)) gb = multiply("addmm", a.unpack(this).t(), g, alpha);
    return {gs, ga, gb};
  }
  void release_variables() override {
    a.reset();
    b.reset();
  }
};

}  // namespace

Tensor mm(const Tensor& a, const Tensor& b) {
  check_pair("mm", a, b);
  EMBER_CHECK(a.dim() == 2 && b.dim() == 2, "mm: expected 2-D matrices, got shapes ", a.sizes(), " and ", b.sizes());
  if (a.size(1) != b.size(0)) throw_shapes("mm", a, b);
  return product_op("mm", "MmBackward", a, b);
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  check_pair("bmm", a, b);
  EMBER_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected 3-D batches of matrices, got shapes ", a.sizes(), " and ",
              b.sizes());
  if (a.size(0) != b.size(0)) throw_shapes("bmm", a, b, " (batch sizes differ)");
  if (a.size(2) != b.size(1)) throw_shapes("bmm", a, b);
  return product_op("bmm", "BmmBackward", a, b);
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_pair("matmul", a, b);
  const int64_t da = a.dim(), db = b.dim();
  EMBER_CHECK(da >= 1 && db >= 1, "matmul: both arguments need at least 1 dim, got shapes ", a.sizes(), " and ",
              b.sizes());
  const int64_t k = a.size(-1);
  if (k != (db == 1 ? b.size(0) : b.size(-2))) throw_shapes("matmul", a, b);

  if (da == 1 && db == 1) return product_op("matmul", "DotBackward", a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  if (da == 2 && db == 1) return product_op("matmul", "MvBackward", a, b.unsqueeze(1)).squeeze(1);
  if (da == 1 && db == 2) return product_op("matmul", "MmBackward", a.unsqueeze(0), b).squeeze(0);
  if (da == 2 && db == 2) return product_op("matmul", "MmBackward", a, b);
  if (da >= 3 && db <= 2 && (leading_dims_fold(a) || b.requires_grad())) {
    // [..., n, k] @ [k, m]: one GEMM over the folded rows (a view unless a's layout forbids it, and then
    // the copy buys one GEMM instead of a batch of them plus a sum for b's gradient).
    const IntArrayRef lead = a.sizes().slice(0, static_cast<size_t>(da - 1));
    DimVector shape(lead);
    const Tensor a2 = a.reshape({product(lead), k});
    if (db == 1) return product_op("matmul", "MvBackward", a2, b.unsqueeze(1)).view(shape);
    shape.push_back(b.size(1));
    return product_op("matmul", "MmBackward", a2, b).view(shape);
  }
  if (db == 1) return product_op("matmul", "MatmulBackward", a, b.unsqueeze(1)).squeeze(-1);
  if (da == 1) return product_op("matmul", "MatmulBackward", a.unsqueeze(0), b).squeeze(-2);
  return product_op("matmul", "MatmulBackward", a, b);
}

Tensor addmm(const Tensor& self, const Tensor& a, const Tensor& b, const Scalar& beta, const Scalar& alpha) {
  check_pair("addmm", a, b);
  EMBER_CHECK(self.defined(), "addmm: got an undefined tensor");
  EMBER_CHECK(self.device() == a.device(), "addmm: expected self on ", a.device(), " (where the matrices are), got ",
              self.device());
  EMBER_CHECK(self.dtype() == a.dtype(), "addmm: expected self of dtype ", a.dtype(), " (the matrices' dtype), got ",
              self.dtype());
  EMBER_CHECK(a.dim() == 2 && b.dim() == 2, "addmm: expected 2-D matrices, got shapes ", a.sizes(), " and ", b.sizes());
  if (a.size(1) != b.size(0)) throw_shapes("addmm", a, b);
  const int64_t n = a.size(0), m = b.size(1);
  const bool broadcasts = self.dim() <= 2 && (self.dim() < 1 || self.size(-1) == m || self.size(-1) == 1) &&
                          (self.dim() < 2 || self.size(0) == n || self.size(0) == 1);
  EMBER_CHECK(broadcasts, "addmm: self of shape ", self.sizes(), " does not broadcast to the product's shape [", n,
              ", ", m, "]");
  const double be = beta.to_double(), al = alpha.to_double();
  Tensor out = empty({n, m}, a.options());
  // Linear's forward on CUDA: the bias added by the GEMM's epilogue (Note [cuBLASLt bias epilogue]).
  const bool bias_row = self.numel() == m && (self.dim() == 1 || (self.dim() == 2 && self.size(0) == 1));
  const bool fused = out.is_cuda() && be == 1.0 && bias_row && m > 0 &&
                     cuda::gemm_bias(a, b, self.dim() == 1 ? self : self.view({m}), out, al);
  if (!fused) {
    if (be != 0.0) {  // beta == 0 ignores self entirely (NaNs included), as BLAS and PyTorch do
      NoGradGuard no_grad;
      out.copy_(self);
    }
    gemm_into(out, a, b, be, al);
  }
  if (autograd::needs_grad({&self, &a, &b})) {
    auto node = std::make_shared<AddmmBackward>();
    if (b.requires_grad()) node->a = SavedVariable(a);
    if (a.requires_grad()) node->b = SavedVariable(b);
    node->self_sizes = self.sizes();
    node->beta = be;
    node->alpha = al;
    autograd::record(node, {&out}, {&self, &a, &b});
  }
  return out;
}

}  // namespace ember
