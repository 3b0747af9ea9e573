// LibTorch oracle: element-wise arithmetic, unary math, in-place forms, comparisons, where and masked_fill.
#include <gmock/gmock.h>

#include <string>
#include <vector>

#include "tests/torch/oracle.h"

namespace ember {
namespace {

using namespace oracle;

// How an operand reaches the op: as the leaf itself, or as a non-contiguous view of a larger leaf.
enum class View { None, Transposed, Step2 };

// The leaf shape whose view has `shape`.
std::vector<int64_t> leaf_shape(std::vector<int64_t> shape, View view) {
  if (view == View::Transposed) std::swap(shape[shape.size() - 1], shape[shape.size() - 2]);
  if (view == View::Step2) shape.back() *= 2;
  return shape;
}

template <class T>
T apply_view(const T& x, View view) {
  switch (view) {
    case View::None: return x;
    case View::Transposed: return x.transpose(-2, -1);
    case View::Step2: return x.slice(-1, 0, x.size(-1), 2);
  }
  return x;
}

struct Operand {
  std::vector<int64_t> shape;
  View view = View::None;
};

// Binary operand shapes: equal, broadcasting either way (including both at once), 0-d, non-contiguous.
const std::vector<std::pair<Operand, Operand>>& binary_cases() {
  static const std::vector<std::pair<Operand, Operand>> cases = {
      {{{7, 13}}, {{7, 13}}},
      {{{7, 1, 13}}, {{5, 13}}},             // both broadcast: -> [7, 5, 13]
      {{{5, 13}}, {{7, 1, 13}}},
      {{{7, 13}}, {{13}}},                   // b broadcast along rows
      {{{13}}, {{7, 13}}},                   // a broadcast
      {{{33, 1}}, {{33}}},                   // column op row -> [33, 33]
      {{{}}, {{7, 13}}},                     // 0-d with a tensor
      {{{7, 13}}, {{}}},
      {{{7, 13}, View::Transposed}, {{7, 13}, View::Step2}},  // both non-contiguous
      {{{13, 7}, View::Transposed}, {{7}}},                   // transposed + broadcast
  };
  return cases;
}

// Makes the leaf for an operand; `gen` draws its values.
using Gen = std::function<Tensor(IntArrayRef, DType)>;
Gen normal_gen() {
  return [](IntArrayRef s, DType d) { return randn_t(s, d); };
}
Gen uniform_gen(double lo, double hi) {
  return [lo, hi](IntArrayRef s, DType d) { return uniform_t(s, d, lo, hi); };
}

// Gradients of a broadcast operand sum over up to 33 rows.
Tol binary_grad_tol(DType dtype) { return accum_tol(dtype, 33, 2.0); }

// Runs `op` (a generic lambda on two tensors, valid for ember and LibTorch) over every binary case.
template <class Op>
void check_binary(const std::string& name, Op op, const Gen& gen_a, const Gen& gen_b) {
  for (DType dtype : float_dtypes()) {
    for (const auto& [a, b] : binary_cases()) {
      std::vector<Tensor> in = {gen_a(leaf_shape(a.shape, a.view), dtype), gen_b(leaf_shape(b.shape, b.view), dtype)};
      auto f = [&, va = a.view, vb = b.view](const auto& x) { return op(apply_view(x[0], va), apply_view(x[1], vb)); };
      EXPECT_TRUE(compare_op(in, f, f, tol(dtype), binary_grad_tol(dtype))) << name << " on " << describe(in);
    }
  }
}

TEST(ElementwiseOracle, BinaryOpsWithBroadcasting) {
  manual_seed(1);
  const Gen n = normal_gen();
  // Divisors and pow's base stay away from 0: the gradients 1/b^2 and log(a) are ill-conditioned there.
  const Gen pos = uniform_gen(0.5, 2.0);
  check_binary("add", [](const auto& a, const auto& b) { return a + b; }, n, n);
  check_binary("add alpha", [](const auto& a, const auto& b) { return a.add(b, 2.5); }, n, n);
  check_binary("sub", [](const auto& a, const auto& b) { return a - b; }, n, n);
  check_binary("sub alpha", [](const auto& a, const auto& b) { return a.sub(b, -0.75); }, n, n);
  check_binary("mul", [](const auto& a, const auto& b) { return a * b; }, n, n);
  check_binary("div", [](const auto& a, const auto& b) { return a / b; }, n, pos);
  check_binary("maximum", [](const auto& a, const auto& b) { return maximum(a, b); }, n, n);
  check_binary("minimum", [](const auto& a, const auto& b) { return minimum(a, b); }, n, n);
  check_binary("pow", [](const auto& a, const auto& b) { return a.pow(b); }, pos, n);
}

// Ties: PyTorch 1.13 splits the gradient of maximum/minimum evenly between equal operands.
TEST(ElementwiseOracle, MaximumMinimumTiesSplitTheGradient) {
  for (DType dtype : float_dtypes()) {
    Tensor a = tensor({1.0, 2.0, 3.0, -1.0, 0.5, 0.5}).view({2, 3}).to(dtype).requires_grad_();
    Tensor b = tensor({1.0, 0.0, 3.0}).to(dtype).requires_grad_();
    for (int which = 0; which < 2; ++which) {
      auto f = [which](const auto& x) { return which == 0 ? maximum(x[0], x[1]) : minimum(x[0], x[1]); };
      EXPECT_TRUE(compare_op({a, b}, f, f, tol(dtype))) << (which == 0 ? "maximum" : "minimum");
    }
  }
}

// Unary operand layouts: plain, odd 1-D, 0-d, transposed, strided and a 3-D permutation.
struct UnaryCase {
  std::vector<int64_t> shape;
  View view;
};
const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> cases = {
      {{7, 13}, View::None}, {{33}, View::None}, {{}, View::None}, {{13, 7}, View::Transposed},
      {{5, 13}, View::Step2}, {{3, 7, 13}, View::Transposed},
  };
  return cases;
}

using TolFn = Tol (*)(DType);

template <class FE, class FT>
void check_unary2(const std::string& name, FE fe, FT ft, const Gen& gen, TolFn bwd_tol = &tol) {
  for (DType dtype : float_dtypes()) {
    for (const UnaryCase& c : unary_cases()) {
      std::vector<Tensor> in = {gen(leaf_shape(c.shape, c.view), dtype)};
      auto e = [&, v = c.view](const std::vector<Tensor>& x) { return fe(apply_view(x[0], v)); };
      auto t = [&, v = c.view](const std::vector<at::Tensor>& x) { return ft(apply_view(x[0], v)); };
      EXPECT_TRUE(compare_op(in, e, t, tol(dtype), bwd_tol(dtype))) << name << " on " << describe(in);
    }
  }
}
template <class F>
void check_unary(const std::string& name, F f, const Gen& gen) {
  check_unary2(name, f, f, gen);
}

// gelu's tanh form differentiates 0.5 x (1 + tanh(u)): for x < -4 in float32, 1 + tanh(u) is a few ulps
// of 1 (or exactly 0 when tanh rounds to -1, as LibTorch's Sleef tanh does where std::tanh gives
// -0.99999994), and the derivative multiplies that error by 0.5 + |x| sqrt(2/pi) (1 + 3 kappa x^2),
// ~18 at x = -5. LibTorch's own float32 gradient at x = -5 is -2.0e-6 against the float64 -1.5e-6.
// With |w| up to ~4 the two libraries may differ by 18 * 2^-24 * 4 ~ 4.3e-6 absolutely: atol 5e-6.
Tol gelu_tanh_grad_tol(DType dtype) { return dtype == kFloat64 ? tol(dtype) : Tol{1e-5, 5e-6}; }

TEST(ElementwiseOracle, UnaryMath) {
  manual_seed(2);
  const Gen n = normal_gen();
  const Gen pos = uniform_gen(0.3, 3.0);
  const Gen wide = [](IntArrayRef s, DType d) { return randn_t(s, d, false).mul(4.0).detach().requires_grad_(); };
  check_unary("neg", [](const auto& x) { return -x; }, n);
  check_unary("exp", [](const auto& x) { return x.exp(); }, wide);
  check_unary("log", [](const auto& x) { return x.log(); }, pos);
  check_unary("log1p", [](const auto& x) { return x.log1p(); }, uniform_gen(-0.7, 3.0));
  check_unary("sqrt", [](const auto& x) { return x.sqrt(); }, pos);
  check_unary("rsqrt", [](const auto& x) { return x.rsqrt(); }, pos);
  check_unary("square", [](const auto& x) { return x.square(); }, n);
  check_unary("reciprocal", [](const auto& x) { return x.reciprocal(); }, pos);
  check_unary("abs", [](const auto& x) { return x.abs(); }, n);
  check_unary("sign", [](const auto& x) { return x.sign(); }, n);
  check_unary("sin", [](const auto& x) { return x.sin(); }, wide);
  check_unary("cos", [](const auto& x) { return x.cos(); }, wide);
  check_unary("relu", [](const auto& x) { return x.relu(); }, n);
  check_unary("sigmoid", [](const auto& x) { return x.sigmoid(); }, wide);
  check_unary("tanh", [](const auto& x) { return x.tanh(); }, wide);
  check_unary2(
      "gelu", [](const Tensor& x) { return gelu(x); }, [](const at::Tensor& x) { return at::gelu(x); }, wide);
  check_unary2(
      "gelu tanh", [](const Tensor& x) { return gelu(x, "tanh"); },
      [](const at::Tensor& x) { return at::gelu(x, "tanh"); }, wide, &gelu_tanh_grad_tol);
  check_unary("clamp", [](const auto& x) { return x.clamp(-0.5, 0.7); }, n);
  check_unary2(
      "clamp lo only", [](const Tensor& x) { return x.clamp(-0.25, std::nullopt); },
      [](const at::Tensor& x) { return x.clamp(-0.25, c10::nullopt); }, n);
  check_unary2(
      "clamp hi only", [](const Tensor& x) { return x.clamp(std::nullopt, 0.25); },
      [](const at::Tensor& x) { return x.clamp(c10::nullopt, 0.25); }, n);
  check_unary("clamp_min", [](const auto& x) { return x.clamp_min(0.2); }, n);
  check_unary("clamp_max", [](const auto& x) { return x.clamp_max(-0.1); }, n);
}

// Saturation and overflow: exp overflows to inf in float32 past ~88.7, sigmoid/tanh/gelu saturate.
TEST(ElementwiseOracle, UnaryMathAtExtremes) {
  for (DType dtype : float_dtypes()) {
    Tensor x = tensor({-120.0, -60.0, -20.0, -9.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 9.0, 20.0, 60.0, 120.0})
                   .to(dtype)
                   .requires_grad_();
    auto check = [&](const std::string& name, auto fe, auto ft) {
      EXPECT_TRUE(compare_op({x}, fe, ft, tol(dtype))) << name << " " << dtype_name(dtype);
    };
    check("sigmoid", [](const auto& v) { return v[0].sigmoid(); }, [](const auto& v) { return v[0].sigmoid(); });
    check("tanh", [](const auto& v) { return v[0].tanh(); }, [](const auto& v) { return v[0].tanh(); });
    check("gelu", [](const std::vector<Tensor>& v) { return gelu(v[0]); },
          [](const std::vector<at::Tensor>& v) { return at::gelu(v[0]); });
    check("gelu tanh", [](const std::vector<Tensor>& v) { return gelu(v[0], "tanh"); },
          [](const std::vector<at::Tensor>& v) { return at::gelu(v[0], "tanh"); });
    check("relu", [](const auto& v) { return v[0].relu(); }, [](const auto& v) { return v[0].relu(); });
    check("exp", [](const auto& v) { return v[0].exp(); }, [](const auto& v) { return v[0].exp(); });
  }
}

TEST(ElementwiseOracle, ScalarFormsAndPow) {
  manual_seed(3);
  const Gen n = normal_gen();
  const Gen pos = uniform_gen(0.3, 3.0);
  check_unary("add scalar", [](const auto& x) { return x + 2.5; }, n);
  check_unary("scalar add", [](const auto& x) { return 2.5 + x; }, n);
  check_unary("sub scalar", [](const auto& x) { return x - 1.25; }, n);
  check_unary("scalar sub", [](const auto& x) { return 1.25 - x; }, n);
  check_unary("mul scalar", [](const auto& x) { return x * -3.0; }, n);
  check_unary("div scalar", [](const auto& x) { return x / 4.0; }, n);
  check_unary("int scalar", [](const auto& x) { return x * 3 + 1; }, n);
  check_unary2(
      "rsub", [](const Tensor& x) { return rsub(x, 2.0); }, [](const at::Tensor& x) { return at::rsub(x, 2.0); }, n);
  // b / a in LibTorch: a full tensor divided, so both round one true division.
  check_unary2(
      "rdiv", [](const Tensor& x) { return rdiv(x, 2.0); },
      [](const at::Tensor& x) { return at::full_like(x, 2.0) / x; }, pos);
  for (double e : {0.0, 1.0, 2.0, 3.0, -1.0, -2.0}) {
    check_unary("pow " + std::to_string(e), [e](const auto& x) { return x.pow(e); }, n);
  }
  for (double e : {0.5, -0.5, 1.5, -1.5, 2.7}) {
    check_unary("pow " + std::to_string(e), [e](const auto& x) { return x.pow(e); }, pos);
  }
  check_unary("pow int 3", [](const auto& x) { return x.pow(3); }, n);
}

// In-place ops on non-leaves, recorded for autograd.
TEST(ElementwiseOracle, InPlaceForms) {
  manual_seed(4);
  for (DType dtype : float_dtypes()) {
    std::vector<Tensor> in = {randn_t({7, 13}, dtype), randn_t({13}, dtype), uniform_t({7, 13}, dtype, 0.5, 2.0)};
    auto check = [&](const std::string& name, auto f) {
      EXPECT_TRUE(compare_op(in, f, f, tol(dtype), accum_tol(dtype, 7, 2.0))) << name << " " << dtype_name(dtype);
    };
    check("add_", [](const auto& x) { auto y = x[0] * 1.0; y.add_(x[1]); return y; });
    check("add_ alpha", [](const auto& x) { auto y = x[0] * 1.0; y.add_(x[1], -2.0); return y; });
    check("add_ scalar", [](const auto& x) { auto y = x[0] * 1.0; y.add_(3.5); return y; });
    check("sub_", [](const auto& x) { auto y = x[0] * 1.0; y.sub_(x[1], 0.5); return y; });
    check("mul_", [](const auto& x) { auto y = x[0] * 1.0; y.mul_(x[1]); return y; });
    check("mul_ scalar", [](const auto& x) { auto y = x[0] * 1.0; y.mul_(-1.5); return y; });
    check("div_", [](const auto& x) { auto y = x[0] * 1.0; y.div_(x[2]); return y; });
    check("div_ scalar", [](const auto& x) { auto y = x[0] * 1.0; y.div_(3.0); return y; });
    check("relu_", [](const auto& x) { auto y = x[0] * 2.0; y.relu_(); return y * x[1]; });
    check("clamp_", [](const auto& x) { auto y = x[0] * 2.0; y.clamp_(-0.5, 0.5); return y * x[1]; });
    // Chains of in-place ops, where each backward needs the value the previous op overwrote.
    check("mul_ then add_", [](const auto& x) { auto y = x[0] + 0.0; y.mul_(x[2]).add_(x[1]).mul_(x[1]); return y; });
  }
}

// Note [In-place on views] (runtime/autograd/inplace.cpp): writes into views become part of the
// base's history (PyTorch's CopySlices), both for views of tensors that require grad and for views of
// plain tensors written with ones that do; views made before the write see the new history.
TEST(ElementwiseOracle, InPlaceOnViewOfGradTensor) {
  manual_seed(6);
  for (DType dtype : float_dtypes()) {
    std::vector<Tensor> in = {randn_t({7, 13}, dtype), randn_t({7, 7}, dtype), randn_t({13}, dtype)};
    auto chain = [](const auto& x) {
      auto y = x[0] * 1.0;
      auto earlier = y.select(0, 2);
      y.slice(1, 0, 13, 2).mul_(x[1]);
      y.t().narrow(0, 3, 7).sub_(x[1].t() * 0.5);
      y.select(0, 2).div_(x[2].abs() + 1.0);
      return (y * y).sum(1) + earlier.sum();
    };
    EXPECT_TRUE(compare_op(in, chain, chain, tol(dtype))) << "in-place chain on views " << dtype_name(dtype);
  }
}

TEST(ElementwiseOracle, InPlaceIntoViewOfPlainTensor) {
  manual_seed(7);
  for (DType dtype : float_dtypes()) {
    std::vector<Tensor> in = {randn_t({7, 13}, dtype), randn_t({7, 7}, dtype)};
    auto copy_into = [](const auto& x) {
      auto y = x[0].detach() * 0.0;  // no grad history
      y.slice(1, 0, 13, 2).copy_(x[1]);
      return y * x[0];
    };
    EXPECT_TRUE(compare_op(in, copy_into, copy_into, tol(dtype))) << "copy_ into a view " << dtype_name(dtype);
    auto add_into = [](const auto& x) {
      auto y = x[0].detach() * 1.0;
      y.t().narrow(0, 3, 7).add_(x[1].t());
      return y.exp();
    };
    EXPECT_TRUE(compare_op(in, add_into, add_into, tol(dtype))) << "add_ into a view " << dtype_name(dtype);
  }
}

// int64 arithmetic follows PyTorch's type rules: integer results for + - * and integer scalars, true
// division to the default float dtype, a float scalar promoting to float32.
TEST(ElementwiseOracle, Int64Arithmetic) {
  manual_seed(8);
  std::vector<Tensor> in = {randint(-20, 20, {7, 13}), randint(1, 9, {13}), randint(-3, 4, {7, 1})};
  auto check = [&](const std::string& name, auto f) {
    EXPECT_TRUE(compare_op(in, f, f, tol(kFloat32))) << name;
  };
  check("add", [](const auto& x) { return x[0] + x[1]; });
  check("sub alpha", [](const auto& x) { return x[0].sub(x[2], 3); });
  check("mul", [](const auto& x) { return x[0] * x[2]; });
  check("add int scalar", [](const auto& x) { return x[0] + 5; });
  check("mul int scalar", [](const auto& x) { return x[0] * -3; });
  check("neg", [](const auto& x) { return -x[0]; });
  check("abs", [](const auto& x) { return x[0].abs(); });
  check("sign", [](const auto& x) { return x[0].sign(); });
  check("square", [](const auto& x) { return x[0].square(); });
  check("pow 3", [](const auto& x) { return x[0].pow(3); });
  check("maximum", [](const auto& x) { return maximum(x[0], x[2]); });
  check("minimum", [](const auto& x) { return minimum(x[0], x[1]); });
  check("clamp", [](const auto& x) { return x[0].clamp(-4, 6); });
  check("relu", [](const auto& x) { return x[0].relu(); });
  check("true division", [](const auto& x) { return x[0] / x[1]; });
  check("division by an int scalar", [](const auto& x) { return x[0] / 4; });
  check("float scalar promotes", [](const auto& x) { return x[0] * 2.5; });
  check("float scalar add promotes", [](const auto& x) { return x[0] + 0.5; });
}

// Dtype conversions and copies are differentiable (the gradient converts back).
TEST(ElementwiseOracle, ConversionsAndCopies) {
  manual_seed(9);
  std::vector<Tensor> in = {randn_t({7, 13}, kFloat32), randn_t({13}, kFloat64), randn_t({13, 7}, kFloat64)};
  auto check = [&](const std::string& name, auto fe, auto ft) {
    EXPECT_TRUE(compare_op(in, fe, ft, tol(kFloat32), accum_tol(kFloat32, 7))) << name;
  };
  check("to float64 and back", [](const std::vector<Tensor>& x) { return (x[0].to(kFloat64) * x[1]).to(kFloat32); },
        [](const std::vector<at::Tensor>& x) { return (x[0].to(at::kDouble) * x[1]).to(at::kFloat); });
  check("copy_ with broadcasting and conversion",
        [](const std::vector<Tensor>& x) {
          Tensor y = zeros({7, 13}, TensorOptions().dtype(kFloat32));
          y.copy_(x[1]);
          return y * x[0];
        },
        [](const std::vector<at::Tensor>& x) {
          at::Tensor y = at::zeros({7, 13}, at::kFloat);
          y.copy_(x[1]);
          return y * x[0];
        });
  check("contiguous of a transposed view", [](const std::vector<Tensor>& x) { return x[2].t().contiguous().to(kFloat32); },
        [](const std::vector<at::Tensor>& x) { return x[2].t().contiguous().to(at::kFloat); });
  check("to int64 (no gradient)", [](const std::vector<Tensor>& x) { return x[0].mul(4.0).to(kInt64); },
        [](const std::vector<at::Tensor>& x) { return x[0].mul(4.0).to(at::kLong); });
}

// Integer-valued floats so that equalities occur; masks compared exactly.
TEST(ElementwiseOracle, Comparisons) {
  manual_seed(5);
  for (DType dtype : float_dtypes()) {
    for (const auto& [a, b] : binary_cases()) {
      std::vector<Tensor> in = {randint(-2, 3, leaf_shape(a.shape, a.view)).to(dtype),
                                randint(-2, 3, leaf_shape(b.shape, b.view)).to(dtype)};
      auto run = [&](const std::string& name, auto op) {
        auto f = [&, va = a.view, vb = b.view](const auto& x) { return op(apply_view(x[0], va), apply_view(x[1], vb)); };
        EXPECT_TRUE(compare_op(in, f, f, tol(dtype))) << name << " on " << describe(in);
      };
      run("eq", [](const auto& p, const auto& q) { return p.eq(q); });
      run("ne", [](const auto& p, const auto& q) { return p.ne(q); });
      run("gt", [](const auto& p, const auto& q) { return p.gt(q); });
      run("lt", [](const auto& p, const auto& q) { return p.lt(q); });
      run("ge", [](const auto& p, const auto& q) { return p.ge(q); });
      run("le", [](const auto& p, const auto& q) { return p.le(q); });
      run("eq scalar", [](const auto& p, const auto&) { return p.eq(1); });
      run("ne scalar", [](const auto& p, const auto&) { return p.ne(1.0); });
      run("gt scalar", [](const auto& p, const auto&) { return p.gt(0.5); });
      run("lt scalar", [](const auto& p, const auto&) { return p.lt(0); });
      run("ge scalar", [](const auto& p, const auto&) { return p.ge(-1); });
      run("le scalar", [](const auto& p, const auto&) { return p.le(1.5); });
      run("logical_not", [](const auto& p, const auto&) { return p.gt(0).logical_not(); });
      run("logical_and", [](const auto& p, const auto& q) { return logical_and(p.gt(0), q.lt(1)); });
      run("logical_or", [](const auto& p, const auto& q) { return logical_or(p.gt(0), q.lt(1)); });
    }
  }
  // int64 operands.
  std::vector<Tensor> ints = {randint(-3, 4, {7, 13}), randint(-3, 4, {13})};
  auto f = [](const auto& x) { return x[0].le(x[1]); };
  EXPECT_TRUE(compare_op(ints, f, f, tol(kFloat64)));
}

TEST(ElementwiseOracle, WhereAndMaskedFill) {
  manual_seed(6);
  for (DType dtype : float_dtypes()) {
    Tensor mask = randn({7, 1}).gt(0);  // broadcast over columns
    Tensor full_mask = randn({7, 13}).gt(0.3);
    std::vector<Tensor> in = {mask, full_mask, randn_t({7, 13}, dtype), randn_t({13}, dtype),
                              randn_t({13, 7}, dtype)};
    const Tol g = accum_tol(dtype, 7, 2.0);
    auto check = [&](const std::string& name, auto fe, auto ft) {
      EXPECT_TRUE(compare_op(in, fe, ft, tol(dtype), g)) << name << " " << dtype_name(dtype);
    };
    auto same = [&](const std::string& name, auto f) { check(name, f, f); };
    same("where broadcast", [](const auto& x) { return where(x[0], x[2], x[3]); });
    same("where full mask", [](const auto& x) { return where(x[1], x[3], x[4].t()); });
    check("where scalar other", [](const std::vector<Tensor>& x) { return where(x[1], x[2], 0.5); },
          [](const std::vector<at::Tensor>& x) { return at::where(x[1], x[2], at::Scalar(0.5)); });
    check("where scalar self", [](const std::vector<Tensor>& x) { return where(x[0], -1.5, x[4].t()); },
          [](const std::vector<at::Tensor>& x) { return at::where(x[0], at::Scalar(-1.5), x[4].t()); });
    same("masked_fill", [](const auto& x) { return x[2].masked_fill(x[0], 2.5); });
    same("masked_fill transposed", [](const auto& x) { return x[4].t().masked_fill(x[1], -7.0); });
    same("masked_fill_ non-leaf", [](const auto& x) {
      auto y = x[2] * x[3];
      y.masked_fill_(x[1], 0.25);
      return y;
    });
  }
}

}  // namespace
}  // namespace ember
