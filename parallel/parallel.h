// The building blocks of data parallelism: scatter, gather, broadcast, all_reduce, replicate, parallel_apply.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/module.h"
#include "runtime/cuda/cuda.h"
#include "runtime/tensor.h"

namespace ember::parallel {

// Chunk sizes for splitting `size` items over `n` devices: as even as possible (they differ by at
// most one, larger first); fewer than n chunks when size < n (no empty chunk unless size == 0).
std::vector<int64_t> chunk_sizes(int64_t size, size_t n);

// Splits x along `dim` into chunks (chunk_sizes) and copies chunk i to devices[i]. Differentiable:
// the gradients flow back to x's device. Returns as many chunks as there are non-empty ones.
std::vector<Tensor> scatter(const Tensor& x, const std::vector<Device>& devices, int64_t dim = 0);

// As above with chosen chunk sizes (chunk i to devices[i]; they must sum to x.size(dim)).
std::vector<Tensor> scatter(const Tensor& x, const std::vector<Device>& devices, int64_t dim,
                            const std::vector<int64_t>& chunk_sizes);
// Chunk sizes for a batch of `size` in the proportions of `requested` (as given when they sum to
// `size`; otherwise scaled, largest remainders first). Empty when a device's share would be empty:
// callers then split evenly.
std::vector<int64_t> scale_chunk_sizes(const std::vector<int64_t>& requested, int64_t size);

// PyTorch's DataParallel balance check: the warning to give when a GPU has less than 75% of the memory
// or multiprocessors of another (props[i] describes devices[i]), else nothing.
std::optional<std::string> imbalance_warning(const std::vector<Device>& devices,
                                             const std::vector<cuda::DeviceProperties>& props);
// Gives that warning on stderr, once per process, when `devices` are GPUs that differ that much.
void warn_if_imbalanced(const std::vector<Device>& devices);

// Concatenates `tensors` (from any devices) along `dim` on `device`; 0-d tensors are stacked into
// a vector. Differentiable.
Tensor gather(const std::vector<Tensor>& tensors, Device device, int64_t dim = 0);

// A copy of x on every device (x itself where it already is). Differentiable (gradients sum).
std::vector<Tensor> broadcast(const Tensor& x, const std::vector<Device>& devices);

// In place: tensors[i] <- sum over j of tensors[j]. One tensor per device (NCCL on GPUs, host loops
// on logical CPU devices).
void all_reduce(const std::vector<Tensor>& tensors);

// Deep copies of `module` on each device (the module must derive from nn::Cloneable<T>).
std::vector<std::shared_ptr<nn::Module>> replicate(const std::shared_ptr<nn::Module>& module,
                                                   const std::vector<Device>& devices);
template <class M>
std::vector<std::shared_ptr<M>> replicate(const std::shared_ptr<M>& module, const std::vector<Device>& devices) {
  std::vector<std::shared_ptr<M>> out;
  for (auto& r : replicate(std::static_pointer_cast<nn::Module>(module), devices))
    out.push_back(std::static_pointer_cast<M>(r));
  return out;
}

// Runs task(i) for every i in [0, devices.size()) concurrently, task i on a thread of its own with
// devices[i] current (DeviceGuard), the caller's grad mode, and OpenMP threads shared out between
// the tasks. Rethrows the first failure (naming its device) after every task has ended.
void run_on_devices(const std::vector<Device>& devices, const std::function<void(size_t)>& task);

// replicas[i]->forward(inputs[i]) for every i, concurrently (one thread per replica).
template <class M>
std::vector<Tensor> parallel_apply(const std::vector<std::shared_ptr<M>>& replicas, const std::vector<Tensor>& inputs) {
  EMBER_CHECK(replicas.size() == inputs.size(), "parallel_apply: ", replicas.size(), " replicas but ", inputs.size(),
              " inputs");
  std::vector<Device> devices;
  for (const Tensor& x : inputs) devices.push_back(x.device());
  std::vector<Tensor> outputs(inputs.size());
  run_on_devices(devices, [&](size_t i) { outputs[i] = replicas[i]->forward(inputs[i]); });
  return outputs;
}

// Device lists: CUDA indices (the default: every visible GPU) or explicit devices.
std::vector<Device> cuda_devices(const std::vector<int>& device_ids);
// Validates a data-parallel device list: non-empty, no duplicates, all CPU or all CUDA, usable.
void check_devices(const char* op, const std::vector<Device>& devices);

}  // namespace ember::parallel
