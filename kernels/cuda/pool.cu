// CUDA pooling kernels: max (with argmax), average and adaptive average, forward and gather-style backward.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/loops.cuh"
#include "kernels/cuda/pool.h"
#include "kernels/dispatch.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"

namespace ember::cuda {

namespace {

using pool::Pool2dGeometry;

// Note [CUDA pooling kernels]
// One thread per output element forward and one per input element backward, in grid-stride loops
// with 64-bit indices (any element count runs with a legal grid). Backward gathers: an input element
// visits the outputs whose windows can contain it (pool::*_outputs_covering) and sums their
// contributions, so no atomics are needed and results are deterministic. The window arithmetic is
// kernels/shared/pool.h, the same code the CPU loops run. 16-bit types accumulate in float.

template <class A>
__device__ inline bool is_nan(A v) {
  return v != v;
}

template <class T>
__global__ void max_pool2d_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ indices,
                                      int64_t total, Pool2dGeometry g) {
  using A = compute_t<T>;
  const int64_t in_plane = g.in_h * g.in_w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t ow = i % g.out_w, oh = (i / g.out_w) % g.out_h, p = i / (g.out_w * g.out_h);
    int64_t h0, h1, w0, w1;
    pool::max_window(oh, g.in_h, g.kernel_h, g.pad_h, g.stride_h, g.dilation_h, h0, h1);
    pool::max_window(ow, g.in_w, g.kernel_w, g.pad_w, g.stride_w, g.dilation_w, w0, w1);
    const T* xp = x + p * in_plane;
    A best = -static_cast<A>(INFINITY);
    int64_t best_i = h0 * g.in_w + w0;
    for (int64_t h = h0; h < h1; h += g.dilation_h) {
      for (int64_t w = w0; w < w1; w += g.dilation_w) {
        const A v = static_cast<A>(xp[h * g.in_w + w]);
        if (v > best || is_nan(v)) {  // first maximum on ties; NaN wins (PyTorch's rule)
          best = v;
          best_i = h * g.in_w + w;
        }
      }
    }
    y[i] = static_cast<T>(best);
    indices[i] = best_i;
  }
}

template <class T>
__global__ void max_pool2d_bwd_kernel(const T* __restrict__ gy, const int64_t* __restrict__ indices, T* __restrict__ gx,
                                      int64_t total, Pool2dGeometry g) {
  using A = compute_t<T>;
  const int64_t out_plane = g.out_h * g.out_w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t w = i % g.in_w, h = (i / g.in_w) % g.in_h, p = i / (g.in_w * g.in_h);
    int64_t oh0, oh1, ow0, ow1;
    pool::max_outputs_covering(h, g.out_h, g.kernel_h, g.pad_h, g.stride_h, g.dilation_h, oh0, oh1);
    pool::max_outputs_covering(w, g.out_w, g.kernel_w, g.pad_w, g.stride_w, g.dilation_w, ow0, ow1);
    const int64_t self = h * g.in_w + w;
    const T* gyp = gy + p * out_plane;
    const int64_t* ip = indices + p * out_plane;
    A acc = 0;
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = ow0; ow < ow1; ++ow)
        if (ip[oh * g.out_w + ow] == self) acc += static_cast<A>(gyp[oh * g.out_w + ow]);
    gx[i] = static_cast<T>(acc);
  }
}

template <class T>
__global__ void avg_pool2d_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t total, Pool2dGeometry g) {
  using A = compute_t<T>;
  const int64_t in_plane = g.in_h * g.in_w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t ow = i % g.out_w, oh = (i / g.out_w) % g.out_h, p = i / (g.out_w * g.out_h);
    int64_t h0, h1, w0, w1;
    const int64_t divisor = pool::avg_divisor(g, oh, ow, h0, h1, w0, w1);
    const T* xp = x + p * in_plane;
    A sum = 0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) sum += static_cast<A>(xp[h * g.in_w + w]);
    y[i] = static_cast<T>(divisor == 0 ? A(0) : sum / static_cast<A>(divisor));
  }
}

template <class T>
__global__ void avg_pool2d_bwd_kernel(const T* __restrict__ gy, T* __restrict__ gx, int64_t total, Pool2dGeometry g) {
  using A = compute_t<T>;
  const int64_t out_plane = g.out_h * g.out_w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t w = i % g.in_w, h = (i / g.in_w) % g.in_h, p = i / (g.in_w * g.in_h);
    int64_t oh0, oh1, ow0, ow1;
    pool::avg_outputs_covering(h, g.out_h, g.kernel_h, g.pad_h, g.stride_h, oh0, oh1);
    pool::avg_outputs_covering(w, g.out_w, g.kernel_w, g.pad_w, g.stride_w, ow0, ow1);
    const T* gyp = gy + p * out_plane;
    A acc = 0;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        int64_t h0, h1, w0, w1;
        const int64_t divisor = pool::avg_divisor(g, oh, ow, h0, h1, w0, w1);
        // The window must really contain (h, w): the covering range is computed on the padded grid.
        if (divisor == 0 || h < h0 || h >= h1 || w < w0 || w >= w1) continue;
        acc += static_cast<A>(gyp[oh * g.out_w + ow]) / static_cast<A>(divisor);
      }
    }
    gx[i] = static_cast<T>(acc);
  }
}

