// CPU pooling: max (with argmax indices), average and adaptive average, forward and backward.
#include "kernels/cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"
#include "kernels/dispatch.h"

namespace ember::cpu {

namespace {

using pool::Pool2dGeometry;

// Runs body(plane) for every (image, channel) plane, `work` elements each, over OpenMP threads.
template <class F>
void for_each_plane(int64_t planes, int64_t work, F&& body) {
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(work, 1));
  parallel_for(planes, grain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) body(p);
  });
}

int64_t planes_of(const Tensor& t) { return t.numel() == 0 ? 0 : t.size(0) * t.size(1); }

// Note [2x2 max pooling]
// The CNNs' pooling, kernel 2 and stride 2 without padding or dilation, has a loop of its own: the
// generic one works out each window's bounds and walks it with an index select, 8-16% of a
// Fashion-MNIST CNN step on 2 cores. Here every window lies inside the input, the four candidates are read in
// PyTorch's scan order (row by row) with its rule (strictly greater wins, so the first maximum on
// ties; a NaN always wins, so the last NaN), several windows at a time in vector registers, with
// AVX2/AVX-512 clones (Note [CPU ISA clones]). Measured on 2048 planes of 28x28 and 4096 of 14x14, one
// thread: 6.6 and 12.5 ns a window with the generic loop, 1.8 and 3.2 ns here. The backward pass stays
// the generic zero-fill and scatter, which is cheaper than selecting per input element.
bool is_2x2_tiling(const Pool2dGeometry& g) {
  return g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 0 && g.pad_w == 0 &&
         g.dilation_h == 1 && g.dilation_w == 1 && 2 * g.out_h <= g.in_h && 2 * g.out_w <= g.in_w;
}

// One row of windows, one window at a time: input rows r0 and r1 (r0 starts at flat position `base` of
// its plane). The winner is kept as its place in the window (0-3, scan order).
template <class T>
EMBER_ALWAYS_INLINE void max_2x2_row(const T* __restrict__ r0, const T* __restrict__ r1, T* __restrict__ yr,
                                     int64_t* __restrict__ ir, int64_t out_w, int64_t base, int64_t in_w) {
  for (int64_t ow = 0; ow < out_w; ++ow) {
    T best = r0[2 * ow];
    int32_t which = 0;
    T v = r0[2 * ow + 1];
    bool take = (v > best) | (v != v);
    best = take ? v : best;
    which = take ? 1 : which;
    v = r1[2 * ow];
    take = (v > best) | (v != v);
    best = take ? v : best;
    which = take ? 2 : which;
    v = r1[2 * ow + 1];
    take = (v > best) | (v != v);
    best = take ? v : best;
    which = take ? 3 : which;
    yr[ow] = best;
    ir[ow] = base + 2 * ow + (which & 1) + (which >> 1) * in_w;
  }
}

// float32 windows W at a time (W = 8 or 4) in GCC vector types, which each ISA clone lowers to its own
// registers: rows too short for the vectoriser's 8 or 16 lanes (14 and 7 windows in the CNN) would
// otherwise run one window at a time, through branches on the comparisons that random data
// mispredicts (measured: 6.6 and 12.5 ns a window before, 1.8 and 3.2 ns with these blocks).
template <int W>
struct Lanes;
template <>
struct Lanes<8> {
  typedef float F __attribute__((vector_size(8 * sizeof(float))));
  typedef int32_t I __attribute__((vector_size(8 * sizeof(int32_t))));
  typedef int64_t L __attribute__((vector_size(8 * sizeof(int64_t))));
  static constexpr L kStep = {0, 2, 4, 6, 8, 10, 12, 14};
};
template <>
struct Lanes<4> {
  typedef float F __attribute__((vector_size(4 * sizeof(float))));
  typedef int32_t I __attribute__((vector_size(4 * sizeof(int32_t))));
  typedef int64_t L __attribute__((vector_size(4 * sizeof(int64_t))));
  static constexpr L kStep = {0, 2, 4, 6};
};

// Lanes 2i + Odd of the concatenation of x and y: the even (Odd = 0) or odd columns of two vectors of a
// row. __builtin_shufflevector is in GCC (12 and later) and clang alike.
// (Operands by reference: 32-byte vectors passed or returned by value change the ABI without AVX.)
template <int Odd, class F, size_t... I>
EMBER_ALWAYS_INLINE void deinterleave(const F& x, const F& y, F& out, std::index_sequence<I...>) {
  out = __builtin_shufflevector(x, y, static_cast<int>(2 * I + Odd)...);
}

