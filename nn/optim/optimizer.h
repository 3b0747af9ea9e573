// optim::Optimizer: param groups with their options, per-parameter state, step() and zero_grad() (LibTorch's shape).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nn/optim/state_dict.h"
#include "runtime/tensor.h"

namespace ember::optim {

// Note [Optimizer options]
// Each optimizer has an options class (SGDOptions, AdamOptions, ...) deriving from
// OptimizerOptions. The learning rate is the one option every optimizer has, so it is virtual
// here: `group.options().lr()` reads it and `group.options().lr(0.01)` sets it through the base
// class (what LR schedulers do), while on the concrete class the setter returns the concrete type
// (a covariant override), so `SGDOptions(0.1).lr(0.2).momentum(0.9)` chains. validate() throws
// ember::Error naming the optimizer, the option and its value; optimizers call it on construction,
// in add_param_group and at every step (a negative lr set between steps is caught before it is used).
class OptimizerOptions {
 public:
  virtual ~OptimizerOptions() = default;
  virtual double lr() const = 0;
  virtual OptimizerOptions& lr(double lr) = 0;
  // LibTorch's spellings.
  double get_lr() const { return lr(); }
  void set_lr(double lr) { this->lr(lr); }
  virtual std::unique_ptr<OptimizerOptions> clone() const = 0;
  virtual void validate() const = 0;
  // The options as an entry of state_dict()["param_groups"], with PyTorch's keys ("lr", "momentum",
  // "betas", ...), and back: load_state_dict reads every key it writes and throws ember::Error naming a
  // missing, mistyped or unknown one (the optimizer loads into a copy, so a failed load changes nothing).
  // Options of one's own optimizer override both; the defaults throw, saying so.
  virtual StateValueMap state_dict() const;
  virtual void load_state_dict(const StateValueMap& state);

 protected:
  OptimizerOptions() = default;
  OptimizerOptions(const OptimizerOptions&) = default;
  OptimizerOptions& operator=(const OptimizerOptions&) = default;
};

// A list of parameters with its own options (when absent, the optimizer's defaults are copied in).
class OptimizerParamGroup {
 public:
  OptimizerParamGroup(std::vector<Tensor> params);  // NOLINT: `{params}` reads as a group
  OptimizerParamGroup(std::vector<Tensor> params, std::unique_ptr<OptimizerOptions> options);
  OptimizerParamGroup(const OptimizerParamGroup& other);
  OptimizerParamGroup& operator=(const OptimizerParamGroup& other);
  OptimizerParamGroup(OptimizerParamGroup&&) noexcept = default;
  OptimizerParamGroup& operator=(OptimizerParamGroup&&) noexcept = default;

  bool has_options() const { return options_ != nullptr; }
  // Throws ember::Error when the group has no options (only before it was added to an optimizer).
  OptimizerOptions& options();
  const OptimizerOptions& options() const;
  void set_options(std::unique_ptr<OptimizerOptions> options);
  std::vector<Tensor>& params() { return params_; }
  const std::vector<Tensor>& params() const { return params_; }
  // The learning rate LR schedulers start from (PyTorch's group["initial_lr"]); set by the first
  // scheduler attached to the optimizer.
  std::optional<double>& initial_lr() { return initial_lr_; }
  const std::optional<double>& initial_lr() const { return initial_lr_; }

 private:
  std::vector<Tensor> params_;
  std::unique_ptr<OptimizerOptions> options_;
  std::optional<double> initial_lr_;
};

// What an optimizer keeps per parameter (momentum buffers, Adam moments, step counts).
struct OptimizerParamState {
  virtual ~OptimizerParamState() = default;
  virtual std::unique_ptr<OptimizerParamState> clone() const = 0;
  // The state under PyTorch's names ("momentum_buffer", "step", "exp_avg", ...): the tensors themselves,
  // not copies. Entries not yet created are left out.
  virtual std::map<std::string, Tensor> state_dict() const;
  // Takes the tensors of `state` (copies, already moved to the parameter's device and floating-point
  // dtype, except "step", which is as saved) for parameter `param`; throws ember::Error naming a missing,
  // unknown or mis-shaped entry. Called on a fresh state (Optimizer::make_param_state).
  virtual void load_state_dict(const std::map<std::string, Tensor>& state, const Tensor& param);
};

class Optimizer {
 public:
  using LossClosure = std::function<Tensor()>;

  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  virtual ~Optimizer() = default;

  // One update of every parameter that has a gradient (parameters without one are skipped, as in
  // PyTorch). A closure, when given, is called first with grad mode on and its loss is returned.
  virtual Tensor step(LossClosure closure = nullptr) = 0;
  // Clears the gradients of every parameter: undefined (set_to_none) or zero-filled.
  void zero_grad(bool set_to_none = true);
  // Adds a group (options default to the optimizer's); its parameters must not be in another group.
  void add_param_group(const OptimizerParamGroup& group);

