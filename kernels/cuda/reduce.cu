// CUDA reductions (kernels/cuda/reduce.h): CUB for full reductions of contiguous data, our block-reduce kernel
// for reductions over dims.
//
// Note [CUDA reductions]
// * Full reduction of one contiguous range (every dim reduced, or any dense permutation of them: the
//   geometry coalesces those to one stride-1 dim): cub::DeviceReduce::Reduce, which is tuned per
//   architecture and runs at close to copy bandwidth. Sums whose element type is the accumulator type read
//   the raw pointer (vectorised loads); other ops read a counting iterator transformed into singleton
//   accumulators (value, index) so that argmax, Welford and dtype conversion use the same functors as the
//   CPU (kernels/shared/reduce_ops.h). The result lands in a device accumulator and a one-block kernel
//   finishes it (mean scale, Welford -> variance, dtype cast): nothing waits on the host.
// * Everything else: reduce_kernel, one launch over a 2-D block of kThreads threads, after the
//   geometry (Note [Reduction geometry]) says which way memory runs:
//    - inner (row sums of [N, C], any reduction whose innermost reduced dim has the smallest stride):
//      threadIdx.x walks an output's reduction with coalesced (and, for one contiguous reduced dim,
//      16-byte vector) loads, threadIdx.y picks the output; a warp-shuffle / shared-memory tree
//      reduces along x. Misaligned rows are handled by a scalar head, so any row start vectorises.
//    - outer (column sums of [N, C], bias gradients): threadIdx.x picks neighbouring outputs, so a warp
//      reads whole cache lines of a row, threadIdx.y splits the rows; a shared-memory tree reduces
//      along y. No transpose copy is needed, which is why this is not DeviceSegmentedReduce (it wants
//      contiguous segments, i.e. a transposed copy for this case, and one block per segment starves the
//      GPU when there are few long rows).
//   When there are too few outputs to fill the GPU (a few long rows, a tall-skinny column sum, a full
//   reduction of a strided view), gridDim.y splits each reduction into chunks whose partial
//   accumulators go to a buffer from the caching allocator and a second kernel combines them in a fixed
//   order (reduce_partials_thread_kernel: a thread per output for up to 32 splits; reduce_partials_kernel:
//   a block per output beyond), so results are deterministic run to run.
// Each thread keeps kUnroll independent accumulators so that kUnroll loads are in flight per thread.
#include <cuda_runtime.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cub/device/device_reduce.cuh>
#include <type_traits>

#include "kernels/cuda/loops.cuh"
#include "kernels/cuda/reduce.h"
#include "kernels/dispatch.h"
#include "kernels/shared/cast.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/guard.h"
#include "runtime/factory.h"

