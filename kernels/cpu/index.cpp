// CPU kernels of the indexing ops: range checks, gathers, scatter-adds and fills over an IndexIter.
#include "kernels/cpu/index.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/loops.h"
#include "kernels/dispatch.h"
#include "kernels/shared/cast.h"
#include "kernels/shared/index_bounds.h"

namespace ember::cpu {

namespace {

// Calls f(o0, o1, o2) with the element offsets of rest positions [begin, end).
template <class F>
EMBER_ALWAYS_INLINE void walk_rest(const IndexIter& it, int64_t begin, int64_t end, F&& f) {
  if (it.ndim == 0) {
    if (begin < end) f(int64_t{0}, int64_t{0}, int64_t{0});
    return;
  }
  int64_t idx[IndexIter::kMaxDims];
  int64_t rem = begin;
  for (int d = 0; d < it.ndim; ++d) {
    idx[d] = rem % it.shape[d];
    rem /= it.shape[d];
  }
  const int64_t s0 = it.strides[0][0], s1 = it.strides[1][0], s2 = it.strides[2][0];
  int64_t pos = begin;
  while (pos < end) {
    int64_t o0 = 0, o1 = 0, o2 = 0;
    for (int d = 0; d < it.ndim; ++d) {
      o0 += idx[d] * it.strides[0][d];
      o1 += idx[d] * it.strides[1][d];
      o2 += idx[d] * it.strides[2][d];
    }
    const int64_t count = std::min(it.shape[0] - idx[0], end - pos);
    for (int64_t i = 0; i < count; ++i) f(o0 + i * s0, o1 + i * s1, o2 + i * s2);
    pos += count;
    idx[0] += count;
    for (int d = 0; d < it.ndim - 1 && idx[d] == it.shape[d]; ++d) {
      idx[d] = 0;
      ++idx[d + 1];
    }
  }
}

// body(j, o0, o1, o2) for every (rest position, j along the indexed dim), o1/o2 already stepped by j.
// Parallel over rest positions only (scatters: no two threads touch one element), unless
// `any_split` allows splitting the indexed dim too (pure gathers) and that gives more parallelism.
template <class F>
void index_loop(const IndexIter& it, bool any_split, F&& body) {
  if (it.numel == 0) return;
  const int64_t n = it.extent;
  const int64_t d1 = it.dim_strides[1], d2 = it.dim_strides[2];
  if (any_split && it.rest_numel < n) {
    parallel_for(n, std::max<int64_t>(1, kParallelGrain / it.rest_numel), [&](int64_t jb, int64_t je) {
      for (int64_t j = jb; j < je; ++j)
        walk_rest(it, 0, it.rest_numel,
                  [&](int64_t o0, int64_t o1, int64_t o2) { body(o0, o1 + j * d1, o2 + j * d2); });
    });
    return;
  }
  parallel_for(it.rest_numel, std::max<int64_t>(1, kParallelGrain / n), [&](int64_t b, int64_t e) {
    for (int64_t j = 0; j < n; ++j)
      walk_rest(it, b, e, [&](int64_t o0, int64_t o1, int64_t o2) { body(o0, o1 + j * d1, o2 + j * d2); });
  });
}

template <class F>
decltype(auto) dispatch_index(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Int64: return f(type_tag<int64_t>{});
    case DType::Int32: return f(type_tag<int32_t>{});
    default: throw_unsupported_dtype(op, t, "int64 or int32 (for indices)");
  }
}

// Element types for data movement only: the bits of any dtype of that size.
template <class F>
decltype(auto) dispatch_by_size(DType t, F&& f) {
  switch (element_size(t)) {
    case 1: return f(type_tag<uint8_t>{});
    case 2: return f(type_tag<uint16_t>{});
    case 4: return f(type_tag<uint32_t>{});
    default: return f(type_tag<uint64_t>{});
  }
}

// Arithmetic element types of scatter-add: every dtype but bool.
template <class F>
decltype(auto) dispatch_add(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float16: return f(type_tag<Half>{});
    case DType::BFloat16: return f(type_tag<BFloat16>{});
    default: return dispatch_numeric(t, op, std::forward<F>(f));
  }
}

}  // namespace

