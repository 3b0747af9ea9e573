// CUDA softmax and log_softmax, forward and fused backward (kernels/cuda/softmax.h).
//
// Note [CUDA softmax]
// Our own kernels rather than cudnnSoftmaxForward: cuDNN wants 4-D descriptors per shape and a handle per
// (device, thread), and the fused kernels below are short and mirror the CPU code (kernels/cpu/softmax.cpp).
// * Rows (softmax over the innermost dim, inner == 1), up to kWarpRowMax elements: softmax_rows_fwd_kernel
//   gives each row a group of G lanes (G = the row length rounded up to a power of two, at most 32; small
//   rows share a warp). Each lane keeps an online (max, sum) pair: one read pass finds both, the sum being
//   rescaled whenever the max grows; a shuffle tree merges the lanes' pairs; a second pass (served from
//   L1/L2) writes exp(x - max) / sum or x - max - log(sum). Longer rows: softmax_block_fwd_kernel, one
//   block per row, the pairs merged through shared memory.
// * Softmax over an outer dim (inner > 1, e.g. dim 1 of [N, C, H, W]): softmax_spatial_fwd_kernel, one
//   thread per (outer, inner) position walking the dim with stride inner, so a warp reads neighbouring
//   positions (coalesced), no transpose.
// Backward has the same three shapes with one sum per row: sum(g * y) for softmax, sum(g) for log_softmax.
// Arithmetic in float (double for float64); row offsets in int64; grid-stride loops, so any row count runs
// with a legal grid. Rows of a warp or block loop together (the loop bound is uniform), so every lane
// reaches every shuffle and barrier.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/cuda/loops.cuh"
#include "kernels/cuda/softmax.h"
#include "kernels/dispatch.h"
#include "kernels/shared/cast.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/guard.h"

namespace ember::cuda {

namespace {

constexpr int kWarpRowMax = 1024;   // longest row handled by a lane group (32 elements per lane)
constexpr int kRowThreads = 256;    // threads per block of the row and spatial kernels
constexpr int kBlockThreads = 512;  // threads per block of the block-per-row kernels

template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }

template <class T>
__device__ __forceinline__ acc_t<T> ld(const T* p, int64_t i) {
  return cast_value<acc_t<T>>(p[i]);
}

template <class A>
__device__ __forceinline__ A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}

// Running max and the sum of exp(x - max) over the elements seen so far.
template <class A>
struct MaxSum {
  A m;
  A s;
};

template <class A>
__device__ __forceinline__ void online_add(MaxSum<A>& p, A x) {
  if (x > p.m) {
    p.s = p.s * exp_(p.m - x) + A(1);  // exp(-inf) = 0 for the first finite element
    p.m = x;
  } else if (x != neg_inf<A>()) {
    p.s += exp_(x - p.m);  // NaN stays NaN
  }
}

template <class A>
__device__ __forceinline__ MaxSum<A> merge(MaxSum<A> a, MaxSum<A> b) {
  if (b.m > a.m) {
    const MaxSum<A> t = a;
    a = b;
    b = t;
  }
  if (b.s != A(0)) a.s += b.s * exp_(b.m - a.m);
  return a;
}

template <class A>
__device__ __forceinline__ MaxSum<A> shfl_down(MaxSum<A> p, int off, int width) {
  return {__shfl_down_sync(0xffffffffu, p.m, off, width), __shfl_down_sync(0xffffffffu, p.s, off, width)};
}
template <class A>
__device__ __forceinline__ MaxSum<A> shfl_bcast(MaxSum<A> p, int width) {
  return {__shfl_sync(0xffffffffu, p.m, 0, width), __shfl_sync(0xffffffffu, p.s, 0, width)};
}
template <class A>
__device__ __forceinline__ A shfl_down(A v, int off, int width) {
  return __shfl_down_sync(0xffffffffu, v, off, width);
}
template <class A>
__device__ __forceinline__ A shfl_bcast(A v, int width) {
  return __shfl_sync(0xffffffffu, v, 0, width);
}

template <class A>
struct Plus {
  __device__ A operator()(A a, A b) const { return a + b; }
};
struct MergeMaxSum {
  template <class A>
  __device__ MaxSum<A> operator()(MaxSum<A> a, MaxSum<A> b) const {
    return merge(a, b);
  }
};

// Tree over the G lanes of a group (G a power of two <= 32), the result broadcast to all of them.
template <class V, class F>
__device__ __forceinline__ V group_allreduce(V v, int G, F f) {
  for (int off = G / 2; off > 0; off >>= 1) v = f(v, shfl_down(v, off, G));
  return shfl_bcast(v, G);
}

// Over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
template <class V, class F>
__device__ __forceinline__ V block_allreduce(V v, F f, V* smem) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = group_allreduce(v, 32, f);
  __syncthreads();  // smem may still be read from the previous row
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = smem[0];
  for (int w = 1; w < warps; ++w) v = f(v, smem[w]);
  return v;
}

