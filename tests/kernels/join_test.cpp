// Tests of cat and stack: values, dims, strided and empty inputs, gradients, errors, CUDA vs CPU.
#include "kernels/ops.h"
#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class JoinTest : public testing::DeviceTest {};

Tensor seq(IntArrayRef shape, double start, const TensorOptions& o) {
  return (arange(0, product(shape), 1, TensorOptions(kFloat64)) + start).view(shape).to(o.device(), o.dtype());
}

TEST_P(JoinTest, CatValues) {
  Tensor a = seq({2, 2}, 0, opts()), b = seq({1, 2}, 10, opts()), c = seq({2, 3}, 20, opts());
  EXPECT_TRUE(values_are(cat({a, b}, 0), {3, 2}, {0, 1, 2, 3, 10, 11}));
  EXPECT_TRUE(values_are(cat({a, c}, 1), {2, 5}, {0, 1, 20, 21, 22, 2, 3, 23, 24, 25}));
  EXPECT_TRUE(values_are(cat({a, c, a}, -1), {2, 7}, {0, 1, 20, 21, 22, 0, 1, 2, 3, 23, 24, 25, 2, 3}));
  EXPECT_TRUE(values_are(cat({a}, 0), {2, 2}, {0, 1, 2, 3}));
  // A strided (transposed) input among contiguous ones, and an int64 tensor.
  EXPECT_TRUE(values_are(cat({a.t(), b}, 0), {3, 2}, {0, 2, 1, 3, 10, 11}));
  EXPECT_TRUE(values_are(cat({c.t(), a}, 0), {5, 2}, {20, 23, 21, 24, 22, 25, 0, 1, 2, 3}));
  Tensor i = cat({arange(0, 3, 1, TensorOptions(kInt64).device(device())),
                  arange(5, 7, 1, TensorOptions(kInt64).device(device()))});
  EXPECT_EQ(i.dtype(), kInt64);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 5, 6}));
  // The middle dim of a 3-D tensor.
  Tensor x = seq({2, 1, 2}, 0, opts()), y = seq({2, 2, 2}, 10, opts());
  EXPECT_TRUE(values_are(cat({x, y}, 1), {2, 3, 2}, {0, 1, 10, 11, 12, 13, 2, 3, 14, 15, 16, 17}));
}