std::optional<int64_t> first_index_out_of_range(const char* op, const Tensor& index, int64_t size) {
  if (index.numel() == 0) return std::nullopt;
  const Tensor idx = index.is_contiguous() ? index : index.contiguous();
  return dispatch_index(idx.dtype(), op, [&](auto tag) -> std::optional<int64_t> {
    using I = typename decltype(tag)::type;
    const I* p = static_cast<const I*>(idx.raw_data());
    const int64_t n = idx.numel();
    auto bad = [size](I v) { return !index_in_range(static_cast<int64_t>(v), size); };  // shared with CUDA
    // Per-chunk flags first (cheap, parallel); the first offender is searched only on failure.
    const int64_t grain = int64_t{1} << 16;
    std::vector<char> flags(static_cast<size_t>((n + grain - 1) / grain), 0);
    parallel_for(static_cast<int64_t>(flags.size()), 1, [&](int64_t cb, int64_t ce) {
      for (int64_t c = cb; c < ce; ++c) {
        const int64_t e = std::min(n, (c + 1) * grain);
        bool any = false;
        for (int64_t i = c * grain; i < e; ++i) any |= bad(p[i]);
        flags[static_cast<size_t>(c)] = any;
      }
    });
    if (std::find(flags.begin(), flags.end(), 1) == flags.end()) return std::nullopt;
    for (int64_t i = 0; i < n; ++i)
      if (bad(p[i])) return static_cast<int64_t>(p[i]);
    return std::nullopt;
  });
}

void index_gather(const IndexIter& it, DType dtype, DType index_dtype) {
  dispatch_by_size(dtype, [&](auto etag) {
    using E = typename decltype(etag)::type;
    dispatch_index(index_dtype, "gather", [&](auto itag) {
      using I = typename decltype(itag)::type;
      const E* self = reinterpret_cast<const E*>(it.data[0]);
      const I* index = reinterpret_cast<const I*>(it.data[1]);
      E* out = reinterpret_cast<E*>(it.data[2]);
      const int64_t step = it.self_stride;
      index_loop(it, /*any_split=*/true, [&](int64_t o0, int64_t o1, int64_t o2) {
        out[o2] = self[o0 + static_cast<int64_t>(index[o1]) * step];
      });
    });
  });
}

void index_scatter_add(const IndexIter& it, DType dtype, DType index_dtype, const Scalar& alpha) {
  dispatch_add(dtype, "scatter_add", [&](auto etag) {
    using T = typename decltype(etag)::type;
    using C = compute_t<T>;
    dispatch_index(index_dtype, "scatter_add", [&](auto itag) {
      using I = typename decltype(itag)::type;
      T* self = reinterpret_cast<T*>(it.data[0]);
      const I* index = reinterpret_cast<const I*>(it.data[1]);
      const T* src = reinterpret_cast<const T*>(it.data[2]);
      const int64_t step = it.self_stride;
      const C a = alpha.to<C>();
      if (a == C(1)) {
        index_loop(it, /*any_split=*/false, [&](int64_t o0, int64_t o1, int64_t o2) {
          T& dst = self[o0 + static_cast<int64_t>(index[o1]) * step];
          dst = cast_value<T>(static_cast<C>(dst) + static_cast<C>(src[o2]));
        });
      } else {
        index_loop(it, /*any_split=*/false, [&](int64_t o0, int64_t o1, int64_t o2) {
          T& dst = self[o0 + static_cast<int64_t>(index[o1]) * step];
          dst = cast_value<T>(static_cast<C>(dst) + a * static_cast<C>(src[o2]));
        });
      }
    });
  });
}

void index_scatter_fill(const IndexIter& it, DType dtype, DType index_dtype, const Scalar& value) {
  dispatch_all(dtype, "index_fill_", [&](auto etag) {
    using T = typename decltype(etag)::type;
    dispatch_index(index_dtype, "index_fill_", [&](auto itag) {
      using I = typename decltype(itag)::type;
      T* self = reinterpret_cast<T*>(it.data[0]);
      const I* index = reinterpret_cast<const I*>(it.data[1]);
      const int64_t step = it.self_stride;
      const T v = value.to<T>();
      index_loop(it, /*any_split=*/false,
                 [&](int64_t o0, int64_t o1, int64_t) { self[o0 + static_cast<int64_t>(index[o1]) * step] = v; });
    });
  });
}

}  // namespace ember::cpu
