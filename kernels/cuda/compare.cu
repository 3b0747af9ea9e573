// CUDA entries of comparisons, isclose and where (kernels/cuda/elementwise.h) on the generic launcher.
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/loops.cuh"
#include "kernels/shared/elementwise_dispatch.h"
#include "runtime/cuda/guard.h"

namespace ember::cuda {

void compare(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  DeviceGuard guard(out.device());
  ew::compare_impl(CudaLoop{native_stream(out.device())}, op, a, b, out);
}

void compare_scalar(CompareOp op, const Tensor& a, const Scalar& s, const Tensor& out) {
  DeviceGuard guard(out.device());
  ew::compare_scalar_impl(CudaLoop{native_stream(out.device())}, op, a, s, out);
}

void isclose(const Tensor& a, const Tensor& b, const Tensor& out, double rtol, double atol) {
  DeviceGuard guard(out.device());
  ew::isclose_impl(CudaLoop{native_stream(out.device())}, a, b, out, rtol, atol);
}

void where(const Tensor& mask, const Tensor& a, const Tensor& b, const Tensor& out) {
  DeviceGuard guard(out.device());
  ew::where_impl(CudaLoop{native_stream(out.device())}, mask, a, b, out);
}

void where_scalar(const Tensor& mask, const Tensor& t, const Scalar& s, bool scalar_if_true, const Tensor& out) {
  DeviceGuard guard(out.device());
  ew::where_scalar_impl(CudaLoop{native_stream(out.device())}, mask, t, s, scalar_if_true, out);
}

}  // namespace ember::cuda
