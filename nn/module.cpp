// nn::Module: registration, listings, moves, train/eval, state_dict, clone and printing.
#include "nn/module.h"

#include <cxxabi.h>

#include <cstdlib>
#include <ostream>
#include <sstream>

#include "kernels/ops.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::nn {

Module::Module(std::string name) {
  if (!name.empty()) name_ = std::move(name);
}

const std::string& Module::name() const {
  if (!name_) {
    // The demangled C++ type without namespaces and a trailing "Impl" (NetImpl -> Net).
    int status = 0;
    const char* mangled = typeid(*this).name();
    char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
    std::string full = status == 0 && demangled ? demangled : mangled;
    std::free(demangled);
    const size_t template_start = full.find('<');
    const size_t colon = full.rfind("::", template_start);
    std::string base = colon == std::string::npos ? full : full.substr(colon + 2);
    if (base.size() > 4 && base.compare(base.size() - 4, 4, "Impl") == 0) base.resize(base.size() - 4);
    name_ = base;
  }
  return *name_;
}

void Module::check_name(const char* what, const std::string& name) const {
  EMBER_CHECK(!name.empty(), what, ": the name must not be empty");
  EMBER_CHECK(name.find('.') == std::string::npos, what, ": the name '", name, "' must not contain '.'");
  EMBER_CHECK(!parameters_.contains(name) && !buffers_.contains(name) && !children_.contains(name), what, ": ", this->name(),
              " already has a parameter, buffer or submodule named '", name, "'");
}

Tensor& Module::register_parameter(std::string name, Tensor tensor, bool requires_grad) {
  check_name("register_parameter", name);
  EMBER_CHECK(tensor.defined(), "register_parameter: parameter '", name, "' is undefined");
  EMBER_CHECK(tensor.is_leaf(), "register_parameter: parameter '", name,
              "' must be a leaf tensor (detach() it first)");
  if (requires_grad) tensor.requires_grad_(true);
  return parameters_.insert(std::move(name), std::move(tensor));
}

Tensor& Module::register_buffer(std::string name, Tensor tensor) {
  check_name("register_buffer", name);
  return buffers_.insert(std::move(name), std::move(tensor));
}

OrderedDict<Tensor> Module::named_parameters(bool recurse) const {
  OrderedDict<Tensor> out("named_parameters");
  for (const auto& [k, v] : parameters_) out.insert(k, v);
  if (recurse)
    for (const auto& [name, child] : children_)
      for (const auto& [k, v] : child->named_parameters(true)) out.insert(name + "." + k, v);
  return out;
}

