// CUDA fused optimizer updates: multi-tensor-apply kernels for SGD and Adam/AdamW (kernels/cuda/optim.h).
//
// Note [Multi-tensor apply]
// One launch updates up to kMaxTensors parameters (of one dtype, on one device) drawn from up to
// kMaxGroups param groups. Everything a launch needs travels in one kernel-parameter struct (a
// "table": per-tensor pointers, sizes, chunk offsets, per-tensor scalars, and per-group scalars)
// passed as a __grid_constant__ parameter, so there is no host-to-device copy and no allocation
// per step, and indexing it with a runtime tensor index reads the constant bank instead of
// spilling the struct to local memory. Tables are built on the host; a bucket with more tensors
// or groups than fit is split into several launches ("a few launches per step, not several per
// parameter": 64 tensors per launch, e.g. 3 launches for ResNet-50's 161 parameters).
//
// Work split: every tensor is cut into chunks of kChunk elements; block b handles one chunk of
// one tensor, found by a binary search over the table's prefix sums of chunk counts (uniform per
// block: every thread reads the same constant-bank words). kChunk is small enough that a model
// of half a million parameters still fills an H100 (~128 blocks), large enough that the per-block
// search is noise. Within a chunk each thread moves 4 elements per step with one aligned vector
// load/store per operand when all of the tensor's operands are aligned, else element by element.
// The per-element math is kernels/shared/optim_math.h, the same code the CPU loops run.
// Table sizes: about 3 KiB (SGD) and 4.5-5.3 KiB (Adam, float32/float64) for 64 tensors, within the
// 32,764-byte kernel-parameter limit of CUDA >= 12.1 on sm_70+ (static_asserts check it).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cuda/optim.h"
#include "kernels/dispatch.h"
#include "kernels/shared/optim_math.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/stream.h"

