// Reduction combine functors (sum, max/min, arg-max/min, any/all, Welford) and the reduction geometry, shared by
// the CPU loops (kernels/cpu/reduce.cpp) and the CUDA kernels (kernels/cuda/reduce.cu).
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "runtime/macros.h"

namespace ember {

// What a reduction computes. The arg kinds write the int64 position along the (single) reduced dim to
// `indices` and, when `out` is defined, the selected value to `out` (max_with_indices).
enum class ReduceKind : int8_t { Sum, Mean, Var, Max, Min, ArgMax, ArgMin, Any, All };

// Note [Reduction geometry]
// A reduction reads `in` and writes a contiguous `out` of M = num_outputs elements. Both lists below are
// coalesced and innermost first, with size-1 dims dropped:
//  * kept dims: out's dims in out's (row-major) order, so output index o decomposes over them; their
//    strides are the input's (in elements);
//  * reduced dims: sorted by increasing input stride (memory order); reduction index r decomposes over
//    them. With one reduced dim, r is the position along that dim (what argmax reports).
// Each list has at least one entry ({1, 0} stands for "none"), so kernels need no special case for a
// 0-d result or a reduction over nothing. reduce_size == 0 when a reduced dim has size 0: every output
// is then the op's identity, finished (sum 0, any false, mean/var NaN).
struct ReduceGeometry {
  static constexpr int kMaxDims = 16;
  int out_ndim = 1;
  int red_ndim = 1;
  int64_t num_outputs = 1;
  int64_t reduce_size = 1;
  int64_t out_sizes[kMaxDims] = {1};
  int64_t out_strides[kMaxDims] = {0};
  int64_t red_sizes[kMaxDims] = {1};
  int64_t red_strides[kMaxDims] = {0};

  // Input offset (elements) of output o's first reduced element, and of reduction index r from it.
  EMBER_HD int64_t out_offset(int64_t o) const {
    int64_t off = 0;
    for (int d = 0; d < out_ndim; ++d) {
      const int64_t q = o / out_sizes[d];
      off += (o - q * out_sizes[d]) * out_strides[d];
      o = q;
    }
    return off;
  }
  EMBER_HD int64_t red_offset(int64_t r) const {
    if (red_ndim == 1) return r * red_strides[0];
    int64_t off = 0;
    for (int d = 0; d < red_ndim; ++d) {
      const int64_t q = r / red_sizes[d];
      off += (r - q * red_sizes[d]) * red_strides[d];
      r = q;
    }
    return off;
  }
  // Whether the reduced elements of an output are nearer to each other in memory than neighbouring outputs
  // (reduce "horizontally", along rows) rather than the other way round (reduce "vertically", down columns).
  bool reduce_inner() const { return red_sizes[0] > 1 && (out_sizes[0] == 1 || red_strides[0] <= out_strides[0]); }
};

namespace reduce {

template <class T>
EMBER_HD constexpr bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return v != v;
  } else {
    return false;
  }
}

template <class T>
EMBER_HD constexpr T lowest() {
  if constexpr (std::is_floating_point_v<T>) {
    return -std::numeric_limits<T>::infinity();
  } else {
    return std::numeric_limits<T>::lowest();
  }
}
template <class T>
EMBER_HD constexpr T highest() {
  if constexpr (std::is_floating_point_v<T>) {
    return std::numeric_limits<T>::infinity();
  } else {
    return std::numeric_limits<T>::max();
  }
}

// Every op: acc_t; identity(); step(acc, value, index) folds in one element (value already converted to
// the compute type, e.g. float for float16); combine(acc, acc) merges partial results (associative and
// commutative, so any split of the work gives the same answer up to rounding); finish(acc) the result.

template <class A>
struct SumOp {
  using acc_t = A;
  A factor = A(1);  // mean: 1 / count
  EMBER_HD A identity() const { return A(0); }
  template <class V>
  EMBER_HD A step(A a, V v, int64_t) const {
    return a + static_cast<A>(v);
  }
  EMBER_HD A combine(A a, A b) const { return a + b; }
  EMBER_HD A finish(A a) const { return a * factor; }
};