// W windows: rows r0 and r1 from the windows' first column, the first window at flat position i0.
template <int W>
EMBER_ALWAYS_INLINE void max_2x2_block(const float* r0, const float* r1, float* yr, int64_t* ir, int64_t i0,
                                       int64_t in_w) {
  using V = Lanes<W>;
  typename V::F r0a, r0b, r1a, r1b;
  std::memcpy(&r0a, r0, sizeof(r0a));
  std::memcpy(&r0b, r0 + W, sizeof(r0b));
  std::memcpy(&r1a, r1, sizeof(r1a));
  std::memcpy(&r1b, r1 + W, sizeof(r1b));
  typename V::F a, b, c, d;
  deinterleave<0>(r0a, r0b, a, std::make_index_sequence<W>{});
  deinterleave<1>(r0a, r0b, b, std::make_index_sequence<W>{});
  deinterleave<0>(r1a, r1b, c, std::make_index_sequence<W>{});
  deinterleave<1>(r1a, r1b, d, std::make_index_sequence<W>{});
  const typename V::I zero = {};
  typename V::F best = a;
  typename V::I which = zero;
  typename V::I take = (b > best) | (b != b);
  best = take ? b : best;
  which = take ? zero + 1 : which;
  take = (c > best) | (c != c);
  best = take ? c : best;
  which = take ? zero + 2 : which;
  take = (d > best) | (d != d);
  best = take ? d : best;
  which = take ? zero + 3 : which;
  std::memcpy(yr, &best, sizeof(best));
  const typename V::L w = __builtin_convertvector(which, typename V::L);
  const typename V::L index = i0 + V::kStep + (w & 1) + (w >> 1) * in_w;
  std::memcpy(ir, &index, sizeof(index));
}

// A row of out_w >= W windows, W at a time; a last partial block is redone as the row's last W windows,
// overlapping windows already done (they get the same values again).
template <int W>
EMBER_ALWAYS_INLINE void max_2x2_row_blocks(const float* r0, const float* r1, float* yr, int64_t* ir, int64_t out_w,
                                            int64_t base, int64_t in_w) {
  int64_t ow = 0;
  for (; ow + W <= out_w; ow += W) max_2x2_block<W>(r0 + 2 * ow, r1 + 2 * ow, yr + ow, ir + ow, base + 2 * ow, in_w);
  if (ow < out_w) {
    ow = out_w - W;
    max_2x2_block<W>(r0 + 2 * ow, r1 + 2 * ow, yr + ow, ir + ow, base + 2 * ow, in_w);
  }
}

template <class T>
EMBER_ALWAYS_INLINE void max_2x2_planes(const T* x, T* y, int64_t* idx, int64_t p0, int64_t p1, int64_t in_h,
                                        int64_t in_w, int64_t out_h, int64_t out_w) {
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const int64_t base = 2 * oh * in_w;
      const T* r0 = x + p * in_h * in_w + base;
      T* yr = y + (p * out_h + oh) * out_w;
      int64_t* ir = idx + (p * out_h + oh) * out_w;
      if constexpr (std::is_same_v<T, float>) {
        if (out_w >= 8) {
          max_2x2_row_blocks<8>(r0, r0 + in_w, yr, ir, out_w, base, in_w);
          continue;
        }
        if (out_w >= 4) {
          max_2x2_row_blocks<4>(r0, r0 + in_w, yr, ir, out_w, base, in_w);
          continue;
        }
      }
      max_2x2_row(r0, r0 + in_w, yr, ir, out_w, base, in_w);
    }
  }
}

EMBER_ISA_CLONES void max_2x2_f32(const float* x, float* y, int64_t* idx, int64_t p0, int64_t p1, int64_t in_h,
                                  int64_t in_w, int64_t out_h, int64_t out_w) {
  max_2x2_planes(x, y, idx, p0, p1, in_h, in_w, out_h, out_w);
}
void max_2x2(const float* x, float* y, int64_t* idx, int64_t p0, int64_t p1, int64_t in_h, int64_t in_w, int64_t out_h,
             int64_t out_w) {
  max_2x2_f32(x, y, idx, p0, p1, in_h, in_w, out_h, out_w);
}
void max_2x2(const double* x, double* y, int64_t* idx, int64_t p0, int64_t p1, int64_t in_h, int64_t in_w,
             int64_t out_h, int64_t out_w) {
  max_2x2_planes(x, y, idx, p0, p1, in_h, in_w, out_h, out_w);
}

