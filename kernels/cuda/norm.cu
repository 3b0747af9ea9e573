// CUDA kernels of batch norm and layer norm: Welford statistics, fused normalisation and closed-form backward.
//
// Note [Why our own normalisation kernels]
// cuDNN 9 still ships cudnnBatchNormalizationForward{Training,Inference}/Backward, but marks them
// deprecated (the build treats that warning as an error), and its replacement is the graph API, which
// needs per-shape plan building for what is two reductions and an element-wise pass. The kernels below
// are short, run for any rank ([N, C] and [N, C, *]), float16/bfloat16/float32/float64 with float (or
// double) statistics, and follow the same formulas as the CPU kernels (kernels/cpu/norm.cpp), so the
// CPU tests check the arithmetic the GPU runs.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/norm.h"
#include "kernels/dispatch.h"
#include "kernels/shared/cast.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"
#include "runtime/factory.h"

namespace ember::cuda {

namespace {

template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int kMaxGrid = 65535;

__device__ __forceinline__ float inv_sqrt(float v) { return rsqrtf(v); }
__device__ __forceinline__ double inv_sqrt(double v) { return 1.0 / ::sqrt(v); }

template <class A>
struct Welford {
  A mean;
  A m2;
  long long n;
};

template <class A>
__device__ __forceinline__ void welford_add(Welford<A>& w, A x) {
  w.n += 1;
  const A d = x - w.mean;
  w.mean += d / static_cast<A>(w.n);
  w.m2 += d * (x - w.mean);
}

// Chan et al.'s merge of two partial (count, mean, M2) triples.
template <class A>
__device__ __forceinline__ Welford<A> welford_merge(Welford<A> a, const Welford<A>& b) {
  if (b.n == 0) return a;
  if (a.n == 0) return b;
  const long long n = a.n + b.n;
  const A nb = static_cast<A>(b.n) / static_cast<A>(n);
  const A d = b.mean - a.mean;
  a.mean += d * nb;
  a.m2 += b.m2 + d * d * static_cast<A>(a.n) * nb;
  a.n = n;
  return a;
}

template <class A>
__device__ __forceinline__ Welford<A> warp_reduce_welford(Welford<A> w) {
  for (int off = 16; off > 0; off >>= 1) {
    Welford<A> o;
    o.mean = __shfl_down_sync(0xffffffffu, w.mean, off);
    o.m2 = __shfl_down_sync(0xffffffffu, w.m2, off);
    o.n = __shfl_down_sync(0xffffffffu, w.n, off);
    w = welford_merge(w, o);
  }
  return w;
}

template <class A>
__device__ __forceinline__ A warp_reduce_sum(A v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ int flat_tid() { return static_cast<int>(threadIdx.y * blockDim.x + threadIdx.x); }
__device__ __forceinline__ int block_threads() { return static_cast<int>(blockDim.x * blockDim.y); }

// Whole-block reductions (block size a multiple of 32, at most 1024). The result is valid in thread 0.
// They end with a barrier so that `shared` can be reused right away.
template <class A>
__device__ Welford<A> block_reduce_welford(Welford<A> w, Welford<A>* shared) {
  const int tid = flat_tid(), lane = tid & 31, warp = tid >> 5, nwarps = block_threads() >> 5;
  w = warp_reduce_welford(w);
  if (lane == 0) shared[warp] = w;
  __syncthreads();
  if (warp == 0) {
    w = lane < nwarps ? shared[lane] : Welford<A>{A(0), A(0), 0};
    w = warp_reduce_welford(w);
  }
  __syncthreads();
  return w;
}

template <class A>
__device__ void block_reduce_sum2(A& a, A& b, A* shared /* 64 */) {
  const int tid = flat_tid(), lane = tid & 31, warp = tid >> 5, nwarps = block_threads() >> 5;
  a = warp_reduce_sum(a);
  b = warp_reduce_sum(b);
  if (lane == 0) {
    shared[warp] = a;
    shared[32 + warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    a = lane < nwarps ? shared[lane] : A(0);
    b = lane < nwarps ? shared[32 + lane] : A(0);
    a = warp_reduce_sum(a);
    b = warp_reduce_sum(b);
  }
  __syncthreads();
}

template <class T>
__device__ __forceinline__ acc_t<T> load(const T* p, int64_t i) {
  return static_cast<acc_t<T>>(p[i]);
}

// ---- batch norm --------------------------------------------------------------------------------------

template <class T, class A>
struct BnStatsArgs {
  const T* x;
  int64_t N, C, S;
  T* running_mean;  // may be null
  T* running_var;   // may be null
  A* save_mean;
  A* save_invstd;
  A momentum, eps;
};

// Finishes one channel: saved statistics and the running-statistics update (unbiased variance).
template <class T, class A>
__device__ void bn_finish_channel(const BnStatsArgs<T, A>& a, int64_t c, const Welford<A>& w) {
  const A var = w.m2 / static_cast<A>(w.n);
  a.save_mean[c] = w.mean;
  a.save_invstd[c] = inv_sqrt(var + a.eps);
  if (a.running_mean)
    a.running_mean[c] = cast_value<T>((A(1) - a.momentum) * load(a.running_mean, c) + a.momentum * w.mean);
  if (a.running_var) {
    const A unbiased = w.m2 / static_cast<A>(w.n - 1);
    a.running_var[c] = cast_value<T>((A(1) - a.momentum) * load(a.running_var, c) + a.momentum * unbiased);
  }
}

// One block per channel, for inputs with spatial dims (S > 1): the block walks the channel's N planes.
template <class T, class A>
__global__ void bn_stats_planes_kernel(BnStatsArgs<T, A> a) {
  __shared__ Welford<A> shared[32];
  for (int64_t c = blockIdx.x; c < a.C; c += gridDim.x) {
    Welford<A> w{A(0), A(0), 0};
    if (a.S >= static_cast<int64_t>(blockDim.x)) {
      for (int64_t n = 0; n < a.N; ++n) {
        const T* p = a.x + (n * a.C + c) * a.S;
        for (int64_t s = threadIdx.x; s < a.S; s += blockDim.x) welford_add(w, load(p, s));
      }
    } else {
      const int64_t total = a.N * a.S;
      for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
        const int64_t n = i / a.S, s = i - n * a.S;
        welford_add(w, load(a.x, (n * a.C + c) * a.S + s));
      }
    }
    w = block_reduce_welford(w, shared);
    if (threadIdx.x == 0) bn_finish_channel(a, c, w);
  }
}

// [N, C] inputs (S == 1): 32 neighbouring channels per block so that a warp reads 32 consecutive
// elements of a row (coalesced); 16 rows of threads split the batch.
constexpr int kRowsX = 32, kRowsY = 16;

template <class T, class A>
__global__ void bn_stats_rows_kernel(BnStatsArgs<T, A> a) {
  __shared__ Welford<A> shared[kRowsY][kRowsX + 1];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kRowsX + threadIdx.x;
  Welford<A> w{A(0), A(0), 0};
  if (c < a.C)
    for (int64_t n = threadIdx.y; n < a.N; n += kRowsY) welford_add(w, load(a.x, n * a.C + c));
  shared[threadIdx.y][threadIdx.x] = w;
  __syncthreads();
  if (threadIdx.y == 0 && c < a.C) {
    for (int k = 1; k < kRowsY; ++k) w = welford_merge(w, shared[k][threadIdx.x]);
    bn_finish_channel(a, c, w);
  }
}

template <class T, class A>
__global__ void bn_eval_stats_kernel(const T* running_mean, const T* running_var, int64_t C, A eps, A* save_mean,
                                     A* save_invstd) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    save_mean[c] = load(running_mean, c);
    save_invstd[c] = inv_sqrt(load(running_var, c) + eps);
  }
}

// y = (x - mean) * invstd * w + b, grid-stride over every element.
template <class T, class A>
__global__ void bn_normalize_kernel(const T* x, T* y, int64_t total, int64_t C, int64_t S, const A* mean,
                                    const A* invstd, const T* weight, const T* bias) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = (i / S) % C;
    const A scale = invstd[c] * (weight ? load(weight, c) : A(1));
    const A shift = (bias ? load(bias, c) : A(0)) - mean[c] * scale;
    y[i] = cast_value<T>(load(x, i) * scale + shift);
  }
}

