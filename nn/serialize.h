// Module checkpoints as safetensors files with PyTorch's state_dict names: nn::save / nn::load.
#pragma once

#include <memory>
#include <string>
#include <type_traits>

#include "nn/holder.h"
#include "nn/module.h"

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

}  // namespace ember::nn
