// Element-wise arithmetic and unary ops: values, dtype rules, errors, in-place semantics and gradcheck.
#include <cmath>
#include <limits>

#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class ElementwiseTest : public testing::DeviceTest {
 protected:
  Tensor t(std::vector<double> v, IntArrayRef shape, DType dtype = kFloat32) const {
    return tensor(v).view(shape).to(device(), dtype);
  }
  Tensor leaf(IntArrayRef shape) const { return rand_leaf(shape, device()); }
  // A float64 leaf with values in [lo, hi).
  Tensor leaf_in(IntArrayRef shape, double lo, double hi) const {
    Tensor x = rand(shape, opts(kFloat64)) * (hi - lo) + lo;
    return x.detach().requires_grad_(true);
  }
};

// ---- values ----------------------------------------------------------------------------------------

TEST_P(ElementwiseTest, BinaryValuesWithBroadcasting) {
  Tensor a = t({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = t({10, 20, 30}, {3});
  EXPECT_TRUE(values_are(a + b, {2, 3}, {11, 22, 33, 14, 25, 36}));
  EXPECT_TRUE(values_are(a - b, {2, 3}, {-9, -18, -27, -6, -15, -24}));
  EXPECT_TRUE(values_are(a * b, {2, 3}, {10, 40, 90, 40, 100, 180}));
  EXPECT_TRUE(values_are(b / a, {2, 3}, {10, 10, 10, 2.5, 4, 5}));
  // Both operands broadcast: [2, 1] op [1, 3] -> [2, 3].
  Tensor c = t({1, 2}, {2, 1});
  Tensor d = t({10, 20, 30}, {1, 3});
  EXPECT_TRUE(values_are(c + d, {2, 3}, {11, 21, 31, 12, 22, 32}));
  EXPECT_TRUE(values_are(d - c, {2, 3}, {9, 19, 29, 8, 18, 28}));
  EXPECT_TRUE(values_are(add(a, b, 2), {2, 3}, {21, 42, 63, 24, 45, 66}));
  EXPECT_TRUE(values_are(sub(a, b, 0.5), {2, 3}, {-4, -8, -12, -1, -5, -9}));
  EXPECT_TRUE(values_are(maximum(a, t({2, 2, 2}, {3})), {2, 3}, {2, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(values_are(minimum(a, t({2, 2, 2}, {3})), {2, 3}, {1, 2, 2, 2, 2, 2}));
  EXPECT_TRUE(values_are(pow(t({2, 3}, {2}), t({3, 2}, {2})), {2}, {8, 9}));
}

TEST_P(ElementwiseTest, ScalarValues) {
  Tensor a = t({1, 2, 4}, {3});
  EXPECT_TRUE(values_are(a + 1, {3}, {2, 3, 5}));
  EXPECT_TRUE(values_are(1 + a, {3}, {2, 3, 5}));
  EXPECT_TRUE(values_are(a - 1.5, {3}, {-0.5, 0.5, 2.5}));
  EXPECT_TRUE(values_are(10 - a, {3}, {9, 8, 6}));
  EXPECT_TRUE(values_are(a * 3, {3}, {3, 6, 12}));
  EXPECT_TRUE(values_are(2 * a, {3}, {2, 4, 8}));
  EXPECT_TRUE(values_are(a / 2, {3}, {0.5, 1, 2}));
  EXPECT_TRUE(values_are(8 / a, {3}, {8, 4, 2}));
  EXPECT_TRUE(values_are(rsub(a, 1), {3}, {0, -1, -3}));
  EXPECT_TRUE(values_are(rdiv(a, 1), {3}, {1, 0.5, 0.25}));
  EXPECT_TRUE(values_are(-a, {3}, {-1, -2, -4}));
}

TEST_P(ElementwiseTest, UnaryValues) {
  Tensor x = t({0.25, 1, 4}, {3}, kFloat64);
  EXPECT_TRUE(values_are(exp(x), {3}, {std::exp(0.25), std::exp(1.0), std::exp(4.0)}, 1e-12));
  EXPECT_TRUE(values_are(log(x), {3}, {std::log(0.25), 0, std::log(4.0)}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(log1p(x), {3}, {std::log1p(0.25), std::log1p(1.0), std::log1p(4.0)}, 1e-12));
  EXPECT_TRUE(values_are(sqrt(x), {3}, {0.5, 1, 2}, 1e-12));
  EXPECT_TRUE(values_are(rsqrt(x), {3}, {2, 1, 0.5}, 1e-12));
  EXPECT_TRUE(values_are(square(x), {3}, {0.0625, 1, 16}, 1e-12));
  EXPECT_TRUE(values_are(reciprocal(x), {3}, {4, 1, 0.25}, 1e-12));
  EXPECT_TRUE(values_are(sin(x), {3}, {std::sin(0.25), std::sin(1.0), std::sin(4.0)}, 1e-12));
  EXPECT_TRUE(values_are(cos(x), {3}, {std::cos(0.25), std::cos(1.0), std::cos(4.0)}, 1e-12));
  EXPECT_TRUE(values_are(tanh(x), {3}, {std::tanh(0.25), std::tanh(1.0), std::tanh(4.0)}, 1e-12));
  Tensor y = t({-2, -0.5, 0, 3}, {4});
  EXPECT_TRUE(values_are(abs(y), {4}, {2, 0.5, 0, 3}));
  EXPECT_TRUE(values_are(sign(y), {4}, {-1, -1, 0, 1}));
  EXPECT_TRUE(values_are(relu(y), {4}, {0, 0, 0, 3}));
  EXPECT_TRUE(values_are(y.neg(), {4}, {2, 0.5, 0, -3}));
}

TEST_P(ElementwiseTest, SigmoidIsStableAtLargeMagnitudes) {
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor x = t({-1000, -20, -2, 0, 2, 20, 1000}, {7}, dt);
    const std::vector<double> s = sigmoid(x).to_vector<double>();
    for (double v : s) EXPECT_FALSE(std::isnan(v));
    EXPECT_EQ(s[0], 0.0);
    EXPECT_EQ(s[6], 1.0);
    const double rtol = dt == kFloat32 ? 1e-6 : 1e-14;
    // math.exp-based references: 1 / (1 + e^-x).
    EXPECT_NEAR(s[1], 2.0611536181902037e-09, 2.0611536181902037e-09 * rtol);
    EXPECT_NEAR(s[2], 0.11920292202211755, rtol);
    EXPECT_EQ(s[3], 0.5);
    EXPECT_NEAR(s[4], 0.8807970779778823, rtol);
    EXPECT_NEAR(s[5], 0.9999999979388463, rtol);
  }
  // Its gradient at large |x| is 0, not NaN.
  Tensor x = t({-1000, 1000}, {2}, kFloat64).requires_grad_();
  sigmoid(x).sum().backward();
  EXPECT_TRUE(values_are(x.grad(), {2}, {0, 0}));
}

TEST_P(ElementwiseTest, GeluExactAndTanhMatchReferences) {
  // References from Python's math module (0.5 x (1 + erf(x / sqrt 2)) and the tanh form), which
  // torch.nn.functional.gelu reproduces.
  Tensor x = t({-3, -1, -0.5, 0, 0.5, 1, 2, 3}, {8}, kFloat64);
  EXPECT_TRUE(values_are(gelu(x), {8},
                         {-0.00404969409489031, -0.15865525393145707, -0.15426876936299344, 0.0, 0.34573123063700656,
                          0.8413447460685429, 1.9544997361036416, 2.99595030590511},
                         1e-12, 1e-14));
  EXPECT_TRUE(values_are(gelu(x, "tanh"), {8},
                         {-0.0036373920817729943, -0.15880800939172324, -0.15428599017485606, 0.0,
                          0.34571400982514394, 0.8411919906082768, 1.954597694087775, 2.996362607918227},
                         1e-12, 1e-14));
  EXPECT_TRUE(values_are(gelu(x.to(kFloat32)), {8},
                         {-0.00404969409489031, -0.15865525393145707, -0.15426876936299344, 0.0, 0.34573123063700656,
                          0.8413447460685429, 1.9544997361036416, 2.99595030590511},
                         1e-5, 1e-6));  // float32: 1 + erf(x) cancels for negative x
  // The exact form's derivative: Phi(x) + x phi(x).
  Tensor xg = x.detach().requires_grad_();
  gelu(xg).sum().backward();
  EXPECT_TRUE(values_are(xg.grad(), {8},
                         {-0.011945647204183918, -0.08331547058768629, 0.13250487534383712, 0.5, 0.8674951246561629,
                          1.0833154705876864, 1.085231801078197, 1.011945647204184},
                         1e-12, 1e-14));
  EXPECT_EMBER_ERROR(gelu(x, "fast"), "gelu", "none", "tanh", "fast");
}

TEST_P(ElementwiseTest, PowFastAndGeneralCases) {
  Tensor x = t({0.25, 1, 4}, {3}, kFloat64);
  EXPECT_TRUE(values_are(pow(x, 2), {3}, {0.0625, 1, 16}, 1e-12));
  EXPECT_TRUE(values_are(pow(x, 0.5), {3}, {0.5, 1, 2}, 1e-12));
  EXPECT_TRUE(values_are(pow(x, -1), {3}, {4, 1, 0.25}, 1e-12));
  EXPECT_TRUE(values_are(pow(x, 1), {3}, {0.25, 1, 4}, 1e-12));
  EXPECT_TRUE(values_are(pow(x, 0), {3}, {1, 1, 1}, 1e-12));
  EXPECT_TRUE(values_are(pow(x, 3), {3}, {0.015625, 1, 64}, 1e-12));
  EXPECT_TRUE(values_are(pow(x, -1.5), {3}, {8, 1, 0.125}, 1e-12));
  Tensor p1 = pow(x, 1);
  EXPECT_FALSE(p1.is_alias_of(x));  // a fresh tensor, not a view
  Tensor i = tensor({-2, 3, 5}).to(device());
  Tensor i2 = pow(i, 2);
  EXPECT_EQ(i2.dtype(), kInt64);
  EXPECT_EQ(i2.to_vector<int64_t>(), (std::vector<int64_t>{4, 9, 25}));
  EXPECT_EQ(pow(i, 3).to_vector<int64_t>(), (std::vector<int64_t>{-8, 27, 125}));
  EXPECT_EQ(pow(i, 0.5).dtype(), kFloat32);
  EXPECT_EMBER_ERROR(pow(i, -1), "pow", "negative");
}

TEST_P(ElementwiseTest, ClampVariants) {
  Tensor x = t({-2, -0.5, 0.5, 2}, {4});
  EXPECT_TRUE(values_are(clamp(x, -1, 1), {4}, {-1, -0.5, 0.5, 1}));
  EXPECT_TRUE(values_are(clamp(x, std::nullopt, 0), {4}, {-2, -0.5, 0, 0}));
  EXPECT_TRUE(values_are(clamp(x, 0, std::nullopt), {4}, {0, 0, 0.5, 2}));
  EXPECT_TRUE(values_are(clamp_min(x, 0), {4}, {0, 0, 0.5, 2}));
  EXPECT_TRUE(values_are(clamp_max(x, 0), {4}, {-2, -0.5, 0, 0}));
  EXPECT_TRUE(values_are(clamp(x, 1, -1), {4}, {-1, -1, -1, -1}));  // lo > hi gives hi, as PyTorch
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(std::isnan(clamp(t({nan}, {1}), 0, 1).item<float>()));
  EXPECT_EMBER_ERROR(clamp(x, std::nullopt, std::nullopt), "clamp", "at least one");
  Tensor i = tensor({-5, 0, 5}).to(device());
  EXPECT_EQ(clamp(i, -1, 1).dtype(), kInt64);
  EXPECT_EQ(clamp(i, -1, 1).to_vector<int64_t>(), (std::vector<int64_t>{-1, 0, 1}));
  Tensor f = clamp(i, -0.5, 0.5);
  EXPECT_EQ(f.dtype(), kFloat32);
  EXPECT_TRUE(values_are(f, {3}, {-0.5, 0, 0.5}));
}

TEST_P(ElementwiseTest, MaximumMinimumPropagateNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor a = t({nan, 1, 2}, {3});
  Tensor b = t({0, nan, 1}, {3});
  const auto mx = maximum(a, b).to_vector<float>();
  const auto mn = minimum(a, b).to_vector<float>();
  EXPECT_TRUE(std::isnan(mx[0]) && std::isnan(mx[1]));
  EXPECT_TRUE(std::isnan(mn[0]) && std::isnan(mn[1]));
  EXPECT_EQ(mx[2], 2.f);
  EXPECT_EQ(mn[2], 1.f);
}

// ---- dtype rules ------------------------------------------------------------------------------------

TEST_P(ElementwiseTest, IntegerAndScalarDtypeRules) {
  Tensor i = tensor({1, 2, 3}).to(device());
  Tensor j = tensor({2, 2, 2}).to(device());
  EXPECT_EQ((i + j).dtype(), kInt64);
  EXPECT_EQ((i * j).to_vector<int64_t>(), (std::vector<int64_t>{2, 4, 6}));
  EXPECT_EQ((i - j).to_vector<int64_t>(), (std::vector<int64_t>{-1, 0, 1}));
  EXPECT_EQ(maximum(i, j).to_vector<int64_t>(), (std::vector<int64_t>{2, 2, 3}));
  // True division, as PyTorch: int / int is float32.
  Tensor q = i / j;
  EXPECT_EQ(q.dtype(), kFloat32);
  EXPECT_TRUE(values_are(q, {3}, {0.5, 1, 1.5}));
  EXPECT_EQ((i / 2).dtype(), kFloat32);
  EXPECT_TRUE(values_are(i / 2, {3}, {0.5, 1, 1.5}));
  EXPECT_TRUE(values_are(rdiv(i, 3), {3}, {3, 1.5, 1}));
  // Integral scalar keeps int64; a non-integral one gives float32.
  EXPECT_EQ((i + 2).dtype(), kInt64);
  EXPECT_EQ((i + 2).to_vector<int64_t>(), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ((i * 0.5).dtype(), kFloat32);
  EXPECT_TRUE(values_are(i * 0.5, {3}, {0.5, 1, 1.5}));
  EXPECT_EQ((10 - i).to_vector<int64_t>(), (std::vector<int64_t>{9, 8, 7}));
  EXPECT_EQ(neg(i).to_vector<int64_t>(), (std::vector<int64_t>{-1, -2, -3}));
  EXPECT_EQ(abs(neg(i)).to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3}));
  // A floating tensor keeps its dtype whatever the scalar.
  Tensor f = tensor({1.0, 2.0}).to(device());
  EXPECT_EQ((f * 3).dtype(), kFloat64);
  EXPECT_EQ((f.to(kFloat32) * 2.5).dtype(), kFloat32);
  EXPECT_EQ((f.to(kFloat32) + f.to(kFloat32)).dtype(), kFloat32);
}

TEST_P(ElementwiseTest, DtypeErrors) {
  Tensor a = zeros({3}, opts(kFloat32));
  Tensor b = zeros({3}, opts(kFloat64));
  EXPECT_EMBER_ERROR(add(a, b), "add: dtype mismatch: float32 and float64");
  EXPECT_EMBER_ERROR(a * b, "mul", "float32", "float64");
  EXPECT_EMBER_ERROR(a.add_(b), "add_", "float32", "float64");
  Tensor m = zeros({3}, opts(kBool));
  EXPECT_EMBER_ERROR(m + m, "add", "bool");
  EXPECT_EMBER_ERROR(m * 2, "mul", "bool");
  EXPECT_EMBER_ERROR(neg(m), "neg", "bool");
  Tensor i = zeros({3}, opts(kInt64));
  EXPECT_EMBER_ERROR(exp(i), "exp", "int64");
  EXPECT_EMBER_ERROR(log(i), "log", "int64");
  EXPECT_EMBER_ERROR(sigmoid(i), "sigmoid", "int64");
  EXPECT_EMBER_ERROR(tanh(i), "tanh", "int64");
  EXPECT_EMBER_ERROR(gelu(i), "gelu", "int64");
  EXPECT_EMBER_ERROR(sqrt(i), "sqrt", "int64");
  EXPECT_EMBER_ERROR(i.div_(i), "div_", "int64");
  EXPECT_EMBER_ERROR(i.div_(2), "div_", "int64");
  EXPECT_EMBER_ERROR(i.mul_(0.5), "mul_", "int64");
  EXPECT_EMBER_ERROR(add(i, i, 0.5), "add", "alpha");
}

TEST_P(ElementwiseTest, ShapeAndDeviceErrors) {
  Tensor a = zeros({2, 3}, opts());
  Tensor b = zeros({4}, opts());
  EXPECT_EMBER_ERROR(a + b, "add", "[2, 3]", "[4]", "cannot be broadcast");
  EXPECT_EMBER_ERROR(a * b, "mul", "cannot be broadcast");
  // An in-place result must fit self.
  Tensor row = zeros({3}, opts());
  EXPECT_EMBER_ERROR(row.add_(a), "add_", "[3]", "[2, 3]");
  EXPECT_EMBER_ERROR(row.mul_(a), "mul_", "[3]");
  Device other = device().is_cuda() ? Device::cpu() : Device::cpu(1);
  Tensor c = zeros({2, 3}, TensorOptions().device(other));
  EXPECT_EMBER_ERROR(a + c, "add", device().str(), other.str());
  EXPECT_EMBER_ERROR(maximum(a, c), "maximum", device().str(), other.str());
  EXPECT_EMBER_ERROR(a.add_(c), "add_", device().str(), other.str());
}

TEST_P(ElementwiseTest, EmptyZeroDimAndNonContiguous) {
  Tensor e = zeros({0, 3}, opts());
  EXPECT_EQ((e + zeros({3}, opts())).sizes(), IntArrayRef({0, 3}));
  EXPECT_EQ(exp(e).sizes(), IntArrayRef({0, 3}));
  EXPECT_EQ((e * 2).numel(), 0);
  Tensor s = full({}, 3.0, opts());
  Tensor s2 = s * s;
  EXPECT_EQ(s2.dim(), 0);
  EXPECT_EQ(s2.item<float>(), 9.f);
  EXPECT_TRUE(values_are(s + t({1, 2}, {2}), {2}, {4, 5}));
  // Transposed input and a slice with a step.
  Tensor m = t({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(values_are(m.t() * 10, {3, 2}, {10, 40, 20, 50, 30, 60}));
  EXPECT_TRUE(values_are(m.t() + m.t(), {3, 2}, {2, 8, 4, 10, 6, 12}));
  EXPECT_TRUE(values_are(exp(m.slice(1, 0, 3, 2)).log(), {2, 2}, {1, 3, 4, 6}, 1e-6));
  // In place into a transposed view.
  Tensor base = t({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor tv = base.t();
  tv.add_(t({100, 200}, {2}));
  EXPECT_TRUE(values_are(base, {2, 3}, {101, 102, 103, 204, 205, 206}));
  tv.relu_();
  tv.mul_(0.5);
  EXPECT_TRUE(values_are(base, {2, 3}, {50.5, 51, 51.5, 102, 102.5, 103}));
  // Self and other overlap without being the same view: other is read before it is overwritten.
  Tensor sq = t({1, 2, 3, 4}, {2, 2});
  sq.add_(sq.t());
  EXPECT_TRUE(values_are(sq, {2, 2}, {2, 5, 5, 8}));
  Tensor same = t({1, 2, 3}, {3});
  same.mul_(same);
  EXPECT_TRUE(values_are(same, {3}, {1, 4, 9}));
}

TEST_P(ElementwiseTest, ReducedPrecisionDtypes) {
  for (DType dt : {kFloat16, kBFloat16}) {
    Tensor a = t({1, 2.5, -3}, {3}, dt);
    Tensor b = t({0.5, 0.5, 2}, {3}, dt);
    EXPECT_EQ((a + b).dtype(), dt);
    EXPECT_TRUE(values_are(a + b, {3}, {1.5, 3, -1}));
    EXPECT_TRUE(values_are(a * b, {3}, {0.5, 1.25, -6}));
    EXPECT_TRUE(values_are(relu(a), {3}, {1, 2.5, 0}));
    EXPECT_TRUE(values_are(a * 2, {3}, {2, 5, -6}));
    EXPECT_TRUE(values_are(sigmoid(t({0}, {1}, dt)), {1}, {0.5}));
  }
}

// ---- in place and autograd ---------------------------------------------------------------------------

TEST_P(ElementwiseTest, InPlaceValuesAndVersion) {
  Tensor a = t({1, 2, 3}, {3});
  const uint32_t v0 = a.version();
  a.add_(1);
  a.mul_(t({2, 2, 2}, {3}));
  a.sub_(t({1, 1, 1}, {3}), 2);
  a.div_(2);
  EXPECT_TRUE(values_are(a, {3}, {1, 2, 3}));
  a.clamp_(1.5, 2.5);
  EXPECT_TRUE(values_are(a, {3}, {1.5, 2, 2.5}));
  a.sub_(2).relu_();
  EXPECT_TRUE(values_are(a, {3}, {0, 0, 0.5}));
  EXPECT_EQ(a.version(), v0 + 7);
  a += 1;
  a *= 2;
  a -= t({1, 1, 1}, {3});
  a /= 2;
  EXPECT_TRUE(values_are(a, {3}, {0.5, 0.5, 1}));
}

TEST_P(ElementwiseTest, InPlaceOnLeafRequiringGradThrows) {
  Tensor w = leaf({3});
  EXPECT_EMBER_ERROR(w.add_(1), "add_", "leaf");
  EXPECT_EMBER_ERROR(w.mul_(w), "mul_", "leaf");
  EXPECT_EMBER_ERROR(w.relu_(), "relu_", "leaf");
  EXPECT_EMBER_ERROR(w.clamp_(0, 1), "clamp_", "leaf");
  {
    NoGradGuard no_grad;  // what optimizers do
    w.mul_(0);
  }
  EXPECT_TRUE(values_are(w.detach(), {3}, {0, 0, 0}));
}

TEST_P(ElementwiseTest, InPlaceOnSavedTensorThenBackwardThrows) {
  Tensor x = leaf({4});
  Tensor y = x.sigmoid();  // SigmoidBackward saves y
  Tensor z = y * 2;
  y.add_(1);
  EXPECT_EMBER_ERROR(z.sum().backward(), "SigmoidBackward", "in-place");
  Tensor a = leaf({4});
  Tensor w = x * 1;
  Tensor m = a * w;  // MulBackward saves w for a's gradient
  w.mul_(3);
  EXPECT_EMBER_ERROR(m.sum().backward(), "MulBackward");
}

TEST_P(ElementwiseTest, InPlaceChainsHaveRightGradients) {
  Tensor x = leaf({5});
  Tensor w = leaf_in({5}, 0.5, 1.5);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor y = in[0] * 2;
        y.add_(1);
        y.add_(in[1], 0.5);
        y.mul_(in[1]);
        y.div_(in[1] + 2);
        y.sub_(in[0], 0.25);
        y.mul_(3).sub_(1).div_(2).add_(0.5);
        return y;
      },
      {x, w}));
  // Aliased operands: y * y in place, and y / y.
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor y = in[0] + 2;
        y.mul_(y);
        Tensor z = in[0] * 1;
        z.add_(z);
        return y + z;
      },
      {x}));
  // clamp_ and relu_ record too (relu_ saves its output, so it comes last, as in PyTorch).
  Tensor p = leaf({7});
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor y = in[0] * 3;
        y.clamp_(-0.5, 2.0);
        y.sub_(0.1).relu_();
        return y;
      },
      {p}));
  // A detached alias of self is a constant for autograd: d/dx [2x * (2x)const] = 2 * 2x.
  Tensor d = leaf({5});
  Tensor y = d * 2;
  y.mul_(y.detach());
  y.sum().backward();
  EXPECT_TRUE(all_close(d.grad(), d.detach() * 4, 1e-12, 1e-12));
  // A leaf that does not require grad receives a gradient-carrying operand.
  Tensor src = leaf({5});
  Tensor acc = zeros({5}, opts(kFloat64));
  acc.add_(src, 2);
  EXPECT_TRUE(acc.requires_grad());
  acc.sum().backward();
  EXPECT_TRUE(values_are(src.grad(), {5}, {2, 2, 2, 2, 2}));
}

