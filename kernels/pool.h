// 2-D pooling over NCHW: max_pool2d (+ indices), avg_pool2d, adaptive_avg_pool2d (PyTorch's semantics).
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>

#include "runtime/tensor.h"

namespace ember {

// kernel_size, stride, padding and dilation take one value for both spatial dims or {h, w}; an empty
// stride means stride = kernel_size (PyTorch's default). Inputs are [N, C, H, W] or unbatched
// [C, H, W]; float32/float64 on both devices, float16/bfloat16 on CUDA. All are differentiable.

// Max over each window; padding counts as -inf, NaN propagates. Gradients go to the first maximum.
Tensor max_pool2d(const Tensor& input, IntArrayRef kernel_size, IntArrayRef stride = {}, IntArrayRef padding = 0,
                  IntArrayRef dilation = 1, bool ceil_mode = false);
// Also returns the argmax of each window as a flat index h * W + w into its input plane (int64), as PyTorch.
std::tuple<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, IntArrayRef kernel_size,
                                                   IntArrayRef stride = {}, IntArrayRef padding = 0,
                                                   IntArrayRef dilation = 1, bool ceil_mode = false);

// Mean over each window. count_include_pad: padded zeros count in the divisor (PyTorch's default);
// divisor_override replaces the divisor altogether.
Tensor avg_pool2d(const Tensor& input, IntArrayRef kernel_size, IntArrayRef stride = {}, IntArrayRef padding = 0,
                  bool ceil_mode = false, bool count_include_pad = true,
                  std::optional<int64_t> divisor_override = std::nullopt);

// Mean over windows that split the input into output_size ({h, w} or one value for both) cells:
// output i covers input [floor(i * in / out), ceil((i + 1) * in / out)).
Tensor adaptive_avg_pool2d(const Tensor& input, IntArrayRef output_size);

}  // namespace ember
