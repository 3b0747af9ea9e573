// Containers: AnyModule (type-erased forward), Sequential and ModuleList.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "nn/cloneable.h"
#include "nn/holder.h"

namespace ember::nn {

// A module of any type with a Tensor -> Tensor forward.
class AnyModule {
 public:
  using Forward = Tensor (*)(Module&, const Tensor&);

  template <class M>
  explicit AnyModule(std::shared_ptr<M> module)
      : module_(std::move(module)), forward_([](Module& m, const Tensor& x) -> Tensor {
          return static_cast<M&>(m).forward(x);
        }) {
    static_assert(std::is_base_of_v<Module, M>, "AnyModule needs an nn::Module");
    EMBER_CHECK(module_ != nullptr, "AnyModule: the module is null");
  }
  template <class M>
  explicit AnyModule(const ModuleHolder<M>& holder) : AnyModule(holder.ptr()) {}

  Tensor forward(const Tensor& x) const { return forward_(*module_, x); }
  const std::shared_ptr<Module>& ptr() const { return module_; }
  // A deep copy of the module (it must be Cloneable), keeping the same forward.
  AnyModule clone(const std::optional<Device>& device = std::nullopt) const {
    return AnyModule(module_->clone(device), forward_);
  }

 private:
  AnyModule(std::shared_ptr<Module> m, Forward f) : module_(std::move(m)), forward_(f) {}
  std::shared_ptr<Module> module_;
  Forward forward_;
};

// Modules applied one after another: seq->forward(x) = m_n(...m_1(x)).
class SequentialImpl : public Cloneable<SequentialImpl> {
 public:
  SequentialImpl() : Cloneable("Sequential") {}
  template <class First, class... Rest,
            std::enable_if_t<!std::is_same_v<std::decay_t<First>, SequentialImpl>, int> = 0>
  explicit SequentialImpl(First&& first, Rest&&... rest) : SequentialImpl() {
    push_back(std::forward<First>(first));
    (push_back(std::forward<Rest>(rest)), ...);
  }

  // Appends a module (a holder such as nn::Linear(...) or a shared_ptr), named by its position.
  template <class M>
  void push_back(M&& module) {
    push_back(std::to_string(modules_.size()), std::forward<M>(module));
  }
  template <class M>
  void push_back(std::string name, M&& module) {
    AnyModule any = make_any(std::forward<M>(module));
    register_module(std::move(name), any.ptr());
    modules_.push_back(std::move(any));
  }

  Tensor forward(const Tensor& x) {
    EMBER_CHECK(!modules_.empty(), "Sequential::forward: the Sequential is empty");
    Tensor out = modules_.front().forward(x);
    for (size_t i = 1; i < modules_.size(); ++i) out = modules_[i].forward(out);
    return out;
  }

  size_t size() const { return modules_.size(); }
  bool is_empty() const { return modules_.empty(); }
  std::shared_ptr<Module> operator[](size_t i) const {
    EMBER_CHECK(i < modules_.size(), "Sequential: index ", i, " is out of range for ", modules_.size(), " modules");
    return modules_[i].ptr();
  }
  template <class T>
  T* at(size_t i) const {
    return (*this)[i]->template as<T>();
  }

  void reset() override {}  // holds no state of its own; clone() below copies the children
  std::shared_ptr<Module> clone(const std::optional<Device>& device = std::nullopt) const override {
    auto copy = std::make_shared<SequentialImpl>();
    for (size_t i = 0; i < modules_.size(); ++i) copy->push_back(named_children().item(i).first, modules_[i].clone(device));
    copy->train(is_training());
    return copy;
  }

 private:
  template <class M>
  static AnyModule make_any(M&& m) {
    using D = std::decay_t<M>;
    if constexpr (std::is_same_v<D, AnyModule>) {
      return m;
    } else if constexpr (requires { typename D::ContainedType; }) {
      return AnyModule(m.ptr());
    } else {
      return AnyModule(std::forward<M>(m));
    }
  }
  std::vector<AnyModule> modules_;
};
EMBER_MODULE(Sequential);

// A list of submodules (registered as "0", "1", ...) without a forward of its own.
class ModuleListImpl : public Cloneable<ModuleListImpl> {
 public:
  ModuleListImpl() : Cloneable("ModuleList") {}
  template <class First, class... Rest,
            std::enable_if_t<!std::is_same_v<std::decay_t<First>, ModuleListImpl>, int> = 0>
  explicit ModuleListImpl(First&& first, Rest&&... rest) : ModuleListImpl() {
    push_back(std::forward<First>(first));
    (push_back(std::forward<Rest>(rest)), ...);
  }

  template <class M>
  void push_back(const ModuleHolder<M>& holder) {
    push_back(std::shared_ptr<Module>(holder.ptr()));
  }
  void push_back(std::shared_ptr<Module> module) {
    register_module(std::to_string(modules_.size()), module);
    modules_.push_back(std::move(module));
  }

  size_t size() const { return modules_.size(); }
  bool is_empty() const { return modules_.empty(); }
  std::shared_ptr<Module> operator[](size_t i) const {
    EMBER_CHECK(i < modules_.size(), "ModuleList: index ", i, " is out of range for ", modules_.size(), " modules");
    return modules_[i];
  }
  template <class T>
  T* at(size_t i) const {
    return (*this)[i]->template as<T>();
  }
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }

  void reset() override {}
  std::shared_ptr<Module> clone(const std::optional<Device>& device = std::nullopt) const override {
    auto copy = std::make_shared<ModuleListImpl>();
    for (const auto& m : modules_) copy->push_back(m->clone(device));
    copy->train(is_training());
    return copy;
  }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};
EMBER_MODULE(ModuleList);

}  // namespace ember::nn
