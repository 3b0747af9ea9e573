// Helpers for the LibTorch oracle tests: copying tensors between ember and LibTorch, comparing values and gradients.
#pragma once

#include <gtest/gtest.h>
#include <torch/types.h>  // ATen and the torch:: factories; half the compile time of <torch/torch.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ember.h"

namespace ember::oracle {

inline at::ScalarType to_torch_dtype(DType dtype) {
  switch (dtype) {
    case kFloat32: return at::kFloat;
    case kFloat64: return at::kDouble;
    case kInt64: return at::kLong;
    case kInt32: return at::kInt;
    case kBool: return at::kBool;
    case kUInt8: return at::kByte;
    case kFloat16: return at::kHalf;
    case kBFloat16: return at::kBFloat16;
  }
  EMBER_THROW("oracle: no LibTorch dtype for ", dtype_name(dtype));
}

inline DType from_torch_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return kFloat32;
    case at::kDouble: return kFloat64;
    case at::kLong: return kInt64;
    case at::kInt: return kInt32;
    case at::kBool: return kBool;
    case at::kByte: return kUInt8;
    case at::kHalf: return kFloat16;
    case at::kBFloat16: return kBFloat16;
    default: EMBER_THROW("oracle: no ember dtype for LibTorch's ", c10::toString(dtype));
  }
}

// A CPU LibTorch tensor with the same sizes, dtype and values (copied through host memory; autograd
// state is not carried: the result is a fresh LibTorch leaf).
inline at::Tensor to_torch(const Tensor& t) {
  Tensor host = t.detach().cpu().contiguous();
  std::vector<int64_t> sizes(host.sizes().begin(), host.sizes().end());
  at::Tensor out = torch::empty(sizes, torch::TensorOptions().dtype(to_torch_dtype(host.dtype())));
  if (host.nbytes() > 0) std::memcpy(out.data_ptr(), host.data_ptr(), host.nbytes());
  return out;
}

// An ember tensor on `device` with the same sizes, dtype and values as the LibTorch tensor `t`.
inline Tensor from_torch(const at::Tensor& t, Device device = Device::cpu()) {
  at::Tensor host = t.detach().cpu().contiguous();
  std::vector<int64_t> sizes(host.sizes().begin(), host.sizes().end());
  Tensor out = empty(sizes, TensorOptions().dtype(from_torch_dtype(host.scalar_type())));
  if (out.nbytes() > 0) std::memcpy(out.data_ptr(), host.data_ptr(), out.nbytes());
  return out.to(device);
}

using Dims = std::vector<int64_t>;

inline std::vector<int64_t> shape_of(const Tensor& t) { return {t.sizes().begin(), t.sizes().end()}; }

// gtest assertion: same sizes and dtype, and |a - b| <= atol + rtol * |b| elementwise (b is the oracle).
// NaN matches NaN and an infinity the same infinity (ops must agree on where they overflow).
inline ::testing::AssertionResult all_close(const Tensor& actual, const at::Tensor& expected, double rtol = 1e-5,
                                            double atol = 1e-6) {
  if (!actual.defined() || !expected.defined()) {
    return ::testing::AssertionFailure() << "undefined tensor: ember " << (actual.defined() ? "defined" : "undefined")
                                         << ", LibTorch " << (expected.defined() ? "defined" : "undefined");
  }
  at::Tensor a = to_torch(actual);
  if (a.scalar_type() != expected.scalar_type()) {
    return ::testing::AssertionFailure() << "dtypes differ: ember " << dtype_name(actual.dtype()) << " vs LibTorch "
                                         << c10::toString(expected.scalar_type());
  }
  a = a.to(at::kDouble);
  at::Tensor b = expected.detach().cpu().to(at::kDouble);
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "sizes differ: ember " << a.sizes() << " vs LibTorch " << b.sizes();
  }
  if (a.numel() == 0) return ::testing::AssertionSuccess();
  at::Tensor same_special = (a.isnan() & b.isnan()) | (a.isinf() & (a == b));
  at::Tensor err = ((a - b).abs() - (atol + rtol * b.abs())).masked_fill(same_special, -1.0).nan_to_num(1.0, 1.0, 1.0);
  if (err.max().item<double>() <= 0) return ::testing::AssertionSuccess();
  const int64_t bad = (err > 0).sum().item<int64_t>();
  at::Tensor flat_a = a.flatten(), flat_b = b.flatten();
  const int64_t worst = err.flatten().argmax().item<int64_t>();
  auto failure = ::testing::AssertionFailure();
  failure << bad << " of " << a.numel() << " values differ (rtol " << rtol << ", atol " << atol << ", shape "
          << a.sizes() << "); worst at flat index " << worst << ": ember " << flat_a[worst].item<double>()
          << " vs LibTorch " << flat_b[worst].item<double>();
  int shown = 0;
  at::Tensor bad_idx = (err.flatten() > 0).nonzero().flatten();
  for (int64_t k = 0; k < bad_idx.numel() && shown < 6; ++k, ++shown) {
    const int64_t i = bad_idx[k].item<int64_t>();
    failure << "\n  [" << i << "] ember " << flat_a[i].item<double>() << " vs LibTorch " << flat_b[i].item<double>();
  }
  return failure;
}