template <class T, class A, bool Log>
__device__ __forceinline__ void write_row(const T* x, T* y, int64_t begin, int64_t end, int64_t step, MaxSum<A> p) {
  if (Log) {
    const A log_s = log_(p.s);
    for (int64_t i = begin; i < end; i += step) y[i] = cast_value<T>((ld(x, i) - p.m) - log_s);
  } else {
    const A inv = A(1) / p.s;
    for (int64_t i = begin; i < end; i += step) y[i] = cast_value<T>(exp_(ld(x, i) - p.m) * inv);
  }
}

template <class T, bool Log>
__global__ void __launch_bounds__(kRowThreads)
    softmax_rows_fwd_kernel(const T* x, T* y, int64_t rows, int64_t n, int G) {
  using A = acc_t<T>;
  const int lane = threadIdx.x % G;
  const int64_t per_block = blockDim.x / G;
  for (int64_t first = blockIdx.x * per_block; first < rows; first += gridDim.x * per_block) {
    const int64_t row = first + threadIdx.x / G;
    const bool valid = row < rows;
    const T* xr = x + (valid ? row : 0) * n;
    MaxSum<A> p{neg_inf<A>(), A(0)};
    if (valid)
      for (int64_t i = lane; i < n; i += G) online_add(p, ld(xr, i));
    p = group_allreduce(p, G, MergeMaxSum{});
    if (valid) write_row<T, A, Log>(xr, y + row * n, lane, n, G, p);
  }
}

template <class T, bool Log>
__global__ void __launch_bounds__(kBlockThreads) softmax_block_fwd_kernel(const T* x, T* y, int64_t rows, int64_t n) {
  using A = acc_t<T>;
  __shared__ MaxSum<A> smem[kBlockThreads / 32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * n;
    MaxSum<A> p{neg_inf<A>(), A(0)};
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) online_add(p, ld(xr, i));
    p = block_allreduce(p, MergeMaxSum{}, smem);
    write_row<T, A, Log>(xr, y + row * n, threadIdx.x, n, blockDim.x, p);
  }
}

template <class T, bool Log>
__global__ void __launch_bounds__(kRowThreads)
    softmax_spatial_fwd_kernel(const T* x, T* y, int64_t outer, int64_t n, int64_t inner) {
  using A = acc_t<T>;
  const int64_t total = outer * inner;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t base = k / inner * n * inner + k % inner;
    MaxSum<A> p{neg_inf<A>(), A(0)};
    for (int64_t c = 0; c < n; ++c) online_add(p, ld(x, base + c * inner));
    write_row<T, A, Log>(x + base, y + base, 0, n * inner, inner, p);
  }
}

// grad_in[i] = y * (g - dot) (softmax, dot = sum(g * y)) or g - exp(y) * dot (log_softmax, dot = sum(g)).
template <class T, class A, bool Log>
__device__ __forceinline__ A backward_term(const T* g, const T* y, int64_t i) {
  return Log ? ld(g, i) : ld(g, i) * ld(y, i);
}
template <class T, class A, bool Log>
__device__ __forceinline__ void write_grad(const T* g, const T* y, T* gx, int64_t begin, int64_t end, int64_t step,
                                           A dot) {
  for (int64_t i = begin; i < end; i += step) {
    const A gi = ld(g, i), yi = ld(y, i);
    gx[i] = cast_value<T>(Log ? gi - exp_(yi) * dot : yi * (gi - dot));
  }
}

template <class T, bool Log>
__global__ void __launch_bounds__(kRowThreads)
    softmax_rows_bwd_kernel(const T* g, const T* y, T* gx, int64_t rows, int64_t n, int G) {
  using A = acc_t<T>;
  const int lane = threadIdx.x % G;
  const int64_t per_block = blockDim.x / G;
  for (int64_t first = blockIdx.x * per_block; first < rows; first += gridDim.x * per_block) {
    const int64_t row = first + threadIdx.x / G;
    const bool valid = row < rows;
    const int64_t off = (valid ? row : 0) * n;
    A dot = 0;
    if (valid)
      for (int64_t i = lane; i < n; i += G) dot += backward_term<T, A, Log>(g + off, y + off, i);
    dot = group_allreduce(dot, G, Plus<A>{});
    if (valid) write_grad<T, A, Log>(g + off, y + off, gx + off, lane, n, G, dot);
  }
}

template <class T, bool Log>
__global__ void __launch_bounds__(kBlockThreads)
    softmax_block_bwd_kernel(const T* g, const T* y, T* gx, int64_t rows, int64_t n) {
  using A = acc_t<T>;
  __shared__ A smem[kBlockThreads / 32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t off = row * n;
    A dot = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dot += backward_term<T, A, Log>(g + off, y + off, i);
    dot = block_allreduce(dot, Plus<A>{}, smem);
    write_grad<T, A, Log>(g + off, y + off, gx + off, threadIdx.x, n, blockDim.x, dot);
  }
}

