// Module checkpoints as safetensors files with PyTorch's state_dict names: nn::save / nn::load.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "nn/holder.h"
#include "nn/module.h"
#include "nn/optim/state_dict.h"
#include "runtime/random.h"

namespace ember::nn {

// Note [Module checkpoints]
// A checkpoint is a safetensors file (nn/safetensors.h) holding a module's state_dict(): the
// parameter and buffer names PyTorch uses ("fc1.weight", "bn.running_mean", ...), each tensor in
// its own dtype (F32, F64, F16, BF16, I64, I32, U8, BOOL), plus the metadata {"format": "pt"} that
// Hugging Face loaders look for. So `safetensors.torch.save_file(model.state_dict(), path)` for
// the same architecture loads here, and ember's files load with `safetensors.torch.load_file`.
// Saving copies each tensor to host memory (contiguous) and writes atomically: a failed save
// leaves an existing file untouched. Loading validates the file first (safetensors::File::open
// checks the header, dtypes, shapes and byte ranges), then the module, before changing anything:
// a dtype the module cannot take (ember converts between floating-point dtypes and between
// integer dtypes, as PyTorch's load_state_dict copies, but not across kinds: a float tensor in an
// int64 buffer is a wrong file, not a conversion), then Module::load_state_dict's checks (names
// the module lacks or misses, shape mismatches). Values are converted to each parameter's dtype
// and land on the device it lives on. Every error is an ember::Error naming the file and problem.

// Writes module.state_dict() to `path`.
void save(const Module& module, const std::string& path);
// Writes any name -> tensor map (tensors on any device; each must be defined).
void save(const StateDict& state, const std::string& path);
template <class M, std::enable_if_t<std::is_base_of_v<Module, M>, int> = 0>
void save(const std::shared_ptr<M>& module, const std::string& path) {
  EMBER_CHECK(module != nullptr, "nn::save: the module is null (writing '", path, "')");
  save(static_cast<const Module&>(*module), path);
}
template <class C>
void save(const ModuleHolder<C>& module, const std::string& path) {
  save(static_cast<const Module&>(*module.ptr()), path);
}

// Loads `path` into the module's parameters and buffers. strict: every name of the module must be
// in the file and every name of the file in the module (as Module::load_state_dict).
void load(Module& module, const std::string& path, bool strict = true);
template <class M, std::enable_if_t<std::is_base_of_v<Module, M>, int> = 0>
void load(const std::shared_ptr<M>& module, const std::string& path, bool strict = true) {
  EMBER_CHECK(module != nullptr, "nn::load: the module is null (reading '", path, "')");
  load(static_cast<Module&>(*module), path, strict);
}
template <class C>
void load(const ModuleHolder<C>& module, const std::string& path, bool strict = true) {
  load(static_cast<Module&>(*module.ptr()), path, strict);
}

// Reads every tensor of a safetensors file, in the file's dtypes, onto `device`. Entries are in the
// order their bytes lie in the file.
StateDict load_state_dict(const std::string& path, Device device = Device::cpu());

// Note [Training checkpoints]
// A training checkpoint is everything a run needs to continue exactly where it stopped: the model's
// state_dict, the optimizer's and the LR scheduler's (PyTorch's layouts, Note [State dicts of optimizers
// and schedulers]), epoch and step counters, the random generators' states, the data order (a
// DataLoader's state_dict: seed, epoch, batches taken) and any strings of the caller's own. It is one
// safetensors file, written atomically like every save here (a temporary file in the same folder,
// fsync, rename, fsync of the folder): a process killed in the middle of a save leaves the previous
// file under the final name, complete, plus at most a "<name>.tmp.<pid>.<random>" file, which the
// readers below ignore and which may be deleted. Layout:
//   tensors   "model.<name>"                     the model's state_dict entries
//             "optimizer.state.<index>.<name>"   per-parameter optimizer state ("step" a 0-dim F64)
//             "rng.cpu", "rng.cuda.<i>"          generator states (Note [Generator state]), U8[16]
//   metadata  "format": "pt", "ember.checkpoint": "1", "epoch", "step" (decimal integers),
//             "optimizer.param_groups": JSON array of PyTorch's group dicts (options and "params"),
//             "scheduler", "data": JSON objects of StateValues, "extra": JSON object of strings.
// So safetensors.torch.load_file reads the tensors in Python, and json.loads the metadata. Absent
// parts (no optimizer, no scheduler) are left out of the file and come back as std::nullopt.
struct Checkpoint {
  StateDict model{"checkpoint model"};
  std::optional<optim::OptimizerStateDict> optimizer;
  std::optional<optim::SchedulerStateDict> scheduler;
  StateValueMap data;  // the data order: DataLoader::state_dict()
  int64_t epoch = 0;   // the caller's counters: e.g. epochs completed and optimizer steps taken
  int64_t step = 0;
  RngStates rng;  // get_all_rng_states(); undefined/empty parts are not saved
  std::map<std::string, std::string> extra;
};

// Writes `checkpoint` to `path` atomically (tensors on any device are copied to the host first).
// Throws ember::Error naming the path and the problem; a failed save leaves an existing file as it was.
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
// Reads a checkpoint written by save_checkpoint, its tensors on `device`. Throws ember::Error naming the
// path for a file that is not one (a module file written by nn::save says so) or is damaged.
Checkpoint load_checkpoint(const std::string& path, Device device = Device::cpu());
// Whether `path` is a readable safetensors file with the checkpoint metadata (false for a module file).
bool is_checkpoint(const std::string& path);

// A folder of numbered checkpoints: "<dir>/checkpoint-<number, at least 8 digits>.safetensors".
std::string checkpoint_path(const std::string& dir, int64_t number);
// The checkpoint_path in `dir` with the largest number, or "" when there is none (other files, such as
// the temporary files of unfinished saves, are ignored). Throws when `dir` cannot be listed.
std::string latest_checkpoint(const std::string& dir);

}  // namespace ember::nn