// Exact equality (values, sizes and dtype): for integer and bool results (indices, masks, argmax).
inline ::testing::AssertionResult equal(const Tensor& actual, const at::Tensor& expected) {
  return all_close(actual, expected, 0.0, 0.0);
}

// Note [Oracle tolerances]
// Both libraries compute every float op in its own dtype, but not with the same instructions:
// LibTorch's element-wise math goes through Sleef's vectorised exp/log/tanh/erf (documented at
// <= 1 ulp), ember's through libm/compiler-vectorised code, and the two sum in different orders
// (LibTorch's cascade/vectorised sums vs ember's blocked loops), use different GEMM/conv algorithms
// (MKL-DNN/OpenBLAS with other blockings) and different but equivalent backward formulas. So:
//  * element-wise results differ by a few ulps: rtol 1e-5 for float32 (ulp 1.2e-7, i.e. ~80 ulps of
//    headroom) and 1e-10 for float64; an atol of 1e-6 / 1e-12 covers results that land near zero
//    through cancellation (x - y, sin near pi), where a relative bound is meaningless.
//  * a result accumulated over n terms (sums, means, matmul/conv dot products, gradients of broadcast
//    inputs) carries rounding of order n * u * (typical |term|) whatever the order, with u the unit
//    roundoff (2^-24 / 2^-53); near-cancelling sums make that absolute, not relative. accum_tol adds
//    8 * n * u * scale to atol: a few times the random-walk estimate and below the worst-case bound.
struct Tol {
  double rtol;
  double atol;
};

inline double unit_roundoff(DType dtype) { return dtype == kFloat64 ? 0x1p-53 : 0x1p-24; }

// Element-wise results (see Note [Oracle tolerances]).
inline Tol tol(DType dtype) { return dtype == kFloat64 ? Tol{1e-10, 1e-12} : Tol{1e-5, 1e-6}; }

// Results accumulated over n terms of magnitude ~scale (see Note [Oracle tolerances]).
inline Tol accum_tol(DType dtype, int64_t n, double scale = 1.0) {
  Tol t = tol(dtype);
  t.atol += 8.0 * static_cast<double>(n) * unit_roundoff(dtype) * scale;
  return t;
}

inline ::testing::AssertionResult all_close(const Tensor& actual, const at::Tensor& expected, Tol t) {
  return all_close(actual, expected, t.rtol, t.atol);
}

// Random ember tensors (from ember's seeded generator); their LibTorch twins come from to_torch.
inline Tensor randn_t(IntArrayRef sizes, DType dtype, bool requires_grad = true) {
  Tensor t = randn(sizes, TensorOptions().dtype(dtype));
  if (requires_grad) t.requires_grad_();
  return t;
}
// Uniform in [lo, hi): for ops with a restricted domain (log, sqrt, pow's base).
inline Tensor uniform_t(IntArrayRef sizes, DType dtype, double lo, double hi, bool requires_grad = true) {
  Tensor t = empty(sizes, TensorOptions().dtype(dtype));
  t.uniform_(lo, hi);
  if (requires_grad) t.requires_grad_();
  return t;
}

// The result of an oracle comparison, with the op's forward and backward checked.
// Note [Forward and backward oracle]
// compare_op runs the ember function on `inputs` and the LibTorch function on fresh LibTorch leaves
// holding the same values (requires_grad where the ember input requires it), compares the outputs
// (dtype, sizes, values within `fwd`), then back-propagates sum(out * w) with the same random w
// (w ~ N(0, 1): a plain sum() would hide wrong per-element gradients that happen to add up, and ones
// would hide transposed ones) in both libraries and compares every input's gradient within `bwd`.
// An input whose gradient is undefined in one library and zero in the other counts as equal (both
// mean "no gradient"). Outputs that are not floating point (masks, indices) are compared exactly and
// have no backward. Ops with several outputs (split, chunk) use the vector form.
struct OpFns {
  std::function<std::vector<Tensor>(const std::vector<Tensor>&)> ember;
  std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)> torch;
};

