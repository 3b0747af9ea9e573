// Indexing ops: index_select, gather, scatter_add(_), index_add(_), index_fill_ and one_hot, with their backward nodes.
#include "kernels/cpu/index.h"

#include <cstdlib>

#include "kernels/cuda/index.h"
#include "kernels/ops.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

// An operand of an IndexIter: its data and its strides over the iteration shape (elements).
struct IterOperand {
  void* data = nullptr;
  DimVector strides;
};

// Builds the loop nest of Note [IndexIter] over `shape`, whose dim `dim` (-1: none, for 0-d) is the
// indexed one. ops[0] is the indexed tensor, ops[1] the index, ops[2] the dense side (data may be null).
IndexIter make_index_iter(const char* op, IntArrayRef shape, int64_t dim, const IterOperand (&ops)[3],
                          int64_t self_size, int64_t self_stride) {
  IndexIter it;
  const int64_t nd = static_cast<int64_t>(shape.size());
  for (int k = 0; k < 3; ++k) it.data[k] = static_cast<char*>(ops[k].data);
  auto stride_of = [&](int k, int64_t d) { return ops[k].strides.empty() ? int64_t{0} : ops[k].strides[d]; };
  it.extent = dim >= 0 ? shape[dim] : 1;
  it.dim_strides[0] = 0;
  it.dim_strides[1] = dim >= 0 ? stride_of(1, dim) : 0;
  it.dim_strides[2] = dim >= 0 ? stride_of(2, dim) : 0;
  it.self_size = self_size;
  it.self_stride = self_stride;
  int n = 0;
  int64_t numel = it.extent, rest = 1;
  for (int64_t d = nd - 1; d >= 0; --d) {
    if (d == dim) continue;
    numel *= shape[d];
    rest *= shape[d];
    if (shape[d] == 1) continue;
    bool merge = n > 0;
    for (int k = 0; k < 3 && merge; ++k) merge = stride_of(k, d) == it.strides[k][n - 1] * it.shape[n - 1];
    if (merge) {
      it.shape[n - 1] *= shape[d];
      continue;
    }
    EMBER_CHECK(n < IndexIter::kMaxDims, op, ": tensors of more than ", IndexIter::kMaxDims,
                " dims are not supported (got shape ", shape, ")");
    it.shape[n] = shape[d];
    for (int k = 0; k < 3; ++k) it.strides[k][n] = stride_of(k, d);
    ++n;
  }
  it.ndim = n;
  it.rest_numel = rest;
  it.numel = numel;
  // CUDA thread order: along the indexed dim when that is how the dense side (or the index) is laid out.
  const int kd = ops[2].data ? 2 : 1;
  it.dim_innermost =
      it.extent > 1 && (n == 0 || (ops[2].data && std::llabs(it.dim_strides[kd]) <= std::llabs(it.strides[kd][0])));
  return it;
}

// Strides of an index that is 1-D along `dim` of an iteration shape of rank `rank` (0 elsewhere).
DimVector index_1d_strides(const Tensor& index, int64_t dim, int64_t rank) {
  DimVector s(static_cast<size_t>(rank), 0);
  if (dim >= 0 && rank > 0) s[static_cast<size_t>(dim)] = index.dim() == 1 ? index.stride(0) : 0;
  return s;
}

void check_index(const char* op, const Tensor& self, const Tensor& index) {
  EMBER_CHECK(self.defined() && index.defined(), op, ": got an undefined tensor");
  EMBER_CHECK(index.dtype() == kInt64 || index.dtype() == kInt32, op, ": expected an int64 (or int32) index, got ",
              index.dtype());
  EMBER_CHECK(index.device() == self.device(), op, ": expected the index on ", self.device(), " (where self is), got ",
              index.device());
}

