// Joins: cat and stack (PyTorch's rules), with their backward nodes.
#include "kernels/cpu/join.h"

#include "kernels/cuda/join.h"
#include "kernels/ops.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::tensor_list;

namespace {

// PyTorch still accepts 1-D empty tensors ([0]) of any rank mismatch in cat and skips them.
bool is_legacy_empty(const Tensor& t) { return t.dim() == 1 && t.size(0) == 0; }

void check_same_device_dtype(const char* op, const std::vector<Tensor>& tensors) {
  const Tensor& first = tensors[0];
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    EMBER_CHECK(t.defined(), op, ": tensor ", i, " is undefined");
    EMBER_CHECK(t.device() == first.device(), op, ": expected all tensors on the same device, but tensor ", i,
                " (shape ", t.sizes(), ") is on ", t.device(), " and tensor 0 is on ", first.device());
    EMBER_CHECK(t.dtype() == first.dtype(), op, ": expected all tensors to have the same dtype, but tensor ", i,
                " (shape ", t.sizes(), ") is ", t.dtype(), " and tensor 0 is ", first.dtype());
  }
}

void cat_kernel(const Tensor& out, const std::vector<Tensor>& inputs, int64_t dim) {
  if (out.is_cuda())
    cuda::cat(out, inputs, dim);
  else
    cpu::cat(out, inputs, dim);
}

// Gradient of cat: the slice of the output gradient each input filled.
struct CatBackward final : Node {
  int64_t dim = 0;
  std::vector<int64_t> sizes;  // each input's extent along dim; -1 for a skipped legacy empty tensor
  std::string name() const override { return "CatBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    tensor_list out(sizes.size());
    if (!g.defined()) return out;
    int64_t offset = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] < 0) {
        if (needs_input_grad(i)) out[i] = zeros({0}, g.options());
        continue;
      }
      if (needs_input_grad(i)) out[i] = g.narrow(dim, offset, sizes[i]);
      offset += sizes[i];
    }
    return out;
  }
};

struct StackBackward final : Node {
  int64_t dim = 0;
  size_t count = 0;
  std::string name() const override { return "StackBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    tensor_list out(count);
    if (!g.defined()) return out;
    for (size_t i = 0; i < count; ++i)
      if (needs_input_grad(i)) out[i] = g.select(dim, static_cast<int64_t>(i));
    return out;
  }
};

bool any_needs_grad(const std::vector<Tensor>& tensors) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : tensors)
    if (t.requires_grad()) return true;
  return false;
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  EMBER_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  check_same_device_dtype("cat", tensors);
  // The reference for shapes is the first tensor that is not a skipped legacy empty one.
  size_t ref = tensors.size();
  for (size_t i = 0; i < tensors.size() && ref == tensors.size(); ++i)
    if (!is_legacy_empty(tensors[i])) ref = i;

  Tensor out;
  int64_t d = 0;
  std::vector<int64_t> sizes(tensors.size(), -1);
  if (ref == tensors.size()) {  // only legacy empty tensors: the result is one too
    wrap_dim("cat", dim, 1);
    out = empty({0}, tensors[0].options());
  } else {
    const Tensor& r = tensors[ref];
    const int64_t rank = r.dim();
    EMBER_CHECK(rank > 0, "cat: zero-dimensional tensor (tensor ", ref, ") cannot be concatenated");
    d = wrap_dim("cat", dim, rank);
    int64_t total = 0;
    std::vector<Tensor> inputs;
    inputs.reserve(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      if (is_legacy_empty(t)) continue;
      EMBER_CHECK(t.dim() > 0, "cat: zero-dimensional tensor (tensor ", i, ") cannot be concatenated");
      EMBER_CHECK(t.dim() == rank, "cat: tensors must have the same number of dims, but tensor ", i, " has shape ",
                  t.sizes(), " and tensor ", ref, " has shape ", r.sizes());
      for (int64_t k = 0; k < rank; ++k)
        EMBER_CHECK(k == d || t.size(k) == r.size(k), "cat: sizes of tensors must match except in dim ", d,
                    ", but tensor ", i, " has shape ", t.sizes(), " and tensor ", ref, " has shape ", r.sizes(),
                    " (dim ", k, ": expected ", r.size(k), ", got ", t.size(k), ")");
      sizes[i] = t.size(d);
      total += t.size(d);
      inputs.push_back(t);
    }
    DimVector shape(r.sizes());
    shape[static_cast<size_t>(d)] = total;
    out = empty(shape, r.options());
    cat_kernel(out, inputs, d);
  }
  if (any_needs_grad(tensors)) {
    auto node = std::make_shared<CatBackward>();
    node->dim = d;
    node->sizes = std::move(sizes);
    autograd::record(node, tensor_list{out}, tensors);
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  EMBER_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  check_same_device_dtype("stack", tensors);
  const Tensor& r = tensors[0];
  const int64_t d = wrap_dim("stack", dim, r.dim() + 1);
  // Each input as a view with a size-1 dim at d (no autograd: the node below covers the whole op).
  std::vector<Tensor> views;
  views.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    EMBER_CHECK(t.sizes() == r.sizes(), "stack: expects each tensor to be equal size, but got ", r.sizes(),
                " at entry 0 and ", t.sizes(), " at entry ", i);
    DimVector sizes(t.sizes()), strides(t.strides());
    sizes.insert(static_cast<size_t>(d), 1);
    strides.insert(static_cast<size_t>(d), d < t.dim() ? t.size(d) * t.stride(d) : 1);
    views.push_back(make_tensor(t.storage(), sizes, strides, t.storage_offset(), t.dtype()));
  }
  DimVector shape(r.sizes());
  shape.insert(static_cast<size_t>(d), static_cast<int64_t>(tensors.size()));
  Tensor out = empty(shape, r.options());
  cat_kernel(out, views, d);
  if (any_needs_grad(tensors)) {
    auto node = std::make_shared<StackBackward>();
    node->dim = d;
    node->count = tensors.size();
    autograd::record(node, tensor_list{out}, tensors);
  }
  return out;
}

}  // namespace ember
