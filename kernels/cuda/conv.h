// CUDA entry points of conv2d (kernels/cuda/conv.cpp, on cuDNN); same contract as kernels/cpu/conv.h.
#pragma once

#include "kernels/conv.h"
#include "kernels/cuda/entry.h"
#include "runtime/tensor.h"

namespace ember::cuda {

// Non-empty contiguous NCHW tensors on one CUDA device (float32, float64, float16, bfloat16), run on the
// current stream of that device. float32 uses TF32 tensor cores only when cuda::allow_tf32().
EMBER_CUDA_ENTRY(void, conv2d_forward,
                 (const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& out,
                  const Conv2dParams& p))
EMBER_CUDA_ENTRY(void, conv2d_backward,
                 (const Tensor& grad_output, const Tensor& input, const Tensor& weight, const Conv2dParams& p,
                  const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias))

}  // namespace ember::cuda