void check_source(const char* op, const char* what, const Tensor& self, const Tensor& src) {
  EMBER_CHECK(src.defined(), op, ": got an undefined ", what);
  EMBER_CHECK(src.device() == self.device(), op, ": expected ", what, " on ", self.device(), " (where self is), got ",
              src.device());
  EMBER_CHECK(src.dtype() == self.dtype(), op, ": expected ", what, " of dtype ", self.dtype(), " (self's dtype), got ",
              src.dtype());
}

// A destination written in place must not have elements that alias each other.
void check_no_overlap(const char* op, const Tensor& self) {
  for (int64_t d = 0; d < self.dim(); ++d)
    EMBER_CHECK(self.size(d) <= 1 || self.stride(d) != 0, op,
                ": self has overlapping memory (an expanded tensor of shape ", self.sizes(), " with strides ",
                self.strides(), "); clone() it first");
}

// CPU: every index must lie in [0, size) before anything is written. CUDA checks on the device.
void check_range(const char* op, const Tensor& index, int64_t dim, int64_t size) {
  if (!index.is_cpu()) return;
  if (const auto bad = cpu::first_index_out_of_range(op, index, size))
    EMBER_THROW(op, ": index ", *bad, " is out of range for dim ", dim, " of size ", size);
}

// Size and stride of the indexed dim of self (a 0-d self is one element along dim 0).
int64_t dim_size(const Tensor& t, int64_t d) { return t.dim() == 0 ? 1 : t.size(d); }
int64_t dim_stride(const Tensor& t, int64_t d) { return t.dim() == 0 ? 0 : t.stride(d); }

void run_gather(const IndexIter& it, const Tensor& self, const Tensor& index, IndexOpKind kind) {
  if (self.is_cuda())
    cuda::index_gather(it, self.dtype(), index.dtype(), self.device(), kind);
  else
    cpu::index_gather(it, self.dtype(), index.dtype());
}

void run_scatter_add(const IndexIter& it, const Tensor& self, const Tensor& index, const Scalar& alpha,
                     IndexOpKind kind) {
  if (self.is_cuda())
    cuda::index_scatter_add(it, self.dtype(), index.dtype(), alpha, self.device(), kind);
  else
    cpu::index_scatter_add(it, self.dtype(), index.dtype(), alpha);
}

void run_fill(const IndexIter& it, const Tensor& self, const Tensor& index, const Scalar& value, IndexOpKind kind) {
  if (self.is_cuda())
    cuda::index_scatter_fill(it, self.dtype(), index.dtype(), value, self.device(), kind);
  else
    cpu::index_scatter_fill(it, self.dtype(), index.dtype(), value);
}

// ---- backward nodes ------------------------------------------------------------------------------

struct IndexSelectBackward final : Node {
  int64_t dim = 0;
  DimVector self_sizes;
  SavedVariable index;
  std::string name() const override { return "IndexSelectBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined()) return {Tensor()};
    Tensor out = zeros(self_sizes, grads[0].options());
    out.index_add_(dim, index.unpack(this), grads[0]);
    return {out};
  }
  void release_variables() override { index.reset(); }
};

struct GatherBackward final : Node {
  int64_t dim = 0;
  DimVector self_sizes;
  SavedVariable index;
  std::string name() const override { return "GatherBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined()) return {Tensor()};
    Tensor out = zeros(self_sizes, grads[0].options());
    out.scatter_add_(dim, index.unpack(this), grads[0]);
    return {out};
  }
  void release_variables() override { index.reset(); }
};

struct ScatterAddBackward final : Node {
  int64_t dim = 0;
  DimVector src_sizes;
  SavedVariable index;
  std::string name() const override { return "ScatterAddBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    Tensor gsrc;
    if (needs_input_grad(1)) {
      const Tensor idx = index.unpack(this);
      gsrc = gather(g, dim, idx);
      if (gsrc.sizes() != src_sizes.ref()) {
        // Only the index-shaped corner of src was read; the rest of it gets no gradient.
        Tensor full = zeros(src_sizes, g.options());
        Tensor corner = full;
        for (int64_t d = 0; d < idx.dim(); ++d) corner = corner.narrow(d, 0, idx.size(d));
        corner.copy_(gsrc);
        gsrc = full;
      }
    }
    return {needs_input_grad(0) ? g : Tensor(), gsrc};
  }
  void release_variables() override { index.reset(); }
};

