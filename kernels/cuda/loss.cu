// CUDA kernels of cross entropy (fused online log-softmax + NLL with label smoothing) and nll_loss.
//
// Note [Bad targets on CUDA]
// Checking that every target lies in [0, C) would need the targets on the host (a sync per step), and
// a device-side assert would poison the whole CUDA context. Instead a bad target (not ignore_index,
// outside [0, C)) makes that position's loss NaN, counted in the mean, so Mean/Sum are NaN, and its
// gradient row NaN: the error is visible in the loss without stopping the stream. The CPU kernels
// throw ember::Error naming the target instead.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/cuda/loss.h"
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

constexpr int kWarpsPerBlock = 8;
constexpr int kMaxGrid = 65535;

__device__ __forceinline__ float dev_exp(float v) { return expf(v); }
__device__ __forceinline__ double dev_exp(double v) { return ::exp(v); }
__device__ __forceinline__ float dev_log(float v) { return logf(v); }
__device__ __forceinline__ double dev_log(double v) { return ::log(v); }

template <class A>
__device__ __forceinline__ A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}
template <class A>
__device__ __forceinline__ A quiet_nan() {
  return std::numeric_limits<A>::quiet_NaN();
}

// s * exp(m - to), with an empty partial (m = -inf) contributing 0 instead of NaN.
template <class A>
__device__ __forceinline__ A rescale(A s, A m, A to) {
  return m == neg_inf<A>() ? A(0) : s * dev_exp(m - to);
}

struct Rows {
  int64_t rows, C, S;
  __device__ int64_t base(int64_t r) const { return (r / S) * C * S + r % S; }
};

// One warp per target position: an online max / sum-of-exponentials pass over the C classes
// (one read of the logits), plus the plain sum of the logits for label smoothing.
template <class T, class A>
__global__ void class_loss_fwd_kernel(const T* x, const int64_t* target, Rows L, int64_t ignore_index, A keep,
                                      A spread, bool log_probs, bool smoothing, A* lse_out, T* out_direct,
                                      A* losses) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); r < L.rows; r += warps) {
    const T* xr = x + L.base(r);
    const int64_t t = target[r];
    const bool ignored = t == ignore_index;
    const bool bad = !ignored && (t < 0 || t >= L.C);
    A loss = 0;
    if (log_probs) {
      if (lane == 0 && !ignored) loss = bad ? quiet_nan<A>() : -static_cast<A>(xr[t * L.S]);
    } else {
      A m = neg_inf<A>(), s = 0, sx = 0;
      for (int64_t j = lane; j < L.C; j += 32) {
        const A v = static_cast<A>(xr[j * L.S]);
        if (!(v <= m)) {  // a new maximum, or NaN (which then poisons m and s, as it should)
          s = rescale(s, m, v) + A(1);
          m = v;
        } else if (m != neg_inf<A>()) {
          s += dev_exp(v - m);
        }
        sx += v;
      }
      for (int off = 16; off > 0; off >>= 1) {
        const A om = __shfl_down_sync(0xffffffffu, m, off);
        const A os = __shfl_down_sync(0xffffffffu, s, off);
        sx += __shfl_down_sync(0xffffffffu, sx, off);
        const A nm = om > m ? om : m;
        s = rescale(s, m, nm) + rescale(os, om, nm);
        m = nm;
      }
      if (lane == 0) {
        const A l = m == neg_inf<A>() ? m : m + dev_log(s);
        lse_out[r] = l;
        if (bad) {
          loss = quiet_nan<A>();
        } else if (!ignored) {
          loss = l - keep * static_cast<A>(xr[t * L.S]);
          if (smoothing) loss -= spread * sx;
        }
      }
    }
    if (lane == 0) {
      if (out_direct)
        out_direct[r] = cast_value<T>(loss);
      else
        losses[r] = loss;
    }
  }
}

// One block: the number of counted targets and (for Mean/Sum) the reduced loss, in double.
template <class T, class A>
__global__ void class_loss_reduce_kernel(const A* losses, const int64_t* target, int64_t rows, int64_t ignore_index,
                                         int reduction, T* out, A* count_out) {
  __shared__ double s_sum[32];
  __shared__ long long s_cnt[32];
  double sum = 0;
  long long cnt = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    if (losses) sum += static_cast<double>(losses[r]);
    cnt += target[r] != ignore_index;
  }
  for (int off = 16; off > 0; off >>= 1) {
    sum += __shfl_down_sync(0xffffffffu, sum, off);
    cnt += __shfl_down_sync(0xffffffffu, cnt, off);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) {
    s_sum[warp] = sum;
    s_cnt[warp] = cnt;
  }
  __syncthreads();
  if (warp == 0) {
    sum = lane < nwarps ? s_sum[lane] : 0.0;
    cnt = lane < nwarps ? s_cnt[lane] : 0;
    for (int off = 16; off > 0; off >>= 1) {
      sum += __shfl_down_sync(0xffffffffu, sum, off);
      cnt += __shfl_down_sync(0xffffffffu, cnt, off);
    }
    if (lane == 0) {
      *count_out = static_cast<A>(cnt);
      if (reduction == static_cast<int>(LossReduction::Mean))
        *out = cast_value<T>(sum / static_cast<double>(cnt));  // 0 / 0 = NaN, as PyTorch
      else if (reduction == static_cast<int>(LossReduction::Sum))
        *out = cast_value<T>(sum);
    }
  }
}

