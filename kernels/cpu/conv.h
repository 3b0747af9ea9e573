// CPU convolution kernels: im2col + OpenBLAS GEMM forward and backward (see Note [CPU convolution]).
#pragma once

#include "kernels/conv.h"
#include "runtime/tensor.h"

namespace ember::cpu {

// out = conv2d(input, weight) + bias. input [N, C, H, W], weight [C_out, C / groups, kH, kW],
// bias [C_out] or undefined, out [N, C_out, H_out, W_out]; all contiguous, float32 or float64.
void conv2d_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& out,
                    const Conv2dParams& p);

// Writes the gradients whose tensors are defined (contiguous, shaped like input, weight and [C_out]);
// grad_output is contiguous [N, C_out, H_out, W_out].
void conv2d_backward(const Tensor& grad_output, const Tensor& input, const Tensor& weight, const Conv2dParams& p,
                     const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias);

}  // namespace ember::cpu