struct IndexAddBackward final : Node {
  int64_t dim = 0;
  double alpha = 1.0;
  SavedVariable index;
  std::string name() const override { return "IndexAddBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    Tensor gsrc;
    if (needs_input_grad(1)) {
      gsrc = index_select(g, dim, index.unpack(this));
      if (alpha != 1.0) gsrc = gsrc * alpha;
    }
    return {needs_input_grad(0) ? g : Tensor(), gsrc};
  }
  void release_variables() override { index.reset(); }
};

struct IndexFillBackward final : Node {
  int64_t dim = 0;
  SavedVariable index;
  std::string name() const override { return "IndexFillBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined()) return {Tensor()};
    Tensor g = grads[0].clone();
    g.index_fill_(dim, index.unpack(this), 0);
    return {g};
  }
  void release_variables() override { index.reset(); }
};

}  // namespace

Tensor index_select(const Tensor& t, int64_t dim, const Tensor& index) {
  const char* op = "index_select";
  check_index(op, t, index);
  EMBER_CHECK(index.dim() <= 1, op, ": expected a 1-D index, got shape ", index.sizes());
  const int64_t d = wrap_dim(op, dim, t.dim());
  const int64_t n = index.numel();
  EMBER_CHECK(t.dim() > 0 || n == 1, op, ": a 0-d tensor takes an index of exactly one element, got shape ",
              index.sizes());
  check_range(op, index, d, dim_size(t, d));
  DimVector shape(t.sizes());
  if (t.dim() > 0) shape[static_cast<size_t>(d)] = n;
  Tensor out = empty(shape, t.options());
  const int64_t it_dim = t.dim() > 0 ? d : -1;
  const IterOperand ops[3] = {{t.raw_data(), DimVector(t.strides())},
                              {index.raw_data(), index_1d_strides(index, it_dim, t.dim())},
                              {out.raw_data(), DimVector(out.strides())}};
  const IndexIter it = make_index_iter(op, shape, it_dim, ops, dim_size(t, d), dim_stride(t, d));
  run_gather(it, t, index, IndexOpKind::IndexSelect);
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<IndexSelectBackward>();
    node->dim = d;
    node->self_sizes = t.sizes();
    node->index = SavedVariable(index);
    autograd::record(node, {&out}, {&t});
  }
  return out;
}

Tensor gather(const Tensor& t, int64_t dim, const Tensor& index) {
  const char* op = "gather";
  check_index(op, t, index);
  const int64_t d = wrap_dim(op, dim, t.dim());
  EMBER_CHECK(index.dim() == t.dim(), op, ": the index must have as many dims as self, got index shape ", index.sizes(),
              " and self shape ", t.sizes());
  for (int64_t k = 0; k < t.dim(); ++k)
    EMBER_CHECK(k == d || index.size(k) <= t.size(k), op, ": index shape ", index.sizes(), " exceeds self shape ",
                t.sizes(), " in dim ", k, " (only dim ", d, " may differ)");
  check_range(op, index, d, dim_size(t, d));
  Tensor out = empty(index.sizes(), t.options());
  const int64_t it_dim = t.dim() > 0 ? d : -1;
  const IterOperand ops[3] = {{t.raw_data(), DimVector(t.strides())},
                              {index.raw_data(), DimVector(index.strides())},
                              {out.raw_data(), DimVector(out.strides())}};
  const IndexIter it = make_index_iter(op, index.sizes(), it_dim, ops, dim_size(t, d), dim_stride(t, d));
  run_gather(it, t, index, IndexOpKind::Gather);
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<GatherBackward>();
    node->dim = d;
    node->self_sizes = t.sizes();
    node->index = SavedVariable(index);
    autograd::record(node, {&out}, {&t});
  }
  return out;
}

