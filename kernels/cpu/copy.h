// CPU copy and fill kernels (host memory of any logical CPU device).
#pragma once

#include "runtime/tensor.h"

namespace ember::cpu {

// dst <- src (src already has dst's shape, possibly with 0 strides); converts dtypes.
void copy(const Tensor& dst, const Tensor& src);
void fill(const Tensor& self, const Scalar& value);

}  // namespace ember::cpu
