// The generic CUDA element-wise launcher: out[i] = f(in[i]...) over a StridedIter, on an explicit stream.
//
// Note [CUDA element-wise launcher]
// Two kernels, one grid-stride loop each:
//  * elementwise_vec_kernel: every operand walks memory contiguously (it.is_contiguous()) and its
//    pointer is aligned to a whole vector: each thread moves 16 bytes of the widest operand per
//    step (float: 4 elements, double: 2, half: 8) with one vector load per input and one vector
//    store, which is what it takes to get close to copy bandwidth. The n % Vec tail elements are
//    done one by one by the first threads. Misaligned contiguous operands (a view starting at an
//    odd element) take the strided kernel instead of doubling the instantiations.
//  * elementwise_strided_kernel: broadcast or strided operands. An OffsetCalculator turns the
//    linear index into per-operand byte offsets over the iterator's coalesced dims (innermost
//    first). When the element count and every operand's largest byte offset fit in 31 bits the
//    index math is 32-bit with magic-number division (IntDivider, as PyTorch's); otherwise 64-bit.
// Grid: 256 threads, min(ceil(work / 256), SMs * 32) blocks; the grid-stride loop covers the rest,
// so any element count (also > 2^31) runs with a legal grid.
#pragma once

#include <cuda_runtime.h>

#include <cuda/std/tuple>

#include <atomic>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "kernels/shared/strided_iter.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/stream.h"
#include "runtime/device.h"

