// ModuleHolder and EMBER_MODULE: the LibTorch holder pattern (`Net net; net->forward(x);`).
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include "nn/module.h"

namespace ember::nn {

// A shared_ptr to a module with value syntax. Default construction builds the module (when it has
// a default constructor); `Holder h{nullptr}` leaves it empty, to be assigned later.
template <class Contained>
class ModuleHolder {
 public:
  using ContainedType = Contained;

  ModuleHolder() : impl_(default_construct()) {}
  ModuleHolder(std::nullptr_t) {}  // NOLINT: `nn::Linear fc{nullptr};`
  ModuleHolder(std::shared_ptr<Contained> module) : impl_(std::move(module)) {}  // NOLINT
  template <class Head, class... Tail,
            std::enable_if_t<!std::is_same_v<std::decay_t<Head>, ModuleHolder> &&
                                 !std::is_same_v<std::decay_t<Head>, std::nullptr_t> &&
                                 !std::is_convertible_v<Head, std::shared_ptr<Contained>>,
                             int> = 0>
  explicit ModuleHolder(Head&& head, Tail&&... tail)
      : impl_(std::make_shared<Contained>(std::forward<Head>(head), std::forward<Tail>(tail)...)) {}

  Contained* operator->() { return get(); }
  const Contained* operator->() const { return get(); }
  Contained& operator*() { return *get(); }
  const Contained& operator*() const { return *get(); }
  Contained* get() {
    check();
    return impl_.get();
  }
  const Contained* get() const {
    check();
    return impl_.get();
  }
  const std::shared_ptr<Contained>& ptr() const {
    check();
    return impl_;
  }
  bool is_empty() const { return impl_ == nullptr; }
  explicit operator bool() const { return impl_ != nullptr; }
  operator std::shared_ptr<Module>() const { return ptr(); }  // NOLINT

  // Calls forward(): `net(x)`.
  template <class... Args>
  decltype(auto) operator()(Args&&... args) {
    return get()->forward(std::forward<Args>(args)...);
  }

 private:
  static std::shared_ptr<Contained> default_construct() {
    if constexpr (std::is_default_constructible_v<Contained>) {
      return std::make_shared<Contained>();
    } else {
      return nullptr;  // e.g. Linear: must be constructed with arguments or nullptr
    }
  }
  void check() const {
    EMBER_CHECK(impl_ != nullptr, "accessing an empty module holder (", typeid(Contained).name(),
                "): construct it with arguments or assign a module before use");
  }
  std::shared_ptr<Contained> impl_;
};

template <class C>
std::ostream& operator<<(std::ostream& os, const ModuleHolder<C>& holder) {
  return os << *holder.ptr();
}

}  // namespace ember::nn

// Defines `Name` as a holder of `Impl`, like TORCH_MODULE_IMPL.
#define EMBER_MODULE_IMPL(Name, Impl)                              \
  class Name : public ::ember::nn::ModuleHolder<Impl> {            \
   public:                                                          \
    using ::ember::nn::ModuleHolder<Impl>::ModuleHolder;            \
    using Impl_t = Impl;                                            \
  }

// Defines holder `Name` around `NameImpl`, like TORCH_MODULE.
#define EMBER_MODULE(Name) EMBER_MODULE_IMPL(Name, Name##Impl)
