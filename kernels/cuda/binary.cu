// CUDA entries of the binary and tensor-scalar arithmetic (kernels/cuda/elementwise.h) on the generic launcher.
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/loops.cuh"
#include "kernels/shared/elementwise_dispatch.h"
#include "runtime/cuda/guard.h"

namespace ember::cuda {

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, const Scalar& alpha) {
  DeviceGuard guard(out.device());
  ew::binary_impl(CudaLoop{native_stream(out.device())}, op, a, b, out, alpha);
}

void binary_scalar(BinaryOp op, const Tensor& a, const Scalar& s, bool scalar_first, const Tensor& out) {
  DeviceGuard guard(out.device());
  ew::binary_scalar_impl(CudaLoop{native_stream(out.device())}, op, a, s, scalar_first, out);
}

}  // namespace ember::cuda