namespace ember::cuda {

namespace {

constexpr int kThreads = 512;        // threads per block of reduce_kernel
constexpr int kFinishThreads = 256;  // threads per block of reduce_partials_kernel
constexpr int kUnroll = 4;           // independent loads in flight per thread
constexpr int64_t kMaxGridX = 0x7fffffff;
constexpr int64_t kMaxGridY = 65535;

template <class T>
__host__ __device__ __forceinline__ compute_t<T> load_value(T v) {
  return cast_value<compute_t<T>>(v);
}

// __shfl_down_sync for any trivially copyable accumulator, 4 bytes at a time.
template <class A>
__device__ __forceinline__ A shfl_down(const A& v, int offset, int width) {
  constexpr int kWords = static_cast<int>((sizeof(A) + 3) / 4);
  unsigned w[kWords] = {};
  memcpy(w, &v, sizeof(A));
#pragma unroll
  for (int i = 0; i < kWords; ++i) w[i] = __shfl_down_sync(0xffffffffu, w[i], offset, width);
  A r;
  memcpy(&r, w, sizeof(A));
  return r;
}

// Reduces v across threadIdx.x (blockDim.x a power of two; blockDim.x * blockDim.y == a multiple of 32).
// Every thread of the block must call it; the result is valid in threads with threadIdx.x == 0.
template <class Op, class A>
__device__ __forceinline__ A block_reduce_x(A v, const Op& op, A* smem) {
  const int bx = blockDim.x, tx = threadIdx.x, ty = threadIdx.y;
  const int width = bx < 32 ? bx : 32;
  for (int off = width / 2; off > 0; off >>= 1) v = op.combine(v, shfl_down(v, off, width));
  if (bx > 32) {
    const int warps = bx / 32;
    __syncthreads();  // smem may still be read from the previous call
    if (tx % 32 == 0) smem[ty * warps + tx / 32] = v;
    __syncthreads();
    if (tx < 32) {  // the first warp of row ty (a whole warp: bx is a multiple of 32)
      v = tx < warps ? smem[ty * warps + tx] : op.identity();
      for (int off = 16; off > 0; off >>= 1) v = op.combine(v, shfl_down(v, off, 32));
    }
  }
  return v;
}

// Reduces v across threadIdx.y (blockDim.y a power of two). Every thread must call it; the result is
// valid in threads with threadIdx.y == 0.
template <class Op, class A>
__device__ __forceinline__ A block_reduce_y(A v, const Op& op, A* smem) {
  const int bx = blockDim.x, by = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
  if (by == 1) return v;
  __syncthreads();
  smem[ty * bx + tx] = v;
  __syncthreads();
  for (int s = by / 2; s > 0; s >>= 1) {
    if (ty < s) smem[ty * bx + tx] = op.combine(smem[ty * bx + tx], smem[(ty + s) * bx + tx]);
    __syncthreads();
  }
  return ty == 0 ? smem[tx] : v;
}

struct ReduceConfig {
  bool inner = true;   // threadIdx.x walks the reduction (else: neighbouring outputs)
  int bx = 1, by = 1;  // block shape, bx * by == kThreads
  int64_t groups = 1;  // output groups: by outputs each when inner, bx otherwise
  int64_t splits = 1;  // gridDim.y: chunks of each reduction
  int64_t chunk = 0;   // reduction indices per split
};

// One thread's part of an inner reduction: indices rb + tx, rb + tx + bx, ... < re of the output at base.
template <class T, class Op>
__device__ __forceinline__ typename Op::acc_t thread_reduce_strided(const T* base, const ReduceGeometry& g, int64_t rb,
                                                                    int64_t re, int64_t step, const Op& op) {
  using A = typename Op::acc_t;
  A a[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) a[u] = op.identity();
  int64_t r = rb;
  for (; r + (kUnroll - 1) * step < re; r += kUnroll * step) {
    T v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = base[g.red_offset(r + u * step)];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) a[u] = op.step(a[u], load_value(v[u]), r + u * step);
  }
  for (; r < re; r += step) a[0] = op.step(a[0], load_value(base[g.red_offset(r)]), r);
#pragma unroll
  for (int u = 1; u < kUnroll; ++u) a[0] = op.combine(a[0], a[u]);
  return a[0];
}

// As above for one contiguous reduced dim, with 16-byte loads: elements [rb, re) of the row at base.
template <int Vec, class T, class Op>
__device__ __forceinline__ typename Op::acc_t thread_reduce_vec(const T* base, int64_t rb, int64_t re, const Op& op) {
  using A = typename Op::acc_t;
  using V = detail::AlignedVec<T, Vec>;
  const int tx = threadIdx.x, bx = blockDim.x;
  const T* p = base + rb;
  const int64_t n = re - rb;
  A a[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) a[u] = op.identity();
  // Scalar head up to the first 16-byte boundary (rows of any length or offset start anywhere).
  const int64_t mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(p) / sizeof(T) % Vec);
  const int64_t head = mis == 0 ? 0 : (Vec - mis < n ? Vec - mis : n);
  for (int64_t i = tx; i < head; i += bx) a[0] = op.step(a[0], load_value(p[i]), rb + i);
  const int64_t nvec = (n - head) / Vec;
  const V* pv = reinterpret_cast<const V*>(p + head);
  const int64_t first = rb + head;
  int64_t v = tx;
  for (; v + (kUnroll - 1) * bx < nvec; v += kUnroll * bx) {
    V x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) x[u] = pv[v + u * bx];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int j = 0; j < Vec; ++j) a[u] = op.step(a[u], load_value(x[u].v[j]), first + (v + u * bx) * Vec + j);
  }
  for (; v < nvec; v += bx) {
    const V x = pv[v];
#pragma unroll
    for (int j = 0; j < Vec; ++j) a[0] = op.step(a[0], load_value(x.v[j]), first + v * Vec + j);
  }
  for (int64_t i = head + nvec * Vec + tx; i < n; i += bx) a[0] = op.step(a[0], load_value(p[i]), rb + i);
#pragma unroll
  for (int u = 1; u < kUnroll; ++u) a[0] = op.combine(a[0], a[u]);
  return a[0];
}

// Writes finished results: out[o] = (Out) op.finish(acc).
template <class Out>
struct ValueWriter {
  Out* out;
  template <class Op, class A>
  __device__ void operator()(int64_t o, const Op& op, const A& a) const {
    out[o] = cast_value<Out>(op.finish(a));
  }
};

