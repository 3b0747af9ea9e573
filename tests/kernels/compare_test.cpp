// Comparisons, logical ops, where, masked_fill, allclose and equal: values, errors and gradients.
#include <cmath>
#include <limits>

#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

std::vector<bool> bools(const Tensor& t) {
  std::vector<bool> out;
  for (int64_t v : t.to_vector<int64_t>()) out.push_back(v != 0);
  return out;
}

class CompareTest : public testing::DeviceTest {
 protected:
  Tensor t(std::vector<double> v, IntArrayRef shape, DType dtype = kFloat32) const {
    return tensor(v).view(shape).to(device(), dtype);
  }
  Tensor mask(std::vector<bool> v, IntArrayRef shape) const { return tensor(v).view(shape).to(device()); }
};

TEST_P(CompareTest, TensorComparisons) {
  Tensor a = t({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = t({2, 2, 2}, {3});
  Tensor g = gt(a, b);
  EXPECT_EQ(g.dtype(), kBool);
  EXPECT_EQ(g.sizes(), IntArrayRef({2, 3}));
  EXPECT_EQ(g.device(), device());
  EXPECT_EQ(bools(g), (std::vector<bool>{false, false, true, true, true, true}));
  EXPECT_EQ(bools(lt(a, b)), (std::vector<bool>{true, false, false, false, false, false}));
  EXPECT_EQ(bools(ge(a, b)), (std::vector<bool>{false, true, true, true, true, true}));
  EXPECT_EQ(bools(le(a, b)), (std::vector<bool>{true, true, false, false, false, false}));
  EXPECT_EQ(bools(eq(a, b)), (std::vector<bool>{false, true, false, false, false, false}));
  EXPECT_EQ(bools(ne(a, b)), (std::vector<bool>{true, false, true, true, true, true}));
  EXPECT_EQ(bools(a.t().gt(b.view({3, 1}))), (std::vector<bool>{false, true, false, true, true, true}));
  // Bool and integer tensors compare too.
  Tensor m = mask({true, false}, {2});
  EXPECT_EQ(bools(eq(m, mask({true, true}, {2}))), (std::vector<bool>{true, false}));
  Tensor i = tensor({1, 5}).to(device());
  EXPECT_EQ(bools(i.lt(tensor({3, 3}).to(device()))), (std::vector<bool>{true, false}));
}

TEST_P(CompareTest, ScalarComparisons) {
  Tensor a = t({-1, 0, 2.5}, {3});
  EXPECT_EQ(bools(a.gt(0)), (std::vector<bool>{false, false, true}));
  EXPECT_EQ(bools(a.le(0)), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(bools(a.eq(2.5)), (std::vector<bool>{false, false, true}));
  EXPECT_EQ(bools(a.ne(0)), (std::vector<bool>{true, false, true}));
  // Integer tensors compare exactly against floating and negative scalars.
  Tensor i = tensor({2, 3}).to(device());
  EXPECT_EQ(bools(i.gt(2.5)), (std::vector<bool>{false, true}));
  EXPECT_EQ(bools(i.eq(2.0)), (std::vector<bool>{true, false}));
  Tensor u = tensor(std::vector<uint8_t>{255, 0}).to(device());
  EXPECT_EQ(bools(u.eq(-1)), (std::vector<bool>{false, false}));
  EXPECT_EQ(bools(u.gt(-1)), (std::vector<bool>{true, true}));
  Tensor m = mask({true, false}, {2});
  EXPECT_EQ(bools(m.eq(2)), (std::vector<bool>{false, false}));
  EXPECT_EQ(bools(m.eq(true)), (std::vector<bool>{true, false}));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(bools(t({nan}, {1}).eq(t({nan}, {1}))), (std::vector<bool>{false}));
  EXPECT_EQ(bools(t({nan}, {1}).ne(0)), (std::vector<bool>{true}));
  EXPECT_EQ(gt(zeros({0, 2}, opts()), 1).sizes(), IntArrayRef({0, 2}));
  EXPECT_EQ(gt(full({}, 2.0, opts()), 1).dim(), 0);
}

TEST_P(CompareTest, ComparisonErrors) {
  Tensor a = zeros({2, 3}, opts());
  EXPECT_EMBER_ERROR(gt(a, zeros({4}, opts())), "gt", "cannot be broadcast");
  EXPECT_EMBER_ERROR(eq(a, zeros({2, 3}, opts(kFloat64))), "eq", "float32", "float64");
  Device other = device().is_cuda() ? Device::cpu() : Device::cpu(1);
  EXPECT_EMBER_ERROR(lt(a, zeros({2, 3}, TensorOptions().device(other))), "lt", device().str(), other.str());
}

TEST_P(CompareTest, LogicalOps) {
  Tensor a = mask({true, true, false, false}, {4});
  Tensor b = mask({true, false, true, false}, {4});
  EXPECT_EQ(bools(logical_and(a, b)), (std::vector<bool>{true, false, false, false}));
  EXPECT_EQ(bools(logical_or(a, b)), (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(bools(logical_not(a)), (std::vector<bool>{false, false, true, true}));
  EXPECT_EQ(logical_not(a).dtype(), kBool);
  // Non-bool operands: non-zero is true (mixed dtypes too).
  Tensor f = t({0, 2, -1, 0}, {4});
  EXPECT_EQ(bools(logical_not(f)), (std::vector<bool>{true, false, false, true}));
  EXPECT_EQ(bools(logical_and(f, b)), (std::vector<bool>{false, false, true, false}));
  EXPECT_EQ(bools(logical_or(f, tensor({0, 0, 0, 5}).to(device()))), (std::vector<bool>{false, true, true, true}));
  EXPECT_EQ(bools(a.view({4, 1}).logical_not()), (std::vector<bool>{false, false, true, true}));
}

TEST_P(CompareTest, WhereValues) {
  Tensor m = mask({true, false, true}, {3});
  Tensor a = t({1, 2, 3}, {3});
  Tensor b = t({10, 20, 30}, {3});
  EXPECT_TRUE(values_are(where(m, a, b), {3}, {1, 20, 3}));
  EXPECT_TRUE(values_are(where(m, a, -1), {3}, {1, -1, 3}));
  EXPECT_TRUE(values_are(where(m, 7, b), {3}, {7, 20, 7}));
  // Broadcasting all three: [2, 1] mask, [3] a, 0-d b.
  Tensor m2 = mask({true, false}, {2, 1});
  EXPECT_TRUE(values_are(where(m2, a, full({}, 0.5, opts())), {2, 3}, {1, 2, 3, 0.5, 0.5, 0.5}));
  // Integer values; an integer tensor with a non-integral scalar gives float32.
  Tensor i = tensor({1, 2, 3}).to(device());
  EXPECT_EQ(where(m, i, i * 10).to_vector<int64_t>(), (std::vector<int64_t>{1, 20, 3}));
  EXPECT_EQ(where(m, i, 0).dtype(), kInt64);
  Tensor wf = where(m, i, 0.5);
  EXPECT_EQ(wf.dtype(), kFloat32);
  EXPECT_TRUE(values_are(wf, {3}, {1, 0.5, 3}));
  // Non-contiguous operands.
  Tensor mm = mask({true, false, false, true}, {2, 2});
  Tensor x = t({1, 2, 3, 4}, {2, 2});
  EXPECT_TRUE(values_are(where(mm.t(), x.t(), x), {2, 2}, {1, 2, 3, 4}));
  EXPECT_TRUE(values_are(where(mm, x.t(), 0), {2, 2}, {1, 0, 0, 4}));
}

TEST_P(CompareTest, WhereErrors) {
  Tensor a = zeros({3}, opts());
  EXPECT_EMBER_ERROR(where(a, a, a), "where", "kBool", "float32");
  Tensor m = zeros({3}, opts(kBool));
  EXPECT_EMBER_ERROR(where(m, a, zeros({3}, opts(kFloat64))), "where", "float32", "float64");
  EXPECT_EMBER_ERROR(where(m, a, zeros({4}, opts())), "where", "cannot be broadcast");
  Device other = device().is_cuda() ? Device::cpu() : Device::cpu(1);
  EXPECT_EMBER_ERROR(where(m, a, zeros({3}, TensorOptions().device(other))), "where", device().str(), other.str());
  EXPECT_EMBER_ERROR(masked_fill(a, a, 1), "masked_fill", "kBool");
}

TEST_P(CompareTest, WhereGradients) {
  Tensor a = rand_leaf({3, 4}, device());
  Tensor b = rand_leaf({4}, device());
  Tensor m = logical_or(rand({3, 1}, opts()).gt(0.5), mask({true, false, false}, {3, 1}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return where(m, in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return where(m, in[1], in[0]); }, {a, b}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return where(m, in[0], 2.0); }, {a}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return where(m, -1, in[0]); }, {b}));
  Tensor c = rand_leaf({4, 3}, device());
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return where(m, in[0].t(), in[1]); }, {c, b}));
  Tensor s = rand_leaf({}, device());
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return where(m, in[0], in[1]); }, {s, b}));
  // The exact split: a gets grad where the mask is true, b the rest.
  Tensor x = rand_leaf({4}, device()), y = rand_leaf({4}, device());
  where(mask({true, false, true, false}, {4}), x, y).sum().backward();
  EXPECT_TRUE(values_are(x.grad(), {4}, {1, 0, 1, 0}));
  EXPECT_TRUE(values_are(y.grad(), {4}, {0, 1, 0, 1}));
}

