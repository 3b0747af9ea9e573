// optim::Optimizer: param groups, option checks, per-parameter state and zero_grad.
#include "nn/optim/optimizer.h"

#include <typeinfo>
#include <unordered_set>
#include <utility>

#include "kernels/ops.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::optim {

// ---- OptimizerParamGroup ------------------------------------------------------------------------

OptimizerParamGroup::OptimizerParamGroup(std::vector<Tensor> params) : params_(std::move(params)) {}

OptimizerParamGroup::OptimizerParamGroup(std::vector<Tensor> params, std::unique_ptr<OptimizerOptions> options)
    : params_(std::move(params)), options_(std::move(options)) {}

OptimizerParamGroup::OptimizerParamGroup(const OptimizerParamGroup& other)
    : params_(other.params_),
      options_(other.options_ ? other.options_->clone() : nullptr),
      initial_lr_(other.initial_lr_) {}

OptimizerParamGroup& OptimizerParamGroup::operator=(const OptimizerParamGroup& other) {
  if (this != &other) {
    params_ = other.params_;
    options_ = other.options_ ? other.options_->clone() : nullptr;
    initial_lr_ = other.initial_lr_;
  }
  return *this;
}

OptimizerOptions& OptimizerParamGroup::options() {
  EMBER_CHECK(options_ != nullptr,
              "OptimizerParamGroup::options: this group has no options yet (a group gets the optimizer's "
              "defaults when it is added to an optimizer)");
  return *options_;
}

const OptimizerOptions& OptimizerParamGroup::options() const {
  return const_cast<OptimizerParamGroup*>(this)->options();
}

void OptimizerParamGroup::set_options(std::unique_ptr<OptimizerOptions> options) { options_ = std::move(options); }

// ---- Optimizer ----------------------------------------------------------------------------------

Optimizer::Optimizer(std::string name, std::vector<OptimizerParamGroup> param_groups,
                     std::unique_ptr<OptimizerOptions> defaults)
    : name_(std::move(name)), defaults_(std::move(defaults)) {
  EMBER_ASSERT(defaults_ != nullptr, name_, ": no default options");
  defaults_->validate();
  EMBER_CHECK(!param_groups.empty(), name_, ": optimizer got an empty list of param groups");
  for (const OptimizerParamGroup& group : param_groups) add_param_group(group);
}

std::vector<OptimizerParamGroup> Optimizer::single_group(const char* name, std::vector<Tensor> params) {
  EMBER_CHECK(!params.empty(), name, ": optimizer got an empty parameter list");
  std::vector<OptimizerParamGroup> groups;
  groups.emplace_back(std::move(params));
  return groups;
}

void Optimizer::check_group(const OptimizerParamGroup& group, size_t index) const {
  // Same dynamic type as the defaults: each optimizer reads its groups' options as its own type.
  const OptimizerOptions& options = group.options();
  EMBER_CHECK(typeid(options) == typeid(*defaults_), name_, ": param group ", index,
              " has options of another optimizer; give it this optimizer's options type (as its defaults)");
  options.validate();

  std::unordered_set<const TensorImpl*> seen;
  for (const OptimizerParamGroup& g : param_groups_)
    for (const Tensor& p : g.params()) seen.insert(p.impl());
  for (size_t i = 0; i < group.params().size(); ++i) {
    const Tensor& p = group.params()[i];
    EMBER_CHECK(p.defined(), name_, ": parameter ", i, " of param group ", index, " is an undefined tensor");
    EMBER_CHECK(p.is_leaf(), name_, ": can't optimize a non-leaf tensor (parameter ", i, " of param group ", index,
                " has a grad_fn); optimize the leaf it was computed from, or detach() it");
    EMBER_CHECK(p.is_floating_point(), name_, ": parameter ", i, " of param group ", index, " is ", p.dtype(),
                "; only floating-point tensors can be optimized");
    EMBER_CHECK(seen.insert(p.impl()).second, name_, ": parameter ", i, " of param group ", index,
                " appears more than once among the optimizer's parameters; each parameter may be in one "
                "param group only, once");
  }
}

void Optimizer::add_param_group(const OptimizerParamGroup& group) {
  OptimizerParamGroup copy(group);
  if (!copy.has_options()) copy.set_options(defaults_->clone());
  check_group(copy, param_groups_.size());
  param_groups_.push_back(std::move(copy));
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> out;
  out.reserve(size());
  for (const OptimizerParamGroup& g : param_groups_) out.insert(out.end(), g.params().begin(), g.params().end());
  return out;
}

size_t Optimizer::size() const {
  size_t n = 0;
  for (const OptimizerParamGroup& g : param_groups_) n += g.params().size();
  return n;
}

OptimizerParamState* Optimizer::state(const Tensor& param) {
  auto it = state_.find(param.impl());
  return it == state_.end() ? nullptr : it->second.get();
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (OptimizerParamGroup& group : param_groups_) {
    for (const Tensor& p : group.params()) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      if (set_to_none) {
        p.set_grad(Tensor());
        continue;
      }
      // As PyTorch: a gradient that is itself part of a graph (create_graph) is cut off first.
      if (g.grad_fn()) {
        g = g.detach();
        p.set_grad(g);
      }
      g.zero_();
    }
  }
}

Tensor Optimizer::checked_grad(const Tensor& param, const Tensor& grad, size_t group, size_t index) const {
  EMBER_CHECK(grad.sizes() == param.sizes(), name_, ": the gradient of parameter ", index, " of param group ", group,
              " has shape ", grad.sizes(), " but the parameter has shape ", param.sizes());
  EMBER_CHECK(grad.dtype() == param.dtype(), name_, ": the gradient of parameter ", index, " of param group ", group,
              " is ", grad.dtype(), " but the parameter is ", param.dtype());
  EMBER_CHECK(grad.device() == param.device(), name_, ": the gradient of parameter ", index, " of param group ", group,
              " is on ", grad.device(), " but the parameter is on ", param.device());
  return grad.is_contiguous() ? grad : grad.contiguous();
}

void Optimizer::match_state(Tensor& state, const Tensor& param, const char* what) const {
  if (!state.defined()) {
    state = zeros(param.sizes(), param.options());
    return;
  }
  EMBER_CHECK(state.sizes() == param.sizes(), name_, ": the ", what, " of a parameter has shape ", state.sizes(),
              " but the parameter now has shape ", param.sizes(),
              "; a parameter must keep its shape across steps (create a new optimizer after reshaping a model)");
  if (state.device() != param.device() || state.dtype() != param.dtype())
    state = state.to(param.device(), param.dtype());  // the module was moved after earlier steps
}

// ---- detail::ContiguousParams -------------------------------------------------------------------

namespace detail {

Tensor ContiguousParams::operator()(const Tensor& param) {
  if (param.is_contiguous()) return param;
  Tensor stand_in = param.detach().contiguous();
  copies_.emplace_back(param, stand_in);
  return stand_in;
}

void ContiguousParams::write_back() {
  NoGradGuard no_grad;
  for (auto& [original, stand_in] : copies_) {
    Tensor target = original.detach();  // shares storage and version counter
    target.copy_(stand_in);
  }
  copies_.clear();
}

}  // namespace detail
}  // namespace ember::optim