// Arg ops: the selected value (optional) and its index.
template <class T>
struct ArgWriter {
  T* values;
  int64_t* indices;
  template <class Op, class A>
  __device__ void operator()(int64_t o, const Op&, const A& a) const {
    if (values) values[o] = cast_value<T>(a.value);
    if (indices) indices[o] = a.index;
  }
};

template <int Vec, class T, class Op, class Writer>
__global__ void __launch_bounds__(kThreads)
    reduce_kernel(const T* in, ReduceGeometry g, ReduceConfig c, Op op, Writer write, typename Op::acc_t* partial) {
  using A = typename Op::acc_t;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t M = g.num_outputs;
  const int64_t rb = static_cast<int64_t>(blockIdx.y) * c.chunk;
  const int64_t re = rb + c.chunk < g.reduce_size ? rb + c.chunk : g.reduce_size;
  for (int64_t grp = blockIdx.x; grp < c.groups; grp += gridDim.x) {
    A acc = op.identity();
    int64_t o;
    bool leader;
    if constexpr (Vec > 1) {  // launched for inner reductions over one contiguous dim only
      o = grp * c.by + ty;
      if (o < M) acc = thread_reduce_vec<Vec>(in + g.out_offset(o), rb, re, op);
      acc = block_reduce_x(acc, op, smem);
      leader = tx == 0;
    } else if (c.inner) {
      o = grp * c.by + ty;
      if (o < M) acc = thread_reduce_strided(in + g.out_offset(o), g, rb + tx, re, c.bx, op);
      acc = block_reduce_x(acc, op, smem);
      leader = tx == 0;
    } else {
      o = grp * c.bx + tx;
      if (o < M) acc = thread_reduce_strided(in + g.out_offset(o), g, rb + ty, re, c.by, op);
      acc = block_reduce_y(acc, op, smem);
      leader = ty == 0;
    }
    if (leader && o < M) {
      if (c.splits == 1)
        write(o, op, acc);
      else
        partial[static_cast<int64_t>(blockIdx.y) * M + o] = acc;
    }
  }
}

// Combines the `splits` partial accumulators of each output (partial[s * M + o]): one block per output, for
// many splits (a full reduction of a strided view: hundreds of partials per output).
template <class Op, class Writer>
__global__ void __launch_bounds__(kFinishThreads)
    reduce_partials_kernel(const typename Op::acc_t* partial, int64_t splits, int64_t M, Op op, Writer write) {
  using A = typename Op::acc_t;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);
  for (int64_t o = blockIdx.x; o < M; o += gridDim.x) {
    A acc = op.identity();
    for (int64_t s = threadIdx.x; s < splits; s += blockDim.x) acc = op.combine(acc, partial[s * M + o]);
    acc = block_reduce_x(acc, op, smem);
    if (threadIdx.x == 0) write(o, op, acc);
  }
}

// The same with one thread per output, for a few splits of many outputs (reads coalesced across threads).
template <class Op, class Writer>
__global__ void __launch_bounds__(kFinishThreads)
    reduce_partials_thread_kernel(const typename Op::acc_t* partial, int64_t splits, int64_t M, Op op, Writer write) {
  using A = typename Op::acc_t;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < M;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A acc = partial[o];
    for (int64_t s = 1; s < splits; ++s) acc = op.combine(acc, partial[s * M + o]);
    write(o, op, acc);
  }
}

int64_t pow2_floor(int64_t v) {
  int64_t p = 1;
  while (p * 2 <= v) p *= 2;
  return p;
}

ReduceConfig make_config(const ReduceGeometry& g, int vec) {
  ReduceConfig c;
  const int64_t M = g.num_outputs, R = g.reduce_size;
  c.inner = g.reduce_inner();
  int64_t threads_on_reduction;  // threads cooperating on one output in a block
  if (c.inner) {
    // About 8 elements (or vectors) per thread before splitting across blocks.
    c.bx = static_cast<int>(std::min<int64_t>(kThreads, pow2_floor(std::max<int64_t>(1, R / vec / 8))));
    c.by = kThreads / c.bx;
    c.groups = (M + c.by - 1) / c.by;
    threads_on_reduction = c.bx;
  } else {
    c.bx = static_cast<int>(std::min<int64_t>(32, pow2_floor(M) < M ? pow2_floor(M) * 2 : M));
    c.by = kThreads / c.bx;
    c.groups = (M + c.bx - 1) / c.bx;
    threads_on_reduction = c.by;
  }
  // Enough blocks for every SM to hold a few of them; split reductions when the outputs alone are too few.
  const int64_t target = static_cast<int64_t>(multiprocessor_count()) * (2048 / kThreads) * 2;
  c.splits = 1;
  if (c.groups < target && R > 0) {
    const int64_t min_chunk = threads_on_reduction * vec * 16;
    const int64_t by_size = (R + min_chunk - 1) / min_chunk;
    c.splits = std::clamp<int64_t>((target + c.groups - 1) / c.groups, 1, std::min(by_size, kMaxGridY));
  }
  c.chunk = (R + c.splits - 1) / c.splits;
  if (vec > 1) c.chunk = (c.chunk + vec - 1) / vec * vec;  // split boundaries keep the rows' alignment
  c.splits = c.chunk == 0 ? 1 : (R + c.chunk - 1) / c.chunk;
  return c;
}