template <class T, class A>
struct BnGradArgs {
  const T* dy;
  const T* x;
  int64_t N, C, S;
  const A* mean;
  const A* invstd;
  A* sum_dy;      // may be null
  A* sum_dy_xmu;  // may be null
  T* grad_weight;  // may be null
  T* grad_bias;    // may be null
};

template <class T, class A>
__device__ void bn_finish_grad_channel(const BnGradArgs<T, A>& a, int64_t c, A sdy, A sdyx) {
  if (a.sum_dy) a.sum_dy[c] = sdy;
  if (a.sum_dy_xmu) a.sum_dy_xmu[c] = sdyx;
  if (a.grad_weight) a.grad_weight[c] = cast_value<T>(sdyx * a.invstd[c]);
  if (a.grad_bias) a.grad_bias[c] = cast_value<T>(sdy);
}

template <class T, class A>
__global__ void bn_grad_sums_planes_kernel(BnGradArgs<T, A> a) {
  __shared__ A shared[64];
  for (int64_t c = blockIdx.x; c < a.C; c += gridDim.x) {
    const A m = a.mean[c];
    A sdy = 0, sdyx = 0;
    const int64_t total = a.N * a.S;
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
      const int64_t n = i / a.S, s = i - n * a.S;
      const int64_t k = (n * a.C + c) * a.S + s;
      const A g = load(a.dy, k);
      sdy += g;
      sdyx += g * (load(a.x, k) - m);
    }
    block_reduce_sum2(sdy, sdyx, shared);
    if (threadIdx.x == 0) bn_finish_grad_channel(a, c, sdy, sdyx);
  }
}

