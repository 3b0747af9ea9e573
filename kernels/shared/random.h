// Random value transforms over Philox blocks, shared by the CPU loops and the CUDA kernels.
//
// Note [Random streams]
// A random op on n elements reserves ceil(n / per_block) Philox counters from the device's generator
// (generator.reserve) and element i is drawn from block `offset + i / per_block`, lane i % per_block.
// Values therefore depend only on (seed, offset, i): the CPU and the GPU produce the same numbers for
// the same seed (bit-identical for uniform and randint; normal agrees to rounding of log/cos).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/shared/philox.h"

namespace ember::rnd {

// Elements per Philox block: 4 for 32-bit outputs, 2 for 64-bit ones.
template <class T>
constexpr int per_block() {
  return sizeof(T) == 8 ? 2 : 4;
}

// Uniform in [0, 1) with 24 (float) or 53 (double) random bits.
EMBER_HD inline float u01_float(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }
EMBER_HD inline double u01_double(uint32_t lo, uint32_t hi) {
  const uint64_t bits = ((static_cast<uint64_t>(hi) << 32) | lo) >> 11;
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}

// Fills out[0..per_block) with uniforms for block `counter` (T = float or double).
template <class T>
EMBER_HD inline void uniform_block(uint64_t seed, uint64_t counter, T* out) {
  const Philox4 r = philox4x32_10(seed, counter);
  if constexpr (sizeof(T) == 8) {
    out[0] = static_cast<T>(u01_double(r.v[0], r.v[1]));
    out[1] = static_cast<T>(u01_double(r.v[2], r.v[3]));
  } else {
    for (int k = 0; k < 4; ++k) out[k] = static_cast<T>(u01_float(r.v[k]));
  }
}

// Standard normals by Box-Muller: each pair of uniforms gives two values.
template <class T>
EMBER_HD inline void normal_block(uint64_t seed, uint64_t counter, T* out) {
  T u[per_block<T>()];
  uniform_block<T>(seed, counter, u);
  constexpr T two_pi = static_cast<T>(6.283185307179586476925);
  for (int k = 0; k < per_block<T>(); k += 2) {
    const T radius = std::sqrt(static_cast<T>(-2) * std::log(static_cast<T>(1) - u[k]));  // 1-u in (0, 1]
    const T theta = two_pi * u[k + 1];
    out[k] = radius * std::cos(theta);
    out[k + 1] = radius * std::sin(theta);
  }
}

// Integers uniform in [low, high) from 64 random bits (2 per block).
EMBER_HD inline void randint_block(uint64_t seed, uint64_t counter, int64_t low, int64_t high, int64_t* out) {
  const Philox4 r = philox4x32_10(seed, counter);
  const uint64_t range = static_cast<uint64_t>(high - low);
  for (int k = 0; k < 2; ++k) {
    const uint64_t bits = (static_cast<uint64_t>(r.v[2 * k + 1]) << 32) | r.v[2 * k];
    out[k] = low + static_cast<int64_t>(bits % range);
  }
}

}  // namespace ember::rnd