template <class Op>
struct CombineFn {
  Op op;
  __host__ __device__ typename Op::acc_t operator()(const typename Op::acc_t& a, const typename Op::acc_t& b) const {
    return op.combine(a, b);
  }
};

// Element i as a one-element accumulator (CUB's input for ops other than a plain sum).
template <class T, class Op>
struct ElementAcc {
  const T* in;
  Op op;
  __host__ __device__ typename Op::acc_t operator()(int64_t i) const {
    return op.step(op.identity(), load_value(in[i]), i);
  }
};

Tensor device_bytes(Device device, int64_t bytes) {
  return empty({std::max<int64_t>(bytes, 1)}, TensorOptions().dtype(kUInt8).device(device));
}

// Full reduction of the contiguous range [in, in + n) into *acc with CUB.
template <class T, class Op>
void cub_reduce(const T* in, int64_t n, const Op& op, typename Op::acc_t* acc, Device device, cudaStream_t stream) {
  using A = typename Op::acc_t;
  const CombineFn<Op> combine{op};
  auto run = [&](auto input) {
    size_t bytes = 0;
    EMBER_CUDA_CHECK(cub::DeviceReduce::Reduce(nullptr, bytes, input, acc, n, combine, op.identity(), stream));
    const Tensor temp = device_bytes(device, static_cast<int64_t>(bytes));
    EMBER_CUDA_CHECK(cub::DeviceReduce::Reduce(temp.raw_data(), bytes, input, acc, n, combine, op.identity(), stream));
  };
  if constexpr (std::is_same_v<Op, reduce::SumOp<T>>) {
    run(in);  // a raw pointer: CUB vectorises the loads
  } else {
    run(thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0), ElementAcc<T, Op>{in, op}));
  }
}

template <class T, class Op, class Writer>
void launch_reduce(const Tensor& in, const ReduceGeometry& g, const Op& op, const Writer& write, cudaStream_t stream) {
  using A = typename Op::acc_t;
  const T* data = static_cast<const T*>(in.raw_data());
  const int64_t M = g.num_outputs, R = g.reduce_size;
  if (M == 1 && R > 1 && g.red_ndim == 1 && g.red_strides[0] == 1) {
    const Tensor acc = device_bytes(in.device(), static_cast<int64_t>(sizeof(A)));
    A* acc_ptr = static_cast<A*>(acc.raw_data());
    cub_reduce(data, R, op, acc_ptr, in.device(), stream);
    reduce_partials_kernel<Op, Writer>
        <<<1, kFinishThreads, kFinishThreads * sizeof(A), stream>>>(acc_ptr, 1, 1, op, write);
    EMBER_CUDA_CHECK_LAUNCH();
    return;
  }
  constexpr int kVec = static_cast<int>(16 / sizeof(T)) > 0 ? static_cast<int>(16 / sizeof(T)) : 1;
  const bool vectorize = g.reduce_inner() && g.red_ndim == 1 && g.red_strides[0] == 1 && R >= 4 * kVec;
  const ReduceConfig c = make_config(g, vectorize ? kVec : 1);
  Tensor partial_buf;
  A* partial = nullptr;
  if (c.splits > 1) {
    partial_buf = device_bytes(in.device(), M * c.splits * static_cast<int64_t>(sizeof(A)));
    partial = static_cast<A*>(partial_buf.raw_data());
  }
  const dim3 block(static_cast<unsigned>(c.bx), static_cast<unsigned>(c.by));
  const dim3 grid(static_cast<unsigned>(std::min(c.groups, kMaxGridX)), static_cast<unsigned>(c.splits));
  const size_t smem = kThreads * sizeof(A);
  if (vectorize)
    reduce_kernel<kVec, T, Op, Writer><<<grid, block, smem, stream>>>(data, g, c, op, write, partial);
  else
    reduce_kernel<1, T, Op, Writer><<<grid, block, smem, stream>>>(data, g, c, op, write, partial);
  EMBER_CUDA_CHECK_LAUNCH();
  if (c.splits > 1) {
    if (c.splits <= 32) {
      reduce_partials_thread_kernel<Op, Writer>
          <<<elementwise_blocks(M), kFinishThreads, 0, stream>>>(partial, c.splits, M, op, write);
    } else {
      const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(M, kMaxGridX));
      reduce_partials_kernel<Op, Writer>
          <<<blocks, kFinishThreads, kFinishThreads * sizeof(A), stream>>>(partial, c.splits, M, op, write);
    }
    EMBER_CUDA_CHECK_LAUNCH();
  }
}