inline ::testing::AssertionResult compare_op_multi(const std::vector<Tensor>& inputs, const OpFns& fns, Tol fwd,
                                                   Tol bwd) {
  std::vector<at::Tensor> tin;
  for (const Tensor& in : inputs) {
    if (in.defined() && in.requires_grad()) in.set_grad(Tensor());
    at::Tensor t = in.defined() ? to_torch(in) : at::Tensor();
    if (in.defined() && in.requires_grad()) t.requires_grad_(true);
    tin.push_back(t);
  }
  std::vector<Tensor> out = fns.ember(inputs);
  std::vector<at::Tensor> tout = fns.torch(tin);
  if (out.size() != tout.size()) {
    return ::testing::AssertionFailure() << "ember returned " << out.size() << " outputs, LibTorch " << tout.size();
  }
  for (size_t i = 0; i < out.size(); ++i) {
    auto r = out[i].is_floating_point() ? all_close(out[i], tout[i], fwd) : equal(out[i], tout[i]);
    if (!r) return ::testing::AssertionFailure() << "forward output " << i << ": " << r.message();
  }
  // Backward of sum_i sum(out_i * w_i).
  Tensor loss;
  at::Tensor tloss;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!out[i].is_floating_point()) continue;
    if (out[i].requires_grad() != tout[i].requires_grad()) {
      return ::testing::AssertionFailure() << "output " << i << " requires_grad: ember " << out[i].requires_grad()
                                           << " vs LibTorch " << tout[i].requires_grad();
    }
    if (!out[i].requires_grad()) continue;
    Tensor w = randn(out[i].sizes(), TensorOptions().dtype(out[i].dtype()));
    Tensor term = (out[i] * w).sum();
    at::Tensor tterm = (tout[i] * to_torch(w)).sum();
    loss = loss.defined() ? loss + term : term;
    tloss = tloss.defined() ? tloss + tterm : tterm;
  }
  if (!loss.defined()) return ::testing::AssertionSuccess();
  loss.backward();
  tloss.backward();
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].defined() || !inputs[k].requires_grad()) continue;
    Tensor g = inputs[k].grad();
    at::Tensor tg = tin[k].grad();
    if (!g.defined() && !tg.defined()) continue;
    if (!g.defined()) g = zeros(inputs[k].sizes(), inputs[k].options());
    if (!tg.defined()) tg = at::zeros_like(tin[k]);
    auto r = all_close(g, tg, bwd);
    if (!r) return ::testing::AssertionFailure() << "gradient of input " << k << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

// One output.
template <class FE, class FT>
::testing::AssertionResult compare_op(const std::vector<Tensor>& inputs, FE ember_fn, FT torch_fn, Tol fwd, Tol bwd) {
  OpFns fns{[&](const std::vector<Tensor>& in) { return std::vector<Tensor>{ember_fn(in)}; },
            [&](const std::vector<at::Tensor>& in) { return std::vector<at::Tensor>{torch_fn(in)}; }};
  return compare_op_multi(inputs, fns, fwd, bwd);
}
template <class FE, class FT>
::testing::AssertionResult compare_op(const std::vector<Tensor>& inputs, FE ember_fn, FT torch_fn, Tol t) {
  return compare_op(inputs, ember_fn, torch_fn, t, t);
}

// "[7, 1, 13] float32": for SCOPED_TRACE.
inline std::string describe(const std::vector<Tensor>& inputs) {
  std::ostringstream os;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i) os << ", ";
    if (!inputs[i].defined()) {
      os << "undefined";
      continue;
    }
    os << inputs[i].sizes() << " " << dtype_name(inputs[i].dtype());
    if (!inputs[i].is_contiguous()) os << " (strides " << inputs[i].strides() << ")";
  }
  return os.str();
}

// Both dtypes the oracle suites sweep.
inline const std::vector<DType>& float_dtypes() {
  static const std::vector<DType> dtypes = {kFloat32, kFloat64};
  return dtypes;
}

}  // namespace ember::oracle
