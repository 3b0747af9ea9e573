// CPU convolution: oneDNN where it takes the case, else per-image im2col + OpenBLAS GEMM (Note [CPU convolution]).
#include "kernels/cpu/conv.h"
#include "kernels/cpu/env_choice.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>

#include "kernels/cpu/onednn.h"
#include "kernels/dispatch.h"

namespace ember::cpu {

// Note [CPU convolution]
// float32 convolutions go to oneDNN (Note [oneDNN convolution] in onednn.cpp) unless
// set_conv_algorithm / EMBER_CPU_CONV=im2col asks for this file's own path, which serves whatever
// oneDNN declines (float64 above all) and is the reference the tests hold oneDNN to.
//
// im2col unfolds an image into col [K, HWo] (K = C * kH * kW; row (c, i, j), column (oh, ow)); per group g
// the forward is the GEMM y_g [C_out/g, HWo] = W_g [C_out/g, K/g] @ col_g [K/g, HWo], and backward is
// dW_g += dY_g @ col_g^T and dCol_g = W_g^T @ dY_g, folded back into dx by col2im (grad bias: a sum of dY
// over N, H, W). Scratch buffers are per-thread and reused across calls.
//
// Threading. Two strategies:
//  * per-image: the images are spread over OpenMP threads, each with its own column buffer and
//    weight-gradient partial, and each GEMM runs on the thread that calls it. y[n] and dY[n] are already
//    [C_out, HWo], so nothing is transposed, and a 1x1 kernel with stride 1 and no padding uses x[n] as
//    its column matrix (no im2col/col2im at all). It needs OpenBLAS to stay single-threaded inside our
//    threads: true for the OpenMP build (ember's: Note [OpenBLAS flavour]; a GEMM called inside an OpenMP
//    region runs on the calling thread), for OPENBLAS_NUM_THREADS=1, and for GEMMs small enough that
//    OpenBLAS never threads them (m*n*k <= 262144).
//  * batched, otherwise (the pthreads build with large GEMMs): a chunk of b images is unfolded into one
//    col [K, b * HWo] so that each group is ONE wide GEMM, which OpenBLAS threads; the loops around it
//    (im2col, col2im, the [C_out, b, HWo] <-> NCHW transposes) stay on the calling thread. A chunk's col
//    holds at most kColBudget elements. The pthreads build's pool must never be nested in or
//    interleaved with OpenMP regions at a fine grain: each spins after its work and the two fight over
//    the cores (Note [GEMM threading on the CPU] in blas.cpp).
// This code never calls openblas_set_num_threads itself: that would change every other thread's GEMMs.
//
// Measured with bench/conv.cpp, batch 64, forward + backward, 3x3 pad 1, 2 cores, OpenMP OpenBLAS 0.3.21:
//                                      [1 -> 32] on 28x28         [32 -> 64] on 14x14
//   per-image (both layers)             2.0 ms (~32k img/s)        11.4 ms (~5.6k img/s, 122 GFLOP/s)
//   batched for [32 -> 64]              -                          17.0 ms (82 GFLOP/s: ~22% of the time
//                                                                  OpenBLAS's workers spun while the
//                                                                  calling thread ran im2col/col2im)
//   everything single-threaded          2.6 ms                     20-23 ms (60-68 GFLOP/s)
// With the pthreads build, batched only with OpenMP around OpenBLAS-threaded GEMMs took 48-70 ms and
// 101-111 ms (the pools fighting).

namespace {

// OpenBLAS runs a GEMM on the calling thread when m * n * k is at most this (65536 *
// GEMM_MULTITHREAD_THRESHOLD, 4 by default); see also Note [GEMM threading on the CPU] in blas.cpp.
constexpr double kOpenBlasSingleThreadMnk = 65536.0 * 4;
// Below this many multiply-adds per call the images are not spread over threads.
constexpr double kParallelMinMacs = 1 << 20;
// Elements of the batched strategy's column buffer per chunk (16 MiB of float).
constexpr int64_t kColBudget = int64_t{1} << 22;

struct Geometry {
  int64_t n, c, h, w;     // input
  int64_t c_out, kh, kw;  // weight
  int64_t ho, wo, hwo;    // output plane
  int64_t sh, sw, ph, pw, dh, dw, groups;
  int64_t cg, mg, kg;  // per group: input channels, output channels, col rows (cg * kh * kw)
};

Geometry make_geometry(const Tensor& input, const Tensor& weight, const Tensor& out, const Conv2dParams& p) {
  Geometry g{};
  g.n = input.size(0);
  g.c = input.size(1);
  g.h = input.size(2);
  g.w = input.size(3);
  g.c_out = weight.size(0);
  g.kh = weight.size(2);
  g.kw = weight.size(3);
  g.ho = out.size(2);
  g.wo = out.size(3);
  g.hwo = g.ho * g.wo;
  g.sh = p.stride[0];
  g.sw = p.stride[1];
  g.ph = p.padding[0];
  g.pw = p.padding[1];
  g.dh = p.dilation[0];
  g.dw = p.dilation[1];
  g.groups = p.groups;
  g.cg = g.c / g.groups;
  g.mg = g.c_out / g.groups;
  g.kg = g.cg * g.kh * g.kw;
  return g;
}

// Per-thread scratch memory, grow-only, for the column buffer (slot 0) and the weight-gradient partials
// (slot 1): fresh multi-megabyte buffers would be page-faulted in and zeroed by the kernel on every
// call (perf showed ~15% of the convolution time in page faults before this). Requests above
// kScratchCap bytes get a one-off buffer, so huge images do not pin memory for the thread's lifetime.
constexpr size_t kScratchCap = size_t{64} << 20;
class Scratch {
 public:
  // A buffer of at least `bytes` for slot 0 or 1 (two buffers can be live at once).
  void* get(int slot, size_t bytes) {
    Buffer& b = buffers_[slot];
    if (bytes > kScratchCap) {
      b.oneoff.reset(new char[bytes]);
      return b.oneoff.get();
    }
    b.oneoff.reset();
    if (b.capacity < bytes) {
      b.data.reset(new char[bytes]);
      b.capacity = bytes;
    }
    return b.data.get();
  }

