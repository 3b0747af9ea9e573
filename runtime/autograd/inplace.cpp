// In-place ops and autograd: the checks before a write, and the history after it, including writes
// into views (CopySlices) and views whose base was written (regenerated view history).
#include <algorithm>
#include <utility>

#include "kernels/ops.h"
#include "runtime/autograd/node.h"

namespace ember::autograd {

// Note [In-place on views]
// Every view op (kernels/views.cpp) records the root tensor it views (TensorImpl::view_base, never
// itself a view) and the storage version at which the view's history was made. When an in-place op
// writes into a view `v` of `base` and records a backward node `fn` (as PyTorch does):
//  - base gets a new grad_fn, CopySlices(fn): the gradient for the new base, with the region `v`
//    covers replaced by fn's gradient for the old `v` (which was that region of the old base), goes
//    to base's old history; fn's gradients for its other inputs go to theirs. So
//    `y = zeros(..); y.narrow(0, 1, 3).copy_(x)` makes y depend on x.
//  - v gets a new grad_fn, an as_strided view of base's new history (AsStridedBackward).
// Other views of the same storage find out through the version counter: their next use (grad_fn(),
// requires_grad(), or as an op input) sees a version newer than the one their history was made at
// and regenerates it the same way, as a view of base's current history. Refused, with an error, are
// writes into views of a leaf that requires grad (the leaf's value would change under the optimizer)
// and writes into a view that does not require grad while its base does (a view made with grad mode
// off: the write would be invisible to the base's graph).

namespace {

// The base whose history a write into `t` must rewrite: its view base, unless set_data() has since
// moved that base to other memory (then the write no longer touches it).
const TensorImpl* live_base(const TensorImpl* t) {
  const TensorImpl* base = t->view_base.get();
  return base && base->storage == t->storage ? base : nullptr;
}

struct Geometry {
  DimVector sizes, strides;
  int64_t offset = 0;
  static Geometry of(const Tensor& t) { return {DimVector(t.sizes()), DimVector(t.strides()), t.storage_offset()}; }
};

// Whether no two elements of the geometry share memory (sufficient test: with the dims sorted by
// stride, each stride steps past everything the smaller dims span).
bool non_overlapping(const Geometry& g) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of dims with size > 1
  for (size_t d = 0; d < g.sizes.size(); ++d)
    if (g.sizes[d] > 1) dims.emplace_back(std::abs(g.strides[d]), g.sizes[d]);
  std::sort(dims.begin(), dims.end());
  int64_t span = 1;
  for (const auto& [stride, size] : dims) {
    if (stride < span) return false;
    span += stride * (size - 1);
  }
  return true;
}

// A zero buffer covering the storage elements of `base` and `view`, and the two laid over it.
struct GradBuffer {
  Tensor buffer, base, view;
  int64_t lowest = 0;  // storage position of buffer element 0
};

GradBuffer grad_buffer(const Geometry& base, const Geometry& view, const TensorOptions& options) {
  int64_t lo = 0, hi = 0;
  bool any = false;
  for (const Geometry* g : {&base, &view}) {
    if (product(g->sizes) == 0) continue;
    int64_t glo = g->offset, ghi = g->offset;
    for (size_t d = 0; d < g->sizes.size(); ++d) {
      const int64_t reach = (g->sizes[d] - 1) * g->strides[d];
      (reach < 0 ? glo : ghi) += reach;
    }
    lo = any ? std::min(lo, glo) : glo;
    hi = any ? std::max(hi, ghi) : ghi;
    any = true;
  }
  GradBuffer b;
  b.lowest = lo;
  b.buffer = zeros({hi - lo + 1}, options);
  auto lay = [&](const Geometry& g) {
    return b.buffer.as_strided(g.sizes, g.strides, product(g.sizes) == 0 ? 0 : g.offset - lo);
  };
  b.base = lay(base);
  b.view = lay(view);
  return b;
}

// The history of a view, read from its base's: the base's gradient is zero except where the view
// lies, which gets the view's gradient (summed where the view's elements overlap, as for expand).
struct ViewOfBaseBackward final : Node {
  Geometry base, view;
  std::string name() const override { return "AsStridedBackward"; }
  tensor_list apply(tensor_list&& g) override {
    if (!g[0].defined()) return {Tensor()};
    GradBuffer b = grad_buffer(base, view, g[0].options());
    if (non_overlapping(view)) {
      b.view.copy_(g[0]);
    } else {
      Tensor positions = arange(b.buffer.numel(), TensorOptions(kInt64).device(g[0].device()))
                             .as_strided(view.sizes, view.strides, view.offset - b.lowest);
      b.buffer.index_add_(0, positions.reshape({-1}), g[0].reshape({-1}));
    }
    return {b.base};
  }
};

// The new history of a base after `fn` wrote in place into one of its views (Note [In-place on
// views]). Next edges: the base's old history, then fn's inputs other than the view itself.
struct CopySlices final : Node {
  Geometry base, view;
  std::shared_ptr<Node> fn;
  int self_slot = -1;  // which of fn's inputs is the view (-1: none, e.g. copy_, fill_)
  std::string name() const override { return "CopySlices"; }
  tensor_list apply(tensor_list&& g) override {
    tensor_list out(num_outputs());
    if (!g[0].defined()) return out;
    GradBuffer b = grad_buffer(base, view, g[0].options());
    b.base.copy_(g[0]);
    tensor_list res = fn->apply({b.view.clone()});
    const auto slot = static_cast<size_t>(self_slot);
    if (self_slot >= 0 && slot < res.size() && res[slot].defined())
      b.view.copy_(res[slot]);
    else
      b.view.zero_();
    out[0] = b.base;
    size_t k = 1;
    for (size_t i = 0; i < res.size() && k < out.size(); ++i)
      if (static_cast<int>(i) != self_slot) out[k++] = std::move(res[i]);
    return out;
  }
  void release_variables() override { fn->mark_released(); }
};

// `view`'s history becomes an as_strided view of `base`'s current history.
void set_view_of_base_history(const Tensor& view, const Tensor& base) {
  auto node = std::make_shared<ViewOfBaseBackward>();
  node->base = Geometry::of(base);
  node->view = Geometry::of(view);
  record(node, {&view}, {&base});
}

}  // namespace

