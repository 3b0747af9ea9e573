// CPU element-wise kernels: the shared dispatch (kernels/shared/elementwise_dispatch.h) over cpu::elementwise.
#include "kernels/cpu/elementwise.h"

#include "kernels/cpu/loops.h"
#include "kernels/shared/elementwise_dispatch.h"

namespace ember {

namespace ew {
void throw_float_only(const char* op, const char* type) {
  EMBER_THROW(op, ": internal error: this element-wise functor does not support ", type);
}
}  // namespace ew

namespace cpu {

namespace {
struct CpuLoop {
  template <class Out, class... In, class F>
  void run(const StridedIter& it, const F& f) const {
    elementwise<Out, In...>(it, f);
  }
};
}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, const Scalar& alpha) {
  ew::binary_impl(CpuLoop{}, op, a, b, out, alpha);
}
void binary_scalar(BinaryOp op, const Tensor& a, const Scalar& s, bool scalar_first, const Tensor& out) {
  ew::binary_scalar_impl(CpuLoop{}, op, a, s, scalar_first, out);
}
void unary(UnaryOp op, const Tensor& a, const Tensor& out, const Scalar& p0, const Scalar& p1) {
  ew::unary_impl(CpuLoop{}, op, a, out, p0, p1);
}
void compare(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  ew::compare_impl(CpuLoop{}, op, a, b, out);
}
void compare_scalar(CompareOp op, const Tensor& a, const Scalar& s, const Tensor& out) {
  ew::compare_scalar_impl(CpuLoop{}, op, a, s, out);
}
void isclose(const Tensor& a, const Tensor& b, const Tensor& out, double rtol, double atol) {
  ew::isclose_impl(CpuLoop{}, a, b, out, rtol, atol);
}
void where(const Tensor& mask, const Tensor& a, const Tensor& b, const Tensor& out) {
  ew::where_impl(CpuLoop{}, mask, a, b, out);
}
void where_scalar(const Tensor& mask, const Tensor& t, const Scalar& s, bool scalar_if_true, const Tensor& out) {
  ew::where_scalar_impl(CpuLoop{}, mask, t, s, scalar_if_true, out);
}

}  // namespace cpu
}  // namespace ember