template <class T, bool Log>
__global__ void __launch_bounds__(kRowThreads)
    softmax_spatial_bwd_kernel(const T* g, const T* y, T* gx, int64_t outer, int64_t n, int64_t inner) {
  using A = acc_t<T>;
  const int64_t total = outer * inner;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t base = k / inner * n * inner + k % inner;
    A dot = 0;
    for (int64_t c = 0; c < n; ++c) dot += backward_term<T, A, Log>(g + base, y + base, c * inner);
    write_grad<T, A, Log>(g + base, y + base, gx + base, 0, n * inner, inner, dot);
  }
}

// Lanes per row: the row length rounded up to a power of two, at most 32.
int lanes_for(int64_t n) {
  int G = 1;
  while (G < 32 && G < n) G *= 2;
  return G;
}

unsigned grid_for(int64_t work_blocks, int blocks_per_sm) {
  const int64_t cap = static_cast<int64_t>(multiprocessor_count()) * blocks_per_sm;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(work_blocks, cap)));
}

// The three kernel shapes of Note [CUDA softmax] for one direction.
template <class Rows, class Block, class Spatial>
void launch_shape(int64_t outer, int64_t n, int64_t inner, cudaStream_t stream, Rows rows, Block block,
                  Spatial spatial) {
  if (inner == 1 && n <= kWarpRowMax) {
    const int G = lanes_for(n);
    const int64_t per_block = kRowThreads / G;
    rows(grid_for((outer + per_block - 1) / per_block, 2048 / kRowThreads), kRowThreads, stream, G);
  } else if (inner == 1) {
    block(grid_for(outer, 2048 / kBlockThreads), kBlockThreads, stream);
  } else {
    spatial(grid_for((outer * inner + kRowThreads - 1) / kRowThreads, 2048 / kRowThreads), kRowThreads, stream);
  }
  EMBER_CUDA_CHECK_LAUNCH();
}

}  // namespace

void softmax_forward(const Tensor& in, const Tensor& out, int64_t outer, int64_t dim_size, int64_t inner, bool log) {
  if (out.numel() == 0) return;
  DeviceGuard guard(in.device());
  const cudaStream_t stream = native_stream(in.device());
  dispatch_floating_and_half(in.dtype(), log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = static_cast<const T*>(in.raw_data());
    T* y = static_cast<T*>(out.raw_data());
    auto go = [&](auto log_tag) {
      constexpr bool Log = decltype(log_tag)::value;
      launch_shape(
          outer, dim_size, inner, stream,
          [&](unsigned grid, int threads, cudaStream_t s, int G) {
            softmax_rows_fwd_kernel<T, Log><<<grid, threads, 0, s>>>(x, y, outer, dim_size, G);
          },
          [&](unsigned grid, int threads, cudaStream_t s) {
            softmax_block_fwd_kernel<T, Log><<<grid, threads, 0, s>>>(x, y, outer, dim_size);
          },
          [&](unsigned grid, int threads, cudaStream_t s) {
            softmax_spatial_fwd_kernel<T, Log><<<grid, threads, 0, s>>>(x, y, outer, dim_size, inner);
          });
    };
    if (log)
      go(std::true_type{});
    else
      go(std::false_type{});
  });
}

void softmax_backward(const Tensor& grad_out, const Tensor& out, const Tensor& grad_in, int64_t outer, int64_t dim_size,
                      int64_t inner, bool log) {
  if (grad_in.numel() == 0) return;
  DeviceGuard guard(out.device());
  const cudaStream_t stream = native_stream(out.device());
  dispatch_floating_and_half(out.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = static_cast<const T*>(grad_out.raw_data());
    const T* y = static_cast<const T*>(out.raw_data());
    T* gx = static_cast<T*>(grad_in.raw_data());
    auto go = [&](auto log_tag) {
      constexpr bool Log = decltype(log_tag)::value;
      launch_shape(
          outer, dim_size, inner, stream,
          [&](unsigned grid, int threads, cudaStream_t s, int G) {
            softmax_rows_bwd_kernel<T, Log><<<grid, threads, 0, s>>>(g, y, gx, outer, dim_size, G);
          },
          [&](unsigned grid, int threads, cudaStream_t s) {
            softmax_block_bwd_kernel<T, Log><<<grid, threads, 0, s>>>(g, y, gx, outer, dim_size);
          },
          [&](unsigned grid, int threads, cudaStream_t s) {
            softmax_spatial_bwd_kernel<T, Log><<<grid, threads, 0, s>>>(g, y, gx, outer, dim_size, inner);
          });
    };
    if (log)
      go(std::true_type{});
    else
      go(std::false_type{});
  });
}

}  // namespace ember::cuda
