// Generators: a Philox seed plus a counter offset, one for the host and one per CUDA device.
#pragma once

#include <cstdint>
#include <mutex>

#include "runtime/device.h"

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

}  // namespace ember