 private:
  struct Buffer {
    std::unique_ptr<char[]> data, oneoff;
    size_t capacity = 0;
  };
  Buffer buffers_[2];
};
template <class T>
T* scratch(int slot, int64_t elements) {
  thread_local Scratch s;
  return static_cast<T*>(s.get(slot, sizeof(T) * static_cast<size_t>(std::max<int64_t>(elements, 1))));
}

blasint blas_int(int64_t v) {
  EMBER_CHECK(v <= std::numeric_limits<blasint>::max(), "conv2d: a GEMM dimension of ", v,
              " exceeds what OpenBLAS (32-bit integers) supports; use smaller images or fewer channels");
  return static_cast<blasint>(v);
}

// Row-major C[m, n] = alpha * op(A) @ op(B) + beta * C.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, blas_int(m), blas_int(n),
              blas_int(k), alpha, a, blas_int(std::max<int64_t>(lda, 1)), b, blas_int(std::max<int64_t>(ldb, 1)), beta,
              c, blas_int(std::max<int64_t>(ldc, 1)));
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, blas_int(m), blas_int(n),
              blas_int(k), alpha, a, blas_int(std::max<int64_t>(lda, 1)), b, blas_int(std::max<int64_t>(ldb, 1)), beta,
              c, blas_int(std::max<int64_t>(ldc, 1)));
}

// Unfolds input plane x [H, W] (one channel of one image) into kh * kw rows of col (row stride ld),
// starting at `col`: row (i, j), column (oh, ow) holds x[oh*sh - ph + i*dh, ow*sw - pw + j*dw] or 0.
template <class T>
void im2col_plane(const T* x, T* col, int64_t ld, const Geometry& g) {
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      T* row = col + (i * g.kw + j) * ld;
      const int64_t woff = j * g.dw - g.pw;
      // Output columns whose input column ow * sw + woff lies inside [0, W).
      const int64_t lo = std::clamp<int64_t>((-woff + g.sw - 1) / g.sw, 0, g.wo);
      const int64_t hi = std::clamp<int64_t>(woff >= g.w ? 0 : (g.w - woff + g.sw - 1) / g.sw, lo, g.wo);
      for (int64_t oh = 0; oh < g.ho; ++oh) {
        T* dst = row + oh * g.wo;
        const int64_t ih = oh * g.sh - g.ph + i * g.dh;
        if (ih < 0 || ih >= g.h) {
          std::fill(dst, dst + g.wo, T(0));
          continue;
        }
        const T* src = x + ih * g.w;
        std::fill(dst, dst + lo, T(0));
        if (g.sw == 1) {
          if (hi > lo) std::memcpy(dst + lo, src + lo + woff, sizeof(T) * static_cast<size_t>(hi - lo));
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * g.sw + woff];
        }
        std::fill(dst + hi, dst + g.wo, T(0));
      }
    }
  }
}

