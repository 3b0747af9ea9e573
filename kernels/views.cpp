// View ops (share storage): view, reshape, transpose, permute, narrow, slice, select, (un)squeeze,
// expand, as_strided, chunk, split, unbind; each with its backward node.
#include <algorithm>
#include <numeric>

#include "kernels/ops.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::tensor_list;

namespace {

// A view of `base`: shares its storage and remembers the root of the view chain (Note [In-place on
// views], runtime/autograd/inplace.cpp).
Tensor alias_with(const Tensor& base, IntArrayRef sizes, IntArrayRef strides, int64_t offset) {
  Tensor out = make_tensor(base.storage(), sizes, strides, offset, base.dtype());
  TensorImpl* impl = out.impl();
  const TensorImpl* b = base.impl();
  impl->view_base = b->view_base ? b->view_base : base.impl_ptr();
  impl->view_made_with_grad = GradMode::is_enabled();
  impl->view_version.store(base.version(), std::memory_order_relaxed);
  return out;
}

struct ViewBackward final : Node {  // view, reshape, flatten, (un)squeeze
  DimVector input_sizes;
  std::string name() const override { return "ViewBackward"; }
  tensor_list apply(tensor_list&& g) override { return {g[0].defined() ? g[0].reshape(input_sizes) : Tensor()}; }
};

struct PermuteBackward final : Node {  // transpose, permute, t, movedim
  DimVector inverse;
  std::string name() const override { return "PermuteBackward"; }
  tensor_list apply(tensor_list&& g) override { return {g[0].defined() ? g[0].permute(inverse) : Tensor()}; }
};

struct SliceBackward final : Node {  // narrow, slice
  DimVector input_sizes;
  int64_t dim = 0, start = 0, end = 0, step = 1;
  std::string name() const override { return "SliceBackward"; }
  tensor_list apply(tensor_list&& g) override {
    if (!g[0].defined()) return {Tensor()};
    Tensor out = zeros(input_sizes, g[0].options());
    out.slice(dim, start, end, step).copy_(g[0]);
    return {out};
  }
};

struct SelectBackward final : Node {
  DimVector input_sizes;
  int64_t dim = 0, index = 0;
  std::string name() const override { return "SelectBackward"; }
  tensor_list apply(tensor_list&& g) override {
    if (!g[0].defined()) return {Tensor()};
    Tensor out = zeros(input_sizes, g[0].options());
    out.select(dim, index).copy_(g[0]);
    return {out};
  }
};

struct ExpandBackward final : Node {
  DimVector input_sizes;
  std::string name() const override { return "ExpandBackward"; }
  tensor_list apply(tensor_list&& g) override {
    return {g[0].defined() ? autograd::sum_to(g[0], input_sizes) : Tensor()};
  }
};

struct AsStridedBackward final : Node {
  DimVector input_sizes, sizes, strides;
  int64_t offset = 0;  // relative to the (contiguous) input's first element
  std::string name() const override { return "AsStridedBackward"; }
  tensor_list apply(tensor_list&& g) override {
    if (!g[0].defined()) return {Tensor()};
    // Element k of the output reads input element positions[k]; overlapping reads accumulate.
    const int64_t n = product(input_sizes);
    Tensor positions = arange(n, TensorOptions(kInt64).device(g[0].device())).as_strided(sizes, strides, offset);
    Tensor flat = zeros({n}, g[0].options());
    flat.index_add_(0, positions.reshape({-1}), g[0].reshape({-1}));
    return {flat.view(input_sizes)};
  }
};

template <class NodeT>
Tensor finish_view(Tensor out, const Tensor& base, std::shared_ptr<NodeT> node) {
  autograd::record_view(node, out, base);
  return out;
}

// Replaces one -1 in `sizes` by what makes the element count match `numel`.
DimVector infer_size(const char* op, IntArrayRef sizes, int64_t numel) {
  DimVector out(sizes);
  int64_t known = 1;
  int infer = -1;
  bool overflow = false, zero = false;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] == -1) {
      EMBER_CHECK(infer < 0, op, ": only one dimension can be -1 in the shape ", sizes);
      infer = static_cast<int>(i);
    } else {
      EMBER_CHECK(sizes[i] >= 0, op, ": invalid size ", sizes[i], " in the shape ", sizes);
      zero = zero || sizes[i] == 0;
      overflow = __builtin_mul_overflow(known, sizes[i], &known) || overflow;
    }
  }
  if (zero) known = 0;
  // More elements than int64 holds can never match (a zero size anywhere makes the product 0).
  EMBER_CHECK(!overflow || zero, op, ": shape ", sizes, " is invalid for input of size ", numel);
  if (infer >= 0) {
    EMBER_CHECK(known != 0 && numel % known == 0, op, ": shape ", sizes, " is invalid for input of size ", numel);
    out[static_cast<size_t>(infer)] = numel / known;
  } else {
    EMBER_CHECK(known == numel, op, ": shape ", sizes, " is invalid for input of size ", numel);
  }
  return out;
}