  std::vector<OptimizerParamGroup>& param_groups() { return param_groups_; }
  const std::vector<OptimizerParamGroup>& param_groups() const { return param_groups_; }
  OptimizerOptions& defaults() { return *defaults_; }
  const OptimizerOptions& defaults() const { return *defaults_; }
  // Every parameter of every group, in order.
  std::vector<Tensor> parameters() const;
  size_t size() const;  // how many parameters
  const std::string& name() const { return name_; }

  // Per-parameter state keyed by the parameter's TensorImpl (stable across Module::to, which moves
  // a parameter in place). Entries appear on a parameter's first step.
  using StateMap = std::unordered_map<const TensorImpl*, std::unique_ptr<OptimizerParamState>>;
  StateMap& state() { return state_; }
  const StateMap& state() const { return state_; }
  // The state of `param`, or nullptr before its first step.
  OptimizerParamState* state(const Tensor& param);

  // PyTorch's optimizer.state_dict() (Note [State dicts of optimizers and schedulers]): per-parameter
  // state keyed by the parameter's index (in the order the groups list them) and each group's options
  // with the indices of its parameters. The tensors are the optimizer's own.
  OptimizerStateDict state_dict() const;
  // Restores a state_dict() of an optimizer of this type over parameters of the same shapes: as PyTorch,
  // the i-th saved parameter is this optimizer's i-th, each group's options (and "initial_lr") replace
  // the current ones, and the state replaces the current state, its tensors copied onto each parameter's
  // device and dtype. Checked before anything changes: the number of groups and of parameters in each,
  // indices, the options, and each state tensor's shape against its parameter's; an ember::Error names
  // the group, parameter index or entry that does not match.
  void load_state_dict(const OptimizerStateDict& state_dict);

 protected:
  // `name` ("SGD", "Adam", ...) prefixes error messages.
  Optimizer(std::string name, std::vector<OptimizerParamGroup> param_groups,
            std::unique_ptr<OptimizerOptions> defaults);

  // One group holding `params` (the constructors from a parameter list); an empty list is an error.
  static std::vector<OptimizerParamGroup> single_group(const char* name, std::vector<Tensor> params);

  // The options of group `index` as the optimizer's own type O.
  template <class O>
  O& group_options(size_t index) {
    auto* o = dynamic_cast<O*>(&param_groups_[index].options());
    EMBER_CHECK(o != nullptr, name_, ": param group ", index, " has options of another optimizer");
    return *o;
  }

  // The state of `param` as an S, created (default-constructed) on first use.
  template <class S>
  S& param_state(const Tensor& param) {
    auto& slot = state_[param.impl()];
    if (!slot) slot = std::make_unique<S>();
    auto* s = dynamic_cast<S*>(slot.get());
    EMBER_CHECK(s != nullptr, name_,
                ": the state of a parameter has the wrong type (was it set by another optimizer?)");
    return *s;
  }

  // A fresh, empty per-parameter state of this optimizer's type, for load_state_dict (the default
  // throws: an optimizer of one's own overrides it to support loading state).
  virtual std::unique_ptr<OptimizerParamState> make_param_state() const;

  // Checks a gradient against its parameter (shape, dtype, device) and returns it contiguous.
  Tensor checked_grad(const Tensor& param, const Tensor& grad, size_t group, size_t index) const;
  // Makes a state tensor (created by an earlier step) follow its parameter's device and dtype
  // (after Module::to); an undefined one is created as zeros. Throws if the shapes differ.
  void match_state(Tensor& state, const Tensor& param, const char* what) const;

  std::string name_;
  std::vector<OptimizerParamGroup> param_groups_;
  std::unique_ptr<OptimizerOptions> defaults_;
  StateMap state_;

 private:
  // Checks a group's parameters and options (the options' type must be the defaults' type).
  void check_group(const OptimizerParamGroup& group, size_t index) const;
};

namespace detail {
// Reads the tensors given to OptimizerParamState::load_state_dict: tensor() returns an entry (undefined
// when absent and optional), like_param() also requires the parameter's shape, step() reads a 0-dim
// (or one-element) step count; finish() rejects the entries nobody read. Errors are ember::Errors naming
// the entry.
class ParamStateReader {
 public:
  ParamStateReader(const std::map<std::string, Tensor>& state, const Tensor& param);
  Tensor tensor(const std::string& name, bool required);
  Tensor like_param(const std::string& name, bool required);
  int64_t step(const std::string& name);
  void finish(const std::string& expected) const;

 private:
  const std::map<std::string, Tensor>& state_;
  const Tensor& param_;
  std::set<std::string> read_;
};

// The fused kernels need contiguous operands: a non-contiguous parameter is updated through a
// contiguous stand-in that is copied back after the step.
class ContiguousParams {
 public:
  // Returns `param` itself when contiguous, else a contiguous copy that is written back later.
  Tensor operator()(const Tensor& param);
  // Copies every stand-in back into its parameter.
  void write_back();

 private:
  std::vector<std::pair<Tensor, Tensor>> copies_;  // (original, contiguous stand-in)
};
}  // namespace detail

}  // namespace ember::optim
