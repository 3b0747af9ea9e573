// CPU kernels of batch norm and layer norm: one-pass statistics, fused normalisation and closed-form backward.
#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"
#include "kernels/dispatch.h"
#include "kernels/shared/cast.h"

namespace ember::cpu {

namespace {

// The dtype of saved statistics (Note [Normalisation kernel contract]).
template <class T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}
template <class T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

struct NCS {
  int64_t n, c, s;
};
NCS ncs_of(const Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1);
  int64_t s = 1;
  for (int64_t d = 2; d < x.dim(); ++d) s *= x.size(d);
  return {n, c, s};
}

// Channels per parallel chunk so that a chunk touches about kParallelGrain elements.
int64_t channel_grain(const NCS& d) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, d.n * d.s)); }

// Note [Batch norm statistics on the CPU]
// Each thread owns a contiguous range of channels and walks the batch once: for every sample n it
// reads the rows (n, c0..c1) in memory order, so an [N, C] input streams row by row (the inner loop
// runs over channels and vectorises) and an [N, C, S] input plane by plane. Sums are taken of
// x - x0 (x0: the channel's first element) in double: one pass, yet free of the cancellation of
// sum(x^2) - sum(x)^2 when |mean| >> std.

// Two sums per channel over (N, S): term(i, c, a, b) adds element i's contributions to channel c's
// accumulators a and b (out_a[c], out_b[c]). Threads own channel ranges (see the note above).
template <class Term>
void channel_sums(const NCS& d, std::vector<double>& out_a, std::vector<double>& out_b, Term term) {
  out_a.assign(static_cast<size_t>(d.c), 0.0);
  out_b.assign(static_cast<size_t>(d.c), 0.0);
  parallel_for(d.c, channel_grain(d), [&](int64_t c0, int64_t c1) {
    double* a = out_a.data();
    double* b = out_b.data();
    for (int64_t n = 0; n < d.n; ++n) {
      if (d.s == 1) {
        const int64_t base = n * d.c;
        for (int64_t c = c0; c < c1; ++c) term(base + c, c, a[c], b[c]);
      } else {
        for (int64_t c = c0; c < c1; ++c) {
          const int64_t base = (n * d.c + c) * d.s;
          double pa = 0, pb = 0;
          for (int64_t s = 0; s < d.s; ++s) term(base + s, c, pa, pb);
          a[c] += pa;
          b[c] += pb;
        }
      }
    }
  });
}

// Note [Batch norm plane loops]
// For an [N, C, S] input (S > 1: BatchNorm2d/3d) the float32 and float64 loops over one (n, c) plane
// are written out below rather than through a per-element functor: the statistics keep kLanes
// independent double accumulators per sum (one chain of dependent double adds ran at a quarter of the
// adder's throughput, and the sums were ~10% of a Fashion-MNIST CNN step on 2 cores), and the
// normalisation takes the channel's constants out of the loop and has no aliasing to fear, so both
// vectorise, in AVX2/AVX-512 clones for float32 (Note [CPU ISA clones]). The sums are the same
// shifted double sums as before, added in another order.
constexpr int kLanes = 8;
// kLanes doubles, and kLanes elements of the input: GCC's vector extensions, which each ISA clone lowers
// to its own registers (4 SSE2, 2 AVX2 or 1 AVX-512 register); lane l of a sum adds elements i + l.
typedef double Lanes __attribute__((vector_size(kLanes * sizeof(double))));
typedef float FloatLanes __attribute__((vector_size(kLanes * sizeof(float))));
// dst = kLanes elements from p, widened to double (vectors by reference: no ABI questions in any clone).
template <class T>
EMBER_ALWAYS_INLINE void load_lanes(Lanes& dst, const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    FloatLanes f;
    std::memcpy(&f, p, sizeof(f));
    dst = __builtin_convertvector(f, Lanes);
  } else {
    std::memcpy(&dst, p, sizeof(dst));
  }
}

double lane_sum(const Lanes& v) {
  double t = 0;
  for (int l = 0; l < kLanes; ++l) t += v[l];
  return t;
}