namespace ember::cuda {
namespace {

constexpr int kMaxTensors = 64;
constexpr int kMaxGroups = 8;
constexpr int kThreads = 256;
constexpr int kVec = 4;
constexpr int64_t kChunk = int64_t{kThreads} * kVec * 4;  // 4096 elements per block

template <class T>
struct alignas(sizeof(T) * kVec) Vec4 {
  T v[kVec];
};

template <class T>
__device__ __forceinline__ Vec4<T> load_vec(const T* p) {
  return *reinterpret_cast<const Vec4<T>*>(p);
}
template <class T>
__device__ __forceinline__ void store_vec(T* p, const Vec4<T>& v) {
  *reinterpret_cast<Vec4<T>*>(p) = v;
}

template <class T>
bool vec_aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % sizeof(Vec4<T>) == 0;
}

// Index of the tensor that owns block `b`: the first t with chunk_end[t] > b.
__device__ __forceinline__ int find_tensor(const int64_t* chunk_end, int n, int64_t b) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (chunk_end[mid] > b)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// ---- SGD ---------------------------------------------------------------------------------------

template <class C>
struct SGDGroupArgs {
  optim_math::SGDScalars<C> s;
  bool weight_decay, momentum, nesterov, maximize;
};

template <class T, class C>
struct SGDTable {
  T* param[kMaxTensors];
  const T* grad[kMaxTensors];
  T* buf[kMaxTensors];  // the parameter itself when the group has no momentum (never touched then)
  int64_t numel[kMaxTensors];
  int64_t chunk_end[kMaxTensors];
  uint8_t group[kMaxTensors];
  uint8_t first_step[kMaxTensors];
  uint8_t aligned[kMaxTensors];
  SGDGroupArgs<C> groups[kMaxGroups];
  int ntensors;
};

template <class T, class C>
__global__ void __launch_bounds__(kThreads) fused_sgd_kernel(const __grid_constant__ SGDTable<T, C> table) {
  const int t = find_tensor(table.chunk_end, table.ntensors, blockIdx.x);
  const int64_t chunk = blockIdx.x - (t == 0 ? 0 : table.chunk_end[t - 1]);
  const int64_t base = chunk * kChunk;
  const int64_t len = table.numel[t] - base < kChunk ? table.numel[t] - base : kChunk;
  T* p = table.param[t] + base;
  const T* g = table.grad[t] + base;
  T* buf = table.buf[t] + base;
  const SGDGroupArgs<C>& a = table.groups[table.group[t]];
  const bool first = table.first_step[t] != 0;

  const int64_t nvec = table.aligned[t] ? len / kVec : 0;
  for (int64_t k = threadIdx.x; k < nvec; k += kThreads) {
    const int64_t i = k * kVec;
    Vec4<T> pv = load_vec(p + i);
    const Vec4<T> gv = load_vec(g + i);
    Vec4<T> bv = a.momentum && !first ? load_vec(buf + i) : Vec4<T>{};
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      optim_math::sgd_element<C>(pv.v[j], gv.v[j], bv.v[j], a.s, a.weight_decay, a.momentum, a.nesterov, a.maximize,
                                 first);
    store_vec(p + i, pv);
    if (a.momentum) store_vec(buf + i, bv);
  }
  for (int64_t i = nvec * kVec + threadIdx.x; i < len; i += kThreads) {
    T b = a.momentum && !first ? buf[i] : T{};
    optim_math::sgd_element<C>(p[i], g[i], b, a.s, a.weight_decay, a.momentum, a.nesterov, a.maximize, first);
    if (a.momentum) buf[i] = b;
  }
}

// ---- Adam / AdamW ------------------------------------------------------------------------------

template <class C>
struct AdamGroupArgs {
  optim_math::AdamScalars<C> s;
  bool l2_weight_decay, decoupled_weight_decay, amsgrad, maximize;
};

template <class T, class C>
struct AdamTable {
  T* param[kMaxTensors];
  const T* grad[kMaxTensors];
  T* exp_avg[kMaxTensors];
  T* exp_avg_sq[kMaxTensors];
  T* max_exp_avg_sq[kMaxTensors];  // exp_avg_sq without amsgrad (never touched then)
  int64_t numel[kMaxTensors];
  int64_t chunk_end[kMaxTensors];
  optim_math::AdamStepScalars<C> step[kMaxTensors];
  uint8_t group[kMaxTensors];
  uint8_t aligned[kMaxTensors];
  AdamGroupArgs<C> groups[kMaxGroups];
  int ntensors;
};

template <class T, class C>
__global__ void __launch_bounds__(kThreads) fused_adam_kernel(const __grid_constant__ AdamTable<T, C> table) {
  const int t = find_tensor(table.chunk_end, table.ntensors, blockIdx.x);
  const int64_t chunk = blockIdx.x - (t == 0 ? 0 : table.chunk_end[t - 1]);
  const int64_t base = chunk * kChunk;
  const int64_t len = table.numel[t] - base < kChunk ? table.numel[t] - base : kChunk;
  T* p = table.param[t] + base;
  const T* g = table.grad[t] + base;
  T* m = table.exp_avg[t] + base;
  T* v = table.exp_avg_sq[t] + base;
  T* vmax = table.max_exp_avg_sq[t] + base;
  const AdamGroupArgs<C>& a = table.groups[table.group[t]];
  const optim_math::AdamStepScalars<C> st = table.step[t];

  const int64_t nvec = table.aligned[t] ? len / kVec : 0;
  for (int64_t k = threadIdx.x; k < nvec; k += kThreads) {
    const int64_t i = k * kVec;
    Vec4<T> pv = load_vec(p + i);
    const Vec4<T> gv = load_vec(g + i);
    Vec4<T> mv = load_vec(m + i);
    Vec4<T> vv = load_vec(v + i);
    Vec4<T> xv = a.amsgrad ? load_vec(vmax + i) : Vec4<T>{};
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      optim_math::adam_element<C>(pv.v[j], gv.v[j], mv.v[j], vv.v[j], xv.v[j], a.s, st, a.l2_weight_decay,
                                  a.decoupled_weight_decay, a.amsgrad, a.maximize);
    store_vec(p + i, pv);
    store_vec(m + i, mv);
    store_vec(v + i, vv);
    if (a.amsgrad) store_vec(vmax + i, xv);
  }
  for (int64_t i = nvec * kVec + threadIdx.x; i < len; i += kThreads) {
    T x = a.amsgrad ? vmax[i] : T{};
    optim_math::adam_element<C>(p[i], g[i], m[i], v[i], x, a.s, st, a.l2_weight_decay, a.decoupled_weight_decay,
                                a.amsgrad, a.maximize);
    if (a.amsgrad) vmax[i] = x;
  }
}

// ---- table building ----------------------------------------------------------------------------

// Fills tables of up to kMaxTensors tensors and kMaxGroups groups and calls launch(table, nchunks)
// whenever one is full, and at the end. add(table, slot, ref, local_group) fills the per-tensor
// fields; init_group(table, local_group, global_group) the per-group ones.
template <class Table, class Ref, class Add, class InitGroup, class Launch>
void run_tables(const std::vector<Ref>& refs, Add&& add, InitGroup&& init_group, Launch&& launch) {
  Table table{};
  int64_t chunks = 0;
  std::vector<int> group_slot;  // global group -> local slot in the current table, or -1
  int ngroups = 0;
  auto flush = [&] {
    if (table.ntensors > 0) launch(table, chunks);
    table = Table{};
    chunks = 0;
    ngroups = 0;
    std::fill(group_slot.begin(), group_slot.end(), -1);
  };
  for (const Ref& r : refs) {
    const int64_t n = r.param.numel();
    if (n == 0) continue;
    const auto global = static_cast<size_t>(r.group);
    if (group_slot.size() <= global) group_slot.resize(global + 1, -1);
    if (table.ntensors == kMaxTensors || (group_slot[global] < 0 && ngroups == kMaxGroups)) flush();
    if (group_slot[global] < 0) {
      group_slot[global] = ngroups;
      init_group(table, ngroups, r.group);
      ++ngroups;
    }
    const int slot = table.ntensors++;
    add(table, slot, r, group_slot[global]);
    table.numel[slot] = n;
    chunks += (n + kChunk - 1) / kChunk;
    table.chunk_end[slot] = chunks;
  }
  flush();
}

// Launches a grid of `chunks` blocks (one per chunk; see Note [Multi-tensor apply]).
template <class Kernel, class Table>
void launch_table(Kernel kernel, const Table& table, int64_t chunks, cudaStream_t stream) {
  EMBER_ASSERT(chunks > 0 && chunks <= int64_t{0x7fffffff}, "fused optimizer: ", chunks,
               " chunks do not fit in one grid");
  kernel<<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(table);
  EMBER_CUDA_CHECK_LAUNCH();
}

cudaStream_t stream_of(const Tensor& t) {
  return static_cast<cudaStream_t>(current_stream(t.device().index()).handle());
}

}  // namespace

