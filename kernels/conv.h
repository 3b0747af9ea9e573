// 2-D convolution (conv2d over NCHW, PyTorch's semantics) and the geometry its backends share.
#pragma once

#include <cstdint>

#include "runtime/tensor.h"

namespace ember {

// conv2d's hyper-parameters after checking: everything a backend needs besides the tensors.
struct Conv2dParams {
  int64_t stride[2] = {1, 1};
  int64_t padding[2] = {0, 0};
  int64_t dilation[2] = {1, 1};
  int64_t groups = 1;
};

// Cross-correlation of `input` [N, C_in, H, W] (or unbatched [C_in, H, W]) with `weight`
// [C_out, C_in / groups, kH, kW], plus `bias` [C_out] when defined; zero padding. stride, padding and
// dilation take one value for both spatial dims or {h, w}. float32 and float64 on both devices, and
// float16/bfloat16 on CUDA. Differentiable w.r.t. input, weight and bias.
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = {}, IntArrayRef stride = 1,
              IntArrayRef padding = 0, IntArrayRef dilation = 1, int64_t groups = 1);

// The raw backward of conv2d (no autograd): gradients w.r.t. input, weight and bias of
// conv2d(input, weight, bias) for the output gradient `grad_output`; an entry is undefined when its
// `need_*` flag is false. Inputs are 4-D; used by conv2d's backward node.
struct Conv2dGrads {
  Tensor input, weight, bias;
};
Conv2dGrads conv2d_backward(const Tensor& grad_output, const Tensor& input, const Tensor& weight,
                            const Conv2dParams& params, bool need_input, bool need_weight, bool need_bias);

}  // namespace ember
