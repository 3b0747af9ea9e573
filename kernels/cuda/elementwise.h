// CUDA entry points of the element-wise ops (kernels/cuda/binary.cu, unary.cu, compare.cu); same
// contract as kernels/cpu/elementwise.h. Each runs on the current stream of out's device.
#pragma once

#include "kernels/cuda/entry.h"
#include "kernels/shared/elementwise_ops.h"
#include "runtime/tensor.h"

namespace ember::cuda {

EMBER_CUDA_ENTRY(void, binary, (BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, const Scalar& alpha))
EMBER_CUDA_ENTRY(void, binary_scalar,
                 (BinaryOp op, const Tensor& a, const Scalar& s, bool scalar_first, const Tensor& out))
EMBER_CUDA_ENTRY(void, unary, (UnaryOp op, const Tensor& a, const Tensor& out, const Scalar& p0, const Scalar& p1))
EMBER_CUDA_ENTRY(void, compare, (CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out))
EMBER_CUDA_ENTRY(void, compare_scalar, (CompareOp op, const Tensor& a, const Scalar& s, const Tensor& out))
EMBER_CUDA_ENTRY(void, isclose, (const Tensor& a, const Tensor& b, const Tensor& out, double rtol, double atol))
EMBER_CUDA_ENTRY(void, where, (const Tensor& mask, const Tensor& a, const Tensor& b, const Tensor& out))
EMBER_CUDA_ENTRY(void, where_scalar,
                 (const Tensor& mask, const Tensor& t, const Scalar& s, bool scalar_if_true, const Tensor& out))

}  // namespace ember::cuda
