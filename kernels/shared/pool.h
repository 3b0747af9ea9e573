// Pooling window arithmetic shared by the CPU loops and the CUDA kernels (PyTorch's formulas).
#pragma once

#include <cstdint>

#include "runtime/macros.h"

namespace ember::pool {

// Geometry of one 2-D pooling over planes of [in_h, in_w] giving [out_h, out_w].
struct Pool2dGeometry {
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  bool count_include_pad = true;
  int64_t divisor_override = 0;  // 0: none
};

EMBER_HD inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
EMBER_HD inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Floor division (rounds toward negative infinity).
EMBER_HD inline int64_t div_floor(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// PyTorch's pooling_output_shape: with ceil_mode the last window must still start inside the input
// or its left padding, so a window that would lie wholly in the right padding is dropped.
EMBER_HD inline int64_t output_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation,
                                    bool ceil_mode) {
  int64_t out = div_floor(in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Input rows [start, end) (step `dilation`) of max-pooling window `o`, clipped to the input.
EMBER_HD inline void max_window(int64_t o, int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation,
                                int64_t& start, int64_t& end) {
  start = o * stride - pad;
  end = min64(start + (kernel - 1) * dilation + 1, in);
  if (start < 0) start += ((-start + dilation - 1) / dilation) * dilation;
}

// Average-pooling window `o`: [start, end) clipped to the input, and the window's extent clipped
// only to the padded input (what count_include_pad divides by), as PyTorch.
EMBER_HD inline void avg_window(int64_t o, int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t& start,
                                int64_t& end, int64_t& padded_extent) {
  start = o * stride - pad;
  end = min64(start + kernel, in + pad);
  padded_extent = end - start;
  start = max64(start, 0);
  end = min64(end, in);
}

// The divisor of average-pooling output (oh, ow); 0 when the window holds no input element.
EMBER_HD inline int64_t avg_divisor(const Pool2dGeometry& g, int64_t oh, int64_t ow, int64_t& h0, int64_t& h1,
                                    int64_t& w0, int64_t& w1) {
  int64_t ph = 0, pw = 0;
  avg_window(oh, g.in_h, g.kernel_h, g.pad_h, g.stride_h, h0, h1, ph);
  avg_window(ow, g.in_w, g.kernel_w, g.pad_w, g.stride_w, w0, w1, pw);
  if (h0 >= h1 || w0 >= w1) return 0;
  if (g.divisor_override > 0) return g.divisor_override;
  return g.count_include_pad ? ph * pw : (h1 - h0) * (w1 - w0);
}

// Outputs [begin, end) whose max-pooling windows can contain input index i (backward as a gather).
EMBER_HD inline void max_outputs_covering(int64_t i, int64_t out, int64_t kernel, int64_t pad, int64_t stride,
                                          int64_t dilation, int64_t& begin, int64_t& end) {
  const int64_t extent = (kernel - 1) * dilation + 1;
  begin = (i + pad < extent) ? 0 : (i + pad - extent) / stride + 1;
  end = min64((i + pad) / stride + 1, out);
}

// Outputs [begin, end) whose average-pooling windows can contain input index i.
EMBER_HD inline void avg_outputs_covering(int64_t i, int64_t out, int64_t kernel, int64_t pad, int64_t stride,
                                          int64_t& begin, int64_t& end) {
  const int64_t p = i + pad;
  begin = (p < kernel) ? 0 : (p - kernel) / stride + 1;
  end = min64(p / stride + 1, out);
}

// Adaptive pooling: output o of `out` covers input [floor(o * in / out), ceil((o + 1) * in / out)).
EMBER_HD inline int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
EMBER_HD inline int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

}  // namespace ember::pool