// Over x[0, n): a += sum(x - shift), q += sum((x - shift)^2).
template <class T>
EMBER_ALWAYS_INLINE void shifted_sums(const T* __restrict__ x, int64_t n, double shift, double& a, double& q) {
  Lanes sa = {}, sq = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Lanes v;
    load_lanes(v, x + i);
    v -= shift;
    sa += v;
    sq += v * v;
  }
  double ta = 0, tq = 0;
  for (; i < n; ++i) {
    const double v = static_cast<double>(x[i]) - shift;
    ta += v;
    tq += v * v;
  }
  a += ta + lane_sum(sa);
  q += tq + lane_sum(sq);
}

// Over [0, n): a += sum(dy), p += sum(dy * (x - mean)).
template <class T>
EMBER_ALWAYS_INLINE void grad_sums(const T* __restrict__ dy, const T* __restrict__ x, int64_t n, double mean, double& a,
                                   double& p) {
  Lanes sa = {}, sp = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Lanes g, v;
    load_lanes(g, dy + i);
    load_lanes(v, x + i);
    sa += g;
    sp += g * (v - mean);
  }
  double ta = 0, tp = 0;
  for (; i < n; ++i) {
    const double g = static_cast<double>(dy[i]);
    ta += g;
    tp += g * (static_cast<double>(x[i]) - mean);
  }
  a += ta + lane_sum(sa);
  p += tp + lane_sum(sp);
}

// Channels [c0, c1) of an [N, C, S] input: the sums of Note [Batch norm statistics on the CPU].
template <class T>
EMBER_ALWAYS_INLINE void stats_planes(const T* x, const NCS& d, int64_t c0, int64_t c1, const double* shift, double* a,
                                      double* q) {
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = c0; c < c1; ++c) shifted_sums(x + (n * d.c + c) * d.s, d.s, shift[c], a[c], q[c]);
}
template <class T>
EMBER_ALWAYS_INLINE void grad_stats_planes(const T* dy, const T* x, const NCS& d, int64_t c0, int64_t c1,
                                           const double* mean, double* a, double* p) {
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t off = (n * d.c + c) * d.s;
      grad_sums(dy + off, x + off, d.s, mean[c], a[c], p[c]);
    }
}
// Planes [i0, i1) (plane i is channel i % C): y = x * scale[c] + offset[c].
template <class T, class C>
EMBER_ALWAYS_INLINE void affine_planes(const T* __restrict__ x, T* __restrict__ y, const NCS& d, int64_t i0, int64_t i1,
                                       const C* scale, const C* offset) {
  for (int64_t i = i0; i < i1; ++i) {
    const C sc = scale[i % d.c], of = offset[i % d.c];
    const T* __restrict__ xp = x + i * d.s;
    T* __restrict__ yp = y + i * d.s;
    for (int64_t s = 0; s < d.s; ++s) yp[s] = static_cast<T>(static_cast<C>(xp[s]) * sc + of);
  }
}
// Planes [i0, i1): dx = dy * k_dy[c] - (x - m[c]) * k_x[c] + k_0[c].
template <class T, class C>
EMBER_ALWAYS_INLINE void grad_input_planes(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                                           const NCS& d, int64_t i0, int64_t i1, const C* k_dy, const C* k_x,
                                           const C* k_0, const C* m) {
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t c = i % d.c;
    const C a = k_dy[c], b = k_x[c], z = k_0[c], mc = m[c];
    const int64_t off = i * d.s;
    for (int64_t s = 0; s < d.s; ++s)
      dx[off + s] = static_cast<T>(static_cast<C>(dy[off + s]) * a - (static_cast<C>(x[off + s]) - mc) * b + z);
  }
}

