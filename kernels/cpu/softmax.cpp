// CPU softmax and log_softmax, forward and fused backward: row loops (softmax over the innermost dim) and
// column blocks (softmax over an outer dim, vectorised along the contiguous inner positions).
//
// Note [CPU softmax vectorisation]
// Without -ffast-math the compiler neither vectorises std::exp nor reorders a float sum, so both are spelled
// out: exp_lanes is a branch-free exp (Cephes' range reduction and degree-6 polynomial, within 2 ulp of expf)
// whose clamps compare float bit patterns as integers (a float compare could trap, which blocks the
// if-conversion that vectorisation needs), and row maxima and sums run in kLanes independent lanes. The
// float32 path keeps the exponentials in the output between the sum and the scaling pass. Maxima compare the
// same integer keys.
#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"
#include "kernels/dispatch.h"
#include "kernels/shared/cast.h"

namespace ember::cpu {

namespace {

constexpr int kLanes = 16;
// Inner positions handled together when the softmax dim is not the innermost one.
constexpr int64_t kChunk = 64;

// An order-preserving map between float bit patterns and int32 (negative floats reversed).
constexpr int32_t order_key(float x) {
  const int32_t i = std::bit_cast<int32_t>(x);
  return i ^ ((i >> 31) & 0x7fffffff);
}
constexpr float from_order_key(int32_t k) { return std::bit_cast<float>(k ^ ((k >> 31) & 0x7fffffff)); }

// exp(x) for the x <= 0 of softmax (shifted logits, log-probabilities); exact 0 below -87, NaN kept.
// Note [CPU softmax vectorisation].
EMBER_ALWAYS_INLINE float exp_lanes(float x) {
  constexpr int32_t lo = order_key(-87.0f), hi = order_key(88.3f);
  int32_t k = order_key(x);
  k = k < lo ? lo : k;
  k = k > hi ? hi : k;
  const float xc = from_order_key(k);
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  const uint32_t y = std::bit_cast<uint32_t>(p * scale);
  const uint32_t xb = std::bit_cast<uint32_t>(x);
  const uint32_t nan = 0u - static_cast<uint32_t>((xb & 0x7fffffffu) > 0x7f800000u);
  const uint32_t keep = 0u - static_cast<uint32_t>(order_key(x) >= lo);
  return std::bit_cast<float>((y & keep & ~nan) | (xb & nan));
}
EMBER_ALWAYS_INLINE double exp_lanes(double x) { return std::exp(x); }

template <class T>
EMBER_ALWAYS_INLINE compute_t<T> ld(T v) {
  return cast_value<compute_t<T>>(v);
}

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(work_per_item, 1));
}

// Folds f(i) for i in [0, n) with combine, in kLanes independent lanes (vectorisable).
template <class A, class F, class C>
EMBER_ALWAYS_INLINE A lanes_reduce(int64_t n, A init, F f, C combine) {
  A lane[kLanes];
  for (int j = 0; j < kLanes; ++j) lane[j] = init;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lane[j] = combine(lane[j], f(i + j));
  for (int j = 0; i < n; ++i, ++j) lane[j] = combine(lane[j], f(i));
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int j = 0; j < w; ++j) lane[j] = combine(lane[j], lane[j + w]);
  return lane[0];
}

// max through the integer order keys (vectorisable); a NaN in the row makes every output NaN either way.
EMBER_ALWAYS_INLINE float max_of(float a, float b) {
  const int32_t ka = order_key(a), kb = order_key(b);
  return from_order_key(ka < kb ? kb : ka);
}
EMBER_ALWAYS_INLINE double max_of(double a, double b) { return a < b ? b : a; }

constexpr auto kMax = [](auto a, auto b) { return max_of(a, b); };
constexpr auto kPlus = [](auto a, auto b) { return a + b; };

