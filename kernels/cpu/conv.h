// CPU convolution kernels: oneDNN where it takes the case, else im2col + OpenBLAS GEMM (Note [CPU convolution]).
#pragma once

#include "kernels/conv.h"
#include "runtime/tensor.h"

namespace ember::cpu {

// Which code runs a CPU convolution. kOneDnn (the default): oneDNN for what it takes (float32, see
// Note [oneDNN convolution] in onednn.cpp), im2col + OpenBLAS for the rest. kIm2col: im2col + OpenBLAS
// always, the reference the tests compare oneDNN with. Process-wide; the initial value comes from the
// environment variable EMBER_CPU_CONV (onednn or im2col; anything else is an error at the first
// convolution). A build without oneDNN runs im2col either way.
enum class CpuConvAlgorithm { kOneDnn, kIm2col };
void set_conv_algorithm(CpuConvAlgorithm algorithm);
CpuConvAlgorithm conv_algorithm();

// out = conv2d(input, weight) + bias. input [N, C, H, W], weight [C_out, C / groups, kH, kW],
// bias [C_out] or undefined, out [N, C_out, H_out, W_out]; all contiguous, float32 or float64.
void conv2d_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& out,
                    const Conv2dParams& p);

// Writes the gradients whose tensors are defined (contiguous, shaped like input, weight and [C_out]);
// grad_output is contiguous [N, C_out, H_out, W_out].
void conv2d_backward(const Tensor& grad_output, const Tensor& input, const Tensor& weight, const Conv2dParams& p,
                     const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias);

}  // namespace ember::cpu
