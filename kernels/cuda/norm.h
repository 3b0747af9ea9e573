// CUDA entry points of batch norm and layer norm (kernels/cuda/norm.cu): the contract of kernels/cpu/norm.h
// (Note [Normalisation kernel contract]), run asynchronously on the current stream of the input's device.
#pragma once

#include "kernels/cuda/entry.h"
#include "runtime/tensor.h"

namespace ember::cuda {

EMBER_CUDA_ENTRY(void, batch_norm_forward,
                 (const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps, const Tensor& out,
                  const Tensor& save_mean, const Tensor& save_invstd))
EMBER_CUDA_ENTRY(void, batch_norm_backward,
                 (const Tensor& grad_out, const Tensor& input, const Tensor& weight, const Tensor& save_mean,
                  const Tensor& save_invstd, bool training, const Tensor& grad_input, const Tensor& grad_weight,
                  const Tensor& grad_bias))
EMBER_CUDA_ENTRY(void, layer_norm_forward,
                 (const Tensor& input, const Tensor& weight, const Tensor& bias, int64_t M, int64_t N, double eps,
                  const Tensor& out, const Tensor& mean, const Tensor& rstd))
EMBER_CUDA_ENTRY(void, layer_norm_backward,
                 (const Tensor& grad_out, const Tensor& input, const Tensor& mean, const Tensor& rstd,
                  const Tensor& weight, int64_t M, int64_t N, const Tensor& grad_input, const Tensor& grad_weight,
                  const Tensor& grad_bias))

}  // namespace ember::cuda