template <class T, class A>
__global__ void bn_grad_sums_rows_kernel(BnGradArgs<T, A> a) {
  __shared__ A shared_dy[kRowsY][kRowsX + 1];
  __shared__ A shared_dyx[kRowsY][kRowsX + 1];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kRowsX + threadIdx.x;
  A sdy = 0, sdyx = 0;
  if (c < a.C) {
    const A m = a.mean[c];
    for (int64_t n = threadIdx.y; n < a.N; n += kRowsY) {
      const A g = load(a.dy, n * a.C + c);
      sdy += g;
      sdyx += g * (load(a.x, n * a.C + c) - m);
    }
  }
  shared_dy[threadIdx.y][threadIdx.x] = sdy;
  shared_dyx[threadIdx.y][threadIdx.x] = sdyx;
  __syncthreads();
  if (threadIdx.y == 0 && c < a.C) {
    for (int k = 1; k < kRowsY; ++k) {
      sdy += shared_dy[k][threadIdx.x];
      sdyx += shared_dyx[k][threadIdx.x];
    }
    bn_finish_grad_channel(a, c, sdy, sdyx);
  }
}

// dx = (dy - sum_dy / M - (x - mean) * invstd^2 * sum_dy_xmu / M) * invstd * w in training,
// dx = dy * invstd * w in eval (sum_dy null).
template <class T, class A>
__global__ void bn_backward_input_kernel(const T* dy, const T* x, T* dx, int64_t total, int64_t C, int64_t S,
                                         const A* mean, const A* invstd, const T* weight, const A* sum_dy,
                                         const A* sum_dy_xmu, A inv_count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = (i / S) % C;
    const A is = invstd[c];
    const A scale = is * (weight ? load(weight, c) : A(1));
    A g = load(dy, i);
    if (sum_dy) g -= sum_dy[c] * inv_count + (load(x, i) - mean[c]) * is * is * sum_dy_xmu[c] * inv_count;
    dx[i] = cast_value<T>(g * scale);
  }
}

template <class T>
const T* cptr(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}
template <class T>
T* mptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

cudaStream_t stream_of(const Tensor& t) {
  return static_cast<cudaStream_t>(current_stream(t.device().index()).handle());
}