// The adjoint of im2col_plane: dx [H, W] = sum of the kh * kw rows folded back (dx is overwritten).
template <class T>
void col2im_plane(const T* col, int64_t ld, T* dx, const Geometry& g) {
  std::fill(dx, dx + g.h * g.w, T(0));
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const T* row = col + (i * g.kw + j) * ld;
      const int64_t woff = j * g.dw - g.pw;
      const int64_t lo = std::clamp<int64_t>((-woff + g.sw - 1) / g.sw, 0, g.wo);
      const int64_t hi = std::clamp<int64_t>(woff >= g.w ? 0 : (g.w - woff + g.sw - 1) / g.sw, lo, g.wo);
      for (int64_t oh = 0; oh < g.ho; ++oh) {
        const int64_t ih = oh * g.sh - g.ph + i * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        const T* src = row + oh * g.wo;
        T* dst = dx + ih * g.w;
        if (g.sw == 1) {
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow + woff] += src[ow];
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow * g.sw + woff] += src[ow];
        }
      }
    }
  }
}

// Whether the kernel reads the input as is: a 1x1 kernel with stride 1 and no padding makes the
// column matrix of an image its own [C, H * W] plane stack.
bool is_pointwise(const Geometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

// col [K, b * HWo] (row stride b * HWo) <- images [n0, n0 + b) of x: image nl fills columns
// [nl * HWo, (nl + 1) * HWo).
template <class T>
void im2col(const T* x, T* col, int64_t n0, int64_t b, const Geometry& g) {
  const int64_t ld = b * g.hwo, plane = g.h * g.w, rows = g.kh * g.kw;
  for (int64_t nl = 0; nl < b; ++nl)
    for (int64_t c = 0; c < g.c; ++c)
      im2col_plane(x + ((n0 + nl) * g.c + c) * plane, col + c * rows * ld + nl * g.hwo, ld, g);
}

// Images [n0, n0 + b) of dx <- col2im(col), the adjoint of im2col.
template <class T>
void col2im(const T* col, T* dx, int64_t n0, int64_t b, const Geometry& g) {
  const int64_t ld = b * g.hwo, plane = g.h * g.w, rows = g.kh * g.kw;
  for (int64_t nl = 0; nl < b; ++nl)
    for (int64_t c = 0; c < g.c; ++c)
      col2im_plane(col + c * rows * ld + nl * g.hwo, ld, dx + ((n0 + nl) * g.c + c) * plane, g);
}

// The two strategies of Note [CPU convolution]: `threads` > 0 selects per-image (with that many
// OpenMP threads), 0 the batched strategy.
int per_image_threads(const Geometry& g) {
  const double mnk = static_cast<double>(g.mg) * static_cast<double>(g.hwo) * static_cast<double>(g.kg);
  // The OpenMP build of OpenBLAS runs a GEMM called inside an OpenMP region on the calling thread.
  const bool blas_single =
      openblas_get_num_threads() == 1 || mnk <= kOpenBlasSingleThreadMnk || openblas_get_parallel() == 2;
  if (!blas_single) return 0;
  const double macs = static_cast<double>(g.n) * static_cast<double>(g.groups) * mnk;
  if (g.n < 2 || omp_in_parallel() || omp_get_max_threads() < 2 || macs < kParallelMinMacs) return 1;
  return static_cast<int>(std::min<int64_t>(omp_get_max_threads(), g.n));
}

// Runs body(n, thread) for images [0, N) on `threads` OpenMP threads, each taking a contiguous block.
template <class F>
void for_each_image(const Geometry& g, int threads, F&& body) {
  if (threads <= 1) {
    for (int64_t n = 0; n < g.n; ++n) body(n, 0);
    return;
  }
  // An exception must not leave an OpenMP region (that terminates): the first one is rethrown after it.
  std::exception_ptr error;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t per = (g.n + nt - 1) / nt, begin = t * per, end = std::min(g.n, begin + per);
    try {
      for (int64_t n = begin; n < end; ++n) body(n, t);
    } catch (...) {
#pragma omp critical(ember_conv_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Images per chunk of the batched strategy: its column buffer [K, b * HWo] stays within kColBudget.
int64_t chunk_images(const Geometry& g) {
  const int64_t per_image = std::max<int64_t>(1, g.c * g.kh * g.kw * g.hwo);
  return std::clamp<int64_t>(kColBudget / per_image, 1, std::max<int64_t>(g.n, 1));
}

template <class T>
void add_bias(T* y, const T* bias, const Geometry& g) {  // y [C_out, HWo] of one image
  for (int64_t co = 0; co < g.c_out; ++co)
    for (int64_t p = 0; p < g.hwo; ++p) y[co * g.hwo + p] += bias[co];
}

template <class T>
void forward_impl(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& out, const Geometry& g) {
  const T* x = static_cast<const T*>(input.raw_data());
  const T* w = static_cast<const T*>(weight.raw_data());
  const T* bs = bias.defined() ? static_cast<const T*>(bias.raw_data()) : nullptr;
  T* y = static_cast<T*>(out.raw_data());
  const int64_t k = g.c * g.kh * g.kw;
  const int threads = per_image_threads(g);
  if (threads > 0) {
    const bool pointwise = is_pointwise(g);
    for_each_image(g, threads, [&](int64_t n, int) {
      const T* col = x + n * g.c * g.h * g.w;
      if (!pointwise) {
        T* buf = scratch<T>(0, k * g.hwo);  // the thread's own
        im2col(x, buf, n, 1, g);
        col = buf;
      }
      T* yn = y + n * g.c_out * g.hwo;  // [C_out, HWo]: the product is image n's NCHW output
      for (int64_t gi = 0; gi < g.groups; ++gi)
        gemm(false, false, g.mg, g.hwo, g.kg, T(1), w + gi * g.mg * g.kg, g.kg, col + gi * g.kg * g.hwo, g.hwo, T(0),
             yn + gi * g.mg * g.hwo, g.hwo);
      if (bs) add_bias(yn, bs, g);
    });
    return;
  }
  const int64_t chunk = chunk_images(g);
  T* col = scratch<T>(0, k * chunk * g.hwo);
  T* tmp = chunk > 1 ? scratch<T>(1, g.c_out * chunk * g.hwo) : nullptr;
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t b = std::min(chunk, g.n - n0), ld = b * g.hwo;
    im2col(x, col, n0, b, g);
    // b == 1: the channel-major product is already image n0's NCHW output.
    T* prod = b == 1 ? y + n0 * g.c_out * g.hwo : tmp;
    for (int64_t gi = 0; gi < g.groups; ++gi)
      gemm(false, false, g.mg, ld, g.kg, T(1), w + gi * g.mg * g.kg, g.kg, col + gi * g.kg * ld, ld, T(0),
           prod + gi * g.mg * ld, ld);
    if (b == 1) {
      if (bs) add_bias(prod, bs, g);
      continue;
    }
    // prod [C_out, b, HWo] -> y [b, C_out, HWo], adding the bias on the way.
    for (int64_t nl = 0; nl < b; ++nl) {
      for (int64_t co = 0; co < g.c_out; ++co) {
        T* dst = y + ((n0 + nl) * g.c_out + co) * g.hwo;
        const T* src = prod + co * ld + nl * g.hwo;
        const T bv = bs ? bs[co] : T(0);
        for (int64_t p = 0; p < g.hwo; ++p) dst[p] = src[p] + bv;
      }
    }
  }
}

template <class T>
void backward_impl(const Tensor& grad_output, const Tensor& input, const Tensor& weight, const Geometry& g,
                   const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias) {
  const T* gy = static_cast<const T*>(grad_output.raw_data());
  const T* x = static_cast<const T*>(input.raw_data());
  const T* w = static_cast<const T*>(weight.raw_data());
  T* gx = grad_input.defined() ? static_cast<T*>(grad_input.raw_data()) : nullptr;
  T* gw = grad_weight.defined() ? static_cast<T*>(grad_weight.raw_data()) : nullptr;
  T* gb = grad_bias.defined() ? static_cast<T*>(grad_bias.raw_data()) : nullptr;

  if (gb) {  // sum over N, H, W per output channel, accumulated in double
    for (int64_t co = 0; co < g.c_out; ++co) {
      double acc = 0;
      for (int64_t n = 0; n < g.n; ++n) {
        const T* src = gy + (n * g.c_out + co) * g.hwo;
        for (int64_t p = 0; p < g.hwo; ++p) acc += static_cast<double>(src[p]);
      }
      gb[co] = static_cast<T>(acc);
    }
  }
  if (!gx && !gw) return;
  const int64_t k = g.c * g.kh * g.kw, wsize = g.c_out * g.kg;
  if (gw) std::fill(gw, gw + wsize, T(0));

  const int threads = per_image_threads(g);
  if (threads > 0) {
    const bool pointwise = is_pointwise(g);
    // Each thread sums its images' weight gradients into a partial of its own (thread 0: gw itself);
    // the partials are added up after the parallel region.
    T* partials = threads > 1 && gw ? scratch<T>(1, (threads - 1) * wsize) : nullptr;
    if (partials) std::fill(partials, partials + (threads - 1) * wsize, T(0));
    for_each_image(g, threads, [&](int64_t n, int t) {
      const T* dy = gy + n * g.c_out * g.hwo;  // [C_out, HWo]: no transpose needed
      T* buf = pointwise ? nullptr : scratch<T>(0, k * g.hwo);
      if (gw) {
        const T* col = x + n * g.c * g.h * g.w;
        if (!pointwise) {
          im2col(x, buf, n, 1, g);
          col = buf;
        }
        T* acc = t == 0 ? gw : partials + (t - 1) * wsize;
        for (int64_t gi = 0; gi < g.groups; ++gi)
          gemm(false, true, g.mg, g.kg, g.hwo, T(1), dy + gi * g.mg * g.hwo, g.hwo, col + gi * g.kg * g.hwo, g.hwo,
               T(1), acc + gi * g.mg * g.kg, g.kg);
      }
      if (gx) {
        // dCol = W^T dY; for a pointwise kernel dCol is image n's input gradient itself.
        T* dcol = pointwise ? gx + n * g.c * g.h * g.w : buf;
        for (int64_t gi = 0; gi < g.groups; ++gi)
          gemm(true, false, g.kg, g.hwo, g.mg, T(1), w + gi * g.mg * g.kg, g.kg, dy + gi * g.mg * g.hwo, g.hwo, T(0),
               dcol + gi * g.kg * g.hwo, g.hwo);
        if (!pointwise) col2im(buf, gx, n, 1, g);
      }
    });
    for (int t = 1; t < threads && partials; ++t) {
      const T* part = partials + (t - 1) * wsize;
      for (int64_t i = 0; i < wsize; ++i) gw[i] += part[i];
    }
    return;
  }

  const int64_t chunk = chunk_images(g);
  T* col = scratch<T>(0, k * chunk * g.hwo);
  T* tmp = chunk > 1 ? scratch<T>(1, g.c_out * chunk * g.hwo) : nullptr;
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t b = std::min(chunk, g.n - n0), ld = b * g.hwo;
    // dY of the chunk, channel-major [C_out, b * HWo] (image n0's own block when b == 1).
    const T* dy = gy + n0 * g.c_out * g.hwo;
    if (b > 1) {
      for (int64_t nl = 0; nl < b; ++nl)
        for (int64_t co = 0; co < g.c_out; ++co)
          std::memcpy(tmp + co * ld + nl * g.hwo, gy + ((n0 + nl) * g.c_out + co) * g.hwo,
                      sizeof(T) * static_cast<size_t>(g.hwo));
      dy = tmp;
    }
    if (gw) {
      im2col(x, col, n0, b, g);
      for (int64_t gi = 0; gi < g.groups; ++gi)
        gemm(false, true, g.mg, g.kg, ld, T(1), dy + gi * g.mg * ld, ld, col + gi * g.kg * ld, ld, T(1),
             gw + gi * g.mg * g.kg, g.kg);
    }
    if (gx) {
      for (int64_t gi = 0; gi < g.groups; ++gi)
        gemm(true, false, g.kg, ld, g.mg, T(1), w + gi * g.mg * g.kg, g.kg, dy + gi * g.mg * ld, ld, T(0),
             col + gi * g.kg * ld, ld);
      col2im(col, gx, n0, b, g);
    }
  }
}

// -1: not read from EMBER_CPU_CONV yet.
std::atomic<int> g_algorithm{-1};

}  // namespace

