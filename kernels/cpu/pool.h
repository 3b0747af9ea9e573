// CPU pooling kernels: direct loops over (image, channel) planes, parallel with OpenMP.
#pragma once

#include "kernels/shared/pool.h"
#include "runtime/tensor.h"

namespace ember::cpu {

// All tensors are contiguous [N, C, H, W] (planes of the geometry's in/out sizes), float32 or float64;
// indices are int64 flat positions h * in_w + w within the input plane. Backward kernels overwrite
// grad_input entirely.
void max_pool2d(const Tensor& input, const Tensor& out, const Tensor& indices, const pool::Pool2dGeometry& g);
void max_pool2d_backward(const Tensor& grad_output, const Tensor& indices, const Tensor& grad_input,
                         const pool::Pool2dGeometry& g);
void avg_pool2d(const Tensor& input, const Tensor& out, const pool::Pool2dGeometry& g);
void avg_pool2d_backward(const Tensor& grad_output, const Tensor& grad_input, const pool::Pool2dGeometry& g);
void adaptive_avg_pool2d(const Tensor& input, const Tensor& out);
void adaptive_avg_pool2d_backward(const Tensor& grad_output, const Tensor& grad_input);

}  // namespace ember::cpu
