// nn::Cloneable<Derived>: a module that can deep-copy itself (clone, DataParallel's replicate).
#pragma once

#include "nn/module.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::nn {

// Note [Cloneable]
// As in LibTorch: clone() copy-constructs the Derived object, clears what the copy registered,
// calls reset() to rebuild fresh parameters, buffers and submodules, then copies this module's
// values into them (onto `device` when given) and clones each child into the matching new child.
// So reset() must (re)register everything the module owns.
template <class Derived>
class Cloneable : public Module {
 public:
  using Module::Module;

  // (Re)creates every parameter, buffer and submodule. Called by the constructor and by clone().
  virtual void reset() = 0;

  std::shared_ptr<Module> clone(const std::optional<Device>& device = std::nullopt) const override {
    NoGradGuard no_grad;
    const auto& self = static_cast<const Derived&>(*this);
    auto copy = std::make_shared<Derived>(self);
    copy->parameters_.clear();
    copy->buffers_.clear();
    copy->children_.clear();
    copy->reset();
    EMBER_CHECK(copy->parameters_.size() == parameters_.size() && copy->buffers_.size() == buffers_.size() &&
                    copy->children_.size() == children_.size(),
                "clone: ", name(), "::reset() registered ", copy->parameters_.size(), " parameters, ",
                copy->buffers_.size(), " buffers and ", copy->children_.size(), " submodules, but the module has ",
                parameters_.size(), ", ", buffers_.size(), " and ", children_.size(),
                "; reset() must register everything the module owns");
    for (const auto& [key, tensor] : parameters_) {
      Tensor data = device && tensor.device() != *device ? tensor.to(*device, false, true) : tensor.clone();
      Tensor& target = copy->parameters_.at(key);
      target.set_data(data);
      target.requires_grad_(tensor.requires_grad());
    }
    for (const auto& [key, tensor] : buffers_) {
      Tensor data = device && tensor.device() != *device ? tensor.to(*device, false, true) : tensor.clone();
      copy->buffers_.at(key).set_data(data);
    }
    for (const auto& [key, child] : children_) copy->children_.at(key)->clone_(*child, device);
    copy->training_ = training_;
    return copy;
  }

 protected:
  void clone_(Module& other, const std::optional<Device>& device) final {
    // `other` was registered under the same name, so it is a Derived too (checked anyway).
    auto fresh = std::dynamic_pointer_cast<Derived>(other.clone(device));
    EMBER_CHECK(fresh != nullptr, "clone: submodule ", other.name(), " did not clone into a ", name(),
                "; reset() must register submodules of the same types as the original");
    static_cast<Derived&>(*this) = std::move(*fresh);
  }
};

}  // namespace ember::nn