EMBER_ISA_CLONES void stats_planes_f32(const float* x, const NCS& d, int64_t c0, int64_t c1, const double* shift,
                                       double* a, double* q) {
  stats_planes(x, d, c0, c1, shift, a, q);
}
EMBER_ISA_CLONES void grad_stats_planes_f32(const float* dy, const float* x, const NCS& d, int64_t c0, int64_t c1,
                                            const double* mean, double* a, double* p) {
  grad_stats_planes(dy, x, d, c0, c1, mean, a, p);
}
EMBER_ISA_CLONES void affine_planes_f32(const float* x, float* y, const NCS& d, int64_t i0, int64_t i1,
                                        const float* scale, const float* offset) {
  affine_planes(x, y, d, i0, i1, scale, offset);
}
EMBER_ISA_CLONES void grad_input_planes_f32(const float* dy, const float* x, float* dx, const NCS& d, int64_t i0,
                                            int64_t i1, const float* k_dy, const float* k_x, const float* k_0,
                                            const float* m) {
  grad_input_planes(dy, x, dx, d, i0, i1, k_dy, k_x, k_0, m);
}
void stats_range(const float* x, const NCS& d, int64_t c0, int64_t c1, const double* shift, double* a, double* q) {
  stats_planes_f32(x, d, c0, c1, shift, a, q);
}
void stats_range(const double* x, const NCS& d, int64_t c0, int64_t c1, const double* shift, double* a, double* q) {
  stats_planes(x, d, c0, c1, shift, a, q);
}
void grad_stats_range(const float* dy, const float* x, const NCS& d, int64_t c0, int64_t c1, const double* mean,
                      double* a, double* p) {
  grad_stats_planes_f32(dy, x, d, c0, c1, mean, a, p);
}
void grad_stats_range(const double* dy, const double* x, const NCS& d, int64_t c0, int64_t c1, const double* mean,
                      double* a, double* p) {
  grad_stats_planes(dy, x, d, c0, c1, mean, a, p);
}
void affine_range(const float* x, float* y, const NCS& d, int64_t i0, int64_t i1, const float* scale,
                  const float* offset) {
  affine_planes_f32(x, y, d, i0, i1, scale, offset);
}
void affine_range(const double* x, double* y, const NCS& d, int64_t i0, int64_t i1, const double* scale,
                  const double* offset) {
  affine_planes(x, y, d, i0, i1, scale, offset);
}
void grad_input_range(const float* dy, const float* x, float* dx, const NCS& d, int64_t i0, int64_t i1,
                      const float* k_dy, const float* k_x, const float* k_0, const float* m) {
  grad_input_planes_f32(dy, x, dx, d, i0, i1, k_dy, k_x, k_0, m);
}
void grad_input_range(const double* dy, const double* x, double* dx, const NCS& d, int64_t i0, int64_t i1,
                      const double* k_dy, const double* k_x, const double* k_0, const double* m) {
  grad_input_planes(dy, x, dx, d, i0, i1, k_dy, k_x, k_0, m);
}

// float32 and float64 [N, C, S > 1] inputs take the plane loops above.
template <class T>
constexpr bool kPlaneLoops = std::is_same_v<T, float> || std::is_same_v<T, double>;

// Plane-loop versions of channel_sums (statistics and gradient sums) and channel_map.
void plane_stats(const NCS& d, std::vector<double>& out_a, std::vector<double>& out_b,
                 const std::function<void(int64_t, int64_t, double*, double*)>& range) {
  out_a.assign(static_cast<size_t>(d.c), 0.0);
  out_b.assign(static_cast<size_t>(d.c), 0.0);
  parallel_for(d.c, channel_grain(d), [&](int64_t c0, int64_t c1) { range(c0, c1, out_a.data(), out_b.data()); });
}
int64_t plane_grain(const NCS& d) { return std::max<int64_t>(1, kParallelGrain / d.s); }

// out[i] = f(i, c) over every element, parallel over rows ([N, C]) or planes ([N, C, S]).
template <class T, class F>
void channel_map(const NCS& d, T* out, F f) {
  if (d.s == 1) {
    parallel_for(d.n, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, d.c)), [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t c = 0; c < d.c; ++c) out[n * d.c + c] = f(n * d.c + c, c);
    });
  } else {
    parallel_for(d.n * d.c, std::max<int64_t>(1, kParallelGrain / d.s), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t c = i % d.c;
        for (int64_t s = 0; s < d.s; ++s) out[i * d.s + s] = f(i * d.s + s, c);
      }
    });
  }
}

