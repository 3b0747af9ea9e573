// softmax and log_softmax: values, numerical stability, every dim/layout, errors, gradcheck and the fused backward.
#include <cmath>
#include <limits>

#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class SoftmaxTest : public testing::DeviceTest {
 protected:
  Tensor t(std::vector<double> v, IntArrayRef shape, DType dtype = kFloat32) const {
    return tensor(v).view(shape).to(device(), dtype);
  }
  Tensor leaf(IntArrayRef shape) const { return rand_leaf(shape, device()); }
};

// softmax along `dim` of host values with double arithmetic (the textbook formula, max subtracted).
std::vector<double> naive_softmax(const Tensor& x, int64_t dim, bool log) {
  const Tensor c = x.to(kFloat64).cpu().contiguous();
  const std::vector<double> v = c.to_vector<double>();
  const int64_t d = dim < 0 ? dim + c.dim() : dim;
  int64_t outer = 1, n = c.size(d), inner = 1;
  for (int64_t k = 0; k < d; ++k) outer *= c.size(k);
  for (int64_t k = d + 1; k < c.dim(); ++k) inner *= c.size(k);
  std::vector<double> out(v.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t j) { return static_cast<size_t>((o * n + j) * inner + i); };
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n; ++j) m = std::max(m, v[at(j)]);
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += std::exp(v[at(j)] - m);
      for (int64_t j = 0; j < n; ++j) out[at(j)] = log ? v[at(j)] - m - std::log(s) : std::exp(v[at(j)] - m) / s;
    }
  return out;
}

TEST_P(SoftmaxTest, KnownValues) {
  Tensor x = t({1, 2, 3, 1, 1, 1}, {2, 3});
  const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), s = e1 + e2 + e3;
  EXPECT_TRUE(values_are(x.softmax(1), {2, 3}, {e1 / s, e2 / s, e3 / s, 1.0 / 3, 1.0 / 3, 1.0 / 3}));
  EXPECT_TRUE(values_are(softmax(x, -1), {2, 3}, {e1 / s, e2 / s, e3 / s, 1.0 / 3, 1.0 / 3, 1.0 / 3}));
  EXPECT_TRUE(
      values_are(x.log_softmax(1), {2, 3},
                 {1 - std::log(s), 2 - std::log(s), 3 - std::log(s), -std::log(3.0), -std::log(3.0), -std::log(3.0)}));
  // Over dim 0: each column of two.
  const double a = 1 / (1 + std::exp(-0.0)), b = 1 / (1 + std::exp(1.0)), c = 1 / (1 + std::exp(2.0));
  EXPECT_TRUE(values_are(x.softmax(0), {2, 3}, {a, 1 - b, 1 - c, 1 - a, b, c}));
  EXPECT_EQ(x.softmax(1).dtype(), kFloat32);
  EXPECT_EQ(x.softmax(1).device(), device());
}

TEST_P(SoftmaxTest, RowsSumToOneAndLogMatches) {
  for (const auto& shape : std::vector<std::vector<int64_t>>{{7, 13}, {33, 1025}, {3, 5000}, {2, 3, 4, 5}}) {
    Tensor x = randn(shape, opts()) * 5;
    for (int64_t dim = 0; dim < x.dim(); ++dim) {
      const std::string where = ::testing::PrintToString(shape) + " dim " + std::to_string(dim);
      Tensor y = x.softmax(dim);
      Tensor ones_ = ones_like(y.sum({dim}));
      EXPECT_TRUE(all_close(y.sum({dim}), ones_, 1e-5, 1e-5)) << where;
      EXPECT_TRUE(all_close(x.log_softmax(dim), y.log(), 1e-4, 1e-5)) << where;
      EXPECT_TRUE(all_close(y.cpu(), tensor(naive_softmax(x, dim, false)).view(x.sizes()), 1e-5, 1e-7)) << where;
      EXPECT_TRUE(all_close(x.log_softmax(dim).cpu(), tensor(naive_softmax(x, dim, true)).view(x.sizes()), 1e-5, 1e-5))
          << where;
    }
  }
}

