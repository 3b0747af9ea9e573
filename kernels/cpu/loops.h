// CPU element-wise loops over a StridedIter: contiguous fast path, strided runs, OpenMP above a grain.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <utility>

#include "kernels/shared/strided_iter.h"

namespace ember::cpu {

// Element counts below this run on the calling thread: OpenMP's fork/join costs microseconds.
inline constexpr int64_t kParallelGrain = 32768;

// Runs body(begin, end) over [0, n) split across OpenMP threads when n is large enough.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& body) {
  if (n <= 0) return;
  if (n <= grain || omp_get_max_threads() == 1 || omp_in_parallel()) {
    body(int64_t{0}, n);
    return;
  }
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int nthreads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), max_chunks));
#pragma omp parallel num_threads(nthreads)
  {
    const int64_t tid = omp_get_thread_num();
    const int64_t nt = omp_get_num_threads();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t b = tid * chunk;
    const int64_t e = std::min(n, b + chunk);
    if (b < e) body(b, e);
  }
}

// Calls run(ptrs, inner_strides, count) for every innermost run of elements in [begin, end),
// where ptrs[k] points at operand k's first element of the run (strides in elements).
template <class F>
void for_each_run(const StridedIter& it, int64_t begin, int64_t end, F&& run) {
  const int nops = it.noperands;
  if (it.ndim <= 1) {
    char* ptrs[StridedIter::kMaxOperands];
    for (int k = 0; k < nops; ++k) ptrs[k] = it.data[k] + begin * it.strides[k][0] * it.elem_size[k];
    run(ptrs, it.strides, end - begin);
    return;
  }
  // Multi-index of `begin` (dim 0 innermost).
  int64_t idx[StridedIter::kMaxDims];
  int64_t rem = begin;
  for (int d = 0; d < it.ndim; ++d) {
    idx[d] = rem % it.shape[d];
    rem /= it.shape[d];
  }
  int64_t pos = begin;
  char* ptrs[StridedIter::kMaxOperands];
  while (pos < end) {
    for (int k = 0; k < nops; ++k) {
      int64_t off = 0;
      for (int d = 0; d < it.ndim; ++d) off += idx[d] * it.strides[k][d];
      ptrs[k] = it.data[k] + off * it.elem_size[k];
    }
    const int64_t count = std::min(it.shape[0] - idx[0], end - pos);
    run(ptrs, it.strides, count);
    pos += count;
    idx[0] += count;
    for (int d = 0; d < it.ndim - 1 && idx[d] == it.shape[d]; ++d) {
      idx[d] = 0;
      ++idx[d + 1];
    }
  }
}

namespace detail {
template <class Out, class... In, class F, size_t... I>
EMBER_ALWAYS_INLINE void run_contiguous(char** ptrs, int64_t n, F& f, std::index_sequence<I...>) {
  Out* out = reinterpret_cast<Out*>(ptrs[0]);
  const std::tuple<const In*...> in{reinterpret_cast<const In*>(ptrs[I + 1])...};
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(f(std::get<I>(in)[i]...));
}
template <class Out, class... In, class F, size_t... I>
EMBER_ALWAYS_INLINE void run_strided(char** ptrs, const int64_t (*strides)[StridedIter::kMaxDims], int64_t n,
                                     F& f, std::index_sequence<I...>) {
  Out* out = reinterpret_cast<Out*>(ptrs[0]);
  const int64_t so = strides[0][0];
  const std::tuple<const In*...> in{reinterpret_cast<const In*>(ptrs[I + 1])...};
  [[maybe_unused]] const int64_t si[sizeof...(In) + 1] = {strides[I + 1][0]..., 0};
  for (int64_t i = 0; i < n; ++i) out[i * so] = static_cast<Out>(f(std::get<I>(in)[i * si[I]]...));
}
template <class... In, size_t... I>
EMBER_ALWAYS_INLINE bool all_unit(const int64_t (*strides)[StridedIter::kMaxDims], std::index_sequence<I...>) {
  return strides[0][0] == 1 && ((strides[I + 1][0] == 1) && ...);
}
}  // namespace detail

// out[i] = f(in0[i], in1[i], ...) over the iterator; Out and In... are the operands' C++ types.
template <class Out, class... In, class F>
void elementwise(const StridedIter& it, F f, int64_t grain = kParallelGrain) {
  if (it.numel == 0) return;
  using Seq = std::index_sequence_for<In...>;
  parallel_for(it.numel, grain, [&](int64_t begin, int64_t end) {
    for_each_run(it, begin, end, [&](char** ptrs, const int64_t (*strides)[StridedIter::kMaxDims], int64_t n) {
      if (detail::all_unit<In...>(strides, Seq{}))
        detail::run_contiguous<Out, In...>(ptrs, n, f, Seq{});
      else
        detail::run_strided<Out, In...>(ptrs, strides, n, f, Seq{});
    });
  });
}

}  // namespace ember::cpu