TEST_P(JoinTest, CatEmptyAndLegacy) {
  Tensor a = seq({2, 3}, 0, opts());
  // Legacy 1-D empty tensors are skipped whatever the other ranks.
  Tensor legacy = empty({0}, opts());
  EXPECT_TRUE(values_are(cat({legacy, a, legacy}, 1), {2, 3}, {0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(cat({legacy, legacy}, 0).sizes(), IntArrayRef({0}));
  // Empty along the cat dim takes part (and contributes nothing).
  EXPECT_TRUE(values_are(cat({empty({2, 0}, opts()), a}, 1), {2, 3}, {0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(cat({empty({0, 3}, opts()), empty({0, 3}, opts())}, 0).sizes(), IntArrayRef({0, 3}));
  EXPECT_EQ(cat({empty({0, 3}, opts()), empty({0, 2}, opts())}, 1).sizes(), IntArrayRef({0, 5}));
}

TEST_P(JoinTest, CatManyInputs) {
  // More inputs than one fused CUDA launch takes, of odd sizes (unaligned word widths).
  std::vector<Tensor> parts;
  std::vector<double> expected_first_row;
  for (int i = 0; i < 70; ++i) {
    parts.push_back(full({3, 1 + i % 3}, static_cast<double>(i), opts()));
    for (int j = 0; j < 1 + i % 3; ++j) expected_first_row.push_back(i);
  }
  Tensor out = cat(parts, 1);
  ASSERT_EQ(out.size(0), 3);
  EXPECT_TRUE(values_are(out.select(0, 0), {static_cast<int64_t>(expected_first_row.size())}, expected_first_row));
  EXPECT_TRUE(values_are(out.select(0, 2), {static_cast<int64_t>(expected_first_row.size())}, expected_first_row));
  // Large enough for the parallel copy paths.
  Tensor big_a = randn({513, 257}, opts()), big_b = randn({513, 129}, opts());
  Tensor big = cat({big_a, big_b}, 1);
  EXPECT_TRUE(all_close(big.narrow(1, 0, 257), big_a, 0, 0));
  EXPECT_TRUE(all_close(big.narrow(1, 257, 129), big_b, 0, 0));
  Tensor rows = cat({big_a, big_a.t().t().contiguous()}, 0);
  EXPECT_TRUE(all_close(rows.narrow(0, 513, 513), big_a, 0, 0));
}

TEST_P(JoinTest, StackValues) {
  Tensor a = seq({2, 3}, 0, opts()), b = seq({2, 3}, 10, opts());
  EXPECT_TRUE(values_are(stack({a, b}, 0), {2, 2, 3}, {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15}));
  EXPECT_TRUE(values_are(stack({a, b}, 1), {2, 2, 3}, {0, 1, 2, 10, 11, 12, 3, 4, 5, 13, 14, 15}));
  EXPECT_TRUE(values_are(stack({a, b}, 2), {2, 3, 2}, {0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15}));
  EXPECT_TRUE(values_are(stack({a, b}, -1), {2, 3, 2}, {0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15}));
  EXPECT_TRUE(values_are(stack({a.t(), b.t()}, -3), {2, 3, 2}, {0, 3, 1, 4, 2, 5, 10, 13, 11, 14, 12, 15}));
  // 0-d tensors stack into a vector.
  EXPECT_TRUE(values_are(stack({full({}, 1.0, opts()), full({}, 2.0, opts())}), {2}, {1, 2}));
}

TEST_P(JoinTest, Gradients) {
  const Device dev = device();
  auto leaf = [&](IntArrayRef s) { return rand_leaf(s, dev); };
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return cat(x, 0); }, {leaf({7, 3}), leaf({13, 3})}));
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& x) { return cat(x, 1); }, {leaf({3, 7}), leaf({3, 13}), leaf({3, 1})}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& x) {
        return cat({x[0].t(), x[1]}, -1);
      },
      {leaf({7, 3}), leaf({3, 5})}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& x) {
        return cat({x[0], x[1], x[0]}, -2);
      },
      {leaf({2, 3, 4}), leaf({2, 1, 4})}));
  // A legacy empty input that requires grad gets an empty gradient.
  Tensor legacy = rand_leaf({0}, dev);
  Tensor a = leaf({2, 3});
  cat({legacy, a}, 1).sum().backward();
  ASSERT_TRUE(legacy.grad().defined());
  EXPECT_EQ(legacy.grad().sizes(), IntArrayRef({0}));
  EXPECT_TRUE(all_close(a.grad(), ones({2, 3}, opts(kFloat64))));
  // stack along several dims.
  for (int64_t d : {0, 1, 2, -1})
    EXPECT_TRUE(gradcheck([d](const std::vector<Tensor>& x) { return stack(x, d); },
                          {leaf({7, 3}), leaf({7, 3}), leaf({7, 3})}))
        << "dim " << d;
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& x) {
        return stack({x[0].t(), x[1]}, 1);
      },
      {leaf({5, 3}), leaf({3, 5})}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return stack(x, 0); }, {leaf({}), leaf({}), leaf({})}));
  // Only some inputs require grad.
  Tensor c = rand(IntArrayRef{2, 3}, opts(kFloat64));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return cat({c, x[0]}, 0); }, {leaf({1, 3})}));
  EXPECT_EQ(cat({c, a}, 0).grad_fn()->name(), "CatBackward");
  EXPECT_EQ(stack({c, a}, 0).grad_fn()->name(), "StackBackward");
}