TEST_P(SoftmaxTest, LargeLogitsDoNotOverflow) {
  Tensor x = t({1e4, 1e4 - 1, 0, -1e4}, {1, 4});
  Tensor y = x.softmax(1);
  const double s = 1 + std::exp(-1.0);
  EXPECT_TRUE(values_are(y, {1, 4}, {1 / s, std::exp(-1.0) / s, 0, 0}));
  EXPECT_TRUE(values_are(x.log_softmax(1), {1, 4},
                         {-std::log(s), -1 - std::log(s), -1e4 - std::log(s), -2e4 - std::log(s)}, 1e-6, 1e-2));
  // Same along an outer dim.
  Tensor xt = x.t().contiguous();
  EXPECT_TRUE(all_close(xt.softmax(0).t(), y, 1e-6, 1e-7));
  // A long row of large logits.
  Tensor big = full({2, 3000}, 1e4, opts());
  EXPECT_TRUE(all_close(big.softmax(1), full({2, 3000}, 1.0 / 3000, opts()), 1e-5, 0));
  EXPECT_TRUE(all_close(big.log_softmax(1), full({2, 3000}, -std::log(3000.0), opts()), 1e-5, 0));
}

TEST_P(SoftmaxTest, InfinitiesAndEmptyDims) {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor x = t({-inf, 0, -inf, 1}, {1, 4});
  const double s = 1 + std::exp(1.0);
  EXPECT_TRUE(values_are(x.softmax(1), {1, 4}, {0, 1 / s, 0, std::exp(1.0) / s}));
  const std::vector<float> ls = x.log_softmax(1).to_vector<float>();
  EXPECT_EQ(ls[0], -std::numeric_limits<float>::infinity());
  EXPECT_NEAR(ls[3], 1 - std::log(s), 1e-6);
  EXPECT_EQ(zeros({0, 5}, opts()).softmax(1).sizes(), IntArrayRef({0, 5}));
  EXPECT_EQ(zeros({3, 0}, opts()).softmax(1).sizes(), IntArrayRef({3, 0}));
  EXPECT_EQ(zeros({3, 0}, opts()).log_softmax(0).sizes(), IntArrayRef({3, 0}));
  // A 0-d tensor is one row of one element.
  EXPECT_TRUE(values_are(scalar_tensor(7.0, opts()).softmax(0), {}, {1}));
  EXPECT_TRUE(values_are(scalar_tensor(7.0, opts()).log_softmax(-1), {}, {0}));
}

TEST_P(SoftmaxTest, NonContiguousInput) {
  Tensor base = randn({13, 7}, opts(kFloat64));
  Tensor x = base.t();
  ASSERT_FALSE(x.is_contiguous());
  EXPECT_TRUE(all_close(x.softmax(1), x.contiguous().softmax(1), 1e-12, 1e-14));
  EXPECT_TRUE(all_close(x.log_softmax(0), base.log_softmax(1).t(), 1e-12, 1e-14));
  Tensor sliced = randn({6, 10}, opts()).slice(1, 0, 10, 2);
  EXPECT_TRUE(all_close(sliced.softmax(-1), sliced.contiguous().softmax(-1), 1e-6, 1e-7));
}

TEST_P(SoftmaxTest, Float16AndBFloat16) {
  Tensor x = randn({4, 37}, opts());
  for (DType dt : {kFloat16, kBFloat16}) {
    Tensor xh = x.to(dt);
    EXPECT_EQ(xh.softmax(1).dtype(), dt);
    EXPECT_TRUE(all_close(xh.softmax(1).to(kFloat32), xh.to(kFloat32).softmax(1), 1e-2, 1e-3)) << dtype_name(dt);
    EXPECT_TRUE(all_close(xh.log_softmax(0).to(kFloat32), xh.to(kFloat32).log_softmax(0), 2e-2, 2e-2))
        << dtype_name(dt);
  }
}

TEST_P(SoftmaxTest, BadInput) {
  EXPECT_EMBER_ERROR(zeros({2, 3}, opts(kInt64)).softmax(1), "softmax", "int64", "floating-point");
  EXPECT_EMBER_ERROR(zeros({2, 3}, opts(kBool)).log_softmax(1), "log_softmax", "bool");
  EXPECT_EMBER_ERROR(zeros({2, 3}, opts()).softmax(2), "softmax", "dim 2", "[-2, 1]");
  EXPECT_EMBER_ERROR(zeros({2, 3}, opts()).log_softmax(-3), "log_softmax", "[-2, 1]");
  EXPECT_EMBER_ERROR(scalar_tensor(1.0, opts()).softmax(1), "softmax", "[-1, 0]");
}

