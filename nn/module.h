// nn::Module: parameters, buffers and submodules in registration order; device/dtype moves, train/eval,
// state_dict, clone and printing (LibTorch's Module, with PyTorch's printing).
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "nn/ordered_dict.h"
#include "runtime/tensor.h"

namespace ember::nn {

template <class Contained>
class ModuleHolder;

// name -> tensor, parameters first then buffers, in registration order.
using StateDict = OrderedDict<Tensor>;

class Module : public std::enable_shared_from_this<Module> {
 public:
  // `name` is what printing shows ("Linear"); by default the C++ type name without a trailing "Impl".
  explicit Module(std::string name = "");
  Module(const Module&) = default;
  Module& operator=(const Module&) = default;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;
  virtual ~Module() = default;

  const std::string& name() const;

  // ---- registration (returns a handle sharing the registered tensor / module) --------------------
  Tensor& register_parameter(std::string name, Tensor tensor, bool requires_grad = true);
  Tensor& register_buffer(std::string name, Tensor tensor);
  template <class M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> module) {
    static_assert(std::is_base_of_v<Module, M>, "register_module needs an nn::Module");
    EMBER_CHECK(module != nullptr, "register_module: module '", name, "' is null");
    check_name("register_module", name);
    children_.insert(std::move(name), module);
    return module;
  }
  template <class M>
  std::shared_ptr<M> register_module(std::string name, ModuleHolder<M> holder) {
    return register_module(std::move(name), holder.ptr());
  }
  // Swaps the registered submodule `name` for `module` (keeps its place).
  template <class M>
  std::shared_ptr<M> replace_module(const std::string& name, std::shared_ptr<M> module) {
    EMBER_CHECK(children_.contains(name), "replace_module: no submodule named '", name, "'");
    children_.at(name) = module;
    return module;
  }

  // ---- listings ----------------------------------------------------------------------------------
  std::vector<Tensor> parameters(bool recurse = true) const;
  OrderedDict<Tensor> named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  OrderedDict<Tensor> named_buffers(bool recurse = true) const;
  std::vector<std::shared_ptr<Module>> children() const;
  OrderedDict<std::shared_ptr<Module>> named_children() const;
  // This module (when include_self) and every descendant, depth first.
  std::vector<std::shared_ptr<Module>> modules(bool include_self = true) const;
  OrderedDict<std::shared_ptr<Module>> named_modules(const std::string& prefix = "", bool include_self = true) const;

  // ---- device, dtype, mode -----------------------------------------------------------------------
  // Moves parameters and buffers in place (every handle to them sees the move); gradients follow.
  virtual void to(Device device, bool non_blocking = false);
  // Converts floating-point parameters and buffers (integer buffers keep their dtype, as PyTorch).
  virtual void to(DType dtype, bool non_blocking = false);
  virtual void to(Device device, DType dtype, bool non_blocking = false);
  void cuda(int index = 0) { to(Device::cuda(index)); }
  void cpu() { to(Device::cpu()); }
  virtual void train(bool on = true);
  void eval() { train(false); }
  virtual bool is_training() const { return training_; }
  // Sets every parameter's gradient to undefined (set_to_none) or zero.
  virtual void zero_grad(bool set_to_none = true);

  // ---- state -------------------------------------------------------------------------------------
  StateDict state_dict() const;
  // Copies values into the registered tensors (shapes must match; dtype/device converted to the
  // module's). strict: missing and unexpected keys are errors that name them.
  void load_state_dict(const StateDict& state, bool strict = true);

  // A deep copy, optionally onto `device`. Only modules deriving from nn::Cloneable<T> can be cloned.
  virtual std::shared_ptr<Module> clone(const std::optional<Device>& device = std::nullopt) const;

  // The module as a T (nullptr when it is not one), as in LibTorch.
  template <class T>
  T* as() {
    return dynamic_cast<T*>(this);
  }
  template <class T>
  const T* as() const {
    return dynamic_cast<const T*>(this);
  }

  // One line describing this module (without children), e.g. "Linear(in_features=784, out_features=10, bias=True)".
  virtual void pretty_print(std::ostream& os) const;

 protected:
  // Replaces this module's state with `other`'s cloned state (used by Cloneable::clone on children).
  virtual void clone_(Module& other, const std::optional<Device>& device);
  void check_name(const char* what, const std::string& name) const;

  OrderedDict<Tensor> parameters_{"parameters"};
  OrderedDict<Tensor> buffers_{"buffers"};
  OrderedDict<std::shared_ptr<Module>> children_{"submodules"};
  bool training_ = true;

  template <class Derived>
  friend class Cloneable;

 private:
  void apply_to_tensors(const std::function<Tensor(const Tensor&)>& convert, bool include_integer);
  mutable std::optional<std::string> name_;
};

// Prints the module tree as PyTorch does:
//   Net(
//     (fc1): Linear(in_features=784, out_features=128, bias=True)
//   )
std::ostream& operator<<(std::ostream& os, const Module& module);
std::ostream& operator<<(std::ostream& os, const std::shared_ptr<Module>& module);

}  // namespace ember::nn