// One row of softmax / log_softmax over n contiguous elements.
template <class T>
EMBER_ALWAYS_INLINE void forward_row(const T* xr, T* yr, int64_t n, bool log) {
  using A = compute_t<T>;
  const A m = lanes_reduce(
      n, -std::numeric_limits<A>::infinity(), [&](int64_t i) { return ld(xr[i]); }, kMax);
  if constexpr (std::is_same_v<A, T>) {
    // The exponentials wait in the output for the scaling pass.
    for (int64_t i = 0; i < n; ++i) yr[i] = exp_lanes(xr[i] - m);
    const A s = lanes_reduce(
        n, A(0), [&](int64_t i) { return yr[i]; }, kPlus);
    if (log) {
      const A log_s = std::log(s);
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) - log_s;
    } else {
      const A inv = A(1) / s;
      for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
    }
  } else {
    const A s = lanes_reduce(
        n, A(0), [&](int64_t i) { return exp_lanes(ld(xr[i]) - m); }, kPlus);
    if (log) {
      const A log_s = std::log(s);
      for (int64_t i = 0; i < n; ++i) yr[i] = cast_value<T>((ld(xr[i]) - m) - log_s);
    } else {
      const A inv = A(1) / s;
      for (int64_t i = 0; i < n; ++i) yr[i] = cast_value<T>(exp_lanes(ld(xr[i]) - m) * inv);
    }
  }
}

// Note [CPU ISA clones]
// ember is built for the baseline x86-64 ISA (SSE2: 4 floats a vector) so that the library runs on any
// x86-64 machine. The float32 row loops, which are bound by the arithmetic of exp rather than by memory,
// also get AVX2 and AVX-512 clones (8 and 16 floats a vector) that the loader picks on CPUs that have
// them (GCC's target_clones, resolved once through an ifunc). The library is built with -ffp-contract=off, so
// no clone fuses a*b+c and every clone rounds the same way. log_softmax over 4096x1000 float32 on 2
// cores (bench_torch_compare): 5.1 ms with SSE2 only, 2.3 ms with AVX2, 1.6-1.9 ms with AVX-512, where
// LibTorch 1.13 takes 1.8-2.0 ms.
// EMBER_ISA_CLONES is defined in kernels/cpu/isa.h; sanitizer builds define it empty (their runtime is not up
// yet when the loader runs the clones' ifunc resolvers, cmake/EmberSanitizers.cmake).

EMBER_ISA_CLONES void forward_rows_f32(const float* x, float* y, int64_t b, int64_t e, int64_t n, bool log) {
  for (int64_t r = b; r < e; ++r) forward_row(x + r * n, y + r * n, n, log);
}

template <class T>
void forward_rows(const T* x, T* y, int64_t rows, int64_t n, bool log) {
  parallel_for(rows, grain_for(n), [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<T, float>) {
      forward_rows_f32(x, y, b, e, n, log);
    } else {
      for (int64_t r = b; r < e; ++r) forward_row(x + r * n, y + r * n, n, log);
    }
  });
}

template <class T>
void forward_columns(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, bool log) {
  using A = compute_t<T>;
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
  parallel_for(outer * chunks, grain_for(n * kChunk), [&](int64_t b, int64_t e) {
    A m[kChunk], s[kChunk];
    for (int64_t task = b; task < e; ++task) {
      const int64_t i0 = task % chunks * kChunk;
      const int64_t w = std::min(kChunk, inner - i0);
      const int64_t base = task / chunks * n * inner + i0;
      const T* xb = x + base;
      T* yb = y + base;
      for (int64_t j = 0; j < w; ++j) {
        m[j] = -std::numeric_limits<A>::infinity();
        s[j] = 0;
      }
      for (int64_t c = 0; c < n; ++c)
        for (int64_t j = 0; j < w; ++j) m[j] = max_of(m[j], ld(xb[c * inner + j]));
      for (int64_t c = 0; c < n; ++c)
        for (int64_t j = 0; j < w; ++j) s[j] += exp_lanes(ld(xb[c * inner + j]) - m[j]);
      if (log) {
        for (int64_t j = 0; j < w; ++j) s[j] = std::log(s[j]);
        for (int64_t c = 0; c < n; ++c)
          for (int64_t j = 0; j < w; ++j) yb[c * inner + j] = cast_value<T>((ld(xb[c * inner + j]) - m[j]) - s[j]);
      } else {
        for (int64_t j = 0; j < w; ++j) s[j] = A(1) / s[j];
        for (int64_t c = 0; c < n; ++c)
          for (int64_t j = 0; j < w; ++j)
            yb[c * inner + j] = cast_value<T>(exp_lanes(ld(xb[c * inner + j]) - m[j]) * s[j]);
      }
    }
  });
}