TEST_P(SoftmaxTest, Gradcheck) {
  for (bool log : {false, true}) {
    auto f = [log](const Tensor& x, int64_t dim) { return log ? x.log_softmax(dim) : x.softmax(dim); };
    Tensor x = leaf({7, 13});
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], 1); }, {x}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], 0); }, {x}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], -1); }, {x}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0].t(), 1); }, {x}));
    Tensor y = leaf({3, 5, 7});
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], 1); }, {y}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0].slice(2, 0, 7, 2), -1); }, {y}));
    Tensor z = leaf({33});
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0] * 3, 0); }, {z}));
    Tensor s = rand_leaf({}, device());
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], 0) * in[0]; }, {s}));
  }
}

TEST_P(SoftmaxTest, FusedBackwardMatchesTheFormula) {
  for (const auto& shape : std::vector<std::vector<int64_t>>{{5, 13}, {4, 2000}, {3, 6, 7}}) {
    for (int64_t dim : {int64_t{0}, int64_t{-1}}) {
      Tensor x = randn(shape, opts(kFloat64)).requires_grad_();
      Tensor g = randn(shape, opts(kFloat64));
      Tensor y = x.softmax(dim);
      y.backward(g);
      const Tensor yd = y.detach();
      EXPECT_TRUE(all_close(x.grad(), yd * (g - (g * yd).sum({dim}, true)), 1e-10, 1e-12));
      Tensor x2 = x.detach().clone().requires_grad_();
      Tensor l = x2.log_softmax(dim);
      l.backward(g);
      EXPECT_TRUE(all_close(x2.grad(), g - l.detach().exp() * g.sum({dim}, true), 1e-10, 1e-12));
      EXPECT_EQ(y.grad_fn()->name(), "SoftmaxBackward");
      EXPECT_EQ(l.grad_fn()->name(), "LogSoftmaxBackward");
    }
  }
}

TEST_P(SoftmaxTest, ModifyingTheOutputBeforeBackwardIsAnError) {
  Tensor x = leaf({3, 4});
  Tensor y = x.softmax(1);
  {
    NoGradGuard no_grad;
    y.mul_(2);
  }
  EXPECT_EMBER_ERROR(y.sum().backward(), "modified by an in-place operation");
}

// Compares the CUDA backend with the CPU: instantiated on cuda:0 only.
class SoftmaxTestCuda : public SoftmaxTest {};

TEST_P(SoftmaxTestCuda, DeviceMatchesCpu) {
  const std::vector<std::vector<int64_t>> shapes = {{1, 1},    {7, 13},   {1000, 10}, {17, 32},    {9, 1024},
                                                    {9, 1025}, {4, 5000}, {3, 70000}, {8, 33, 65}, {2, 3, 100, 3}};
  for (const auto& shape : shapes)
    for (DType dt : {kFloat32, kFloat64})
      for (int64_t dim = 0; dim < static_cast<int64_t>(shape.size()); ++dim)
        for (bool log : {false, true}) {
          const std::string where = ::testing::PrintToString(shape) + " " + dtype_name(dt) + " dim " +
                                    std::to_string(dim) + (log ? " log" : "");
          const Tensor c = (randn(shape, TensorOptions(dt)) * 4).requires_grad_();
          const Tensor gdev = c.detach().to(device()).requires_grad_();
          const Tensor w = randn(shape, TensorOptions(dt));
          const Tensor yc = log ? c.log_softmax(dim) : c.softmax(dim);
          const Tensor yg = log ? gdev.log_softmax(dim) : gdev.softmax(dim);
          const double rtol = dt == kFloat32 ? 1e-5 : 1e-12, atol = dt == kFloat32 ? 1e-6 : 1e-14;
          EXPECT_TRUE(all_close(yg.cpu(), yc, rtol, atol)) << where;
          yc.backward(w);
          yg.backward(w.to(device()));
          EXPECT_TRUE(all_close(gdev.grad().cpu(), c.grad(), 1e-4, 1e-5)) << where;
        }
}

EMBER_INSTANTIATE_DEVICE_TESTS(SoftmaxTest);
EMBER_INSTANTIATE_CUDA_TESTS(SoftmaxTestCuda);

}  // namespace
}  // namespace ember