OrderedDict<Tensor> Module::named_buffers(bool recurse) const {
  OrderedDict<Tensor> out("named_buffers");
  for (const auto& [k, v] : buffers_) out.insert(k, v);
  if (recurse)
    for (const auto& [name, child] : children_)
      for (const auto& [k, v] : child->named_buffers(true)) out.insert(name + "." + k, v);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const { return named_parameters(recurse).values(); }
std::vector<Tensor> Module::buffers(bool recurse) const { return named_buffers(recurse).values(); }
std::vector<std::shared_ptr<Module>> Module::children() const { return children_.values(); }

OrderedDict<std::shared_ptr<Module>> Module::named_children() const {
  OrderedDict<std::shared_ptr<Module>> out("named_children");
  for (const auto& [k, v] : children_) out.insert(k, v);
  return out;
}

OrderedDict<std::shared_ptr<Module>> Module::named_modules(const std::string& prefix, bool include_self) const {
  OrderedDict<std::shared_ptr<Module>> out("named_modules");
  if (include_self) out.insert(prefix, std::const_pointer_cast<Module>(shared_from_this()));
  for (const auto& [name, child] : children_)
    for (const auto& [k, v] : child->named_modules(prefix.empty() ? name : prefix + "." + name, true))
      out.insert(k, v);
  return out;
}

std::vector<std::shared_ptr<Module>> Module::modules(bool include_self) const {
  return named_modules("", include_self).values();
}

void Module::apply_to_tensors(const std::function<Tensor(const Tensor&)>& convert, bool include_integer) {
  NoGradGuard no_grad;
  for (auto& [name, p] : parameters_) {
    if (!include_integer && !p.is_floating_point()) continue;
    p.set_data(convert(p));
    Tensor g = p.grad();
    if (g.defined()) g.set_data(convert(g));
  }
  for (auto& [name, b] : buffers_) {
    if (!b.defined() || (!include_integer && !b.is_floating_point())) continue;
    b.set_data(convert(b));
  }
  for (auto& [name, child] : children_) child->apply_to_tensors(convert, include_integer);
}

void Module::to(Device device, bool non_blocking) {
  apply_to_tensors([&](const Tensor& t) { return t.to(device, non_blocking); }, true);
}

void Module::to(DType dtype, bool non_blocking) {
  EMBER_CHECK(is_floating_point(dtype), "Module::to: modules can only be converted to floating-point dtypes, not ",
              dtype);
  apply_to_tensors([&](const Tensor& t) { return t.to(dtype, non_blocking); }, false);
}

void Module::to(Device device, DType dtype, bool non_blocking) {
  to(dtype, non_blocking);
  to(device, non_blocking);
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (Tensor& p : parameters()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (set_to_none) {
      p.set_grad(Tensor());
    } else {
      g.zero_();
    }
  }
}

StateDict Module::state_dict() const {
  StateDict out("state_dict");
  for (const auto& [k, v] : named_parameters(true)) out.insert(k, v);
  for (const auto& [k, v] : named_buffers(true))
    if (v.defined()) out.insert(k, v);
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  const StateDict mine = state_dict();
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [k, v] : mine)
    if (!state.contains(k)) missing.push_back(k);
  for (const auto& [k, v] : state)
    if (!mine.contains(k)) unexpected.push_back(k);
  for (const auto& [k, v] : state) {
    const Tensor* target = mine.find(k);
    if (target && target->sizes() != v.sizes()) {
      std::ostringstream os;
      os << k << " (checkpoint " << v.sizes() << ", model " << target->sizes() << ")";
      mismatched.push_back(os.str());
    }
  }
  auto join = [](const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
  };
  std::string problems;
  if (strict && !missing.empty()) problems += "\n  missing keys: " + join(missing);
  if (strict && !unexpected.empty()) problems += "\n  unexpected keys: " + join(unexpected);
  if (!mismatched.empty()) problems += "\n  shape mismatches: " + join(mismatched);
  EMBER_CHECK(problems.empty(), "load_state_dict: the state does not fit ", name(), ":", problems);
  NoGradGuard no_grad;
  for (const auto& [k, v] : state) {
    const Tensor* target = mine.find(k);
    if (!target) continue;
    Tensor dst = *target;
    dst.copy_(v);  // converts dtype and device to the module's
  }
}

std::shared_ptr<Module> Module::clone(const std::optional<Device>&) const {
  EMBER_THROW("clone: ", name(), " is not cloneable; derive it from nn::Cloneable<", name(),
              "Impl> (and build its parameters and submodules in reset()) so that it can be cloned or replicated");
}

void Module::clone_(Module& other, const std::optional<Device>&) {
  EMBER_THROW("clone: ", other.name(), " is not cloneable; derive it from nn::Cloneable<", other.name(), "Impl>");
}

void Module::pretty_print(std::ostream& os) const { os << name(); }

namespace {
void print_tree(std::ostream& os, const Module& m, int indent) {
  std::ostringstream head;
  m.pretty_print(head);
  const std::string line = head.str();
  os << line;
  const auto kids = m.named_children();
  if (kids.empty()) {
    if (line.find('(') == std::string::npos) os << "()";  // ReLU()
    return;
  }
  os << "(\n";
  for (const auto& [name, child] : kids) {
    os << std::string(static_cast<size_t>(indent + 2), ' ') << "(" << name << "): ";
    print_tree(os, *child, indent + 2);
    os << "\n";
  }
  os << std::string(static_cast<size_t>(indent), ' ') << ")";
}
}  // namespace

std::ostream& operator<<(std::ostream& os, const Module& module) {
  print_tree(os, module, 0);
  return os;
}

std::ostream& operator<<(std::ostream& os, const std::shared_ptr<Module>& module) {
  if (!module) return os << "[ null module ]";
  return os << *module;
}

}  // namespace ember::nn