TEST_P(JoinTest, Errors) {
  Tensor a = randn({2, 3}, opts());
  EXPECT_EMBER_ERROR(cat({}, 0), "cat", "non-empty");
  EXPECT_EMBER_ERROR(cat({a, a, randn({4, 5}, opts())}, 0), "cat", "tensor 2", "[4, 5]", "[2, 3]", "dim 1");
  EXPECT_EMBER_ERROR(cat({a, randn({2, 3, 1}, opts())}, 0), "cat", "tensor 1", "[2, 3, 1]", "same number of dims");
  EXPECT_EMBER_ERROR(cat({a, randn({2, 3}, opts(kFloat64))}, 0), "cat", "tensor 1", "float64", "float32");
  EXPECT_EMBER_ERROR(cat({full({}, 1.0, opts()), a}, 0), "cat", "zero-dimensional", "tensor 0");
  EXPECT_EMBER_ERROR(cat({a, a}, 2), "cat", "dim 2", "out of range");
  EXPECT_EMBER_ERROR(cat({a, a}, -3), "cat", "dim -3");
  EXPECT_EMBER_ERROR(stack({}, 0), "stack", "non-empty");
  EXPECT_EMBER_ERROR(stack({a, randn({2, 4}, opts())}, 0), "stack", "equal size", "[2, 3]", "[2, 4]", "entry 1");
  EXPECT_EMBER_ERROR(stack({a, a}, 3), "stack", "dim 3");
  EXPECT_EMBER_ERROR(stack({a, Tensor()}, 0), "stack", "tensor 1", "undefined");
}

TEST(JoinDevices, LogicalCpuDeviceMismatch) {
  Tensor a = randn({2, 3}), b = randn({2, 3}).to(Device::cpu(1));
  EXPECT_EMBER_ERROR(cat({a, b}, 0), "cat", "same device", "tensor 1", "cpu:1", "cpu:0");
  EXPECT_EMBER_ERROR(stack({a, a, b}, 0), "stack", "tensor 2", "cpu:1", "cpu:0");
  Tensor c = cat({b, b}, 1);
  EXPECT_EQ(c.device(), Device::cpu(1));
  EXPECT_TRUE(all_close(c.narrow(1, 3, 3), b, 0, 0));
}

TEST(JoinDevices, CudaMatchesCpu_CUDA) {
  EMBER_REQUIRE_CUDA();
  for (DType dt : {kFloat32, kFloat64, kInt64, kFloat16}) {
    Tensor a = randn({7, 13}).to(dt), b = randn({7, 5}).to(dt), c = randn({13, 7}).to(dt);
    // c.t() is a strided [7, 13] input (strided on the device too); b joins only along dim 1.
    const Tensor ga = a.cuda(), gb = b.cuda(), gct = c.cuda().t();
    EXPECT_TRUE(all_close(cat({ga, gct}, 0).cpu(), cat({a, c.t()}, 0), 0, 0));
    EXPECT_TRUE(all_close(cat({ga, gb, gct}, 1).cpu(), cat({a, b, c.t()}, 1), 0, 0));
    EXPECT_TRUE(all_close(cat({gct, gb, ga}, -1).cpu(), cat({c.t(), b, a}, -1), 0, 0));
    EXPECT_TRUE(all_close(stack({a.cuda(), a.cuda()}, 1).cpu(), stack({a, a}, 1), 0, 0));
    // Odd byte counts (narrow word widths) and a strided input.
    Tensor u = randn({3, 1, 3}).to(dt), v = randn({3, 2, 3}).to(dt);
    EXPECT_TRUE(all_close(cat({u.cuda(), v.cuda(), u.cuda()}, 1).cpu(), cat({u, v, u}, 1), 0, 0));
    EXPECT_TRUE(all_close(cat({v.cuda().transpose(0, 2), v.cuda().transpose(0, 2)}, 0).cpu(),
                          cat({v.transpose(0, 2), v.transpose(0, 2)}, 0), 0, 0));
  }
  std::vector<Tensor> many, gmany;
  for (int i = 0; i < 150; ++i) {
    many.push_back(randn({2, 1 + i % 5}));
    gmany.push_back(many.back().cuda());
  }
  EXPECT_TRUE(all_close(cat(gmany, 1).cpu(), cat(many, 1), 0, 0));
  // Gradient slices come back on the device.
  Tensor x = randn({4, 3}, TensorOptions(kFloat64)).cuda().requires_grad_();
  cat({x, x}, 0).sum().backward();
  EXPECT_TRUE(all_close(x.grad().cpu(), full({4, 3}, 2.0, TensorOptions(kFloat64))));
}

EMBER_INSTANTIATE_DEVICE_TESTS(JoinTest);

}  // namespace
}  // namespace ember