// Planes per parallel chunk so that a chunk touches about kParallelGrain elements.
int64_t plane_grain(int64_t work) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(work, 1)); }

}  // namespace

void max_pool2d(const Tensor& input, const Tensor& out, const Tensor& indices, const Pool2dGeometry& g) {
  // Note [2x2 max pooling]; rows under 4 windows are left to the generic loop, which has no branches.
  if (is_2x2_tiling(g) && (g.out_w >= 4 || input.dtype() == kFloat64)) {
    dispatch_floating(input.dtype(), "max_pool2d", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* x = static_cast<const T*>(input.raw_data());
      T* y = static_cast<T*>(out.raw_data());
      int64_t* idx = static_cast<int64_t*>(indices.raw_data());
      parallel_for(planes_of(out), plane_grain(g.in_h * g.in_w),
                   [&](int64_t p0, int64_t p1) { max_2x2(x, y, idx, p0, p1, g.in_h, g.in_w, g.out_h, g.out_w); });
    });
    return;
  }
  // Window bounds per output row and column, shared by every plane.
  std::vector<int64_t> hb(static_cast<size_t>(2 * g.out_h)), wb(static_cast<size_t>(2 * g.out_w));
  for (int64_t o = 0; o < g.out_h; ++o)
    pool::max_window(o, g.in_h, g.kernel_h, g.pad_h, g.stride_h, g.dilation_h, hb[2 * o], hb[2 * o + 1]);
  for (int64_t o = 0; o < g.out_w; ++o)
    pool::max_window(o, g.in_w, g.kernel_w, g.pad_w, g.stride_w, g.dilation_w, wb[2 * o], wb[2 * o + 1]);
  dispatch_floating(input.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = static_cast<const T*>(input.raw_data());
    T* y = static_cast<T*>(out.raw_data());
    int64_t* idx = static_cast<int64_t*>(indices.raw_data());
    // Geometry in locals: the int64 index stores below could otherwise alias it and force reloads.
    const int64_t in_w = g.in_w, out_h = g.out_h, out_w = g.out_w;
    const int64_t in_plane = g.in_h * in_w, out_plane = out_h * out_w;
    const int64_t dh = g.dilation_h, dw = g.dilation_w;
    const int64_t* hbp = hb.data();
    const int64_t* wbp = wb.data();
    for_each_plane(planes_of(out), out_plane * g.kernel_h * g.kernel_w, [&](int64_t p) {
      const T* __restrict__ xp = x + p * in_plane;
      T* __restrict__ yp = y + p * out_plane;
      int64_t* __restrict__ ip = idx + p * out_plane;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t h0 = hbp[2 * oh], h1 = hbp[2 * oh + 1];
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t w0 = wbp[2 * ow], w1 = wbp[2 * ow + 1];
          // PyTorch's rule: strictly greater wins (first max on ties), and NaN always wins. The loop is
          // branch-free (maxss, and an index picked with a mask): on real data the comparison is
          // unpredictable and mispredictions cost ~3x. A window holding a NaN is redone exactly.
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_i = h0 * in_w + w0;
          bool nan = false;
          for (int64_t h = h0; h < h1; h += dh) {
            for (int64_t w = w0; w < w1; w += dw) {
              const T v = xp[h * in_w + w];
              const int64_t take = -static_cast<int64_t>(v > best);
              best_i = (best_i & ~take) | ((h * in_w + w) & take);
              best = v > best ? v : best;
              nan |= v != v;
            }
          }
          if (nan) {
            for (int64_t h = h0; h < h1; h += dh) {
              for (int64_t w = w0; w < w1; w += dw) {
                if (xp[h * in_w + w] != xp[h * in_w + w]) {
                  best = xp[h * in_w + w];
                  best_i = h * in_w + w;  // the last NaN, as PyTorch's loop ends up with
                }
              }
            }
          }
          yp[oh * out_w + ow] = best;
          ip[oh * out_w + ow] = best_i;
        }
      }
    });
  });
}

void max_pool2d_backward(const Tensor& grad_output, const Tensor& indices, const Tensor& grad_input,
                         const Pool2dGeometry& g) {
  dispatch_floating(grad_output.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gy = static_cast<const T*>(grad_output.raw_data());
    const int64_t* idx = static_cast<const int64_t*>(indices.raw_data());
    T* gx = static_cast<T*>(grad_input.raw_data());
    const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
    for_each_plane(planes_of(grad_input), in_plane + out_plane, [&](int64_t p) {
      T* gxp = gx + p * in_plane;
      std::fill(gxp, gxp + in_plane, T(0));
      const T* gyp = gy + p * out_plane;
      const int64_t* ip = idx + p * out_plane;
      for (int64_t o = 0; o < out_plane; ++o)
        if (ip[o] >= 0 && ip[o] < in_plane) gxp[ip[o]] += gyp[o];
    });
  });
}

