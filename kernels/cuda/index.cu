// CUDA kernels of the indexing ops (gathers, atomicAdd scatter-adds, fills) and their deferred range check.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <mutex>

#include "kernels/cuda/index.h"
#include "kernels/dispatch.h"
#include "kernels/shared/index_bounds.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"

namespace ember::cuda {

namespace {

// Note [CUDA index errors]
// A device-side assert (PyTorch's choice) poisons the whole CUDA context: every later call fails
// and the process must restart. ember instead clamps an out-of-range index into [0, size) (so the
// access stays in bounds; the op's result is then wrong; a dim of size 0 is not touched at all: Note
// [Clamped indices] in kernels/shared/index_bounds.h) and records the offence in a small slot of
// mapped pinned host memory, one per device. Nothing synchronises on it: the host reads the slot
// with a plain load whenever an index op is launched on that device, and raises the recorded error
// there (naming the op that met it), so an error surfaces at the next index op after the faulty
// kernel has run; cuda::check_index_errors(device, /*wait=*/true) waits for the device and reports
// deterministically (tests use it). Raising an error clears the slot, so each is reported once.
// Racing writers may mix fields of two offences; any mix still names a real op, a real bad index or
// size, which is all the message promises. The slots are never freed: pinned memory freed after the
// driver shut down is a crash, and the driver reclaims them at exit.
struct IndexErrorSlot {
  volatile int32_t op;  // IndexOpKind, 0: no error
  volatile int64_t value;
  volatile int64_t size;
};

struct SlotPair {
  IndexErrorSlot* host = nullptr;
  IndexErrorSlot* device = nullptr;
};

std::mutex g_slot_mutex;
std::array<SlotPair, kMaxCudaDevices> g_slots{};
std::array<std::atomic<bool>, kMaxCudaDevices> g_slot_ready{};

SlotPair error_slot(int device) {
  EMBER_ASSERT(device >= 0 && device < kMaxCudaDevices, "index error slot for device ", device);
  if (g_slot_ready[device].load(std::memory_order_acquire)) return g_slots[device];
  std::lock_guard<std::mutex> lock(g_slot_mutex);
  if (!g_slot_ready[device].load(std::memory_order_relaxed)) {
    DeviceGuard guard(device);
    void* host = nullptr;
    EMBER_CUDA_CHECK(cudaHostAlloc(&host, sizeof(IndexErrorSlot), cudaHostAllocMapped | cudaHostAllocPortable));
    std::memset(host, 0, sizeof(IndexErrorSlot));
    void* dev = nullptr;
    EMBER_CUDA_CHECK(cudaHostGetDevicePointer(&dev, host, 0));
    g_slots[device] = {static_cast<IndexErrorSlot*>(host), static_cast<IndexErrorSlot*>(dev)};
    g_slot_ready[device].store(true, std::memory_order_release);
  }
  return g_slots[device];
}

// Raises an error an earlier kernel recorded on `device`, and clears the slot: the offence is reported once
// (the exchange makes one caller take it when host threads race), and later ops and checks see no error.
void raise_recorded(int device) {
  IndexErrorSlot* slot = error_slot(device).host;
  if (slot->op == 0) [[likely]]
    return;
  const int64_t value = slot->value, size = slot->size;
  const int32_t op = __atomic_exchange_n(&slot->op, 0, __ATOMIC_ACQ_REL);
  if (op == 0) return;  // another thread took it
  EMBER_THROW(index_op_name(static_cast<IndexOpKind>(op)), ": index ", value, " is out of range for a dim of size ",
              size, " (found on cuda:", device,
              " by a kernel launched earlier; that op clamped the index, so its "
              "result is wrong)");
}

// The index value at `at`, checked against [0, size): an offence is recorded, and the position returned is
// clamped (-1 for a dim of size 0, whatever the value: callers skip the access), Note [Clamped indices].
template <class I>
__device__ __forceinline__ int64_t load_index(const IndexIter& it, const I* index, int64_t at, IndexErrorSlot* slot,
                                              int32_t op) {
  const int64_t v = static_cast<int64_t>(index[at]);
  if (index_in_range(v, it.self_size)) [[likely]]
    return v;
  if (slot->op == 0) {
    slot->value = v;
    slot->size = it.self_size;
    __threadfence_system();
    slot->op = op;
  }
  return clamp_index(v, it.self_size);
}

// Thread `linear` -> (rest offsets, j along the indexed dim).
__device__ __forceinline__ int64_t split_linear(const IndexIter& it, int64_t linear, int64_t* off) {
  int64_t r, j;
  if (it.dim_innermost) {
    j = linear % it.extent;
    r = linear / it.extent;
  } else {
    r = linear % it.rest_numel;
    j = linear / it.rest_numel;
  }
  it.rest_offsets(r, off);
  off[1] += j * it.dim_strides[1];
  off[2] += j * it.dim_strides[2];
  return j;
}

template <class E, class I>
__global__ void index_gather_kernel(const __grid_constant__ IndexIter it, IndexErrorSlot* slot, int32_t op) {
  const E* self = reinterpret_cast<const E*>(it.data[0]);
  const I* index = reinterpret_cast<const I*>(it.data[1]);
  E* out = reinterpret_cast<E*>(it.data[2]);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t linear = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; linear < it.numel;
       linear += step) {
    int64_t off[3];
    split_linear(it, linear, off);
    const int64_t v = load_index(it, index, off[1], slot, op);
    out[off[2]] = v >= 0 ? self[off[0] + v * it.self_stride] : E{};
  }
}

template <class T>
struct DeviceAdd;  // atomic self += v for the storage type T, v in T's compute type
template <>
struct DeviceAdd<float> {
  __device__ static void add(float* p, float v) { atomicAdd(p, v); }
};
template <>
struct DeviceAdd<double> {
  __device__ static void add(double* p, double v) { atomicAdd(p, v); }
};
template <>
struct DeviceAdd<int32_t> {
  __device__ static void add(int32_t* p, int32_t v) { atomicAdd(reinterpret_cast<int*>(p), static_cast<int>(v)); }
};
template <>
struct DeviceAdd<int64_t> {
  // Two's complement addition is the same on unsigned words.
  __device__ static void add(int64_t* p, int64_t v) {
    atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
  }
};
template <>
struct DeviceAdd<Half> {
  __device__ static void add(Half* p, float v) { atomicAdd(reinterpret_cast<__half*>(p), __float2half(v)); }
};
template <>
struct DeviceAdd<BFloat16> {
  __device__ static void add(BFloat16* p, float v) {
    atomicAdd(reinterpret_cast<__nv_bfloat16*>(p), __float2bfloat16(v));
  }
};

template <class T, class I>
__global__ void index_scatter_add_kernel(const __grid_constant__ IndexIter it, compute_t<T> alpha, IndexErrorSlot* slot,
                                         int32_t op) {
  using C = compute_t<T>;
  T* self = reinterpret_cast<T*>(it.data[0]);
  const I* index = reinterpret_cast<const I*>(it.data[1]);
  const T* src = reinterpret_cast<const T*>(it.data[2]);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t linear = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; linear < it.numel;
       linear += step) {
    int64_t off[3];
    split_linear(it, linear, off);
    const int64_t v = load_index(it, index, off[1], slot, op);
    if (v >= 0) DeviceAdd<T>::add(self + off[0] + v * it.self_stride, alpha * static_cast<C>(src[off[2]]));
  }
}

