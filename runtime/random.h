// Generators: a Philox seed plus a counter offset, one for the host and one per CUDA device.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "runtime/device.h"
#include "runtime/tensor.h"

namespace ember {

class Generator {
 public:
  static constexpr uint64_t kDefaultSeed = 67280421310721ULL;  // PyTorch's default seed

  explicit Generator(uint64_t seed = kDefaultSeed) : seed_(seed) {}
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  void manual_seed(uint64_t seed);
  uint64_t seed() const;
  uint64_t offset() const;
  void set_offset(uint64_t offset);
  // Reserves `blocks` Philox counters; returns {seed, first counter}. Thread-safe.
  std::pair<uint64_t, uint64_t> reserve(uint64_t blocks);

  // Note [Generator state]
  // A generator is its Philox seed and counter offset, nothing else, so its state (what PyTorch's
  // Generator.get_state() returns as a ByteTensor) is 16 bytes: the seed then the offset, each a
  // little-endian u64, in a kUInt8 host tensor of shape [16]. set_state takes such a tensor (on any
  // device) and throws ember::Error for any other dtype or size. Restoring a state makes every later
  // random op draw exactly what it drew after the state was taken.
  Tensor get_state() const;
  void set_state(const Tensor& state);

 private:
  mutable std::mutex mutex_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The generator of `device`: all logical CPU devices share the host generator (as PyTorch's one
// CPU generator); each CUDA device has its own.
Generator& default_generator(Device device);
// Seeds the host generator and every CUDA device's generator (and resets their offsets).
void manual_seed(uint64_t seed);

// The host generator's state (torch.get_rng_state / torch.set_rng_state; Note [Generator state]).
Tensor get_rng_state();
void set_rng_state(const Tensor& state);

// Every generator a training checkpoint restores: the host's and each visible CUDA device's.
struct RngStates {
  Tensor cpu;
  std::vector<Tensor> cuda;  // one per device, cuda:0 first
};
RngStates get_all_rng_states();
// Sets the host generator and the first min(states.cuda.size(), device count) CUDA generators (a state
// saved on a machine with other GPUs restores what both machines have). An undefined cpu state is skipped.
void set_all_rng_states(const RngStates& states);

namespace cuda {
// torch.cuda.get_rng_state / set_rng_state / get_rng_state_all / set_rng_state_all. `device` must be
// a visible GPU (-1: the current device); the _all forms cover every visible GPU (none without CUDA).
Tensor get_rng_state(int device = -1);
void set_rng_state(const Tensor& state, int device = -1);
std::vector<Tensor> get_rng_state_all();
void set_rng_state_all(const std::vector<Tensor>& states);
}  // namespace cuda

}  // namespace ember