template <class T>
void bn_forward_typed(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                      const Tensor& running_var, bool training, double momentum, double eps, const Tensor& out,
                      const Tensor& save_mean, const Tensor& save_invstd) {
  using S = stat_t<T>;
  using C = compute_t<T>;
  const NCS d = ncs_of(input);
  const T* x = static_cast<const T*>(input.raw_data());
  T* y = static_cast<T*>(out.raw_data());
  const T* w = ptr_or_null<T>(weight);
  const T* b = ptr_or_null<T>(bias);
  T* rm = mut_ptr_or_null<T>(running_mean);
  T* rv = mut_ptr_or_null<T>(running_var);
  S* mean = static_cast<S*>(save_mean.raw_data());
  S* invstd = static_cast<S*>(save_invstd.raw_data());

  if (training) {
    const double count = static_cast<double>(d.n * d.s);
    std::vector<double> shift(static_cast<size_t>(d.c)), sum, sq;
    for (int64_t c = 0; c < d.c; ++c) shift[c] = static_cast<double>(x[c * d.s]);
    if constexpr (kPlaneLoops<T>) {
      if (d.s > 1) {  // Note [Batch norm plane loops]
        plane_stats(d, sum, sq, [&](int64_t c0, int64_t c1, double* a, double* q) {
          stats_range(x, d, c0, c1, shift.data(), a, q);
        });
      }
    }
    if (!(kPlaneLoops<T> && d.s > 1)) {
      channel_sums(d, sum, sq, [&](int64_t i, int64_t c, double& a, double& q) {
        const double v = static_cast<double>(x[i]) - shift[c];
        a += v;
        q += v * v;
      });
    }
    for (int64_t c = 0; c < d.c; ++c) {
      const double m = shift[c] + sum[c] / count;
      const double m2 = std::max(0.0, sq[c] - sum[c] * sum[c] / count);  // sum of squared deviations
      mean[c] = static_cast<S>(m);
      invstd[c] = static_cast<S>(1.0 / std::sqrt(m2 / count + eps));
      if (rm) rm[c] = cast_value<T>((1.0 - momentum) * static_cast<double>(rm[c]) + momentum * m);
      if (rv) rv[c] = cast_value<T>((1.0 - momentum) * static_cast<double>(rv[c]) + momentum * (m2 / (count - 1.0)));
    }
  } else {
    for (int64_t c = 0; c < d.c; ++c) {
      mean[c] = static_cast<S>(static_cast<double>(rm[c]));
      invstd[c] = static_cast<S>(1.0 / std::sqrt(static_cast<double>(rv[c]) + eps));
    }
  }

  // y = x * scale + shift per channel.
  std::vector<C> scale(static_cast<size_t>(d.c)), offset(static_cast<size_t>(d.c));
  for (int64_t c = 0; c < d.c; ++c) {
    scale[c] = static_cast<C>(invstd[c]) * (w ? static_cast<C>(w[c]) : C(1));
    offset[c] = (b ? static_cast<C>(b[c]) : C(0)) - static_cast<C>(mean[c]) * scale[c];
  }
  if constexpr (kPlaneLoops<T>) {
    if (d.s > 1) {  // Note [Batch norm plane loops]
      parallel_for(d.n * d.c, plane_grain(d),
                   [&](int64_t i0, int64_t i1) { affine_range(x, y, d, i0, i1, scale.data(), offset.data()); });
      return;
    }
  }
  channel_map(d, y, [&](int64_t i, int64_t c) { return cast_value<T>(static_cast<C>(x[i]) * scale[c] + offset[c]); });
}

