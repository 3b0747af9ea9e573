// Helpers of the element-wise op files (binary.cpp, unary.cpp, compare.cpp): checks and the device switch.
#pragma once

#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/iter.h"
#include "kernels/ops.h"

namespace ember::ew {

// Cold paths: the message is only built when the check fails.
[[noreturn]] void throw_device_mismatch(const char* op, Device a, Device b);
[[noreturn]] void throw_dtype_mismatch(const char* op, DType a, DType b);
[[noreturn]] void throw_bool_arith(const char* op);
[[noreturn]] void throw_not_floating(const char* op, DType t);
[[noreturn]] void throw_inplace_shape(const char* op, IntArrayRef self, IntArrayRef broadcast);

inline void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device()) [[unlikely]]
    throw_device_mismatch(op, a.device(), b.device());
}
inline void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) [[unlikely]]
    throw_dtype_mismatch(op, a.dtype(), b.dtype());
}
// Arithmetic refuses bool tensors (logical ops, where masks and comparisons take them).
inline void check_arith(const char* op, const Tensor& t) {
  if (t.dtype() == kBool) [[unlikely]]
    throw_bool_arith(op);
}
inline void check_floating(const char* op, const Tensor& t) {
  if (!t.is_floating_point()) [[unlikely]]
    throw_not_floating(op, t.dtype());
}

// The shape of an element-wise result (no allocation when the shapes agree).
inline DimVector result_shape(const char* op, const Tensor& a, const Tensor& b) {
  if (a.sizes() == b.sizes()) return DimVector(a.sizes());
  return broadcast_shapes(op, a.sizes(), b.sizes());
}
// An in-place op may broadcast `other` into self, never grow self.
void check_inplace_shape(const char* op, const Tensor& self, const Tensor& other);

// ---- device switch ------------------------------------------------------------------------------

inline void run_binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, const Scalar& alpha = 1) {
  if (out.is_cuda())
    cuda::binary(op, a, b, out, alpha);
  else
    cpu::binary(op, a, b, out, alpha);
}
inline void run_binary_scalar(BinaryOp op, const Tensor& a, const Scalar& s, bool scalar_first, const Tensor& out) {
  if (out.is_cuda())
    cuda::binary_scalar(op, a, s, scalar_first, out);
  else
    cpu::binary_scalar(op, a, s, scalar_first, out);
}
inline void run_unary(UnaryOp op, const Tensor& a, const Tensor& out, const Scalar& p0 = 0, const Scalar& p1 = 0) {
  if (out.is_cuda())
    cuda::unary(op, a, out, p0, p1);
  else
    cpu::unary(op, a, out, p0, p1);
}

// A fused backward kernel: out = op(grad, saved) (kernels/shared/elementwise_ops.h's *Backward).
Tensor fused_backward(BinaryOp op, const Tensor& grad, const Tensor& saved);

}  // namespace ember::ew