namespace ember::cuda {

inline constexpr int kElementwiseThreads = 256;
inline constexpr int kBlocksPerSm = 32;

// Multiprocessor count of the current device (cached per device).
inline int multiprocessor_count() {
  static std::atomic<int> cache[kMaxCudaDevices] = {};
  int device = 0;
  EMBER_CUDA_CHECK(cudaGetDevice(&device));
  int n = device < kMaxCudaDevices ? cache[device].load(std::memory_order_relaxed) : 0;
  if (n == 0) {
    EMBER_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    if (device < kMaxCudaDevices) cache[device].store(n, std::memory_order_relaxed);
  }
  return n;
}

inline unsigned elementwise_blocks(int64_t work_items) {
  const int64_t wanted = (work_items + kElementwiseThreads - 1) / kElementwiseThreads;
  const int64_t cap = static_cast<int64_t>(multiprocessor_count()) * kBlocksPerSm;
  const int64_t blocks = wanted < cap ? wanted : cap;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

namespace detail {

template <int N>
struct OperandPtrs {
  char* p[N];
};

// 16 bytes (or fewer for narrower operands) loaded or stored by one instruction.
template <class T, int Vec>
struct alignas(sizeof(T) * Vec) AlignedVec {
  T v[Vec];
};

// x / d and x % d for 32-bit x < 2^31 by a multiply-high and a shift (Granlund-Montgomery).
struct IntDivider32 {
  uint32_t divisor = 1, magic = 0, shift = 0;
  IntDivider32() = default;
  explicit IntDivider32(uint32_t d) : divisor(d) {
    for (shift = 0; shift < 32; ++shift)
      if ((uint32_t{1} << shift) >= d) break;
    const uint64_t one = 1;
    magic = static_cast<uint32_t>(((one << 32) * ((one << shift) - d)) / d + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t x) const {
    const uint32_t t = __umulhi(x, magic);
    return (t + x) >> shift;
  }
};

struct IntDivider64 {
  uint64_t divisor = 1;
  IntDivider64() = default;
  explicit IntDivider64(uint64_t d) : divisor(d) {}
  __device__ __forceinline__ uint64_t div(uint64_t x) const { return x / divisor; }
};

// Linear index -> byte offset of each operand.
template <int N, class Index>
struct OffsetCalculator {
  using Divider = std::conditional_t<std::is_same_v<Index, uint32_t>, IntDivider32, IntDivider64>;
  int ndim = 0;
  Divider sizes[StridedIter::kMaxDims];
  Index strides[StridedIter::kMaxDims][N];  // bytes

  OffsetCalculator(const StridedIter& it) : ndim(it.ndim) {  // NOLINT: implicit
    for (int d = 0; d < it.ndim; ++d) {
      sizes[d] = Divider(static_cast<Index>(it.shape[d]));
      for (int k = 0; k < N; ++k) strides[d][k] = static_cast<Index>(it.strides[k][d] * it.elem_size[k]);
    }
  }

  __device__ __forceinline__ void get(Index linear, Index (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
#pragma unroll
    for (int d = 0; d < StridedIter::kMaxDims; ++d) {
      if (d == ndim) break;
      const Index q = sizes[d].div(linear);
      const Index r = linear - q * static_cast<Index>(sizes[d].divisor);
      linear = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += r * strides[d][k];
    }
  }
};

template <class Out, class... In, class F, size_t... I>
__device__ __forceinline__ void apply_one(const F& f, char* const* p, int64_t i, std::index_sequence<I...>) {
  reinterpret_cast<Out*>(p[0])[i] = f(reinterpret_cast<const In*>(p[I + 1])[i]...);
}

// Vector v of every operand: one aligned load per input, Vec results, one aligned store.
template <int Vec, class Out, class... In, class F, size_t... I>
__device__ __forceinline__ void apply_vec(const F& f, char* const* p, int64_t v, std::index_sequence<I...>) {
  [[maybe_unused]] const ::cuda::std::tuple<AlignedVec<In, Vec>...> x{
      reinterpret_cast<const AlignedVec<In, Vec>*>(p[I + 1])[v]...};
  AlignedVec<Out, Vec> r;
#pragma unroll
  for (int j = 0; j < Vec; ++j) r.v[j] = f(::cuda::std::get<I>(x).v[j]...);
  reinterpret_cast<AlignedVec<Out, Vec>*>(p[0])[v] = r;
}

template <class Index, int N, class Out, class... In, class F, size_t... I>
__device__ __forceinline__ void apply_at(const F& f, char* const* p, const Index (&off)[N], std::index_sequence<I...>) {
  *reinterpret_cast<Out*>(p[0] + off[0]) = f(*reinterpret_cast<const In*>(p[I + 1] + off[I + 1])...);
}

template <class T>
constexpr size_t widest() {
  return sizeof(T);
}
template <class T, class U, class... Rest>
constexpr size_t widest() {
  return sizeof(T) > widest<U, Rest...>() ? sizeof(T) : widest<U, Rest...>();
}

template <int Vec, class Out, class... In, size_t... I>
bool vector_aligned(const OperandPtrs<sizeof...(In) + 1>& ptrs, std::index_sequence<I...>) {
  auto ok = [](const char* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; };
  return ok(ptrs.p[0], sizeof(Out) * Vec) && (ok(ptrs.p[I + 1], sizeof(In) * Vec) && ...);
}

// Whether 32-bit index math covers the element count and every operand's byte offsets.
inline bool fits_32bit(const StridedIter& it) {
  constexpr int64_t kMax = INT32_MAX;
  if (it.numel > kMax) return false;
  for (int k = 0; k < it.noperands; ++k) {
    int64_t extent = 0;
    for (int d = 0; d < it.ndim; ++d) {
      if (it.strides[k][d] < 0) return false;
      extent += (it.shape[d] - 1) * it.strides[k][d] * it.elem_size[k];
    }
    if (extent + it.elem_size[k] > kMax) return false;
  }
  return true;
}

}  // namespace detail

// (__global__ templates need the pack last, hence F before Out.)
template <int Vec, class F, class Out, class... In>
__global__ void elementwise_vec_kernel(int64_t n, F f, detail::OperandPtrs<sizeof...(In) + 1> ptrs) {
  using Seq = std::index_sequence_for<In...>;
  const int64_t nvec = n / Vec;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t v = tid; v < nvec; v += stride) detail::apply_vec<Vec, Out, In...>(f, ptrs.p, v, Seq{});
  const int64_t tail = nvec * Vec + tid;
  if (tail < n) detail::apply_one<Out, In...>(f, ptrs.p, tail, Seq{});
}

template <class Index, class F, class Out, class... In>
__global__ void elementwise_strided_kernel(Index n, F f, detail::OperandPtrs<sizeof...(In) + 1> ptrs,
                                           detail::OffsetCalculator<sizeof...(In) + 1, Index> calc) {
  constexpr int N = sizeof...(In) + 1;
  using Seq = std::index_sequence_for<In...>;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    Index off[N];
    calc.get(i, off);
    detail::apply_at<Index, N, Out, In...>(f, ptrs.p, off, Seq{});
  }
}

// out[i] = f(in[i]...) over `it` (operand 0 the output, of C++ type Out; then In...) on `stream`.
// The caller has made the operands' device current (DeviceGuard). Never synchronises.
template <class Out, class... In, class F>
void launch_elementwise(const StridedIter& it, const F& f, cudaStream_t stream) {
  constexpr int N = sizeof...(In) + 1;
  static_assert(N <= StridedIter::kMaxOperands, "too many operands for StridedIter");
  EMBER_ASSERT(it.noperands == N, "launch_elementwise: the iterator has ", it.noperands, " operands, expected ", N);
  const int64_t n = it.numel;
  if (n == 0) return;
  detail::OperandPtrs<N> ptrs;
  for (int k = 0; k < N; ++k) ptrs.p[k] = it.data[k];
  constexpr int Vec = static_cast<int>(16 / detail::widest<Out, In...>());
  if (it.is_contiguous() && detail::vector_aligned<Vec, Out, In...>(ptrs, std::index_sequence_for<In...>{})) {
    const unsigned blocks = elementwise_blocks((n + Vec - 1) / Vec);
    elementwise_vec_kernel<Vec, F, Out, In...><<<blocks, kElementwiseThreads, 0, stream>>>(n, f, ptrs);
  } else if (detail::fits_32bit(it)) {
    const detail::OffsetCalculator<N, uint32_t> calc(it);
    elementwise_strided_kernel<uint32_t, F, Out, In...>
        <<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(static_cast<uint32_t>(n), f, ptrs, calc);
  } else {
    const detail::OffsetCalculator<N, uint64_t> calc(it);
    elementwise_strided_kernel<uint64_t, F, Out, In...>
        <<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(static_cast<uint64_t>(n), f, ptrs, calc);
  }
  EMBER_CUDA_CHECK_LAUNCH();
}

// The Loop of kernels/shared/elementwise_dispatch.h for CUDA: launches on a fixed stream.
struct CudaLoop {
  cudaStream_t stream;
  template <class Out, class... In, class F>
  void run(const StridedIter& it, const F& f) const {
    launch_elementwise<Out, In...>(it, f, stream);
  }
};

// The current stream of a CUDA device as a cudaStream_t.
inline cudaStream_t native_stream(Device device) {
  return static_cast<cudaStream_t>(current_stream(device.index()).handle());
}

}  // namespace ember::cuda
