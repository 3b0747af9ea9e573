// State dicts of optimizers and LR schedulers in PyTorch's layout, and the scalar values they hold.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "runtime/tensor.h"

namespace ember {

// Note [State dicts of optimizers and schedulers]
// PyTorch's optimizer.state_dict() is {"state": {index: {name: tensor}}, "param_groups": [{option: value,
// ..., "params": [indices]}]}: parameters are numbered in the order the groups list them (0, 1, ...), the
// per-parameter state holds tensors ("step" is a 0-dim tensor, as PyTorch >= 1.12 keeps it), and the
// groups hold Python numbers, bools and tuples. ember keeps the same shape with C++ types: tensors in
// OptimizerStateDict::state, the rest as StateValues. A scheduler's state_dict() is a flat StateValueMap
// with PyTorch's keys ("base_lrs", "last_epoch", "_step_count", "_last_lr", and the schedule's own, e.g.
// "step_size" and "gamma"). These are what a training checkpoint stores (nn::save_checkpoint); the values
// map one to one onto JSON (bool, integer, floating-point number, array of numbers).

// A non-tensor entry of a state dict: what PyTorch keeps as a bool, an int, a float or a tuple of floats.
// Build integers as int64_t (StateValue(int64_t{3})): a plain int literal would be ambiguous.
using StateValue = std::variant<bool, int64_t, double, std::vector<double>>;
using StateValueMap = std::map<std::string, StateValue>;

// The value as text, for messages ("true", "3", "0.001", "[0.9, 0.999]").
std::string state_value_str(const StateValue& value);

// Reads the entries of a StateValueMap by type and remembers which it read, so that finish() can reject
// the keys nobody asked for. Every error is an ember::Error starting with `where` and naming the key.
class StateReader {
 public:
  StateReader(const StateValueMap& map, std::string where);

  bool has(const std::string& key) const { return map_.count(key) > 0; }
  bool boolean(const std::string& key);
  int64_t integer(const std::string& key);
  double number(const std::string& key);  // a floating-point number or an integer
  // A list of numbers; `size` > 0 requires exactly that many.
  std::vector<double> numbers(const std::string& key, size_t size = 0);
  // Marks `key` read without reading it (accepted and ignored).
  void skip(const std::string& key) { read_.insert(key); }
  // Throws when the map holds keys that were not read, naming them and `expected`.
  void finish(const std::string& expected) const;

 private:
  const StateValue& get(const std::string& key);
  [[noreturn]] void wrong_type(const std::string& key, const char* expected) const;

  const StateValueMap& map_;
  std::string where_;
  std::set<std::string> read_;
};

}  // namespace ember

namespace ember::optim {

// One entry of state_dict()["param_groups"]: the group's options (with "initial_lr" once a scheduler
// set it) and the indices of its parameters.
struct ParamGroupState {
  StateValueMap options;
  std::vector<int64_t> params;
};

// optimizer.state_dict(). The tensors of `state` are the optimizer's own (not copies, as in PyTorch):
// save them or clone them before the optimizer steps again; load_state_dict copies what it is given.
struct OptimizerStateDict {
  std::map<int64_t, std::map<std::string, Tensor>> state;  // parameter index -> name -> tensor
  std::vector<ParamGroupState> param_groups;
};

using SchedulerStateDict = StateValueMap;

}  // namespace ember::optim