unsigned elementwise_blocks(int64_t total, int threads) {
  return static_cast<unsigned>(std::clamp<int64_t>((total + threads - 1) / threads, 1, int64_t{kMaxGrid} * 8));
}

int64_t spatial_size(const Tensor& x) {
  int64_t s = 1;
  for (int64_t d = 2; d < x.dim(); ++d) s *= x.size(d);
  return s;
}

// ---- layer norm --------------------------------------------------------------------------------------

// Threads per row: a warp multiple no larger than needed, at most 512.
int row_threads(int64_t N) {
  int t = 32;
  while (t < 512 && t < N) t *= 2;
  return t;
}

template <class T, class A>
__global__ void layer_norm_fwd_kernel(const T* x, T* y, int64_t M, int64_t N, A eps, const T* weight, const T* bias,
                                      A* mean_out, A* rstd_out) {
  __shared__ Welford<A> shared[32];
  __shared__ A s_mean, s_rstd;
  for (int64_t r = blockIdx.x; r < M; r += gridDim.x) {
    const T* xr = x + r * N;
    Welford<A> w{A(0), A(0), 0};
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) welford_add(w, load(xr, j));
    w = block_reduce_welford(w, shared);
    if (threadIdx.x == 0) {
      const A rs = inv_sqrt(w.m2 / static_cast<A>(w.n) + eps);
      mean_out[r] = w.mean;
      rstd_out[r] = rs;
      s_mean = w.mean;
      s_rstd = rs;
    }
    __syncthreads();
    const A m = s_mean, rs = s_rstd;
    T* yr = y + r * N;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
      A v = (load(xr, j) - m) * rs;
      if (weight) v *= load(weight, j);
      if (bias) v += load(bias, j);
      yr[j] = cast_value<T>(v);
    }
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, one block per row.
template <class T, class A>
__global__ void layer_norm_bwd_input_kernel(const T* dy, const T* x, T* dx, int64_t M, int64_t N, const A* mean,
                                            const A* rstd, const T* weight) {
  __shared__ A shared[64];
  __shared__ A s_a, s_b;
  for (int64_t r = blockIdx.x; r < M; r += gridDim.x) {
    const T* xr = x + r * N;
    const T* gr = dy + r * N;
    const A m = mean[r], rs = rstd[r];
    A sg = 0, sgx = 0;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
      const A g = load(gr, j) * (weight ? load(weight, j) : A(1));
      sg += g;
      sgx += g * (load(xr, j) - m) * rs;
    }
    block_reduce_sum2(sg, sgx, shared);
    if (threadIdx.x == 0) {
      s_a = sg / static_cast<A>(N);
      s_b = sgx / static_cast<A>(N);
    }
    __syncthreads();
    const A a = s_a, b = s_b;
    T* out = dx + r * N;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
      const A g = load(gr, j) * (weight ? load(weight, j) : A(1));
      const A xh = (load(xr, j) - m) * rs;
      out[j] = cast_value<T>(rs * (g - a - xh * b));
    }
    __syncthreads();  // s_a/s_b are rewritten by the next row
  }
}

constexpr int kColsX = 32, kColsY = 8;

// Column partial sums of dy * xhat and dy over a slice of the rows: partial[blockIdx.y][j].
template <class T, class A>
__global__ void layer_norm_bwd_params_partial_kernel(const T* dy, const T* x, int64_t M, int64_t N, const A* mean,
                                                     const A* rstd, A* partial_w, A* partial_b) {
  __shared__ A sw[kColsY][kColsX + 1];
  __shared__ A sb[kColsY][kColsX + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColsX + threadIdx.x;
  A aw = 0, ab = 0;
  if (j < N) {
    for (int64_t r = static_cast<int64_t>(blockIdx.y) * kColsY + threadIdx.y; r < M;
         r += static_cast<int64_t>(gridDim.y) * kColsY) {
      const A g = load(dy, r * N + j);
      aw += g * (load(x, r * N + j) - mean[r]) * rstd[r];
      ab += g;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && j < N) {
    for (int k = 1; k < kColsY; ++k) {
      aw += sw[k][threadIdx.x];
      ab += sb[k][threadIdx.x];
    }
    partial_w[static_cast<int64_t>(blockIdx.y) * N + j] = aw;
    partial_b[static_cast<int64_t>(blockIdx.y) * N + j] = ab;
  }
}

template <class T, class A>
__global__ void layer_norm_bwd_params_sum_kernel(const A* partial_w, const A* partial_b, int64_t parts, int64_t N,
                                                 T* grad_weight, T* grad_bias) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < N;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A aw = 0, ab = 0;
    for (int64_t p = 0; p < parts; ++p) {
      aw += partial_w[p * N + j];
      ab += partial_b[p * N + j];
    }
    if (grad_weight) grad_weight[j] = cast_value<T>(aw);
    if (grad_bias) grad_bias[j] = cast_value<T>(ab);
  }
}

