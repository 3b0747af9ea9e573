// CPU reductions: blocked-pairwise horizontal runs, tiled vertical accumulation, OpenMP over outputs or splits.
//
// Note [CPU reduction loops]
// The geometry (Note [Reduction geometry]) says whether an output's reduced elements lie closer together in
// memory than neighbouring outputs do.
//  * Horizontal (row sums of [N, C], any reduction whose innermost reduced dim has the smallest stride):
//    each output reduces its own elements. A run along the innermost reduced dim is folded into kLanes
//    independent accumulators (a vectorisable inner loop for contiguous runs) and runs are combined
//    pairwise over leaves of kLeaf elements, so the rounding error of a float32 sum grows with
//    log2(n / kLeaf) instead of n: a 16M-element sum stays within ~1e-6 of the exact value.
//  * Vertical (column sums of [N, C], bias gradients): a tile of up to kTile (~16 KiB of accumulators) outputs is
//    accumulated row by row, each row a contiguous (vectorisable) pass over the tile, never a strided
//    walk down one column per output. Rows are combined pairwise over leaves of kLeafRows rows.
// Parallelism: over tiles (one output per tile when horizontal) when there are enough of them; otherwise
// (few outputs, long reductions: a full sum, the column sums of a tall [N, 10]) the reduction range is
// split too, each split reduced into a partial result by one thread, and the partials are combined in a
// fixed order, so results do not depend on timing.
#include "kernels/cpu/reduce.h"

#include <omp.h>

#include <algorithm>
#include <memory>

#include "kernels/cpu/loops.h"
#include "kernels/dispatch.h"
#include "kernels/shared/cast.h"

namespace ember::cpu {

namespace {

constexpr int kLanes = 16;
constexpr int64_t kLeaf = 2048;
constexpr int64_t kLeafRows = 64;
// Outputs of one vertical tile: about 16 KiB of accumulators (4096 float sums, an L1-resident row block, so
// that rows are streamed in long runs the prefetchers follow), at least 8.
template <class A>
inline constexpr int kTile = sizeof(A) >= 256 ? 8 : std::max<int>(8, static_cast<int>(16384 / sizeof(A)));

template <class T>
EMBER_ALWAYS_INLINE compute_t<T> load(const T& v) {
  if constexpr (is_half_like_v<T>) {
    return static_cast<float>(v);
  } else {
    return v;
  }
}

template <class T, class Op>
struct Reducer {
  using A = typename Op::acc_t;
  const ReduceGeometry& g;
  const T* in;
  Op op;

  // n elements from p, s apart; element i has reduction index idx0 + i.
  A run(const T* p, int64_t n, int64_t s, int64_t idx0) const {
    if (n < kLanes) {
      A a = op.identity();
      for (int64_t i = 0; i < n; ++i) a = op.step(a, load(p[i * s]), idx0 + i);
      return a;
    }
    A lane[kLanes];
    for (int j = 0; j < kLanes; ++j) lane[j] = op.identity();
    int64_t i = 0;
    if (s == 1) {
      for (; i + kLanes <= n; i += kLanes)
        for (int j = 0; j < kLanes; ++j) lane[j] = op.step(lane[j], load(p[i + j]), idx0 + i + j);
    } else {
      for (; i + kLanes <= n; i += kLanes)
        for (int j = 0; j < kLanes; ++j) lane[j] = op.step(lane[j], load(p[(i + j) * s]), idx0 + i + j);
    }
    for (int j = 0; i < n; ++i, ++j) lane[j] = op.step(lane[j], load(p[i * s]), idx0 + i);
    for (int w = kLanes / 2; w > 0; w /= 2)
      for (int j = 0; j < w; ++j) lane[j] = op.combine(lane[j], lane[j + w]);
    return lane[0];
  }