// ---- gradcheck -----------------------------------------------------------------------------------------

using BinaryFn = std::function<Tensor(const Tensor&, const Tensor&)>;

void check_binary_grads(const BinaryFn& f, const Tensor& a, const Tensor& b) {
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, {a, b}));
}

TEST_P(ElementwiseTest, GradcheckBinaryOps) {
  const std::vector<std::pair<const char*, BinaryFn>> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }},
      {"add_alpha", [](const Tensor& a, const Tensor& b) { return add(a, b, 2.5); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }},
      {"sub_alpha", [](const Tensor& a, const Tensor& b) { return sub(a, b, -0.5); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / (b + 2); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(a + 2, b); }},
  };
  for (const auto& [name, f] : ops) {
    SCOPED_TRACE(name);
    check_binary_grads(f, leaf({7}), leaf({7}));
    check_binary_grads(f, leaf({3, 1}), leaf({1, 4}));     // both broadcast
    check_binary_grads(f, leaf({2, 13}), leaf({13}));      // b broadcast
    check_binary_grads(f, leaf({33}), leaf({2, 33}));      // a broadcast
    check_binary_grads(f, leaf({}), leaf({5}));            // 0-d with a vector
    check_binary_grads(f, leaf({}), leaf({}));             // 0-d
    Tensor m = leaf({3, 5});
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0].t(), in[1].slice(0, 0, 10, 2)); },
                          {m, leaf({10, 3})}));            // non-contiguous views
  }
}