// Strides that view `old_sizes/old_strides` as `new_sizes` without a copy, if possible
// (PyTorch's computeStride: chunks of contiguous dims may be re-split freely).
bool compute_view_strides(IntArrayRef old_sizes, IntArrayRef old_strides, IntArrayRef new_sizes, DimVector& out) {
  out = DimVector(new_sizes.size());
  if (old_sizes.empty()) {  // 0-d -> all-ones shape
    for (size_t i = 0; i < new_sizes.size(); ++i) out[i] = 1;
    return true;
  }
  if (product(old_sizes) == 0) {
    out = contiguous_strides(new_sizes);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(new_sizes.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = static_cast<int64_t>(old_sizes.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= old_sizes[tensor_d];
    if (tensor_d == 0 ||
        (old_sizes[tensor_d - 1] != 1 && old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_sizes[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_sizes[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (tensor_d > 0) {
        chunk_base_stride = old_strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

Tensor view(const Tensor& t, IntArrayRef sizes) {
  const DimVector shape = infer_size("view", sizes, t.numel());
  DimVector strides;
  EMBER_CHECK(compute_view_strides(t.sizes(), t.strides(), shape, strides), "view: a tensor of shape ", t.sizes(),
              " with strides ", t.strides(), " cannot be viewed as ", shape,
              " (it is not contiguous enough); use reshape(), which copies when it must");
  Tensor out = alias_with(t, shape, strides, t.storage_offset());
  if (!autograd::needs_grad(t)) return out;
  auto node = std::make_shared<ViewBackward>();
  node->input_sizes = t.sizes();
  return finish_view(out, t, node);
}

Tensor reshape(const Tensor& t, IntArrayRef sizes) {
  const DimVector shape = infer_size("reshape", sizes, t.numel());
  DimVector strides;
  if (compute_view_strides(t.sizes(), t.strides(), shape, strides)) return view(t, shape);
  return view(clone(t), shape);
}

Tensor flatten(const Tensor& t, int64_t start_dim, int64_t end_dim) {
  if (t.dim() == 0) return reshape(t, {1});
  const int64_t s = wrap_dim("flatten", start_dim, t.dim());
  const int64_t e = wrap_dim("flatten", end_dim, t.dim());
  EMBER_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  if (s == e) return t;
  DimVector shape;
  for (int64_t d = 0; d < s; ++d) shape.push_back(t.size(d));
  int64_t merged = 1;
  for (int64_t d = s; d <= e; ++d) merged *= t.size(d);
  shape.push_back(merged);
  for (int64_t d = e + 1; d < t.dim(); ++d) shape.push_back(t.size(d));
  return reshape(t, shape);
}

Tensor Tensor::unflatten(int64_t d, IntArrayRef sizes) const {
  const int64_t dd = wrap_dim("unflatten", d, dim());
  DimVector shape;
  for (int64_t i = 0; i < dd; ++i) shape.push_back(size(i));
  const DimVector inner = infer_size("unflatten", sizes, size(dd));
  for (int64_t v : inner) shape.push_back(v);
  for (int64_t i = dd + 1; i < dim(); ++i) shape.push_back(size(i));
  return ember::view(*this, shape);
}

Tensor permute(const Tensor& t, IntArrayRef dims) {
  const int64_t n = t.dim();
  EMBER_CHECK(static_cast<int64_t>(dims.size()) == n, "permute: got ", dims.size(), " dims ", dims,
              " for a tensor of ", n, " dims (shape ", t.sizes(), ")");
  DimVector sizes(n), strides(n), inverse(n);
  std::vector<bool> seen(static_cast<size_t>(n), false);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t d = wrap_dim("permute", dims[i], n);
    EMBER_CHECK(!seen[d], "permute: dim ", d, " appears twice in ", dims);
    seen[d] = true;
    sizes[i] = t.size(d);
    strides[i] = t.stride(d);
    inverse[d] = i;
  }
  Tensor out = alias_with(t, sizes, strides, t.storage_offset());
  if (!autograd::needs_grad(t)) return out;
  auto node = std::make_shared<PermuteBackward>();
  node->inverse = inverse;
  return finish_view(out, t, node);
}

Tensor transpose(const Tensor& t, int64_t dim0, int64_t dim1) {
  const int64_t n = t.dim();
  if (n == 0) {
    wrap_dim("transpose", dim0, n);
    wrap_dim("transpose", dim1, n);
    return permute(t, {});
  }
  const int64_t a = wrap_dim("transpose", dim0, n), b = wrap_dim("transpose", dim1, n);
  DimVector perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[a], perm[b]);
  return permute(t, perm);
}

// t's storage offset moved by index * stride. Only an empty tensor can have strides whose products pass int64
// (a real one addresses memory): its offset addresses nothing, and stays.
int64_t view_offset(const Tensor& t, int64_t index, int64_t stride) {
  int64_t moved = 0, out = 0;
  if (!__builtin_mul_overflow(index, stride, &moved) && !__builtin_add_overflow(t.storage_offset(), moved, &out))
    return out;
  EMBER_ASSERT(t.numel() == 0, "view offset ", t.storage_offset(), " + ", index, " * ", stride,
               " overflows for a tensor of ", t.numel(), " elements");
  return t.storage_offset();
}

Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step) {
  EMBER_CHECK(t.dim() > 0, "slice: cannot slice a 0-d tensor");
  const int64_t d = wrap_dim("slice", dim, t.dim());
  EMBER_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t size = t.size(d);
  // Python slicing rules: negative indices count from the end, out-of-range ones clamp.
  if (start < 0) start += size;
  if (end < 0) end += size;
  start = std::clamp<int64_t>(start, 0, size);
  end = std::clamp<int64_t>(end, start, size);
  DimVector sizes(t.sizes()), strides(t.strides());
  // end - start <= size, so the count cannot overflow. stride * step can for a huge step, which leaves at most
  // one element, or for an empty tensor's saturated strides (contiguous_strides): the input's stride is kept.
  sizes[d] = end == start ? 0 : (end - start - 1) / step + 1;
  if (sizes[d] <= 1) {
    strides[d] = t.stride(d);  // one element or none: the step moves nothing (and a huge one would overflow)
  } else if (__builtin_mul_overflow(t.stride(d), step, &strides[d])) {
    EMBER_CHECK(t.numel() == 0, "slice: stride ", t.stride(d), " times step ", step, " overflows int64 (dim ", d,
                " of shape ", t.sizes(), ")");
    strides[d] = t.stride(d);  // an empty tensor's (saturated) strides address nothing
  }
  Tensor out = alias_with(t, sizes, strides, view_offset(t, start, t.stride(d)));
  if (!autograd::needs_grad(t)) return out;
  auto node = std::make_shared<SliceBackward>();
  node->input_sizes = t.sizes();
  node->dim = d;
  node->start = start;
  node->end = end;
  node->step = step;
  return finish_view(out, t, node);
}

Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length) {
  EMBER_CHECK(t.dim() > 0, "narrow: cannot narrow a 0-d tensor");
  const int64_t d = wrap_dim("narrow", dim, t.dim());
  const int64_t size = t.size(d);
  if (start < 0) start += size;
  EMBER_CHECK(start >= 0 && length >= 0 && start <= size && length <= size - start, "narrow: start ", start,
              " and length ", length,
              " exceed dim ", d, " of size ", size, " (shape ", t.sizes(), ")");
  return slice(t, d, start, start + length, 1);
}

Tensor select(const Tensor& t, int64_t dim, int64_t index) {
  EMBER_CHECK(t.dim() > 0, "select: cannot select from a 0-d tensor");
  const int64_t d = wrap_dim("select", dim, t.dim());
  const int64_t size = t.size(d);
  EMBER_CHECK(index >= -size && index < size, "select: index ", index, " is out of range for dim ", d, " of size ",
              size, " (shape ", t.sizes(), ")");
  if (index < 0) index += size;
  DimVector sizes(t.sizes()), strides(t.strides());
  sizes.erase(static_cast<size_t>(d));
  strides.erase(static_cast<size_t>(d));
  Tensor out = alias_with(t, sizes, strides, view_offset(t, index, t.stride(d)));
  if (!autograd::needs_grad(t)) return out;
  auto node = std::make_shared<SelectBackward>();
  node->input_sizes = t.sizes();
  node->dim = d;
  node->index = index;
  return finish_view(out, t, node);
}

Tensor unsqueeze(const Tensor& t, int64_t dim) {
  const int64_t d = wrap_dim("unsqueeze", dim, t.dim() + 1);
  DimVector sizes(t.sizes()), strides(t.strides());
  int64_t stride = 1;  // the new dim has size 1: its stride only keeps contiguous tensors contiguous
  if (d < t.dim() && __builtin_mul_overflow(t.size(d), t.stride(d), &stride)) stride = 1;
  sizes.insert(static_cast<size_t>(d), 1);
  strides.insert(static_cast<size_t>(d), stride);
  Tensor out = alias_with(t, sizes, strides, t.storage_offset());
  if (!autograd::needs_grad(t)) return out;
  auto node = std::make_shared<ViewBackward>();
  node->input_sizes = t.sizes();
  return finish_view(out, t, node);
}

namespace {
Tensor squeeze_dims(const Tensor& t, const std::vector<bool>& drop) {
  DimVector sizes, strides;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (drop[d]) continue;
    sizes.push_back(t.size(d));
    strides.push_back(t.stride(d));
  }
  Tensor out = alias_with(t, sizes, strides, t.storage_offset());
  if (!autograd::needs_grad(t)) return out;
  auto node = std::make_shared<ViewBackward>();
  node->input_sizes = t.sizes();
  return finish_view(out, t, node);
}
}  // namespace

Tensor squeeze(const Tensor& t) {
  std::vector<bool> drop(static_cast<size_t>(t.dim()));
  for (int64_t d = 0; d < t.dim(); ++d) drop[d] = t.size(d) == 1;
  return squeeze_dims(t, drop);
}

Tensor squeeze(const Tensor& t, int64_t dim) {
  const int64_t d = wrap_dim("squeeze", dim, t.dim());
  std::vector<bool> drop(static_cast<size_t>(t.dim()));
  if (t.dim() > 0) drop[d] = t.size(d) == 1;
  return squeeze_dims(t, drop);
}

Tensor expand(const Tensor& t, IntArrayRef sizes) {
  const int64_t n = static_cast<int64_t>(sizes.size());
  EMBER_CHECK(n >= t.dim(), "expand: the target shape ", sizes, " has fewer dims than the tensor's shape ", t.sizes());
  DimVector out_sizes(n), out_strides(n);
  for (int64_t i = n - 1; i >= 0; --i) {
    const int64_t ti = i - (n - t.dim());
    const int64_t want = sizes[i];
    if (ti < 0) {
      EMBER_CHECK(want >= 0, "expand: the shape ", sizes, " has a -1 (or negative size) in a new leading dim");
      out_sizes[i] = want;
      out_strides[i] = 0;
      continue;
    }
    const int64_t have = t.size(ti);
    if (want == -1 || want == have) {
      out_sizes[i] = have;
      out_strides[i] = t.stride(ti);
    } else {
      EMBER_CHECK(have == 1, "expand: the expanded size ", want, " must match the existing size ", have,
                  " at non-singleton dim ", i, " (tensor shape ", t.sizes(), ", target ", sizes, ")");
      EMBER_CHECK(want >= 0, "expand: invalid size ", want, " in ", sizes);
      out_sizes[i] = want;
      out_strides[i] = 0;
    }
  }
  Tensor out = alias_with(t, out_sizes, out_strides, t.storage_offset());
  if (!autograd::needs_grad(t)) return out;
  auto node = std::make_shared<ExpandBackward>();
  node->input_sizes = t.sizes();
  return finish_view(out, t, node);
}

Tensor as_strided(const Tensor& t, IntArrayRef sizes, IntArrayRef strides, int64_t storage_offset) {
  EMBER_CHECK(sizes.size() == strides.size(), "as_strided: ", sizes.size(), " sizes but ", strides.size(), " strides");
  int64_t max_offset = storage_offset;
  bool empty_view = false;
  for (size_t i = 0; i < sizes.size(); ++i) {
    EMBER_CHECK(sizes[i] >= 0 && strides[i] >= 0, "as_strided: negative size or stride in ", sizes, " / ", strides);
    if (sizes[i] == 0) empty_view = true;
    max_offset += (sizes[i] - 1) * strides[i];
  }
  EMBER_CHECK(storage_offset >= 0, "as_strided: negative storage offset ", storage_offset);
  const int64_t capacity = static_cast<int64_t>(t.storage()->nbytes() / t.element_size());
  EMBER_CHECK(empty_view || max_offset < capacity, "as_strided: sizes ", sizes, " and strides ", strides,
              " at offset ", storage_offset, " reach element ", max_offset, " but the storage holds ", capacity);
  Tensor out = alias_with(t, sizes, strides, storage_offset);
  if (!autograd::needs_grad(t)) return out;
  EMBER_CHECK(t.is_contiguous(), "as_strided: gradients need a contiguous input (got strides ", t.strides(),
              "); call contiguous() first");
  auto node = std::make_shared<AsStridedBackward>();
  node->input_sizes = t.sizes();
  node->sizes = sizes;
  node->strides = strides;
  node->offset = storage_offset - t.storage_offset();
  EMBER_CHECK(node->offset >= 0 && (empty_view || max_offset - t.storage_offset() < t.numel()),
              "as_strided: with gradients, the view must stay within the input's own elements");
  return finish_view(out, t, node);
}

std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim) {
  EMBER_CHECK(t.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t d = wrap_dim("split", dim, t.dim());
  EMBER_CHECK(split_size > 0 || (split_size == 0 && t.size(d) == 0), "split: split_size must be positive, got ",
              split_size);
  const int64_t size = t.size(d);
  std::vector<Tensor> out;
  if (size == 0) return {t};
  for (int64_t start = 0; start < size; start += split_size)
    out.push_back(narrow(t, d, start, std::min(split_size, size - start)));
  return out;
}

std::vector<Tensor> split(const Tensor& t, IntArrayRef split_sizes, int64_t dim) {
  EMBER_CHECK(t.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t d = wrap_dim("split", dim, t.dim());
  int64_t total = 0;
  for (int64_t s : split_sizes) {
    EMBER_CHECK(s >= 0, "split: negative size in ", split_sizes);
    total += s;
  }
  EMBER_CHECK(total == t.size(d), "split: sizes ", split_sizes, " add up to ", total, " but dim ", d, " has size ",
              t.size(d));
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : split_sizes) {
    out.push_back(narrow(t, d, start, s));
    start += s;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int64_t dim) {
  EMBER_CHECK(chunks > 0, "chunk: the number of chunks must be positive, got ", chunks);
  EMBER_CHECK(t.dim() > 0, "chunk: cannot chunk a 0-d tensor");
  const int64_t d = wrap_dim("chunk", dim, t.dim());
  const int64_t size = t.size(d);
  const int64_t each = (size + chunks - 1) / chunks;  // PyTorch: ceil, so there may be fewer chunks
  if (each == 0) return {t};
  return split(t, each, d);
}

std::vector<Tensor> unbind(const Tensor& t, int64_t dim) {
  EMBER_CHECK(t.dim() > 0, "unbind: cannot unbind a 0-d tensor");
  const int64_t d = wrap_dim("unbind", dim, t.dim());
  std::vector<Tensor> out;
  for (int64_t i = 0; i < t.size(d); ++i) out.push_back(select(t, d, i));
  return out;
}

// ---- Tensor methods ------------------------------------------------------------------------------

Tensor Tensor::view(IntArrayRef s) const { return ember::view(*this, s); }
Tensor Tensor::reshape(IntArrayRef s) const { return ember::reshape(*this, s); }
Tensor Tensor::flatten(int64_t s, int64_t e) const { return ember::flatten(*this, s, e); }
Tensor Tensor::transpose(int64_t a, int64_t b) const { return ember::transpose(*this, a, b); }
Tensor Tensor::t() const {
  EMBER_CHECK(dim() <= 2, "t: expects a tensor of at most 2 dims, got shape ", sizes(), "; use transpose()");
  return dim() < 2 ? *this : ember::transpose(*this, 0, 1);
}
Tensor Tensor::permute(IntArrayRef dims) const { return ember::permute(*this, dims); }
Tensor Tensor::movedim(int64_t source, int64_t destination) const {
  const int64_t n = dim();
  const int64_t s = wrap_dim("movedim", source, n), d = wrap_dim("movedim", destination, n);
  std::vector<int64_t> order;
  for (int64_t i = 0; i < n; ++i)
    if (i != s) order.push_back(i);
  order.insert(order.begin() + d, s);
  return ember::permute(*this, order);
}
Tensor Tensor::narrow(int64_t d, int64_t s, int64_t l) const { return ember::narrow(*this, d, s, l); }
Tensor Tensor::slice(int64_t d, int64_t s, int64_t e, int64_t st) const { return ember::slice(*this, d, s, e, st); }
Tensor Tensor::select(int64_t d, int64_t i) const { return ember::select(*this, d, i); }
Tensor Tensor::unsqueeze(int64_t d) const { return ember::unsqueeze(*this, d); }
Tensor Tensor::squeeze() const { return ember::squeeze(*this); }
Tensor Tensor::squeeze(int64_t d) const { return ember::squeeze(*this, d); }
Tensor Tensor::expand(IntArrayRef s) const { return ember::expand(*this, s); }
Tensor Tensor::as_strided(IntArrayRef s, IntArrayRef st, int64_t o) const { return ember::as_strided(*this, s, st, o); }
std::vector<Tensor> Tensor::chunk(int64_t c, int64_t d) const { return ember::chunk(*this, c, d); }
std::vector<Tensor> Tensor::split(int64_t s, int64_t d) const { return ember::split(*this, s, d); }
std::vector<Tensor> Tensor::split(IntArrayRef s, int64_t d) const { return ember::split(*this, s, d); }
std::vector<Tensor> Tensor::split_with_sizes(IntArrayRef s, int64_t d) const { return ember::split(*this, s, d); }
std::vector<Tensor> Tensor::unbind(int64_t d) const { return ember::unbind(*this, d); }

}  // namespace ember
