// CUDA random fills (uniform_, normal_, randint_, bernoulli_) that reproduce the CPU's values exactly.
//
// Note [CUDA random fills]
// The op (kernels/random.cpp) reserves Philox counters and hands us (seed, offset). As on the CPU
// (Note [Random streams]), element i of the contiguous tensor comes from Philox block
// offset + i / per_block, lane i % per_block: one thread produces one block and writes its lanes,
// in a grid-stride loop. The per-element transforms are the CPU's, written with round-to-nearest
// intrinsics (__fmul_rn, __fadd_rn, ...) so that nvcc cannot contract `lo + range * u` into a
// fused multiply-add, which would round differently from the host: uniform, randint and bernoulli
// are bit-identical to the CPU; normal differs only by the last-bit differences of the device's
// log/sin/cos from the host's libm.
#include <cuda_runtime.h>

#include "kernels/cuda/copy.h"
#include "kernels/cuda/loops.cuh"
#include "kernels/dispatch.h"
#include "kernels/shared/elementwise_ops.h"
#include "kernels/shared/random.h"
#include "runtime/cuda/guard.h"

namespace ember::cuda {

namespace {

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// lo + range * u, with `to` kept excluded after rounding (kernels/random.cpp's uniform_).
template <class C>
struct UniformBlock {
  static constexpr int kPer = rnd::per_block<C>();
  uint64_t seed;
  C lo, range, to;
  __device__ void operator()(uint64_t counter, C* v) const {
    rnd::uniform_block<C>(seed, counter, v);
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const C x = add_rn(lo, mul_rn(range, v[k]));
      v[k] = x < to || range == C(0) ? x : lo;
    }
  }
};

template <class C>
struct NormalBlock {
  static constexpr int kPer = rnd::per_block<C>();
  uint64_t seed;
  C mean, std;
  __device__ void operator()(uint64_t counter, C* v) const {
    rnd::normal_block<C>(seed, counter, v);
#pragma unroll
    for (int k = 0; k < kPer; ++k) v[k] = add_rn(mean, mul_rn(std, v[k]));
  }
};

struct BernoulliBlock {
  static constexpr int kPer = 4;
  uint64_t seed;
  float p;
  __device__ void operator()(uint64_t counter, float* v) const {
    rnd::uniform_block<float>(seed, counter, v);
#pragma unroll
    for (int k = 0; k < kPer; ++k) v[k] = v[k] < p ? 1.0f : 0.0f;
  }
};

struct RandintBlock {
  static constexpr int kPer = 2;
  uint64_t seed;
  int64_t low, high;
  __device__ void operator()(uint64_t counter, int64_t* v) const { rnd::randint_block(seed, counter, low, high, v); }
};

// Block b of the Philox stream fills out[b * kPer, ...) (fewer lanes at the end).
template <class T, class V, class Make>
__global__ void random_fill_kernel(T* out, int64_t n, uint64_t offset, Make make) {
  constexpr int kPer = Make::kPer;
  const int64_t blocks = (n + kPer - 1) / kPer;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks; b += stride) {
    V v[kPer];
    make(offset + static_cast<uint64_t>(b), v);
    const int64_t base = b * kPer;
    if (base + kPer <= n) {
#pragma unroll
      for (int k = 0; k < kPer; ++k) out[base + k] = ew::Convert<T>{}(v[k]);
    } else {
      for (int k = 0; base + k < n; ++k) out[base + k] = ew::Convert<T>{}(v[k]);
    }
  }
}

template <class T, class V, class Make>
void launch_random(const Tensor& self, uint64_t offset, const Make& make) {
  EMBER_ASSERT(self.is_contiguous(), "cuda random fill: the target must be contiguous");
  const int64_t n = self.numel();
  if (n == 0) return;
  DeviceGuard guard(self.device());
  const int64_t blocks = (n + Make::kPer - 1) / Make::kPer;
  random_fill_kernel<T, V, Make><<<elementwise_blocks(blocks), kElementwiseThreads, 0, native_stream(self.device())>>>(
      static_cast<T*>(self.raw_data()), n, offset, make);
  EMBER_CUDA_CHECK_LAUNCH();
}

}  // namespace

void uniform_(const Tensor& self, double from, double to, uint64_t seed, uint64_t offset) {
  dispatch_floating_and_half(self.dtype(), "uniform_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const UniformBlock<C> make{seed, static_cast<C>(from), static_cast<C>(to - from), static_cast<C>(to)};
    launch_random<T, C>(self, offset, make);
  });
}

void normal_(const Tensor& self, double mean, double std, uint64_t seed, uint64_t offset) {
  dispatch_floating_and_half(self.dtype(), "normal_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    launch_random<T, C>(self, offset, NormalBlock<C>{seed, static_cast<C>(mean), static_cast<C>(std)});
  });
}

void randint_(const Tensor& self, int64_t low, int64_t high, uint64_t seed, uint64_t offset) {
  EMBER_ASSERT(self.dtype() == kInt64, "cuda::randint_: expects an int64 tensor, got ", self.dtype());
  launch_random<int64_t, int64_t>(self, offset, RandintBlock{seed, low, high});
}

void bernoulli_(const Tensor& self, double p, uint64_t seed, uint64_t offset) {
  dispatch_all(self.dtype(), "bernoulli_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_random<T, float>(self, offset, BernoulliBlock{seed, static_cast<float>(p)});
  });
}

}  // namespace ember::cuda