TEST_P(ElementwiseTest, GradcheckScalarOps) {
  Tensor x = leaf({7});
  auto check = [&](const char* name, std::function<Tensor(const Tensor&)> f, const Tensor& in) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& v) { return f(v[0]); }, {in}));
  };
  check("add", [](const Tensor& a) { return a + 1.5; }, x);
  check("sub", [](const Tensor& a) { return a - 2; }, x);
  check("rsub", [](const Tensor& a) { return 3 - a; }, x);
  check("mul", [](const Tensor& a) { return a * -2.5; }, x);
  check("div", [](const Tensor& a) { return a / 4; }, x);
  check("rdiv", [](const Tensor& a) { return 2 / (a + 2); }, x);
  check("0-d", [](const Tensor& a) { return (a * 3 - 1) / 2; }, leaf({}));
  check("transposed", [](const Tensor& a) { return 1 - a.t() * 2; }, leaf({3, 13}));
}

TEST_P(ElementwiseTest, GradcheckUnaryOps) {
  using UnaryFn = std::function<Tensor(const Tensor&)>;
  struct Case {
    const char* name;
    UnaryFn f;
    double lo, hi;  // input domain
  };
  const std::vector<Case> cases = {
      {"neg", [](const Tensor& x) { return neg(x); }, -1, 1},
      {"exp", [](const Tensor& x) { return exp(x); }, -1, 1},
      {"log", [](const Tensor& x) { return log(x); }, 0.5, 2},
      {"log1p", [](const Tensor& x) { return log1p(x); }, -0.5, 1},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, 0.5, 2},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, 0.5, 2},
      {"square", [](const Tensor& x) { return square(x); }, -1, 1},
      {"reciprocal", [](const Tensor& x) { return reciprocal(x); }, 0.5, 2},
      {"abs", [](const Tensor& x) { return abs(x); }, 0.1, 1},
      {"abs_neg", [](const Tensor& x) { return abs(x); }, -1, -0.1},
      {"sign", [](const Tensor& x) { return sign(x) * x; }, 0.1, 1},
      {"sin", [](const Tensor& x) { return sin(x); }, -2, 2},
      {"cos", [](const Tensor& x) { return cos(x); }, -2, 2},
      {"relu_pos", [](const Tensor& x) { return relu(x); }, 0.1, 1},
      {"relu_neg", [](const Tensor& x) { return relu(x) + x; }, -1, -0.1},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, -3, 3},
      {"tanh", [](const Tensor& x) { return tanh(x); }, -2, 2},
      {"gelu", [](const Tensor& x) { return gelu(x); }, -3, 3},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, "tanh"); }, -3, 3},
      {"pow2", [](const Tensor& x) { return pow(x, 2); }, -1, 1},
      {"pow0.5", [](const Tensor& x) { return pow(x, 0.5); }, 0.5, 2},
      {"pow-1", [](const Tensor& x) { return pow(x, -1); }, 0.5, 2},
      {"pow1", [](const Tensor& x) { return pow(x, 1); }, -1, 1},
      {"pow0", [](const Tensor& x) { return pow(x, 0) + x; }, -1, 1},
      {"pow3", [](const Tensor& x) { return pow(x, 3); }, -1, 1},
      {"pow-1.5", [](const Tensor& x) { return pow(x, -1.5); }, 0.5, 2},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.5); }, -1, 1},
      {"clamp_min", [](const Tensor& x) { return clamp_min(x, 0.1); }, -1, 1},
      {"clamp_max", [](const Tensor& x) { return clamp_max(x, 0.1); }, -1, 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::vector<std::vector<int64_t>> shapes = {{13}, {}, {3, 7}};
    for (const std::vector<int64_t>& shape : shapes) {
      Tensor x = leaf_in(shape, c.lo, c.hi);
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return c.f(in[0]); }, {x}));
    }
    Tensor m = leaf_in({7, 3}, c.lo, c.hi);
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return c.f(in[0].t()); }, {m}));
  }
}