void fused_sgd_(const std::vector<SGDParamRef>& params, const std::vector<SGDHyper>& groups) {
  if (params.empty()) return;
  const cudaStream_t stream = stream_of(params.front().param);
  dispatch_floating_and_half(params.front().param.dtype(), "fused_sgd_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    using Table = SGDTable<T, C>;
    static_assert(sizeof(Table) <= 32764, "SGD table exceeds the kernel-parameter limit");
    run_tables<Table>(
        params,
        [&](Table& tb, int slot, const SGDParamRef& r, int local_group) {
          const bool momentum = groups[static_cast<size_t>(r.group)].momentum != 0.0;
          tb.param[slot] = static_cast<T*>(r.param.raw_data());
          tb.grad[slot] = static_cast<const T*>(r.grad.raw_data());
          tb.buf[slot] = momentum ? static_cast<T*>(r.momentum_buffer.raw_data()) : tb.param[slot];
          tb.group[slot] = static_cast<uint8_t>(local_group);
          tb.first_step[slot] = r.first_step ? 1 : 0;
          tb.aligned[slot] =
              vec_aligned<T>(tb.param[slot]) && vec_aligned<T>(tb.grad[slot]) && vec_aligned<T>(tb.buf[slot]);
        },
        [&](Table& tb, int local_group, int global_group) {
          const SGDHyper& h = groups[static_cast<size_t>(global_group)];
          tb.groups[local_group] = {optim_math::sgd_scalars<C>(h.lr, h.momentum, h.dampening, h.weight_decay),
                                    h.weight_decay != 0.0, h.momentum != 0.0, h.nesterov, h.maximize};
        },
        [&](const Table& tb, int64_t chunks) { launch_table(fused_sgd_kernel<T, C>, tb, chunks, stream); });
  });
}

void fused_adam_(const std::vector<AdamParamRef>& params, const std::vector<AdamHyper>& groups) {
  if (params.empty()) return;
  const cudaStream_t stream = stream_of(params.front().param);
  dispatch_floating_and_half(params.front().param.dtype(), "fused_adam_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    using Table = AdamTable<T, C>;
    static_assert(sizeof(Table) <= 32764, "Adam table exceeds the kernel-parameter limit");
    run_tables<Table>(
        params,
        [&](Table& tb, int slot, const AdamParamRef& r, int local_group) {
          const AdamHyper& h = groups[static_cast<size_t>(r.group)];
          tb.param[slot] = static_cast<T*>(r.param.raw_data());
          tb.grad[slot] = static_cast<const T*>(r.grad.raw_data());
          tb.exp_avg[slot] = static_cast<T*>(r.exp_avg.raw_data());
          tb.exp_avg_sq[slot] = static_cast<T*>(r.exp_avg_sq.raw_data());
          tb.max_exp_avg_sq[slot] = h.amsgrad ? static_cast<T*>(r.max_exp_avg_sq.raw_data()) : tb.exp_avg_sq[slot];
          tb.step[slot] = optim_math::adam_step_scalars<C>(h.lr, h.beta1, h.beta2, r.step);
          tb.group[slot] = static_cast<uint8_t>(local_group);
          tb.aligned[slot] = vec_aligned<T>(tb.param[slot]) && vec_aligned<T>(tb.grad[slot]) &&
                             vec_aligned<T>(tb.exp_avg[slot]) && vec_aligned<T>(tb.exp_avg_sq[slot]) &&
                             vec_aligned<T>(tb.max_exp_avg_sq[slot]);
        },
        [&](Table& tb, int local_group, int global_group) {
          const AdamHyper& h = groups[static_cast<size_t>(global_group)];
          const bool decay = h.weight_decay != 0.0;
          tb.groups[local_group] = {optim_math::adam_scalars<C>(h.lr, h.beta1, h.beta2, h.eps, h.weight_decay),
                                    decay && !h.decoupled_weight_decay, decay && h.decoupled_weight_decay, h.amsgrad,
                                    h.maximize};
        },
        [&](const Table& tb, int64_t chunks) { launch_table(fused_adam_kernel<T, C>, tb, chunks, stream); });
  });
}

}  // namespace ember::cuda