void set_conv_algorithm(CpuConvAlgorithm algorithm) { g_algorithm.store(static_cast<int>(algorithm)); }

CpuConvAlgorithm conv_algorithm() {
  return choice_from_env(g_algorithm, "EMBER_CPU_CONV", "conv2d", "onednn", CpuConvAlgorithm::kOneDnn, "im2col",
                         CpuConvAlgorithm::kIm2col);
}

void conv2d_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& out,
                    const Conv2dParams& p) {
  if (conv_algorithm() == CpuConvAlgorithm::kOneDnn && onednn::conv2d_forward(input, weight, bias, out, p)) return;
  const Geometry g = make_geometry(input, weight, out, p);
  dispatch_floating(input.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_impl<T>(input, weight, bias, out, g);
  });
}

void conv2d_backward(const Tensor& grad_output, const Tensor& input, const Tensor& weight, const Conv2dParams& p,
                     const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias) {
  if (conv_algorithm() == CpuConvAlgorithm::kOneDnn &&
      onednn::conv2d_backward(grad_output, input, weight, p, grad_input, grad_weight, grad_bias))
    return;
  const Geometry g = make_geometry(input, weight, grad_output, p);
  dispatch_floating(input.dtype(), "conv2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_impl<T>(grad_output, input, weight, g, grad_input, grad_weight, grad_bias);
  });
}

}  // namespace ember::cpu