template <class T>
__global__ void adaptive_avg_pool2d_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t total, int64_t in_h,
                                               int64_t in_w, int64_t out_h, int64_t out_w) {
  using A = compute_t<T>;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t ow = i % out_w, oh = (i / out_w) % out_h, p = i / (out_w * out_h);
    const int64_t h0 = pool::adaptive_start(oh, in_h, out_h), h1 = pool::adaptive_end(oh, in_h, out_h);
    const int64_t w0 = pool::adaptive_start(ow, in_w, out_w), w1 = pool::adaptive_end(ow, in_w, out_w);
    const T* xp = x + p * in_h * in_w;
    A sum = 0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) sum += static_cast<A>(xp[h * in_w + w]);
    y[i] = static_cast<T>(sum / static_cast<A>((h1 - h0) * (w1 - w0)));
  }
}

template <class T>
__global__ void adaptive_avg_pool2d_bwd_kernel(const T* __restrict__ gy, T* __restrict__ gx, int64_t total,
                                               int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
  using A = compute_t<T>;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t w = i % in_w, h = (i / in_w) % in_h, p = i / (in_w * in_h);
    // Outputs whose windows [floor(o * in / out), ceil((o + 1) * in / out)) contain h (and w).
    const int64_t oh0 = (h * out_h) / in_h, oh1 = pool::min64(((h + 1) * out_h + in_h - 1) / in_h, out_h);
    const int64_t ow0 = (w * out_w) / in_w, ow1 = pool::min64(((w + 1) * out_w + in_w - 1) / in_w, out_w);
    const T* gyp = gy + p * out_h * out_w;
    A acc = 0;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const int64_t h0 = pool::adaptive_start(oh, in_h, out_h), h1 = pool::adaptive_end(oh, in_h, out_h);
      if (h < h0 || h >= h1) continue;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const int64_t w0 = pool::adaptive_start(ow, in_w, out_w), w1 = pool::adaptive_end(ow, in_w, out_w);
        if (w < w0 || w >= w1) continue;
        acc += static_cast<A>(gyp[oh * out_w + ow]) / static_cast<A>((h1 - h0) * (w1 - w0));
      }
    }
    gx[i] = static_cast<T>(acc);
  }
}

cudaStream_t stream_of(const Tensor& t) {
  return static_cast<cudaStream_t>(current_stream(t.device().index()).handle());
}

}  // namespace

void max_pool2d(const Tensor& input, const Tensor& out, const Tensor& indices, const Pool2dGeometry& g) {
  DeviceGuard guard(input.device());
  const cudaStream_t stream = stream_of(input);
  const int64_t total = out.numel();
  if (total == 0) return;
  dispatch_floating_and_half(input.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_fwd_kernel<T><<<elementwise_blocks(total), kElementwiseThreads, 0, stream>>>(
        static_cast<const T*>(input.raw_data()), static_cast<T*>(out.raw_data()),
        static_cast<int64_t*>(indices.raw_data()), total, g);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

void max_pool2d_backward(const Tensor& grad_output, const Tensor& indices, const Tensor& grad_input,
                         const Pool2dGeometry& g) {
  DeviceGuard guard(grad_input.device());
  const cudaStream_t stream = stream_of(grad_input);
  const int64_t total = grad_input.numel();
  if (total == 0) return;
  dispatch_floating_and_half(grad_input.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_bwd_kernel<T><<<elementwise_blocks(total), kElementwiseThreads, 0, stream>>>(
        static_cast<const T*>(grad_output.raw_data()), static_cast<const int64_t*>(indices.raw_data()),
        static_cast<T*>(grad_input.raw_data()), total, g);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

void avg_pool2d(const Tensor& input, const Tensor& out, const Pool2dGeometry& g) {
  DeviceGuard guard(input.device());
  const cudaStream_t stream = stream_of(input);
  const int64_t total = out.numel();
  if (total == 0) return;
  dispatch_floating_and_half(input.dtype(), "avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_pool2d_fwd_kernel<T><<<elementwise_blocks(total), kElementwiseThreads, 0, stream>>>(
        static_cast<const T*>(input.raw_data()), static_cast<T*>(out.raw_data()), total, g);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

void avg_pool2d_backward(const Tensor& grad_output, const Tensor& grad_input, const Pool2dGeometry& g) {
  DeviceGuard guard(grad_input.device());
  const cudaStream_t stream = stream_of(grad_input);
  const int64_t total = grad_input.numel();
  if (total == 0) return;
  dispatch_floating_and_half(grad_input.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_pool2d_bwd_kernel<T><<<elementwise_blocks(total), kElementwiseThreads, 0, stream>>>(
        static_cast<const T*>(grad_output.raw_data()), static_cast<T*>(grad_input.raw_data()), total, g);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

void adaptive_avg_pool2d(const Tensor& input, const Tensor& out) {
  DeviceGuard guard(input.device());
  const cudaStream_t stream = stream_of(input);
  const int64_t total = out.numel();
  if (total == 0) return;
  dispatch_floating_and_half(input.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    adaptive_avg_pool2d_fwd_kernel<T><<<elementwise_blocks(total), kElementwiseThreads, 0, stream>>>(
        static_cast<const T*>(input.raw_data()), static_cast<T*>(out.raw_data()), total, input.size(2), input.size(3),
        out.size(2), out.size(3));
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

void adaptive_avg_pool2d_backward(const Tensor& grad_output, const Tensor& grad_input) {
  DeviceGuard guard(grad_input.device());
  const cudaStream_t stream = stream_of(grad_input);
  const int64_t total = grad_input.numel();
  if (total == 0) return;
  dispatch_floating_and_half(grad_input.dtype(), "adaptive_avg_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    adaptive_avg_pool2d_bwd_kernel<T><<<elementwise_blocks(total), kElementwiseThreads, 0, stream>>>(
        static_cast<const T*>(grad_output.raw_data()), static_cast<T*>(grad_input.raw_data()), total,
        grad_input.size(2), grad_input.size(3), grad_output.size(2), grad_output.size(3));
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ember::cuda