template <class T>
void bn_backward_typed(const Tensor& grad_out, const Tensor& input, const Tensor& weight, const Tensor& save_mean,
                       const Tensor& save_invstd, bool training, const Tensor& grad_input, const Tensor& grad_weight,
                       const Tensor& grad_bias) {
  using S = stat_t<T>;
  using C = compute_t<T>;
  const NCS d = ncs_of(input);
  const T* x = static_cast<const T*>(input.raw_data());
  const T* dy = static_cast<const T*>(grad_out.raw_data());
  const T* w = ptr_or_null<T>(weight);
  const S* mean = static_cast<const S*>(save_mean.raw_data());
  const S* invstd = static_cast<const S*>(save_invstd.raw_data());
  T* dx = mut_ptr_or_null<T>(grad_input);
  T* dw = mut_ptr_or_null<T>(grad_weight);
  T* db = mut_ptr_or_null<T>(grad_bias);
  const double count = static_cast<double>(d.n * d.s);

  // Per channel: sum(dy) and sum(dy * (x - mean)), needed by dx in training and by dw/db.
  std::vector<double> sum_dy, sum_dy_xmu;
  if ((dx && training) || dw || db) {
    if constexpr (kPlaneLoops<T>) {
      if (d.s > 1) {  // Note [Batch norm plane loops]
        std::vector<double> mean_d(static_cast<size_t>(d.c));
        for (int64_t c = 0; c < d.c; ++c) mean_d[c] = static_cast<double>(mean[c]);
        plane_stats(d, sum_dy, sum_dy_xmu, [&](int64_t c0, int64_t c1, double* a, double* p) {
          grad_stats_range(dy, x, d, c0, c1, mean_d.data(), a, p);
        });
      }
    }
    if (!(kPlaneLoops<T> && d.s > 1)) {
      channel_sums(d, sum_dy, sum_dy_xmu, [&](int64_t i, int64_t c, double& a, double& p) {
        const double g = static_cast<double>(dy[i]);
        a += g;
        p += g * (static_cast<double>(x[i]) - static_cast<double>(mean[c]));
      });
    }
    for (int64_t c = 0; c < d.c; ++c) {
      if (dw) dw[c] = cast_value<T>(sum_dy_xmu[c] * static_cast<double>(invstd[c]));
      if (db) db[c] = cast_value<T>(sum_dy[c]);
    }
  }
  if (!dx) return;
  // Training: dx = (dy - sum_dy / M - (x - mean) * invstd^2 * sum_dy_xmu / M) * invstd * w, folded into
  // dx = dy * k_dy - (x - mean) * k_x + k_0 per channel. Eval: dx = dy * invstd * w (k_x = k_0 = 0).
  const size_t nc = static_cast<size_t>(d.c);
  std::vector<C> k_dy(nc), k_x(nc, C(0)), k_0(nc, C(0)), m(nc);
  for (int64_t c = 0; c < d.c; ++c) {
    const double is = static_cast<double>(invstd[c]);
    const double scale = is * (w ? static_cast<double>(w[c]) : 1.0);
    k_dy[c] = static_cast<C>(scale);
    m[c] = static_cast<C>(mean[c]);
    if (training) {
      k_x[c] = static_cast<C>(sum_dy_xmu[c] / count * is * is * scale);
      k_0[c] = static_cast<C>(-sum_dy[c] / count * scale);
    }
  }
  if constexpr (kPlaneLoops<T>) {
    if (d.s > 1) {  // Note [Batch norm plane loops]
      parallel_for(d.n * d.c, plane_grain(d), [&](int64_t i0, int64_t i1) {
        grad_input_range(dy, x, dx, d, i0, i1, k_dy.data(), k_x.data(), k_0.data(), m.data());
      });
      return;
    }
  }
  channel_map(d, dx, [&](int64_t i, int64_t c) {
    return cast_value<T>(static_cast<C>(dy[i]) * k_dy[c] - (static_cast<C>(x[i]) - m[c]) * k_x[c] + k_0[c]);
  });
}

int64_t row_grain(int64_t N) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, N)); }

template <class T>
void ln_forward_typed(const Tensor& input, const Tensor& weight, const Tensor& bias, int64_t M, int64_t N, double eps,
                      const Tensor& out, const Tensor& mean_t, const Tensor& rstd_t) {
  using S = stat_t<T>;
  using C = compute_t<T>;
  const T* x = static_cast<const T*>(input.raw_data());
  T* y = static_cast<T*>(out.raw_data());
  const T* w = ptr_or_null<T>(weight);
  const T* b = ptr_or_null<T>(bias);
  S* mean = static_cast<S*>(mean_t.raw_data());
  S* rstd = static_cast<S*>(rstd_t.raw_data());
  parallel_for(M, row_grain(N), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * N;
      T* yr = y + r * N;
      // Two passes over a row that sits in cache: exact mean first, then the squared deviations.
      double a = 0;
      for (int64_t j = 0; j < N; ++j) a += static_cast<double>(xr[j]);
      const double m = N > 0 ? a / static_cast<double>(N) : 0.0;
      double q = 0;
      for (int64_t j = 0; j < N; ++j) {
        const double v = static_cast<double>(xr[j]) - m;
        q += v * v;
      }
      const double rs = 1.0 / std::sqrt((N > 0 ? q / static_cast<double>(N) : 0.0) + eps);
      mean[r] = static_cast<S>(m);
      rstd[r] = static_cast<S>(rs);
      const C mc = static_cast<C>(m), rc = static_cast<C>(rs);
      for (int64_t j = 0; j < N; ++j) {
        C v = (static_cast<C>(xr[j]) - mc) * rc;
        if (w) v *= static_cast<C>(w[j]);
        if (b) v += static_cast<C>(b[j]);
        yr[j] = cast_value<T>(v);
      }
    }
  });
}

