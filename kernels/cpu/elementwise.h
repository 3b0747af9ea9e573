// CPU element-wise kernels: binary, scalar, unary, comparison and selection entries (host memory).
#pragma once

#include "kernels/shared/elementwise_ops.h"
#include "runtime/tensor.h"

namespace ember::cpu {

// Every entry writes `out`, which already has the broadcast shape and the result dtype; inputs
// broadcast to it. Inputs of arithmetic entries have out's dtype; dtype rules live in the ops.

// out = a (op) b (alpha: AddAlpha's multiplier of b).
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, const Scalar& alpha);
// out = a (op) s, or s (op) a when scalar_first (Sub and Div only).
void binary_scalar(BinaryOp op, const Tensor& a, const Scalar& s, bool scalar_first, const Tensor& out);
// out = op(a; p0, p1).
void unary(UnaryOp op, const Tensor& a, const Tensor& out, const Scalar& p0, const Scalar& p1);
// out (kBool) = a (op) b, a and b of one dtype.
void compare(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void compare_scalar(CompareOp op, const Tensor& a, const Scalar& s, const Tensor& out);
// out (kBool) = a == b || |a - b| <= atol + rtol * |b| (finite differences only).
void isclose(const Tensor& a, const Tensor& b, const Tensor& out, double rtol, double atol);
// out = mask ? a : b (mask kBool).
void where(const Tensor& mask, const Tensor& a, const Tensor& b, const Tensor& out);
// out = mask == scalar_if_true ? s : t.
void where_scalar(const Tensor& mask, const Tensor& t, const Scalar& s, bool scalar_if_true, const Tensor& out);

}  // namespace ember::cpu