template <class E, class I>
__global__ void index_fill_kernel(const __grid_constant__ IndexIter it, E value, IndexErrorSlot* slot, int32_t op) {
  E* self = reinterpret_cast<E*>(it.data[0]);
  const I* index = reinterpret_cast<const I*>(it.data[1]);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t linear = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; linear < it.numel;
       linear += step) {
    int64_t off[3];
    split_linear(it, linear, off);
    const int64_t v = load_index(it, index, off[1], slot, op);
    if (v >= 0) self[off[0] + v * it.self_stride] = value;
  }
}

constexpr int kThreads = 256;
// Grid-stride loops: enough blocks to fill an H100 many times over, then each thread loops.
unsigned grid_for(int64_t numel) {
  return static_cast<unsigned>(std::clamp<int64_t>((numel + kThreads - 1) / kThreads, 1, int64_t{1} << 16));
}

template <class F>
void dispatch_index(DType t, F&& f) {
  switch (t) {
    case DType::Int64: f(type_tag<int64_t>{}); return;
    case DType::Int32: f(type_tag<int32_t>{}); return;
    default: throw_unsupported_dtype("index", t, "int64 or int32 (for indices)");
  }
}

template <class F>
void dispatch_by_size(DType t, F&& f) {
  switch (element_size(t)) {
    case 1: f(type_tag<uint8_t>{}); return;
    case 2: f(type_tag<uint16_t>{}); return;
    case 4: f(type_tag<uint32_t>{}); return;
    default: f(type_tag<uint64_t>{}); return;
  }
}