void avg_pool2d(const Tensor& input, const Tensor& out, const Pool2dGeometry& g) {
  dispatch_floating(input.dtype(), "avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = static_cast<const T*>(input.raw_data());
    T* y = static_cast<T*>(out.raw_data());
    const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
    for_each_plane(planes_of(out), out_plane * g.kernel_h * g.kernel_w, [&](int64_t p) {
      const T* xp = x + p * in_plane;
      T* yp = y + p * out_plane;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          int64_t h0, h1, w0, w1;
          const int64_t divisor = pool::avg_divisor(g, oh, ow, h0, h1, w0, w1);
          T sum = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) sum += xp[h * g.in_w + w];
          yp[oh * g.out_w + ow] = divisor == 0 ? T(0) : sum / static_cast<T>(divisor);
        }
      }
    });
  });
}

void avg_pool2d_backward(const Tensor& grad_output, const Tensor& grad_input, const Pool2dGeometry& g) {
  dispatch_floating(grad_output.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gy = static_cast<const T*>(grad_output.raw_data());
    T* gx = static_cast<T*>(grad_input.raw_data());
    const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
    for_each_plane(planes_of(grad_input), in_plane + out_plane * g.kernel_h * g.kernel_w, [&](int64_t p) {
      T* gxp = gx + p * in_plane;
      std::fill(gxp, gxp + in_plane, T(0));
      const T* gyp = gy + p * out_plane;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          int64_t h0, h1, w0, w1;
          const int64_t divisor = pool::avg_divisor(g, oh, ow, h0, h1, w0, w1);
          if (divisor == 0) continue;
          const T v = gyp[oh * g.out_w + ow] / static_cast<T>(divisor);
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) gxp[h * g.in_w + w] += v;
        }
      }
    });
  });
}

void adaptive_avg_pool2d(const Tensor& input, const Tensor& out) {
  const int64_t ih = input.size(2), iw = input.size(3), oh_n = out.size(2), ow_n = out.size(3);
  dispatch_floating(input.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = static_cast<const T*>(input.raw_data());
    T* y = static_cast<T*>(out.raw_data());
    for_each_plane(planes_of(out), ih * iw + oh_n * ow_n, [&](int64_t p) {
      const T* xp = x + p * ih * iw;
      T* yp = y + p * oh_n * ow_n;
      for (int64_t oh = 0; oh < oh_n; ++oh) {
        const int64_t h0 = pool::adaptive_start(oh, ih, oh_n), h1 = pool::adaptive_end(oh, ih, oh_n);
        for (int64_t ow = 0; ow < ow_n; ++ow) {
          const int64_t w0 = pool::adaptive_start(ow, iw, ow_n), w1 = pool::adaptive_end(ow, iw, ow_n);
          T sum = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) sum += xp[h * iw + w];
          yp[oh * ow_n + ow] = sum / static_cast<T>((h1 - h0) * (w1 - w0));
        }
      }
    });
  });
}

void adaptive_avg_pool2d_backward(const Tensor& grad_output, const Tensor& grad_input) {
  const int64_t ih = grad_input.size(2), iw = grad_input.size(3), oh_n = grad_output.size(2),
                ow_n = grad_output.size(3);
  dispatch_floating(grad_output.dtype(), "adaptive_avg_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gy = static_cast<const T*>(grad_output.raw_data());
    T* gx = static_cast<T*>(grad_input.raw_data());
    for_each_plane(planes_of(grad_input), ih * iw + oh_n * ow_n, [&](int64_t p) {
      T* gxp = gx + p * ih * iw;
      std::fill(gxp, gxp + ih * iw, T(0));
      const T* gyp = gy + p * oh_n * ow_n;
      for (int64_t oh = 0; oh < oh_n; ++oh) {
        const int64_t h0 = pool::adaptive_start(oh, ih, oh_n), h1 = pool::adaptive_end(oh, ih, oh_n);
        for (int64_t ow = 0; ow < ow_n; ++ow) {
          const int64_t w0 = pool::adaptive_start(ow, iw, ow_n), w1 = pool::adaptive_end(ow, iw, ow_n);
          const T v = gyp[oh * ow_n + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) gxp[h * iw + w] += v;
        }
      }
    });
  });
}

}  // namespace ember::cpu
