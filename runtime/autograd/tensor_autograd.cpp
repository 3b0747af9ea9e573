// The autograd methods of Tensor: requires_grad, grad, backward, hooks, detach.
#include "runtime/autograd/engine.h"
#include "runtime/autograd/meta.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::AutogradMeta;

AutogradMeta& Tensor::ensure_autograd_meta() const {
  TensorImpl* impl = checked();
  if (!impl->autograd) impl->autograd = std::make_unique<AutogradMeta>();
  return *impl->autograd;
}

bool Tensor::requires_grad() const {
  autograd::refresh_view_history(*this);
  const AutogradMeta* m = checked()->autograd.get();
  return m && (m->requires_grad || m->grad_fn);
}

const Tensor& Tensor::requires_grad_(bool requires_grad) const {
  AutogradMeta* m = autograd_meta();
  if (m && m->grad_fn) {
    EMBER_CHECK(requires_grad, "requires_grad_: you can only change requires_grad of leaf tensors; this one was "
                "computed by ", m->grad_fn->name(), ". Use detach() to get a leaf");
    return *this;
  }
  if (requires_grad) {
    EMBER_CHECK(is_floating_point(), "requires_grad_: only floating-point tensors can require gradients; got dtype ",
                dtype());
    ensure_autograd_meta().requires_grad = true;
  } else if (m) {
    m->requires_grad = false;
  }
  return *this;
}

Tensor& Tensor::requires_grad_(bool requires_grad) {
  static_cast<const Tensor*>(this)->requires_grad_(requires_grad);
  return *this;
}

Tensor Tensor::grad() const {
  const AutogradMeta* m = autograd_meta();
  return m ? m->grad : Tensor();
}

Tensor& Tensor::mutable_grad() const { return ensure_autograd_meta().grad; }

void Tensor::set_grad(const Tensor& grad) const {
  if (grad.defined()) {
    EMBER_CHECK(grad.sizes() == sizes(), "set_grad: the gradient has shape ", grad.sizes(), " but the tensor has shape ",
                sizes());
    EMBER_CHECK(grad.device() == device(), "set_grad: the gradient is on ", grad.device(), " but the tensor is on ",
                device());
    EMBER_CHECK(grad.dtype() == dtype(), "set_grad: the gradient has dtype ", grad.dtype(),
                " but the tensor has dtype ", dtype());
  }
  AutogradMeta& m = ensure_autograd_meta();
  std::lock_guard<std::mutex> lock(m.mutex);
  m.grad = grad;
}

bool Tensor::is_leaf() const {
  autograd::refresh_view_history(*this);
  const AutogradMeta* m = autograd_meta();
  return !m || !m->grad_fn;
}

const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<autograd::Node> none;
  autograd::refresh_view_history(*this);
  const AutogradMeta* m = autograd_meta();
  return m ? m->grad_fn : none;
}

uint32_t Tensor::output_nr() const {
  autograd::refresh_view_history(*this);
  const AutogradMeta* m = autograd_meta();
  return m ? m->output_nr : 0;
}

void Tensor::set_data(const Tensor& new_data) const {
  EMBER_CHECK(new_data.defined(), "set_data: the new data is undefined");
  TensorImpl* impl = checked();
  const TensorImpl* src = new_data.checked();
  if (impl == src) return;
  impl->storage = src->storage;
  impl->sizes = src->sizes;
  impl->strides = src->strides;
  impl->offset = src->offset;
  impl->dtype = src->dtype;
  impl->device = src->device;
  impl->refresh();
  if (AutogradMeta* m = impl->autograd.get()) {
    // The old accumulator describes the old shape/device; the next graph gets a fresh one.
    std::lock_guard<std::mutex> lock(m->mutex);
    m->grad_accumulator.reset();
  }
}

Tensor Tensor::detach() const {
  const TensorImpl* impl = checked();
  return make_tensor(impl->storage, impl->sizes, impl->strides, impl->offset, impl->dtype);
}

Tensor& Tensor::detach_() {
  EMBER_CHECK(!(is_view() && requires_grad()), "detach_: cannot detach a view of a tensor that requires grad in "
              "place (its base's graph goes on through it); use detach() instead");
  AutogradMeta* m = autograd_meta();
  if (m) {
    m->grad_fn.reset();
    m->output_nr = 0;
    m->requires_grad = false;
  }
  return *this;
}

void Tensor::retain_grad() const {
  AutogradMeta& m = ensure_autograd_meta();
  if (!m.grad_fn) return;  // leaves always keep their grad
  if (m.retains_grad) return;
  m.retains_grad = true;
  // The hook refers to the tensor weakly: the graph must not keep the tensor alive.
  std::weak_ptr<TensorImpl> weak = impl_ptr();
  m.grad_fn->add_pre_hook(m.output_nr, [weak](const Tensor& g) -> Tensor {
    if (auto impl = weak.lock()) {
      Tensor self(impl);
      AutogradMeta& meta = self.ensure_autograd_meta();
      std::lock_guard<std::mutex> lock(meta.mutex);
      meta.grad = meta.grad.defined() ? meta.grad + g : g.detach().clone();
    }
    return Tensor();
  });
}

bool Tensor::retains_grad() const {
  const AutogradMeta* m = autograd_meta();
  return m && m->retains_grad;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this}, {gradient}, retain_graph);
}

size_t Tensor::register_hook(Hook hook) const {
  EMBER_CHECK(requires_grad(), "register_hook: cannot register a hook on a tensor that does not require grad");
  AutogradMeta& m = ensure_autograd_meta();
  if (m.grad_fn) return m.grad_fn->add_pre_hook(m.output_nr, std::move(hook));
  std::lock_guard<std::mutex> lock(m.mutex);
  m.hooks.push_back(std::move(hook));
  return m.hooks.size() - 1;
}

size_t Tensor::register_hook(VoidHook hook) const {
  return register_hook(Hook([h = std::move(hook)](const Tensor& g) {
    h(g);
    return Tensor();
  }));
}

void Tensor::remove_hook(size_t handle) const {
  AutogradMeta* m = autograd_meta();
  if (!m) return;
  if (m->grad_fn) {
    m->grad_fn->remove_pre_hook(handle);
    return;
  }
  std::lock_guard<std::mutex> lock(m->mutex);
  if (handle < m->hooks.size()) m->hooks[handle] = nullptr;
}

size_t Tensor::register_post_accumulate_grad_hook(VoidHook hook) const {
  EMBER_CHECK(is_leaf() && requires_grad(),
              "register_post_accumulate_grad_hook: only leaf tensors that require grad have an accumulated gradient");
  AutogradMeta& m = ensure_autograd_meta();
  std::lock_guard<std::mutex> lock(m.mutex);
  m.post_accumulate_hooks.push_back(std::move(hook));
  return m.post_accumulate_hooks.size() - 1;
}

}  // namespace ember
