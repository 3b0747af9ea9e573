// CUDA entry points for copies, fills and random fills (kernels/cuda/copy.cu, random.cu).
#pragma once

#include <cstdint>

#include "kernels/cuda/entry.h"
#include "runtime/tensor.h"

namespace ember::cuda {

// dst <- src where at least one is a CUDA tensor: any dtypes, strides, devices; src already
// expanded to dst's shape. non_blocking: no host wait (the host side must be pinned to be async).
EMBER_CUDA_ENTRY(void, copy_, (const Tensor& dst, const Tensor& src, bool non_blocking))
EMBER_CUDA_ENTRY(void, fill_, (const Tensor& self, const Scalar& value))
// Random fills of a contiguous tensor from Philox(seed, offset): see kernels/shared/random.h.
EMBER_CUDA_ENTRY(void, uniform_, (const Tensor& self, double from, double to, uint64_t seed, uint64_t offset))
EMBER_CUDA_ENTRY(void, normal_, (const Tensor& self, double mean, double std, uint64_t seed, uint64_t offset))
EMBER_CUDA_ENTRY(void, randint_, (const Tensor& self, int64_t low, int64_t high, uint64_t seed, uint64_t offset))
EMBER_CUDA_ENTRY(void, bernoulli_, (const Tensor& self, double p, uint64_t seed, uint64_t offset))

}  // namespace ember::cuda