  // Reduction indices [rb, re) of the output whose elements start at base.
  A leaf_h(const T* base, int64_t rb, int64_t re) const {
    const int64_t n0 = g.red_sizes[0], s0 = g.red_strides[0];
    if (g.red_ndim == 1) return run(base + rb * s0, re - rb, s0, rb);
    A acc = op.identity();
    for (int64_t r = rb; r < re;) {
      const int64_t n = std::min(n0 - r % n0, re - r);
      acc = op.combine(acc, run(base + g.red_offset(r), n, s0, r));
      r += n;
    }
    return acc;
  }

  A pairwise_h(const T* base, int64_t rb, int64_t re) const {
    if (re - rb <= kLeaf) return leaf_h(base, rb, re);
    const int64_t mid = rb + (re - rb) / 2 / kLanes * kLanes;
    const A left = pairwise_h(base, rb, mid);
    return op.combine(left, pairwise_h(base, mid, re));
  }

  // Rows [rb, re) of a tile of w outputs, the first one's elements starting at base, outputs sk apart.
  void leaf_v(const T* base, int64_t sk, int w, int64_t rb, int64_t re, A* out) const {
    A acc[kTile<A>];  // local, so the compiler knows the rows cannot alias it and vectorises the row loop
    for (int j = 0; j < w; ++j) acc[j] = op.identity();
    int64_t r = rb;
    if (sk == 1) {
      // Four rows per pass over the tile: a quarter of the accumulator loads and stores.
      for (; r + 4 <= re; r += 4) {
        const T* p0 = base + g.red_offset(r);
        const T* p1 = base + g.red_offset(r + 1);
        const T* p2 = base + g.red_offset(r + 2);
        const T* p3 = base + g.red_offset(r + 3);
        for (int j = 0; j < w; ++j) {
          A a = op.step(acc[j], load(p0[j]), r);
          a = op.step(a, load(p1[j]), r + 1);
          a = op.step(a, load(p2[j]), r + 2);
          acc[j] = op.step(a, load(p3[j]), r + 3);
        }
      }
      for (; r < re; ++r) {
        const T* p = base + g.red_offset(r);
        for (int j = 0; j < w; ++j) acc[j] = op.step(acc[j], load(p[j]), r);
      }
    } else {
      for (; r < re; ++r) {
        const T* p = base + g.red_offset(r);
        for (int j = 0; j < w; ++j) acc[j] = op.step(acc[j], load(p[j * sk]), r);
      }
    }
    for (int j = 0; j < w; ++j) out[j] = acc[j];
  }

