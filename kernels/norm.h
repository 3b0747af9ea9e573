// Normalisation ops: batch_norm and layer_norm (fused CPU/CUDA kernels with their backward nodes).
#pragma once

#include "kernels/ops.h"

namespace ember {

// Batch normalisation over dim 1 of an [N, C] or [N, C, *] input, PyTorch's semantics.
// training: normalises with the batch statistics (biased variance) and, when running_mean/running_var
// are defined, updates them in place: running = (1 - momentum) * running + momentum * batch, with the
// UNBIASED batch variance for running_var. Not training: normalises with the running statistics (which
// must then be defined). weight and bias ([C]) may be undefined (no affine transform).
// Differentiable w.r.t. input, weight and bias; the running statistics receive no gradient.
Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps);

// Layer normalisation over the trailing dims `normalized_shape` of input (which must end with them):
// (x - mean) / sqrt(var + eps) * weight + bias with the biased variance per normalised slice.
// weight and bias (of shape normalized_shape) may be undefined. Differentiable w.r.t. all three.
Tensor layer_norm(const Tensor& input, IntArrayRef normalized_shape, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);

}  // namespace ember