template <class T>
void ln_backward_typed(const Tensor& grad_out, const Tensor& input, const Tensor& mean_t, const Tensor& rstd_t,
                       const Tensor& weight, int64_t M, int64_t N, const Tensor& grad_input, const Tensor& grad_weight,
                       const Tensor& grad_bias) {
  using S = stat_t<T>;
  const T* x = static_cast<const T*>(input.raw_data());
  const T* dy = static_cast<const T*>(grad_out.raw_data());
  const T* w = ptr_or_null<T>(weight);
  const S* mean = static_cast<const S*>(mean_t.raw_data());
  const S* rstd = static_cast<const S*>(rstd_t.raw_data());
  T* dx = mut_ptr_or_null<T>(grad_input);
  T* dw = mut_ptr_or_null<T>(grad_weight);
  T* db = mut_ptr_or_null<T>(grad_bias);

  if (dx) {
    // With g = dy * w and xhat = (x - mean) * rstd:
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
    parallel_for(M, row_grain(N), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * N;
        const T* gr = dy + r * N;
        T* out = dx + r * N;
        const double m = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
        double sg = 0, sgx = 0;
        for (int64_t j = 0; j < N; ++j) {
          const double g = static_cast<double>(gr[j]) * (w ? static_cast<double>(w[j]) : 1.0);
          sg += g;
          sgx += g * (static_cast<double>(xr[j]) - m) * rs;
        }
        const double a = sg / static_cast<double>(N), bq = sgx / static_cast<double>(N);
        for (int64_t j = 0; j < N; ++j) {
          const double g = static_cast<double>(gr[j]) * (w ? static_cast<double>(w[j]) : 1.0);
          const double xh = (static_cast<double>(xr[j]) - m) * rs;
          out[j] = cast_value<T>(rs * (g - a - xh * bq));
        }
      }
    });
  }
  if (dw || db) {
    // Column sums over the rows: each thread owns a range of columns and streams every row's slice.
    parallel_for(N, std::max<int64_t>(16, kParallelGrain / std::max<int64_t>(1, M)), [&](int64_t j0, int64_t j1) {
      std::vector<double> aw(static_cast<size_t>(j1 - j0), 0.0), ab(static_cast<size_t>(j1 - j0), 0.0);
      for (int64_t r = 0; r < M; ++r) {
        const T* xr = x + r * N;
        const T* gr = dy + r * N;
        const double m = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
        for (int64_t j = j0; j < j1; ++j) {
          const double g = static_cast<double>(gr[j]);
          aw[j - j0] += g * (static_cast<double>(xr[j]) - m) * rs;
          ab[j - j0] += g;
        }
      }
      for (int64_t j = j0; j < j1; ++j) {
        if (dw) dw[j] = cast_value<T>(aw[j - j0]);
        if (db) db[j] = cast_value<T>(ab[j - j0]);
      }
    });
  }
}

}  // namespace

void batch_norm_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                        const Tensor& running_var, bool training, double momentum, double eps, const Tensor& out,
                        const Tensor& save_mean, const Tensor& save_invstd) {
  dispatch_floating_and_half(input.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    bn_forward_typed<T>(input, weight, bias, running_mean, running_var, training, momentum, eps, out, save_mean,
                        save_invstd);
  });
}

void batch_norm_backward(const Tensor& grad_out, const Tensor& input, const Tensor& weight, const Tensor& save_mean,
                         const Tensor& save_invstd, bool training, const Tensor& grad_input,
                         const Tensor& grad_weight, const Tensor& grad_bias) {
  dispatch_floating_and_half(input.dtype(), "batch_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    bn_backward_typed<T>(grad_out, input, weight, save_mean, save_invstd, training, grad_input, grad_weight,
                         grad_bias);
  });
}

void layer_norm_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, int64_t M, int64_t N,
                        double eps, const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  dispatch_floating_and_half(input.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    ln_forward_typed<T>(input, weight, bias, M, N, eps, out, mean, rstd);
  });
}

void layer_norm_backward(const Tensor& grad_out, const Tensor& input, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, int64_t M, int64_t N, const Tensor& grad_input,
                         const Tensor& grad_weight, const Tensor& grad_bias) {
  dispatch_floating_and_half(input.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    ln_backward_typed<T>(grad_out, input, mean, rstd, weight, M, N, grad_input, grad_weight, grad_bias);
  });
}

}  // namespace ember::cpu