TEST_P(CompareTest, MaskedFill) {
  Tensor x = t({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor m = mask({true, false, true}, {3});
  EXPECT_TRUE(values_are(masked_fill(x, m, -1), {2, 3}, {-1, 2, -1, -1, 5, -1}));
  EXPECT_TRUE(values_are(x, {2, 3}, {1, 2, 3, 4, 5, 6}));
  x.masked_fill_(m, 0);
  EXPECT_TRUE(values_are(x, {2, 3}, {0, 2, 0, 0, 5, 0}));
  // Integer tensors keep their dtype (the value is converted, as PyTorch).
  Tensor i = tensor({1, 2, 3}).to(device());
  EXPECT_EQ(masked_fill(i, m, 9).to_vector<int64_t>(), (std::vector<int64_t>{9, 2, 9}));
  // In place into a transposed view.
  Tensor base = t({1, 2, 3, 4}, {2, 2});
  Tensor tv = base.t();
  tv.masked_fill_(mask({true, false}, {2}), 0);  // column 0 of the view is row 0 of base
  EXPECT_TRUE(values_are(base, {2, 2}, {0, 0, 3, 4}));
  // The in-place result must fit self.
  EXPECT_EMBER_ERROR(t({1, 2, 3}, {3}).masked_fill_(mask({true, false, true, true, false, true}, {2, 3}), 0),
                     "masked_fill_", "[3]", "[2, 3]");
  Tensor leaf = rand_leaf({3}, device());
  EXPECT_EMBER_ERROR(leaf.masked_fill_(m, 0), "masked_fill_", "leaf");
}

TEST_P(CompareTest, MaskedFillGradients) {
  Tensor x = rand_leaf({2, 3}, device());
  Tensor m = mask({true, false, true}, {3});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return masked_fill(in[0], m, 0.5); }, {x}));
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        Tensor y = in[0] * 2;
        y.masked_fill_(m, -3);
        return y * in[0];
      },
      {x}));
  Tensor z = rand_leaf({3}, device());
  masked_fill(z, m, 1).sum().backward();
  EXPECT_TRUE(values_are(z.grad(), {3}, {0, 1, 0}));
}

