// optim::Optimizer: param groups, option checks, per-parameter state and zero_grad.
#include "nn/optim/optimizer.h"

#include <cmath>
#include <typeinfo>
#include <unordered_set>
#include <utility>

#include "kernels/ops.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::optim {

// ---- state-dict defaults ------------------------------------------------------------------------

StateValueMap OptimizerOptions::state_dict() const {
  EMBER_THROW("optimizer options of type ", typeid(*this).name(),
              " do not support state_dict(): override OptimizerOptions::state_dict() and load_state_dict()");
}

void OptimizerOptions::load_state_dict(const StateValueMap&) {
  EMBER_THROW("optimizer options of type ", typeid(*this).name(),
              " do not support load_state_dict(): override OptimizerOptions::state_dict() and load_state_dict()");
}

std::map<std::string, Tensor> OptimizerParamState::state_dict() const {
  EMBER_THROW("optimizer state of type ", typeid(*this).name(),
              " does not support state_dict(): override OptimizerParamState::state_dict() and load_state_dict()");
}

void OptimizerParamState::load_state_dict(const std::map<std::string, Tensor>&, const Tensor&) {
  EMBER_THROW("optimizer state of type ", typeid(*this).name(),
              " does not support load_state_dict(): override OptimizerParamState::state_dict() and "
              "load_state_dict()");
}

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

std::unique_ptr<OptimizerParamState> Optimizer::make_param_state() const {
  EMBER_THROW(name_, ": load_state_dict is not supported (override Optimizer::make_param_state)");
}

OptimizerStateDict Optimizer::state_dict() const {
  OptimizerStateDict out;
  int64_t index = 0;
  for (const OptimizerParamGroup& group : param_groups_) {
    ParamGroupState g;
    g.options = group.options().state_dict();
    if (group.initial_lr()) g.options["initial_lr"] = *group.initial_lr();
    for (const Tensor& p : group.params()) {
      g.params.push_back(index);
      auto it = state_.find(p.impl());
      if (it != state_.end() && it->second) {
        std::map<std::string, Tensor> entries = it->second->state_dict();
        if (!entries.empty()) out.state.emplace(index, std::move(entries));
      }
      ++index;
    }
    out.param_groups.push_back(std::move(g));
  }
  return out;
}

namespace {
// A copy of a saved state tensor for `param`, as PyTorch's load_state_dict casts it: floating-point
// entries take the parameter's dtype and device, "step" stays as saved (on the host).
Tensor state_tensor_for(const std::string& name, const Tensor& saved, const Tensor& param) {
  Tensor t = saved.detach();
  if (name == "step")
    t = t.cpu();
  else if (t.is_floating_point())
    t = t.to(param.device(), param.dtype());
  else
    t = t.to(param.device());
  if (t.is_alias_of(saved)) t = t.clone();
  return t;
}
}  // namespace

void Optimizer::load_state_dict(const OptimizerStateDict& sd) {
  NoGradGuard no_grad;
  const std::string who = name_ + ": load_state_dict";
  EMBER_CHECK(sd.param_groups.size() == param_groups_.size(), who, ": the state dict has ", sd.param_groups.size(),
              " param group(s) but the optimizer has ", param_groups_.size());

  // The saved indices, group by group, name this optimizer's parameters in the same positions.
  std::map<int64_t, Tensor> by_index;
  std::vector<std::unique_ptr<OptimizerOptions>> options;
  std::vector<std::optional<double>> initial_lrs;
  for (size_t gi = 0; gi < param_groups_.size(); ++gi) {
    const ParamGroupState& saved = sd.param_groups[gi];
    const std::vector<Tensor>& params = param_groups_[gi].params();
    EMBER_CHECK(saved.params.size() == params.size(), who, ": param group ", gi, " has ", saved.params.size(),
                " parameter(s) in the state dict but ", params.size(), " in the optimizer");
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t index = saved.params[i];
      EMBER_CHECK(index >= 0, who, ": param group ", gi, " lists the parameter index ", index, " (indices are >= 0)");
      EMBER_CHECK(by_index.emplace(index, params[i]).second, who, ": the parameter index ", index,
                  " appears more than once in the param groups");
    }
    StateValueMap entries = saved.options;
    std::optional<double> initial_lr;
    if (auto it = entries.find("initial_lr"); it != entries.end()) {
      StateReader r(entries, ::ember::detail::str_cat(who, ": param group ", gi));
      initial_lr = r.number("initial_lr");
      entries.erase(it);
    }
    std::unique_ptr<OptimizerOptions> o = param_groups_[gi].options().clone();
    try {
      o->load_state_dict(entries);
      o->validate();
    } catch (const Error& e) {
      EMBER_THROW(who, ": param group ", gi, ": ", e.what());
    }
    options.push_back(std::move(o));
    initial_lrs.push_back(initial_lr);
  }

  StateMap state;
  for (const auto& [index, entries] : sd.state) {
    auto it = by_index.find(index);
    EMBER_CHECK(it != by_index.end(), who, ": the state dict has state for parameter index ", index,
                ", which no param group lists");
    const Tensor& param = it->second;
    std::map<std::string, Tensor> copies;
    for (const auto& [name, t] : entries) {
      EMBER_CHECK(t.defined(), who, ": the state entry '", name, "' of parameter ", index, " is undefined");
      copies.emplace(name, state_tensor_for(name, t, param));
    }
    std::unique_ptr<OptimizerParamState> st = make_param_state();
    try {
      st->load_state_dict(copies, param);
    } catch (const Error& e) {
      EMBER_THROW(who, ": the state of parameter ", index, " (shape ", param.sizes(), "): ", e.what());
    }
    state.emplace(param.impl(), std::move(st));
  }

  for (size_t gi = 0; gi < param_groups_.size(); ++gi) {
    param_groups_[gi].set_options(std::move(options[gi]));
    param_groups_[gi].initial_lr() = initial_lrs[gi];
  }
  state_ = std::move(state);
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

// ---- detail::ParamStateReader -------------------------------------------------------------------

namespace detail {

ParamStateReader::ParamStateReader(const std::map<std::string, Tensor>& state, const Tensor& param)
    : state_(state), param_(param) {}

Tensor ParamStateReader::tensor(const std::string& name, bool required) {
  auto it = state_.find(name);
  EMBER_CHECK(it != state_.end() || !required, "the entry '", name, "' is missing");
  read_.insert(name);
  return it == state_.end() ? Tensor() : it->second;
}

Tensor ParamStateReader::like_param(const std::string& name, bool required) {
  Tensor t = tensor(name, required);
  EMBER_CHECK(!t.defined() || t.sizes() == param_.sizes(), "'", name, "' has shape ", t.sizes(),
              " but the parameter has shape ", param_.sizes());
  return t;
}

int64_t ParamStateReader::step(const std::string& name) {
  Tensor t = tensor(name, true);
  EMBER_CHECK(t.numel() == 1, "'", name, "' should be a 0-dim tensor holding the step count, got shape ", t.sizes());
  const double v = t.to(kFloat64).item<double>();
  EMBER_CHECK(v >= 0 && v == std::floor(v) && v < 9.2e18, "'", name, "' should hold a whole number >= 0, got ", v);
  return static_cast<int64_t>(v);
}

void ParamStateReader::finish(const std::string& expected) const {
  std::string unknown;
  for (const auto& [name, t] : state_)
    if (!read_.count(name)) unknown += ::ember::detail::str_cat(unknown.empty() ? "" : ", ", "'", name, "'");
  EMBER_CHECK(unknown.empty(), "unexpected entries ", unknown, " (expected ", expected, ")");
}

}  // namespace detail

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
