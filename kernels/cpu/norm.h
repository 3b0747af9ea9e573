// CPU kernels of batch norm and layer norm (kernels/cpu/norm.cpp); the contract of kernels/cuda/norm.h.
#pragma once

#include "runtime/tensor.h"

namespace ember::cpu {

// Note [Normalisation kernel contract]
// Every tensor argument is contiguous and lives on one device; optional ones may be undefined.
// Batch norm sees its input as [N, C, S] (S: the product of the dims after 1); layer norm sees its
// input as [M, N] (M rows, each of the N normalised elements). Statistics (save_mean, save_invstd,
// mean, rstd, and the running statistics' arithmetic) use the "stat" dtype: float64 for float64
// inputs, float32 otherwise. weight, bias and the running statistics have the input's dtype.

// training: batch mean and 1/sqrt(biased var + eps) into save_mean/save_invstd, running stats updated
// (unbiased variance) when defined. Otherwise save_mean/save_invstd come from the running stats.
// out = (x - mean) * invstd * weight + bias.
void batch_norm_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                        const Tensor& running_var, bool training, double momentum, double eps, const Tensor& out,
                        const Tensor& save_mean, const Tensor& save_invstd);
// Gradients (each optional): training uses the closed form through the batch statistics; eval treats
// save_mean/save_invstd as constants.
void batch_norm_backward(const Tensor& grad_out, const Tensor& input, const Tensor& weight, const Tensor& save_mean,
                         const Tensor& save_invstd, bool training, const Tensor& grad_input,
                         const Tensor& grad_weight, const Tensor& grad_bias);

void layer_norm_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, int64_t M, int64_t N,
                        double eps, const Tensor& out, const Tensor& mean, const Tensor& rstd);
void layer_norm_backward(const Tensor& grad_out, const Tensor& input, const Tensor& mean, const Tensor& rstd,
                         const Tensor& weight, int64_t M, int64_t N, const Tensor& grad_input,
                         const Tensor& grad_weight, const Tensor& grad_bias);

}  // namespace ember::cpu