void check_inplace(const char* op, const Tensor& self) {
  if (!GradMode::is_enabled()) return;
  const AutogradMeta* meta = self.autograd_meta();
  EMBER_CHECK(!(meta && meta->requires_grad && !meta->grad_fn), op,
              ": a leaf tensor that requires grad is being used in an in-place operation; do it under "
              "NoGradGuard (as optimizers do) or on a clone()");
  const TensorImpl* impl = self.impl();
  if (!live_base(impl)) return;
  const Tensor base(impl->view_base);
  if (!base.requires_grad()) return;
  EMBER_CHECK(!base.is_leaf(), op, ": a view of a leaf tensor that requires grad (shape ", base.sizes(),
              ") is being used in an in-place operation; do it under NoGradGuard, or on a clone()");
  EMBER_CHECK(self.requires_grad(), op, ": the view of shape ", self.sizes(), " does not require grad but its base (shape ",
              base.sizes(), ", computed by ", base.grad_fn()->name(), ") does: the view was made with grad mode "
              "off, and writing into it with grad mode on would hide the write from the base's gradient. Make the "
              "view with grad mode on, or write under NoGradGuard");
}

void bump_version(const Tensor& self) { self.storage()->bump_version(); }

void rebase_history(const Tensor& self, const std::shared_ptr<Node>& node,
                    std::initializer_list<const Tensor*> inputs) {
  TensorImpl* impl = self.impl();
  auto& edges = node->mutable_next_edges();
  edges.clear();
  if (!live_base(impl)) {
    // Edges first (they see self's old history), then self's new history.
    for (const Tensor* in : inputs) edges.push_back(in ? gradient_edge(*in) : Edge{});
    node->set_device(self.device());
    set_history(self, node);
    return;
  }
  // A view: the write becomes part of its base's history (Note [In-place on views]).
  const Tensor base(impl->view_base);
  const Edge base_edge = gradient_edge(base);
  auto copy_slices = std::make_shared<CopySlices>();
  copy_slices->base = Geometry::of(base);
  copy_slices->view = Geometry::of(self);
  copy_slices->fn = node;
  auto& cs_edges = copy_slices->mutable_next_edges();
  cs_edges.push_back(base_edge);
  int slot = 0;
  for (const Tensor* in : inputs) {
    const bool is_self = in && (in == &self || in->is_same(self)) && copy_slices->self_slot < 0;
    // The old view was a region of the old base: its gradient goes there, through CopySlices.
    edges.push_back(is_self ? base_edge : in ? gradient_edge(*in) : Edge{});
    if (is_self)
      copy_slices->self_slot = slot;
    else
      cs_edges.push_back(edges.back());
    ++slot;
  }
  node->add_input_meta(self);
  node->set_device(self.device());
  copy_slices->set_device(base.device());
  set_history(base, copy_slices);
  set_view_of_base_history(self, base);
  impl->view_version.store(self.version(), std::memory_order_release);
}

namespace {
struct FillBackward final : Node {
  std::string name() const override { return "FillBackward"; }
  tensor_list apply(tensor_list&&) override { return {}; }
};
}  // namespace

void rebase_history_overwritten(const Tensor& self) {
  if (GradMode::is_enabled() && self.requires_grad()) rebase_history(self, std::make_shared<FillBackward>(), {});
}

void regenerate_view_history(const Tensor& view) {
  TensorImpl* impl = view.impl();
  const uint32_t now = impl->storage->version();
  const Tensor base(impl->view_base);
  // Views made with grad mode off stay out of the graph; so does everything when the base needs no grad.
  if (!impl->view_made_with_grad || !live_base(impl) || !base.requires_grad()) {
    impl->view_version.store(now, std::memory_order_release);
    return;
  }
  AutogradMeta& meta = view.ensure_autograd_meta();
  std::lock_guard<std::mutex> lock(meta.mutex);
  if (impl->view_version.load(std::memory_order_acquire) == now) return;
  // A view that is a leaf of its own (requires_grad_() on it) keeps its identity.
  if (!(meta.requires_grad && !meta.grad_fn)) set_view_of_base_history(view, base);
  impl->view_version.store(now, std::memory_order_release);
}

}  // namespace ember::autograd