Tensor& scatter_add_(Tensor& t, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "scatter_add_";
  check_index(op, t, index);
  check_source(op, "src", t, src);
  autograd::check_inplace(op, t);
  const int64_t d = wrap_dim(op, dim, t.dim());
  EMBER_CHECK(index.dim() == t.dim() && src.dim() == t.dim(), op,
              ": self, index and src must have the same number of dims, got shapes ", t.sizes(), ", ", index.sizes(),
              " and ", src.sizes());
  for (int64_t k = 0; k < t.dim(); ++k) {
    EMBER_CHECK(index.size(k) <= src.size(k), op, ": index shape ", index.sizes(), " exceeds src shape ", src.sizes(),
                " in dim ", k);
    EMBER_CHECK(k == d || index.size(k) <= t.size(k), op, ": index shape ", index.sizes(), " exceeds self shape ",
                t.sizes(), " in dim ", k, " (only dim ", d, " may differ)");
  }
  check_no_overlap(op, t);
  check_range(op, index, d, dim_size(t, d));
  const int64_t it_dim = t.dim() > 0 ? d : -1;
  const IterOperand ops[3] = {{t.raw_data(), DimVector(t.strides())},
                              {index.raw_data(), DimVector(index.strides())},
                              {src.raw_data(), DimVector(src.strides())}};
  const IndexIter it = make_index_iter(op, index.sizes(), it_dim, ops, dim_size(t, d), dim_stride(t, d));
  run_scatter_add(it, t, index, 1, IndexOpKind::ScatterAdd);
  autograd::bump_version(t);
  if (autograd::needs_grad(t, src)) {
    auto node = std::make_shared<ScatterAddBackward>();
    node->dim = d;
    node->src_sizes = src.sizes();
    node->index = SavedVariable(index);
    autograd::rebase_history(t, node, {&t, &src});
  }
  return t;
}

Tensor scatter_add(const Tensor& t, int64_t dim, const Tensor& index, const Tensor& src) {
  Tensor out = clone(t);
  return scatter_add_(out, dim, index, src);
}

Tensor& index_add_(Tensor& t, int64_t dim, const Tensor& index, const Tensor& source, const Scalar& alpha) {
  const char* op = "index_add_";
  check_index(op, t, index);
  check_source(op, "source", t, source);
  autograd::check_inplace(op, t);
  EMBER_CHECK(index.dim() <= 1, op, ": expected a 1-D index, got shape ", index.sizes());
  const int64_t d = wrap_dim(op, dim, t.dim());
  const int64_t n = index.numel();
  if (t.dim() == 0) {
    EMBER_CHECK(source.dim() == 0 && n == 1, op, ": a 0-d self takes a 0-d source and one index, got source shape ",
                source.sizes(), " and index shape ", index.sizes());
  } else {
    bool ok = source.dim() == t.dim() && source.size(d) == n;
    for (int64_t k = 0; ok && k < t.dim(); ++k) ok = k == d || source.size(k) == t.size(k);
    EMBER_CHECK(ok, op, ": source of shape ", source.sizes(), " does not match self of shape ", t.sizes(), " with dim ",
                d, " replaced by the index's ", n, " entries");
  }
  check_no_overlap(op, t);
  check_range(op, index, d, dim_size(t, d));
  const int64_t it_dim = t.dim() > 0 ? d : -1;
  const IterOperand ops[3] = {{t.raw_data(), DimVector(t.strides())},
                              {index.raw_data(), index_1d_strides(index, it_dim, t.dim())},
                              {source.raw_data(), DimVector(source.strides())}};
  const IndexIter it = make_index_iter(op, source.sizes(), it_dim, ops, dim_size(t, d), dim_stride(t, d));
  run_scatter_add(it, t, index, alpha, IndexOpKind::IndexAdd);
  autograd::bump_version(t);
  if (autograd::needs_grad(t, source)) {
    auto node = std::make_shared<IndexAddBackward>();
    node->dim = d;
    node->alpha = alpha.to_double();
    node->index = SavedVariable(index);
    autograd::rebase_history(t, node, {&t, &source});
  }
  return t;
}

