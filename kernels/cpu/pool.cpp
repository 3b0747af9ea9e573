// CPU pooling: max (with argmax indices), average and adaptive average, forward and backward.
#include "kernels/cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

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

}  // namespace

void max_pool2d(const Tensor& input, const Tensor& out, const Tensor& indices, const Pool2dGeometry& g) {
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