template <class T>
EMBER_ALWAYS_INLINE void backward_row(const T* gr, const T* yr, T* out, int64_t n, bool log) {
  using A = compute_t<T>;
  if (log) {
    const A sum = lanes_reduce(
        n, A(0), [&](int64_t i) { return ld(gr[i]); }, kPlus);
    for (int64_t i = 0; i < n; ++i) out[i] = cast_value<T>(ld(gr[i]) - exp_lanes(ld(yr[i])) * sum);
  } else {
    const A dot = lanes_reduce(
        n, A(0), [&](int64_t i) { return ld(gr[i]) * ld(yr[i]); }, kPlus);
    for (int64_t i = 0; i < n; ++i) out[i] = cast_value<T>(ld(yr[i]) * (ld(gr[i]) - dot));
  }
}

EMBER_ISA_CLONES void backward_rows_f32(const float* g, const float* y, float* gx, int64_t b, int64_t e, int64_t n,
                                        bool log) {
  for (int64_t r = b; r < e; ++r) backward_row(g + r * n, y + r * n, gx + r * n, n, log);
}

template <class T>
void backward_rows(const T* g, const T* y, T* gx, int64_t rows, int64_t n, bool log) {
  parallel_for(rows, grain_for(n), [&](int64_t b, int64_t e) {
    if constexpr (std::is_same_v<T, float>) {
      backward_rows_f32(g, y, gx, b, e, n, log);
    } else {
      for (int64_t r = b; r < e; ++r) backward_row(g + r * n, y + r * n, gx + r * n, n, log);
    }
  });
}

template <class T>
void backward_columns(const T* g, const T* y, T* gx, int64_t outer, int64_t n, int64_t inner, bool log) {
  using A = compute_t<T>;
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
  parallel_for(outer * chunks, grain_for(n * kChunk), [&](int64_t b, int64_t e) {
    A acc[kChunk];
    for (int64_t task = b; task < e; ++task) {
      const int64_t i0 = task % chunks * kChunk;
      const int64_t w = std::min(kChunk, inner - i0);
      const int64_t base = task / chunks * n * inner + i0;
      const T *gb = g + base, *yb = y + base;
      T* ob = gx + base;
      for (int64_t j = 0; j < w; ++j) acc[j] = 0;
      if (log) {
        for (int64_t c = 0; c < n; ++c)
          for (int64_t j = 0; j < w; ++j) acc[j] += ld(gb[c * inner + j]);
        for (int64_t c = 0; c < n; ++c)
          for (int64_t j = 0; j < w; ++j) {
            const int64_t k = c * inner + j;
            ob[k] = cast_value<T>(ld(gb[k]) - exp_lanes(ld(yb[k])) * acc[j]);
          }
      } else {
        for (int64_t c = 0; c < n; ++c)
          for (int64_t j = 0; j < w; ++j) acc[j] += ld(gb[c * inner + j]) * ld(yb[c * inner + j]);
        for (int64_t c = 0; c < n; ++c)
          for (int64_t j = 0; j < w; ++j) {
            const int64_t k = c * inner + j;
            ob[k] = cast_value<T>(ld(yb[k]) * (ld(gb[k]) - acc[j]));
          }
      }
    }
  });
}

}  // namespace

void softmax_forward(const Tensor& in, const Tensor& out, int64_t outer, int64_t dim_size, int64_t inner, bool log) {
  if (out.numel() == 0) return;
  dispatch_floating_and_half(in.dtype(), log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = static_cast<const T*>(in.raw_data());
    T* y = static_cast<T*>(out.raw_data());
    if (inner == 1)
      forward_rows(x, y, outer, dim_size, log);
    else
      forward_columns(x, y, outer, dim_size, inner, log);
  });
}

void softmax_backward(const Tensor& grad_out, const Tensor& out, const Tensor& grad_in, int64_t outer, int64_t dim_size,
                      int64_t inner, bool log) {
  if (grad_in.numel() == 0) return;
  dispatch_floating_and_half(out.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = static_cast<const T*>(grad_out.raw_data());
    const T* y = static_cast<const T*>(out.raw_data());
    T* gx = static_cast<T*>(grad_in.raw_data());
    if (inner == 1)
      backward_rows(g, y, gx, outer, dim_size, log);
    else
      backward_columns(g, y, gx, outer, dim_size, inner, log);
  });
}

}  // namespace ember::cpu