// grad_input[n, j, s] = scale_r * (softmax_j - (1 - eps) [j == t] - eps / C) for logits,
// -scale_r [j == t] for log-probabilities; 0 on ignored positions, NaN on bad targets.
template <class T, class A>
__global__ void class_loss_bwd_kernel(const T* grad, const T* x, const int64_t* target, const A* lse,
                                      const A* count, Rows L, int64_t ignore_index, int reduction, A keep, A spread,
                                      bool log_probs, T* grad_input) {
  const int64_t total = L.rows * L.C;
  const int64_t cs = L.C * L.S;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / cs, rem = i - n * cs;
    const int64_t j = rem / L.S, s = rem - j * L.S;
    const int64_t r = n * L.S + s;
    const int64_t t = target[r];
    A v;
    if (t == ignore_index) {
      v = 0;
    } else if (t < 0 || t >= L.C) {
      v = quiet_nan<A>();
    } else {
      A scale;
      if (reduction == static_cast<int>(LossReduction::None)) {
        scale = static_cast<A>(grad[r]);
      } else {
        scale = static_cast<A>(grad[0]);
        if (reduction == static_cast<int>(LossReduction::Mean)) scale /= count[0];
      }
      if (log_probs) {
        v = j == t ? -scale : A(0);
      } else {
        const A p = dev_exp(static_cast<A>(x[i]) - lse[r]);
        v = scale * (p - spread - (j == t ? keep : A(0)));
      }
    }
    grad_input[i] = cast_value<T>(v);
  }
}

cudaStream_t stream_of(const Tensor& t) {
  return static_cast<cudaStream_t>(current_stream(t.device().index()).handle());
}

Rows rows_of(const Tensor& input) {
  int64_t s = 1;
  for (int64_t d = 2; d < input.dim(); ++d) s *= input.size(d);
  return {input.size(0) * s, input.size(1), s};
}

}  // namespace

void class_loss_forward(const Tensor& input, const Tensor& target, LossReduction reduction, int64_t ignore_index,
                        double smoothing, bool log_probs, const Tensor& out, const Tensor& lse, const Tensor& count) {
  DeviceGuard guard(input.device());
  const cudaStream_t stream = stream_of(input);
  const Rows L = rows_of(input);
  dispatch_floating_and_half(input.dtype(), log_probs ? "nll_loss" : "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const bool direct = reduction == LossReduction::None;
    Tensor losses;
    if (!direct) losses = empty({L.rows}, count.options());
    const A keep = static_cast<A>(1.0 - smoothing), spread = static_cast<A>(L.C > 0 ? smoothing / L.C : 0.0);
    const int64_t blocks = std::clamp<int64_t>((L.rows + kWarpsPerBlock - 1) / kWarpsPerBlock, 1, int64_t{kMaxGrid} * 4);
    class_loss_fwd_kernel<T, A><<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
        static_cast<const T*>(input.raw_data()), static_cast<const int64_t*>(target.raw_data()), L, ignore_index,
        keep, spread, log_probs, smoothing != 0.0, log_probs ? nullptr : static_cast<A*>(lse.raw_data()),
        direct ? static_cast<T*>(out.raw_data()) : nullptr, direct ? nullptr : static_cast<A*>(losses.raw_data()));
    EMBER_CUDA_CHECK_LAUNCH();
    class_loss_reduce_kernel<T, A><<<1, 1024, 0, stream>>>(
        direct ? nullptr : static_cast<const A*>(losses.raw_data()), static_cast<const int64_t*>(target.raw_data()),
        L.rows, ignore_index, static_cast<int>(reduction), direct ? nullptr : static_cast<T*>(out.raw_data()),
        static_cast<A*>(count.raw_data()));
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

void class_loss_backward(const Tensor& grad, const Tensor& input, const Tensor& target, const Tensor& lse,
                         const Tensor& count, LossReduction reduction, int64_t ignore_index, double smoothing,
                         bool log_probs, const Tensor& grad_input) {
  DeviceGuard guard(input.device());
  const cudaStream_t stream = stream_of(input);
  const Rows L = rows_of(input);
  const int64_t total = L.rows * L.C;
  if (total == 0) return;
  dispatch_floating_and_half(input.dtype(), log_probs ? "nll_loss_backward" : "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const A keep = static_cast<A>(1.0 - smoothing), spread = static_cast<A>(L.C > 0 ? smoothing / L.C : 0.0);
    const int64_t blocks = std::clamp<int64_t>((total + 255) / 256, 1, int64_t{kMaxGrid} * 8);
    class_loss_bwd_kernel<T, A><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
        static_cast<const T*>(grad.raw_data()), static_cast<const T*>(input.raw_data()),
        static_cast<const int64_t*>(target.raw_data()), log_probs ? nullptr : static_cast<const A*>(lse.raw_data()),
        static_cast<const A*>(count.raw_data()), L, ignore_index, static_cast<int>(reduction), keep, spread,
        log_probs, static_cast<T*>(grad_input.raw_data()));
    EMBER_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ember::cuda