  // scratch holds pairwise_levels(re - rb) tiles of accumulators for the right halves.
  void pairwise_v(const T* base, int64_t sk, int w, int64_t rb, int64_t re, A* acc, A* scratch) const {
    if (re - rb <= kLeafRows) return leaf_v(base, sk, w, rb, re, acc);
    const int64_t mid = rb + (re - rb) / 2;
    pairwise_v(base, sk, w, rb, mid, acc, scratch);
    pairwise_v(base, sk, w, mid, re, scratch, scratch + kTile<A>);
    for (int j = 0; j < w; ++j) acc[j] = op.combine(acc[j], scratch[j]);
  }
};

// Depth of pairwise_v's recursion over n rows.
int64_t pairwise_levels(int64_t n) {
  int64_t levels = 0;
  for (; n > kLeafRows; n -= n / 2) ++levels;
  return levels;
}

// The input offset of consecutive outputs o, o + 1, ... without a division per output.
struct OutputWalker {
  const ReduceGeometry& g;
  int64_t idx[ReduceGeometry::kMaxDims];
  int64_t offset = 0;
  OutputWalker(const ReduceGeometry& geom, int64_t o) : g(geom) {
    for (int d = 0; d < g.out_ndim; ++d) {
      idx[d] = o % g.out_sizes[d];
      o /= g.out_sizes[d];
      offset += idx[d] * g.out_strides[d];
    }
  }
  void next() {
    for (int d = 0; d < g.out_ndim; ++d) {
      offset += g.out_strides[d];
      if (++idx[d] < g.out_sizes[d]) return;
      offset -= idx[d] * g.out_strides[d];
      idx[d] = 0;
    }
  }
};

// Reduces `in` over `g`, calling store(o, acc) once per output o (from several threads, distinct o's).
template <class T, class Op, class Store>
void reduce_loop(const ReduceGeometry& g, const T* in, const Op& op, const Store& store) {
  using A = typename Op::acc_t;
  const int64_t M = g.num_outputs, R = g.reduce_size;
  if (M == 0) return;
  const Reducer<T, Op> rd{g, in, op};
  // Rows shorter than the lanes go vertical too: a tile of outputs read together beats a call per output.
  const bool inner = g.reduce_inner() && R >= kLanes;
  const int64_t b0 = g.out_sizes[0];
  constexpr int kW = kTile<A>;
  // A strided tile (outputs sk apart) spans sk times more memory: narrow it so that it stays in L1.
  const int64_t sk = std::max<int64_t>(1, g.out_strides[0]);
  const int64_t tw = std::clamp<int64_t>(16384 / (sk * static_cast<int64_t>(sizeof(T))), 8, kW);
  const int64_t tiles_per_row = inner ? 1 : (b0 + tw - 1) / tw;
  const int64_t tiles = inner ? M : M / b0 * tiles_per_row;
  const int64_t tile_w = inner ? 1 : std::min<int64_t>(b0, tw);
  const int64_t tile_work = std::max<int64_t>(R, 1) * tile_w;

  auto first_output = [&](int64_t t) { return inner ? t : t / tiles_per_row * b0 + t % tiles_per_row * tw; };
  auto width = [&](int64_t t) {
    return inner ? 1 : static_cast<int>(std::min<int64_t>(tw, b0 - t % tiles_per_row * tw));
  };
  auto compute = [&](int64_t t, int64_t rb, int64_t re, A* acc, A* scratch) {
    const T* base = in + g.out_offset(first_output(t));
    if (inner)
      acc[0] = rd.pairwise_h(base, rb, re);
    else
      rd.pairwise_v(base, g.out_strides[0], width(t), rb, re, acc, scratch);
  };
  auto make_scratch = [&](int64_t rows) {
    return std::make_unique<A[]>(inner ? 1 : static_cast<size_t>(pairwise_levels(rows) * kW + 1));
  };

  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  int64_t splits = 1;
  if (threads > 1 && tiles < 4 * threads && tiles * tile_work > kParallelGrain) {
    const int64_t min_split = std::max<int64_t>(inner ? 4 * kLeaf : kLeafRows, kParallelGrain / 4 / tile_w);
    splits = std::clamp<int64_t>((4 * threads + tiles - 1) / tiles, 1, std::max<int64_t>(1, R / min_split));
  }

  if (splits == 1) {
    const int64_t grain = std::max<int64_t>(1, kParallelGrain / tile_work);
    parallel_for(tiles, grain, [&](int64_t b, int64_t e) {
      if (inner) {  // one output per tile: walk the outputs' offsets
        OutputWalker walk(g, b);
        for (int64_t o = b; o < e; ++o, walk.next()) store(o, rd.pairwise_h(in + walk.offset, 0, R));
        return;
      }
      A acc[kW];
      const auto scratch = make_scratch(R);
      for (int64_t t = b; t < e; ++t) {
        compute(t, 0, R, acc, scratch.get());
        const int64_t o = first_output(t);
        const int w = width(t);
        for (int j = 0; j < w; ++j) store(o + j, acc[j]);
      }
    });
    return;
  }
  const auto partial = std::make_unique<A[]>(static_cast<size_t>(tiles * splits * tile_w));
  parallel_for(tiles * splits, 1, [&](int64_t b, int64_t e) {
    const auto scratch = make_scratch(R / splits + 1);
    for (int64_t task = b; task < e; ++task) {
      const int64_t t = task / splits, s = task % splits;
      compute(t, R * s / splits, R * (s + 1) / splits, &partial[task * tile_w], scratch.get());
    }
  });
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t o = first_output(t);
    const int w = width(t);
    for (int j = 0; j < w; ++j) {
      A acc = partial[t * splits * tile_w + j];
      for (int64_t s = 1; s < splits; ++s) acc = op.combine(acc, partial[(t * splits + s) * tile_w + j]);
      store(o + j, acc);
    }
  }
}

template <class T>
inline constexpr bool is_float_v = std::is_floating_point_v<T> || is_half_like_v<T>;

template <class T>
const T* input_ptr(const Tensor& t) {
  return static_cast<const T*>(t.raw_data());
}
template <class T>
T* output_ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

// out[o] = (Out) op.finish(acc).
template <class Out, class T, class Op>
void reduce_to(const ReduceGeometry& g, const Tensor& in, const Tensor& out, const Op& op) {
  Out* o = output_ptr<Out>(out);
  reduce_loop(g, input_ptr<T>(in), op,
              [o, &op](int64_t i, const typename Op::acc_t& a) { o[i] = cast_value<Out>(op.finish(a)); });
}

template <class T, class Op>
void arg_reduce(const ReduceGeometry& g, const Tensor& in, const Tensor& values, const Tensor& indices, const Op& op) {
  T* v = output_ptr<T>(values);
  int64_t* idx = output_ptr<int64_t>(indices);
  reduce_loop(g, input_ptr<T>(in), op, [v, idx](int64_t i, const typename Op::acc_t& a) {
    if (v) v[i] = cast_value<T>(a.value);
    if (idx) idx[i] = a.index;
  });
}

}  // namespace

