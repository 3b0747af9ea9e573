// Dtype x op dispatch of the element-wise backend entries, written once for the CPU and CUDA loops.
//
// A Loop is any object with
//   template <class Out, class... In, class F> void run(const StridedIter& it, const F& f) const;
// that computes out[i] = f(in[i]...) over the iterator (cpu::elementwise, or the CUDA launcher on a
// stream). The backends instantiate these templates with their loop, so the enum -> functor and
// dtype -> type mapping exists once and both devices run exactly the same functors.
#pragma once

#include "kernels/dispatch.h"
#include "kernels/iter.h"
#include "kernels/shared/elementwise_ops.h"
#include "runtime/tensor.h"

namespace ember::ew {

// Arithmetic dtypes: the floating ones (16-bit ones computed in float) and the integers; not bool.
template <class F>
decltype(auto) dispatch_arith(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    case DType::Float16: return f(type_tag<Half>{});
    case DType::BFloat16: return f(type_tag<BFloat16>{});
    case DType::Int64: return f(type_tag<int64_t>{});
    case DType::Int32: return f(type_tag<int32_t>{});
    case DType::UInt8: return f(type_tag<uint8_t>{});
    default: throw_unsupported_dtype(op, t, "a floating-point or integer dtype (not bool)");
  }
}

template <class Loop>
void binary_impl(const Loop& loop, BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out,
                 const Scalar& alpha) {
  const char* name = op_name(op);
  const StridedIter it = make_iter(name, out, {&a, &b});
  if (it.numel == 0) return;
  dispatch_arith(out.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    visit_binary<C>(op, alpha.to<C>(), [&](auto f) { loop.template run<T, T, T>(it, Computed<T, C, decltype(f)>{f}); });
  });
}

template <class Loop>
void binary_scalar_impl(const Loop& loop, BinaryOp op, const Tensor& a, const Scalar& s, bool scalar_first,
                        const Tensor& out) {
  const char* name = op_name(op);
  const StridedIter it = make_iter(name, out, {&a});
  if (it.numel == 0) return;
  dispatch_arith(out.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    visit_binary_scalar<C>(op, s.to<C>(), scalar_first,
                           [&](auto f) { loop.template run<T, T>(it, Computed<T, C, decltype(f)>{f}); });
  });
}

template <class Loop>
void unary_impl(const Loop& loop, UnaryOp op, const Tensor& a, const Tensor& out, const Scalar& p0, const Scalar& p1) {
  const char* name = op_name(op);
  const StridedIter it = make_iter(name, out, {&a});
  if (it.numel == 0) return;
  dispatch_arith(out.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    visit_unary<C>(op, p0.to<C>(), p1.to<C>(), p0.to_int(),
                   [&](auto f) { loop.template run<T, T>(it, Computed<T, C, decltype(f)>{f}); });
  });
}

template <class Loop>
void compare_impl(const Loop& loop, CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const char* name = op_name(op);
  const StridedIter it = make_iter(name, out, {&a, &b});
  if (it.numel == 0) return;
  dispatch_all(a.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    visit_compare(op, [&](auto f) { loop.template run<bool, T, T>(it, Computed<bool, C, decltype(f)>{f}); });
  });
}

// Floating tensors compare in their compute type (the scalar rounded to it, as PyTorch); integer and
// bool tensors compare exactly, in int64 against an integral scalar and in double against a
// floating one (so that uint8 255 != -1 and int 2 < 2.5).
template <class Loop>
void compare_scalar_impl(const Loop& loop, CompareOp op, const Tensor& a, const Scalar& s, const Tensor& out) {
  const char* name = op_name(op);
  const StridedIter it = make_iter(name, out, {&a});
  if (it.numel == 0) return;
  dispatch_all(a.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto run_in = [&](auto ctag) {
      using C = typename decltype(ctag)::type;
      visit_compare(op, [&](auto f) {
        using Cmp = CompareRight<decltype(f), C>;
        loop.template run<bool, T>(it, Computed<bool, C, Cmp>{Cmp{f, s.to<C>()}});
      });
    };
    if constexpr (std::is_floating_point_v<compute_t<T>>) {
      run_in(type_tag<compute_t<T>>{});
    } else if (s.is_floating_point()) {
      run_in(type_tag<double>{});
    } else {
      run_in(type_tag<int64_t>{});
    }
  });
}

template <class Loop>
void isclose_impl(const Loop& loop, const Tensor& a, const Tensor& b, const Tensor& out, double rtol, double atol) {
  const StridedIter it = make_iter("allclose", out, {&a, &b});
  if (it.numel == 0) return;
  dispatch_all(a.dtype(), "allclose", [&](auto tag) {
    using T = typename decltype(tag)::type;
    loop.template run<bool, T, T>(it, Computed<bool, double, IsClose>{IsClose{rtol, atol}});
  });
}

template <class Loop>
void where_impl(const Loop& loop, const Tensor& mask, const Tensor& a, const Tensor& b, const Tensor& out) {
  const StridedIter it = make_iter("where", out, {&mask, &a, &b});
  if (it.numel == 0) return;
  dispatch_all(out.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    loop.template run<T, bool, T, T>(it, Where<T>{});
  });
}

template <class Loop>
void where_scalar_impl(const Loop& loop, const Tensor& mask, const Tensor& t, const Scalar& s, bool scalar_if_true,
                       const Tensor& out) {
  const StridedIter it = make_iter("where", out, {&mask, &t});
  if (it.numel == 0) return;
  dispatch_all(out.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    loop.template run<T, bool, T>(it, WhereScalar<T>{s.to<T>(), scalar_if_true});
  });
}

}  // namespace ember::ew