TEST_P(ElementwiseTest, ComparisonOutputsNeedNoGrad) {
  Tensor x = leaf({4});
  EXPECT_FALSE(x.gt(0).requires_grad());
  EXPECT_FALSE(eq(x, x).requires_grad());
}

EMBER_INSTANTIATE_DEVICE_TESTS(ElementwiseTest);

// ---- CUDA against CPU ------------------------------------------------------------------------------------

class ElementwiseCudaTest : public testing::DeviceTest {};

// Every op on random inputs, on the device and on the CPU (same input values), including strided,
// broadcast and misaligned views that take the launcher's offset-calculator path.
TEST_P(ElementwiseCudaTest, MatchesCpu) {
  manual_seed(3);
  for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    const double tol = dt == kFloat32 ? 1e-5 : dt == kFloat64 ? 1e-12 : 1e-2;
    Tensor a = (rand({37, 65}) + 0.5).to(dt);
    Tensor b = (rand({65}) + 0.5).to(dt);
    Tensor ga = a.to(device()), gb = b.to(device());
    auto same = [&](const Tensor& g, const Tensor& c) { EXPECT_TRUE(all_close(g.cpu(), c, tol, tol)); };
    same(ga + gb, a + b);
    same(ga - gb, a - b);
    same(ga * gb, a * b);
    same(ga / gb, a / b);
    same(add(ga, gb, 0.5), add(a, b, 0.5));
    same(maximum(ga, gb), maximum(a, b));
    same(pow(ga, gb), pow(a, b));
    same(ga * 3, a * 3);
    same(2 - ga, 2 - a);
    same(1 / ga, 1 / a);
    for (auto f : std::vector<std::function<Tensor(const Tensor&)>>{
             [](const Tensor& x) { return exp(x); }, [](const Tensor& x) { return log(x); },
             [](const Tensor& x) { return sqrt(x); }, [](const Tensor& x) { return rsqrt(x); },
             [](const Tensor& x) { return sigmoid(x - 1); }, [](const Tensor& x) { return tanh(x); },
             [](const Tensor& x) { return gelu(x - 1); }, [](const Tensor& x) { return gelu(x - 1, "tanh"); },
             [](const Tensor& x) { return relu(x - 1); }, [](const Tensor& x) { return clamp(x, 0.7, 1.2); },
             [](const Tensor& x) { return pow(x, 1.7); }, [](const Tensor& x) { return sin(x) + cos(x); }}) {
      same(f(ga), f(a));
      same(f(ga.t()), f(a.t()));                  // strided
      same(f(ga.slice(1, 1, 64)), f(a.slice(1, 1, 64)));  // misaligned rows
    }
    same(ga.t() + gb.slice(0, 0, 37), a.t() + b.slice(0, 0, 37));
  }
  // Odd sizes around the vector width and the tail, and a 0-d tensor.
  for (int64_t n : {1, 3, 4, 5, 7, 8, 9, 1023, 1025, 100003}) {
    Tensor a = randn({n}), b = randn({n});
    EXPECT_TRUE(all_close((a.to(device()) * b.to(device())).cpu(), a * b));
    EXPECT_TRUE(all_close((a.to(device()).slice(0, 1, n) + 1).cpu(), a.slice(0, 1, n) + 1));
  }
  Tensor s = full({}, 2.0);
  EXPECT_EQ((s.to(device()) * s.to(device())).item<float>(), 4.f);
}

TEST_P(ElementwiseCudaTest, IntegerOpsMatchCpu) {
  Tensor a = randint(-50, 50, {129});
  Tensor b = randint(1, 7, {129});
  Tensor ga = a.to(device()), gb = b.to(device());
  EXPECT_TRUE(equal((ga + gb).cpu(), a + b));
  EXPECT_TRUE(equal((ga * gb).cpu(), a * b));
  EXPECT_TRUE(equal(pow(ga, 3).cpu(), pow(a, 3)));
  EXPECT_TRUE(equal(clamp(ga, -3, 5).cpu(), clamp(a, -3, 5)));
  EXPECT_TRUE(all_close((ga / gb).cpu(), a / b));
  EXPECT_TRUE(equal(abs(ga).cpu(), abs(a)));
}

EMBER_INSTANTIATE_CUDA_TESTS(ElementwiseCudaTest);

}  // namespace
}  // namespace ember