TEST_P(CompareTest, AllcloseAndEqual) {
  Tensor a = t({1, 2, 3}, {3}, kFloat64);
  EXPECT_TRUE(allclose(a, a));
  EXPECT_TRUE(allclose(a, a + 1e-9));
  EXPECT_FALSE(allclose(a, a + 1e-3));
  EXPECT_TRUE(allclose(a, a + 1e-3, 1e-3, 0));  // |d| <= rtol * |b|
  EXPECT_TRUE(allclose(a, a + 0.5, 0, 0.5));
  EXPECT_TRUE(allclose(t({1, 1}, {2}, kFloat64), t({1}, {1}, kFloat64)));  // broadcasts
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(allclose(t({inf, -inf}, {2}, kFloat64), t({inf, -inf}, {2}, kFloat64)));
  EXPECT_FALSE(allclose(t({1}, {1}, kFloat64), t({inf}, {1}, kFloat64)));
  EXPECT_FALSE(allclose(t({nan}, {1}, kFloat64), t({nan}, {1}, kFloat64)));
  EXPECT_TRUE(allclose(zeros({0}, opts()), zeros({0}, opts())));
  EXPECT_EMBER_ERROR(allclose(a, a.to(kFloat32)), "allclose", "float64", "float32");

  EXPECT_TRUE(equal(a, a.clone()));
  EXPECT_FALSE(equal(a, a + 1e-12));
  EXPECT_FALSE(equal(a, a.view({3, 1})));
  EXPECT_FALSE(equal(a, a.to(kFloat32)));
  EXPECT_FALSE(equal(t({nan}, {1}), t({nan}, {1})));
  EXPECT_TRUE(equal(tensor({1, 2}).to(device()), tensor({1, 2}).to(device())));
  EXPECT_TRUE(equal(a.view({3, 1}).t(), t({1, 2, 3}, {1, 3}, kFloat64)));
}

EMBER_INSTANTIATE_DEVICE_TESTS(CompareTest);

}  // namespace
}  // namespace ember