// NaN propagates: the max of anything with a NaN is NaN (as PyTorch).
template <class A>
struct MaxOp {
  using acc_t = A;
  EMBER_HD A identity() const { return lowest<A>(); }
  template <class V>
  EMBER_HD A step(A a, V v, int64_t) const {
    return combine(a, static_cast<A>(v));
  }
  // Bitwise | rather than ||: no branch, so CPU loops over lanes vectorise.
  EMBER_HD A combine(A a, A b) const { return ((a > b) | is_nan(a)) ? a : b; }
  EMBER_HD A finish(A a) const { return a; }
};

template <class A>
struct MinOp {
  using acc_t = A;
  EMBER_HD A identity() const { return highest<A>(); }
  template <class V>
  EMBER_HD A step(A a, V v, int64_t) const {
    return combine(a, static_cast<A>(v));
  }
  EMBER_HD A combine(A a, A b) const { return ((a < b) | is_nan(a)) ? a : b; }
  EMBER_HD A finish(A a) const { return a; }
};

template <class A>
struct ValueIndex {
  A value;
  int64_t index;
};

// The first extreme element: ties go to the lower index, a NaN beats any number (the first NaN wins), as
// PyTorch's CPU kernels. The identity carries index INT64_MAX so that any real element beats it on a tie.
template <class A, bool Greater>
struct ArgOp {
  using acc_t = ValueIndex<A>;
  EMBER_HD acc_t identity() const { return {Greater ? lowest<A>() : highest<A>(), INT64_MAX}; }
  template <class V>
  EMBER_HD acc_t step(acc_t a, V v, int64_t i) const {
    return combine(a, acc_t{static_cast<A>(v), i});
  }
  EMBER_HD acc_t combine(acc_t a, acc_t b) const {
    const bool an = is_nan(a.value), bn = is_nan(b.value);
    bool take_a;
    if (an || bn)
      take_a = an && (!bn || a.index < b.index);
    else if (a.value == b.value)
      take_a = a.index < b.index;
    else
      take_a = Greater ? a.value > b.value : a.value < b.value;
    return take_a ? a : b;
  }
  EMBER_HD acc_t finish(acc_t a) const { return a; }
};
template <class A>
using ArgMaxOp = ArgOp<A, true>;
template <class A>
using ArgMinOp = ArgOp<A, false>;

struct AnyOp {
  using acc_t = bool;
  EMBER_HD bool identity() const { return false; }
  template <class V>
  EMBER_HD bool step(bool a, V v, int64_t) const {
    return a || v != V(0);
  }
  EMBER_HD bool combine(bool a, bool b) const { return a || b; }
  EMBER_HD bool finish(bool a) const { return a; }
};

struct AllOp {
  using acc_t = bool;
  EMBER_HD bool identity() const { return true; }
  template <class V>
  EMBER_HD bool step(bool a, V v, int64_t) const {
    return a && v != V(0);
  }
  EMBER_HD bool combine(bool a, bool b) const { return a && b; }
  EMBER_HD bool finish(bool a) const { return a; }
};

template <class A>
struct WelfordAcc {
  A mean;
  A m2;
  int64_t n;
};

// Variance by Welford's update and Chan et al.'s merge: one pass, no cancellation of large squares.
template <class A>
struct WelfordOp {
  using acc_t = WelfordAcc<A>;
  A correction = A(1);  // 1: unbiased (divide by n - 1), 0: biased
  EMBER_HD acc_t identity() const { return {A(0), A(0), 0}; }
  template <class V>
  EMBER_HD acc_t step(acc_t a, V v, int64_t) const {
    const A x = static_cast<A>(v);
    a.n += 1;
    const A d = x - a.mean;
    a.mean += d / static_cast<A>(a.n);
    a.m2 += d * (x - a.mean);
    return a;
  }
  EMBER_HD acc_t combine(acc_t a, acc_t b) const {
    if (b.n == 0) return a;
    if (a.n == 0) return b;
    const int64_t n = a.n + b.n;
    const A nb = static_cast<A>(b.n) / static_cast<A>(n);
    const A d = b.mean - a.mean;
    a.mean += d * nb;
    a.m2 += b.m2 + d * d * static_cast<A>(a.n) * nb;
    a.n = n;
    return a;
  }
  // n - correction <= 0 gives 0/0 = NaN (or inf), as PyTorch.
  EMBER_HD A finish(acc_t a) const {
    const A dof = static_cast<A>(a.n) - correction;
    return a.m2 / (dof > A(0) ? dof : A(0));
  }
};

}  // namespace reduce
}  // namespace ember
