// Node bookkeeping, AccumulateGrad, SavedVariable and the recording helpers ops call.
#include "runtime/autograd/node.h"

#include <atomic>

#include "kernels/ops.h"
#include "runtime/cuda/stream.h"

namespace ember::autograd {

namespace {
std::atomic<uint64_t> next_sequence_nr{0};
}

Node::Node() : sequence_nr_(next_sequence_nr.fetch_add(1, std::memory_order_relaxed)) {}
Node::~Node() = default;

uint32_t Node::add_input_meta(const Tensor& t) {
  input_meta_.push_back(InputMeta{DimVector(t.sizes()), t.dtype(), t.device()});
  return static_cast<uint32_t>(input_meta_.size() - 1);
}

void Node::set_device(Device device) {
  device_ = device;
  stream_ = device.is_cuda() ? cuda::current_stream(device.index()).handle() : nullptr;
}

size_t Node::add_pre_hook(uint32_t output_nr, Tensor::Hook hook) {
  pre_hooks_.emplace_back(output_nr, std::move(hook));
  return pre_hooks_.size() - 1;
}

void Node::remove_pre_hook(size_t handle) {
  if (handle < pre_hooks_.size()) pre_hooks_[handle].second = nullptr;
}

void Node::run_pre_hooks(tensor_list& grads) {
  for (auto& [nr, hook] : pre_hooks_) {
    if (!hook || nr >= grads.size() || !grads[nr].defined()) continue;
    Tensor replaced = hook(grads[nr]);
    if (replaced.defined()) grads[nr] = std::move(replaced);
  }
}

// ---- AccumulateGrad -----------------------------------------------------------------------------

AccumulateGrad::AccumulateGrad(Tensor leaf) : variable_(std::move(leaf)) {
  add_input_meta(variable_);
  set_device(variable_.device());
}

tensor_list AccumulateGrad::apply(tensor_list&& grads) {
  Tensor g = std::move(grads[0]);
  if (!g.defined()) return {};
  AutogradMeta& meta = variable_.ensure_autograd_meta();
  std::vector<Tensor::VoidHook> post;
  {
    std::lock_guard<std::mutex> lock(meta.mutex);
    for (auto& hook : meta.hooks) {
      if (!hook) continue;
      Tensor replaced = hook(g);
      if (replaced.defined()) g = std::move(replaced);
    }
    if (!meta.grad.defined()) {
      // Steal the incoming buffer when nothing else holds it; otherwise keep a copy of our own,
      // so that later in-place accumulation never writes into someone else's tensor.
      const bool can_steal = g.use_count() == 1 && g.is_contiguous() && g.storage().use_count() == 1;
      meta.grad = can_steal ? g.detach() : g.detach().clone();
    } else {
      meta.grad.add_(g);
    }
    post = meta.post_accumulate_hooks;
  }
  for (auto& hook : post)
    if (hook) hook(variable_);
  return {};
}

// ---- SavedVariable ------------------------------------------------------------------------------

SavedVariable::SavedVariable(const Tensor& t) {
  if (!t.defined()) return;
  data_ = t.detach();
  saved_version_ = t.version();
}

Tensor SavedVariable::unpack(const Node* owner) const {
  if (!data_.defined()) return data_;
  const uint32_t now = data_.version();
  EMBER_CHECK(now == saved_version_, "autograd: one of the tensors needed for gradient computation has been "
              "modified by an in-place operation: [", data_.dtype(), " ", data_.sizes(), "] is at version ", now,
              "; expected version ", saved_version_, " instead (needed by ", owner ? owner->name() : "backward",
              "). Avoid the in-place op, or clone() the tensor before modifying it");
  return data_;
}

// ---- recording ----------------------------------------------------------------------------------

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  return GradMode::is_enabled() && any_requires_grad(inputs);
}

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  AutogradMeta& meta = leaf.ensure_autograd_meta();
  std::lock_guard<std::mutex> lock(meta.mutex);
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    // The node keeps the leaf alive; the leaf only refers back weakly (no cycle).
    acc = std::make_shared<AccumulateGrad>(leaf);
    meta.grad_accumulator = acc;
  }
  return acc;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined()) return {};
  refresh_view_history(t);
  AutogradMeta* meta = t.autograd_meta();
  if (!meta) return {};
  if (meta->grad_fn) return Edge{meta->grad_fn, meta->output_nr};
  if (meta->requires_grad) return Edge{grad_accumulator(t), 0};
  return {};
}

void set_history(const Tensor& out, const std::shared_ptr<Node>& node) {
  AutogradMeta& meta = out.ensure_autograd_meta();
  meta.grad_fn = node;
  meta.output_nr = node->add_input_meta(out);
  meta.requires_grad = false;  // non-leaf: requires grad through grad_fn
}

void record(const std::shared_ptr<Node>& node, std::initializer_list<const Tensor*> outputs,
            std::initializer_list<const Tensor*> inputs) {
  auto& edges = node->mutable_next_edges();
  edges.clear();
  edges.reserve(inputs.size());
  for (const Tensor* in : inputs) edges.push_back(in ? gradient_edge(*in) : Edge{});
  bool first = true;
  for (const Tensor* out : outputs) {
    if (first) node->set_device(out->device());
    first = false;
    set_history(*out, node);
  }
}

void record(const std::shared_ptr<Node>& node, const tensor_list& outputs, const tensor_list& inputs) {
  auto& edges = node->mutable_next_edges();
  edges.clear();
  edges.reserve(inputs.size());
  for (const Tensor& in : inputs) edges.push_back(gradient_edge(in));
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (i == 0) node->set_device(outputs[i].device());
    set_history(outputs[i], node);
  }
}

void record_view(const std::shared_ptr<Node>& node, const Tensor& view, const Tensor& base) {
  record(node, {&view}, {&base});
}

Tensor sum_to(const Tensor& grad, IntArrayRef shape) {
  if (grad.sizes() == shape) return grad;
  const int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  EMBER_ASSERT(lead >= 0, "sum_to: gradient of shape ", grad.sizes(), " cannot be reduced to ", shape);
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < lead; ++d) dims.push_back(d);
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] == 1 && grad.size(lead + static_cast<int64_t>(i)) != 1) dims.push_back(lead + static_cast<int64_t>(i));
  Tensor r = dims.empty() ? grad : grad.sum(dims, /*keepdim=*/true);
  if (lead > 0 || r.sizes() != shape) r = r.reshape(shape);
  return r;
}

}  // namespace ember::autograd
