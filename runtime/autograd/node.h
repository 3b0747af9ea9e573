// Autograd graph nodes: Node, Edge, SavedVariable, AccumulateGrad, and the helpers ops use to record.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/autograd/grad_mode.h"
#include "runtime/autograd/meta.h"
#include "runtime/tensor.h"

namespace ember::autograd {

using tensor_list = std::vector<Tensor>;

// Where a gradient goes: input `input_nr` of node `fn` (the fn's forward output number).
struct Edge {
  std::shared_ptr<Node> fn;
  uint32_t input_nr = 0;
  bool valid() const { return fn != nullptr; }
};

// What a forward output looked like, to check and shape the gradient that flows back into it.
struct InputMeta {
  DimVector sizes;
  DType dtype = kFloat32;
  Device device;
};

// Note [Autograd nodes]
// A Node is the backward of one forward op. `apply` receives one gradient per forward output
// (undefined where none flowed) and returns one gradient per next edge (undefined where the input
// needs none). Backward formulas sit next to their forward op, in kernels/. Nodes run with grad
// mode off (no higher-order graphs), on the device of their forward and, on CUDA, on the stream
// that was current at forward time.
class Node : public std::enable_shared_from_this<Node> {
 public:
  Node();
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  virtual std::string name() const = 0;
  virtual tensor_list apply(tensor_list&& grads) = 0;
  // Frees saved tensors after a backward without retain_graph.
  virtual void release_variables() {}
  // Whether the node needs saved tensors (a released one then refuses a second backward).
  virtual bool is_accumulate_grad() const { return false; }

  const std::vector<Edge>& next_edges() const { return next_edges_; }
  std::vector<Edge>& mutable_next_edges() { return next_edges_; }
  size_t num_outputs() const { return next_edges_.size(); }
  const std::vector<InputMeta>& input_meta() const { return input_meta_; }
  uint32_t add_input_meta(const Tensor& forward_output);
  size_t num_inputs() const { return input_meta_.size(); }
  // Whether next edge i needs a gradient (lets apply skip work).
  bool needs_input_grad(size_t i) const { return i < next_edges_.size() && next_edges_[i].valid(); }

  Device device() const { return device_; }
  void* stream() const { return stream_; }
  void set_device(Device device);
  uint64_t sequence_nr() const { return sequence_nr_; }

  // Tensor hooks of non-leaf outputs: run on the gradient of forward output `output_nr` before apply.
  size_t add_pre_hook(uint32_t output_nr, Tensor::Hook hook);
  void remove_pre_hook(size_t handle);
  bool has_pre_hooks() const { return !pre_hooks_.empty(); }
  void run_pre_hooks(tensor_list& grads);

  bool released() const { return released_; }
  void mark_released() {
    released_ = true;
    release_variables();
  }

 private:
  std::vector<Edge> next_edges_;
  std::vector<InputMeta> input_meta_;
  std::vector<std::pair<uint32_t, Tensor::Hook>> pre_hooks_;
  Device device_;
  void* stream_ = nullptr;
  uint64_t sequence_nr_;
  bool released_ = false;
};

// Accumulates the gradient of a leaf into leaf.grad, running the leaf's hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(Tensor leaf);
  std::string name() const override { return "AccumulateGrad"; }
  tensor_list apply(tensor_list&& grads) override;
  bool is_accumulate_grad() const override { return true; }
  const Tensor& variable() const { return variable_; }

 private:
  Tensor variable_;
};

// A tensor saved for backward: a detached alias plus the version it had, so that an in-place
// change before backward is reported instead of silently giving a wrong gradient.
class SavedVariable {
 public:
  SavedVariable() = default;
  explicit SavedVariable(const Tensor& t);
  // The saved tensor (undefined if none was saved); throws if modified in place since saving.
  Tensor unpack(const Node* owner) const;
  bool defined() const { return data_.defined(); }
  void reset() { data_ = Tensor(); }

 private:
  Tensor data_;
  uint32_t saved_version_ = 0;
};

// ---- recording helpers used by ops ------------------------------------------------------------
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
// Grad mode is on and some input requires grad.
inline bool needs_grad(const Tensor& a) { return GradMode::is_enabled() && a.defined() && a.requires_grad(); }
inline bool needs_grad(const Tensor& a, const Tensor& b) {
  return GradMode::is_enabled() && ((a.defined() && a.requires_grad()) || (b.defined() && b.requires_grad()));
}
bool needs_grad(std::initializer_list<const Tensor*> inputs);

// The edge a gradient for `t` should follow (its grad_fn, its leaf accumulator, or none).
Edge gradient_edge(const Tensor& t);
// The AccumulateGrad node of a leaf that requires grad (created on first use).
std::shared_ptr<Node> grad_accumulator(const Tensor& leaf);

// Connects `node`: next edges from `inputs` (in order; undefined inputs give invalid edges),
// device from the first output, and makes it the grad_fn of `outputs` (output_nr in order).
void record(const std::shared_ptr<Node>& node, std::initializer_list<const Tensor*> outputs,
            std::initializer_list<const Tensor*> inputs);
void record(const std::shared_ptr<Node>& node, const tensor_list& outputs, const tensor_list& inputs);
// As record(), for a view of an input.
void record_view(const std::shared_ptr<Node>& node, const Tensor& view, const Tensor& base);
// Makes `node` the grad_fn of `out` (a new output of node).
void set_history(const Tensor& out, const std::shared_ptr<Node>& node);

// Note [In-place and autograd]
// Called by every in-place op before writing into `self`: refuses a leaf that requires grad (with
// grad mode on), a view of such a leaf, and a view that would hide the write from its base's graph.
// After the write, `self`'s version is bumped; if the op is differentiable and recorded,
// `rebase_history` makes `node` self's new grad_fn (for a view: part of its base's new grad_fn, see
// Note [In-place on views] in inplace.cpp).
void check_inplace(const char* op, const Tensor& self);
void bump_version(const Tensor& self);
void rebase_history(const Tensor& self, const std::shared_ptr<Node>& node, std::initializer_list<const Tensor*> inputs);
// After an in-place op that overwrote all of `self` with values that depend on nothing that needs
// grad (fill_, zero_, uniform_, normal_, bernoulli_): if self requires grad (with grad mode on), its
// gradient stops here (FillBackward).
void rebase_history_overwritten(const Tensor& self);

// A view whose storage was written in place since its history was recorded reads its base's
// current history instead (Note [In-place on views]). Cheap when nothing changed.
void regenerate_view_history(const Tensor& view);
inline void refresh_view_history(const Tensor& t) {
  const TensorImpl* impl = t.impl();
  if (impl->view_base && impl->view_version.load(std::memory_order_acquire) != impl->storage->version())
    regenerate_view_history(t);
}

// Sums `grad` down to `shape` (undoing broadcasting): the gradient of an input that was broadcast.
Tensor sum_to(const Tensor& grad, IntArrayRef shape);

}  // namespace ember::autograd