Tensor index_add(const Tensor& t, int64_t dim, const Tensor& index, const Tensor& source, const Scalar& alpha) {
  Tensor out = clone(t);
  return index_add_(out, dim, index, source, alpha);
}

Tensor& index_fill_(Tensor& t, int64_t dim, const Tensor& index, const Scalar& value) {
  const char* op = "index_fill_";
  check_index(op, t, index);
  autograd::check_inplace(op, t);
  EMBER_CHECK(index.dim() <= 1, op, ": expected a 1-D index, got shape ", index.sizes());
  const int64_t d = wrap_dim(op, dim, t.dim());
  check_no_overlap(op, t);
  check_range(op, index, d, dim_size(t, d));
  if (index.numel() == 0) return t;
  const int64_t it_dim = t.dim() > 0 ? d : -1;
  DimVector shape(t.sizes());
  if (t.dim() > 0) shape[static_cast<size_t>(d)] = index.numel();
  const IterOperand ops[3] = {{t.raw_data(), DimVector(t.strides())},
                              {index.raw_data(), index_1d_strides(index, it_dim, t.dim())},
                              {nullptr, DimVector()}};
  const IndexIter it = make_index_iter(op, shape, it_dim, ops, dim_size(t, d), dim_stride(t, d));
  run_fill(it, t, index, value, IndexOpKind::IndexFill);
  autograd::bump_version(t);
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<IndexFillBackward>();
    node->dim = d;
    node->index = SavedVariable(index);
    autograd::rebase_history(t, node, {&t});
  }
  return t;
}

Tensor one_hot(const Tensor& index, int64_t num_classes) {
  const char* op = "one_hot";
  EMBER_CHECK(index.defined(), op, ": got an undefined tensor");
  EMBER_CHECK(index.dtype() == kInt64 || index.dtype() == kInt32, op,
              ": expected an int64 (or int32) tensor of class indices, got ", index.dtype());
  if (num_classes == -1) {
    EMBER_CHECK(index.numel() > 0, op, ": cannot infer the number of classes from an empty tensor; pass num_classes");
    // Reads the extremes to the host (a device sync on CUDA), as PyTorch does.
    const int64_t lo = min(index).item<int64_t>();
    EMBER_CHECK(lo >= 0, op, ": class values must be non-negative, got ", lo);
    num_classes = max(index).item<int64_t>() + 1;
  }
  EMBER_CHECK(num_classes >= 0, op, ": num_classes must be -1 (infer) or non-negative, got ", num_classes);
  if (index.is_cpu()) {
    if (const auto bad = cpu::first_index_out_of_range(op, index, num_classes))
      EMBER_THROW(op, ": class value ", *bad, " is out of range for num_classes ", num_classes,
                  " (expected values in [0, ", num_classes, "))");
  }
  DimVector shape(index.sizes());
  shape.push_back(num_classes);
  Tensor out = zeros(shape, TensorOptions(kInt64).device(index.device()));
  // Scatter 1 into out at [..., index[...]]: an iteration over index's shape plus a size-1 class dim.
  DimVector it_shape(index.sizes()), istrides(index.strides());
  it_shape.push_back(1);
  istrides.push_back(0);
  const int64_t cd = index.dim();
  const IterOperand ops[3] = {
      {out.raw_data(), DimVector(out.strides())}, {index.raw_data(), istrides}, {nullptr, DimVector()}};
  const IndexIter it = make_index_iter(op, it_shape, cd, ops, num_classes, 1);
  run_fill(it, out, index, 1, IndexOpKind::OneHot);
  return out;
}

}  // namespace ember