DType acc_dtype(DType t) { return t == kFloat64 ? kFloat64 : kFloat32; }

}  // namespace

void batch_norm_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                        const Tensor& running_var, bool training, double momentum, double eps, const Tensor& out,
                        const Tensor& save_mean, const Tensor& save_invstd) {
  DeviceGuard guard(input.device());
  const cudaStream_t stream = stream_of(input);
  const int64_t N = input.size(0), C = input.size(1), S = spatial_size(input);
  const int64_t total = input.numel();
  if (C == 0) return;
  dispatch_floating_and_half(input.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    A* sm = static_cast<A*>(save_mean.raw_data());
    A* si = static_cast<A*>(save_invstd.raw_data());
    if (training) {
      BnStatsArgs<T, A> a{cptr<T>(input), N, C, S, mptr<T>(running_mean), mptr<T>(running_var), sm, si,
                          static_cast<A>(momentum), static_cast<A>(eps)};
      if (S == 1) {
        const dim3 block(kRowsX, kRowsY);
        const auto grid = static_cast<unsigned>((C + kRowsX - 1) / kRowsX);
        bn_stats_rows_kernel<T, A><<<grid, block, 0, stream>>>(a);
      } else {
        const auto grid = static_cast<unsigned>(std::min<int64_t>(C, int64_t{kMaxGrid} * 16));
        bn_stats_planes_kernel<T, A><<<grid, 512, 0, stream>>>(a);
      }
      EMBER_CUDA_CHECK_LAUNCH();
    } else {
      bn_eval_stats_kernel<T, A><<<elementwise_blocks(C, 256), 256, 0, stream>>>(
          cptr<T>(running_mean), cptr<T>(running_var), C, static_cast<A>(eps), sm, si);
      EMBER_CUDA_CHECK_LAUNCH();
    }
    if (total == 0) return;
    bn_normalize_kernel<T, A><<<elementwise_blocks(total, 256), 256, 0, stream>>>(
        cptr<T>(input), mptr<T>(out), total, C, S, sm, si, cptr<T>(weight), cptr<T>(bias));
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

void batch_norm_backward(const Tensor& grad_out, const Tensor& input, const Tensor& weight, const Tensor& save_mean,
                         const Tensor& save_invstd, bool training, const Tensor& grad_input,
                         const Tensor& grad_weight, const Tensor& grad_bias) {
  DeviceGuard guard(input.device());
  const cudaStream_t stream = stream_of(input);
  const int64_t N = input.size(0), C = input.size(1), S = spatial_size(input);
  const int64_t total = input.numel();
  if (C == 0) return;
  dispatch_floating_and_half(input.dtype(), "batch_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const A* mean = static_cast<const A*>(save_mean.raw_data());
    const A* invstd = static_cast<const A*>(save_invstd.raw_data());
    const bool dx_needs_sums = grad_input.defined() && training;
    Tensor sum_dy, sum_dy_xmu;
    if (dx_needs_sums) {
      sum_dy = empty({C}, save_mean.options().dtype(acc_dtype(input.dtype())));
      sum_dy_xmu = empty({C}, sum_dy.options());
    }
    if (dx_needs_sums || grad_weight.defined() || grad_bias.defined()) {
      BnGradArgs<T, A> a{cptr<T>(grad_out), cptr<T>(input), N, C, S, mean, invstd, mptr<A>(sum_dy),
                         mptr<A>(sum_dy_xmu), mptr<T>(grad_weight), mptr<T>(grad_bias)};
      if (S == 1) {
        const dim3 block(kRowsX, kRowsY);
        const auto grid = static_cast<unsigned>((C + kRowsX - 1) / kRowsX);
        bn_grad_sums_rows_kernel<T, A><<<grid, block, 0, stream>>>(a);
      } else {
        const auto grid = static_cast<unsigned>(std::min<int64_t>(C, int64_t{kMaxGrid} * 16));
        bn_grad_sums_planes_kernel<T, A><<<grid, 512, 0, stream>>>(a);
      }
      EMBER_CUDA_CHECK_LAUNCH();
    }
    if (!grad_input.defined() || total == 0) return;
    const A inv_count = A(1) / static_cast<A>(std::max<int64_t>(1, N * S));
    bn_backward_input_kernel<T, A><<<elementwise_blocks(total, 256), 256, 0, stream>>>(
        cptr<T>(grad_out), cptr<T>(input), mptr<T>(grad_input), total, C, S, mean, invstd, cptr<T>(weight),
        cptr<A>(sum_dy), cptr<A>(sum_dy_xmu), inv_count);
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

void layer_norm_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, int64_t M, int64_t N,
                        double eps, const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  DeviceGuard guard(input.device());
  const cudaStream_t stream = stream_of(input);
  dispatch_floating_and_half(input.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const auto grid = static_cast<unsigned>(std::min<int64_t>(M, int64_t{kMaxGrid} * 16));
    layer_norm_fwd_kernel<T, A><<<grid, row_threads(N), 0, stream>>>(
        cptr<T>(input), mptr<T>(out), M, N, static_cast<A>(eps), cptr<T>(weight), cptr<T>(bias), mptr<A>(mean),
        mptr<A>(rstd));
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

void layer_norm_backward(const Tensor& grad_out, const Tensor& input, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, int64_t M, int64_t N, const Tensor& grad_input,
                         const Tensor& grad_weight, const Tensor& grad_bias) {
  DeviceGuard guard(input.device());
  const cudaStream_t stream = stream_of(input);
  dispatch_floating_and_half(input.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const A* m = static_cast<const A*>(mean.raw_data());
    const A* r = static_cast<const A*>(rstd.raw_data());
    if (grad_input.defined()) {
      const auto grid = static_cast<unsigned>(std::min<int64_t>(M, int64_t{kMaxGrid} * 16));
      layer_norm_bwd_input_kernel<T, A><<<grid, row_threads(N), 0, stream>>>(
          cptr<T>(grad_out), cptr<T>(input), mptr<T>(grad_input), M, N, m, r, cptr<T>(weight));
      EMBER_CUDA_CHECK_LAUNCH();
    }
    if (grad_weight.defined() || grad_bias.defined()) {
      // Two deterministic stages: per-slice column sums, then the sum over slices.
      const int64_t parts = std::clamp<int64_t>((M + kColsY - 1) / kColsY, 1, 256);
      const TensorOptions aopts = mean.options();
      Tensor pw = empty({parts, N}, aopts), pb = empty({parts, N}, aopts);
      const dim3 block(kColsX, kColsY);
      const dim3 grid(static_cast<unsigned>((N + kColsX - 1) / kColsX), static_cast<unsigned>(parts));
      layer_norm_bwd_params_partial_kernel<T, A><<<grid, block, 0, stream>>>(cptr<T>(grad_out), cptr<T>(input), M,
                                                                              N, m, r, mptr<A>(pw), mptr<A>(pb));
      EMBER_CUDA_CHECK_LAUNCH();
      layer_norm_bwd_params_sum_kernel<T, A><<<elementwise_blocks(N, 256), 256, 0, stream>>>(
          cptr<A>(pw), cptr<A>(pb), parts, N, mptr<T>(grad_weight), mptr<T>(grad_bias));
      EMBER_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace ember::cuda