template <class T>
inline constexpr bool is_float_v = std::is_floating_point_v<T> || is_half_like_v<T>;

template <class T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

}  // namespace

void reduce(ReduceKind kind, const Tensor& in, const ReduceGeometry& g, const Tensor& out, const Tensor& indices,
            double correction) {
  if (g.num_outputs == 0) return;
  DeviceGuard guard(in.device());
  const cudaStream_t stream = native_stream(in.device());
  switch (kind) {
    case ReduceKind::Sum:
      dispatch_all(in.dtype(), "sum", [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (is_float_v<T>) {
          launch_reduce<T>(in, g, reduce::SumOp<compute_t<T>>{}, ValueWriter<T>{ptr_or_null<T>(out)}, stream);
        } else {
          launch_reduce<T>(in, g, reduce::SumOp<int64_t>{}, ValueWriter<int64_t>{ptr_or_null<int64_t>(out)}, stream);
        }
      });
      return;
    case ReduceKind::Mean:
      dispatch_floating_and_half(in.dtype(), "mean", [&](auto tag) {
        using T = typename decltype(tag)::type;
        using A = compute_t<T>;
        const reduce::SumOp<A> op{static_cast<A>(1.0 / static_cast<double>(g.reduce_size))};
        launch_reduce<T>(in, g, op, ValueWriter<T>{ptr_or_null<T>(out)}, stream);
      });
      return;
    case ReduceKind::Var:
      dispatch_floating_and_half(in.dtype(), "var", [&](auto tag) {
        using T = typename decltype(tag)::type;
        // Welford/Chan in double for every floating dtype, as the CPU twin (kernels/cpu/reduce.cpp): in float,
        // the running mean of data with a large offset (1e4 + U(0, 1)) loses the spread's low bits and the
        // variance's relative error reaches 1e-3. WelfordAcc<double> is 24 bytes: shfl_down moves it word by
        // word and the shared-memory buffers are sized by sizeof(A), so every kernel and CUB take it as is.
        using A = double;
        launch_reduce<T>(in, g, reduce::WelfordOp<A>{static_cast<A>(correction)}, ValueWriter<T>{ptr_or_null<T>(out)},
                         stream);
      });
      return;
    case ReduceKind::Max:
    case ReduceKind::Min:
      dispatch_all(in.dtype(), kind == ReduceKind::Max ? "max" : "min", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const ValueWriter<T> w{ptr_or_null<T>(out)};
        if (kind == ReduceKind::Max)
          launch_reduce<T>(in, g, reduce::MaxOp<compute_t<T>>{}, w, stream);
        else
          launch_reduce<T>(in, g, reduce::MinOp<compute_t<T>>{}, w, stream);
      });
      return;
    case ReduceKind::ArgMax:
    case ReduceKind::ArgMin:
      dispatch_all(in.dtype(), kind == ReduceKind::ArgMax ? "argmax" : "argmin", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const ArgWriter<T> w{ptr_or_null<T>(out), ptr_or_null<int64_t>(indices)};
        if (kind == ReduceKind::ArgMax)
          launch_reduce<T>(in, g, reduce::ArgMaxOp<compute_t<T>>{}, w, stream);
        else
          launch_reduce<T>(in, g, reduce::ArgMinOp<compute_t<T>>{}, w, stream);
      });
      return;
    case ReduceKind::Any:
    case ReduceKind::All:
      dispatch_all(in.dtype(), kind == ReduceKind::Any ? "any" : "all", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const ValueWriter<bool> w{ptr_or_null<bool>(out)};
        if (kind == ReduceKind::Any)
          launch_reduce<T>(in, g, reduce::AnyOp{}, w, stream);
        else
          launch_reduce<T>(in, g, reduce::AllOp{}, w, stream);
      });
      return;
  }
}

}  // namespace ember::cuda