// Launch context shared by the entries: device current, earlier errors raised, stream picked.
struct Launch {
  DeviceGuard guard;
  cudaStream_t stream;
  IndexErrorSlot* slot;
  explicit Launch(Device device) : guard(device) {
    raise_recorded(device.index());
    stream = static_cast<cudaStream_t>(current_stream(device.index()).handle());
    slot = error_slot(device.index()).device;
  }
};

}  // namespace

void index_gather(const IndexIter& it, DType dtype, DType index_dtype, Device device, IndexOpKind op) {
  Launch l(device);
  if (it.numel == 0) return;
  dispatch_by_size(dtype, [&](auto etag) {
    using E = typename decltype(etag)::type;
    dispatch_index(index_dtype, [&](auto itag) {
      using I = typename decltype(itag)::type;
      index_gather_kernel<E, I><<<grid_for(it.numel), kThreads, 0, l.stream>>>(it, l.slot, static_cast<int32_t>(op));
      EMBER_CUDA_CHECK_LAUNCH();
    });
  });
}

void index_scatter_add(const IndexIter& it, DType dtype, DType index_dtype, const Scalar& alpha, Device device,
                       IndexOpKind op) {
  Launch l(device);
  if (it.numel == 0) return;
  auto run = [&](auto ttag) {
    using T = typename decltype(ttag)::type;
    dispatch_index(index_dtype, [&](auto itag) {
      using I = typename decltype(itag)::type;
      index_scatter_add_kernel<T, I><<<grid_for(it.numel), kThreads, 0, l.stream>>>(it, alpha.to<compute_t<T>>(),
                                                                                    l.slot, static_cast<int32_t>(op));
      EMBER_CUDA_CHECK_LAUNCH();
    });
  };
  switch (dtype) {
    case DType::Float32: run(type_tag<float>{}); break;
    case DType::Float64: run(type_tag<double>{}); break;
    case DType::Int64: run(type_tag<int64_t>{}); break;
    case DType::Int32: run(type_tag<int32_t>{}); break;
    case DType::Float16: run(type_tag<Half>{}); break;
    case DType::BFloat16: run(type_tag<BFloat16>{}); break;
    default:
      throw_unsupported_dtype(index_op_name(op), dtype, "float32, float64, float16, bfloat16, int64 or int32 on CUDA");
  }
}

void index_scatter_fill(const IndexIter& it, DType dtype, DType index_dtype, const Scalar& value, Device device,
                        IndexOpKind op) {
  Launch l(device);
  if (it.numel == 0) return;
  // The value converted on the host to the element's bits.
  uint64_t bits = 0;
  dispatch_all(dtype, index_op_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = value.to<T>();
    std::memcpy(&bits, &v, sizeof(T));
  });
  dispatch_by_size(dtype, [&](auto etag) {
    using E = typename decltype(etag)::type;
    E e;
    std::memcpy(&e, &bits, sizeof(E));
    dispatch_index(index_dtype, [&](auto itag) {
      using I = typename decltype(itag)::type;
      index_fill_kernel<E, I><<<grid_for(it.numel), kThreads, 0, l.stream>>>(it, e, l.slot, static_cast<int32_t>(op));
      EMBER_CUDA_CHECK_LAUNCH();
    });
  });
}

void check_index_errors(Device device, bool wait) {
  EMBER_CHECK(device.is_cuda(), "check_index_errors: expected a CUDA device, got ", device);
  if (wait) synchronize(device.index());
  raise_recorded(device.index());
}

}  // namespace ember::cuda