void reduce(ReduceKind kind, const Tensor& in, const ReduceGeometry& g, const Tensor& out, const Tensor& indices,
            double correction) {
  switch (kind) {
    case ReduceKind::Sum:
      dispatch_all(in.dtype(), "sum", [&](auto tag) {
        using T = typename decltype(tag)::type;
        if constexpr (is_float_v<T>) {
          reduce_to<T, T>(g, in, out, reduce::SumOp<compute_t<T>>{});
        } else {
          reduce_to<int64_t, T>(g, in, out, reduce::SumOp<int64_t>{});
        }
      });
      return;
    case ReduceKind::Mean:
      dispatch_floating_and_half(in.dtype(), "mean", [&](auto tag) {
        using T = typename decltype(tag)::type;
        using A = compute_t<T>;
        reduce_to<T, T>(g, in, out, reduce::SumOp<A>{static_cast<A>(1.0 / static_cast<double>(g.reduce_size))});
      });
      return;
    case ReduceKind::Var:
      dispatch_floating_and_half(in.dtype(), "var", [&](auto tag) {
        using T = typename decltype(tag)::type;
        reduce_to<T, T>(g, in, out, reduce::WelfordOp<double>{correction});
      });
      return;
    case ReduceKind::Max:
    case ReduceKind::Min:
      dispatch_all(in.dtype(), kind == ReduceKind::Max ? "max" : "min", [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (kind == ReduceKind::Max)
          reduce_to<T, T>(g, in, out, reduce::MaxOp<compute_t<T>>{});
        else
          reduce_to<T, T>(g, in, out, reduce::MinOp<compute_t<T>>{});
      });
      return;
    case ReduceKind::ArgMax:
    case ReduceKind::ArgMin:
      dispatch_all(in.dtype(), kind == ReduceKind::ArgMax ? "argmax" : "argmin", [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (kind == ReduceKind::ArgMax)
          arg_reduce<T>(g, in, out, indices, reduce::ArgMaxOp<compute_t<T>>{});
        else
          arg_reduce<T>(g, in, out, indices, reduce::ArgMinOp<compute_t<T>>{});
      });
      return;
    case ReduceKind::Any:
    case ReduceKind::All:
      dispatch_all(in.dtype(), kind == ReduceKind::Any ? "any" : "all", [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (kind == ReduceKind::Any)
          reduce_to<bool, T>(g, in, out, reduce::AnyOp{});
        else
          reduce_to<bool, T>(g, in, out, reduce::AllOp{});
      });
      return;
  }
}

}  // namespace ember::cpu
