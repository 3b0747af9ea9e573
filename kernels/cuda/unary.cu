// CUDA entry of the unary element-wise ops (kernels/cuda/elementwise.h) on the generic launcher.
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/loops.cuh"
#include "kernels/shared/elementwise_dispatch.h"
#include "runtime/cuda/guard.h"

namespace ember::cuda {

void unary(UnaryOp op, const Tensor& a, const Tensor& out, const Scalar& p0, const Scalar& p1) {
  DeviceGuard guard(out.device());
  ew::unary_impl(CudaLoop{native_stream(out.device())}, op, a, out, p0, p1);
}

}  // namespace ember::cuda
