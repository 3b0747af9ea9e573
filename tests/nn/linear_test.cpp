// Tests of functional::linear and nn::Linear: values, PyTorch's initialisation, gradcheck, printing, bad input.
#include <cmath>
#include <sstream>

#include "nn/functional/linear.h"
#include "nn/layers/linear.h"
#include "tests/testing.h"

namespace ember {
namespace {

namespace F = nn::functional;
using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class LinearTest : public testing::DeviceTest {
 protected:
  Tensor w() const { return tensor({0.5, -1.0, 2.0, 1.5, 0.25, -0.75}).view({2, 3}).to(device()); }
  Tensor b() const { return tensor({0.1, -0.2}).to(device()); }
  Tensor x() const { return tensor({1.0, 2.0, 3.0, -1.0, 0.5, 0.0}).view({2, 3}).to(device()); }
};

TEST_P(LinearTest, FunctionalValues) {
  EXPECT_TRUE(values_are(F::linear(x(), w(), b()), {2, 2}, {4.6, -0.45, -0.9, -1.575}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(F::linear(x(), w()), {2, 2}, {4.5, -0.25, -1.0, -1.375}, 1e-12, 1e-12));
  // 1-D input, and [*, in] with more leading dims give the same rows.
  EXPECT_TRUE(values_are(F::linear(x().select(0, 1), w(), b()), {2}, {-0.9, -1.575}, 1e-12, 1e-12));
  const Tensor x3 = x().unsqueeze(0).expand({2, 2, 3}).contiguous();
  EXPECT_TRUE(values_are(F::linear(x3, w(), b()), {2, 2, 2}, {4.6, -0.45, -0.9, -1.575, 4.6, -0.45, -0.9, -1.575},
                         1e-12, 1e-12));
  // A non-contiguous 3-D input (leading dims that do not fold into a view).
  const Tensor x3t = x3.transpose(0, 1);
  EXPECT_TRUE(values_are(F::linear(x3t, w()), {2, 2, 2}, {4.5, -0.25, 4.5, -0.25, -1.0, -1.375, -1.0, -1.375},
                         1e-12, 1e-12));
  // Empty batch.
  EXPECT_EQ(F::linear(zeros({0, 3}, opts(kFloat64)), w(), b()).sizes(), IntArrayRef({0, 2}));
}

TEST_P(LinearTest, LayerForwardAndParameters) {
  nn::Linear fc(3, 2);
  EXPECT_EQ(fc->named_parameters().keys(), std::vector<std::string>({"weight", "bias"}));
  EXPECT_EQ(fc->weight.sizes(), IntArrayRef({2, 3}));
  EXPECT_EQ(fc->bias.sizes(), IntArrayRef({2}));
  EXPECT_TRUE(fc->weight.requires_grad());
  fc->to(device(), kFloat64);
  {
    NoGradGuard no_grad;
    fc->weight.copy_(w());
    fc->bias.copy_(b());
  }
  EXPECT_TRUE(values_are(fc->forward(x()), {2, 2}, {4.6, -0.45, -0.9, -1.575}, 1e-12, 1e-12));
  nn::Linear nobias(nn::LinearOptions(3, 2).bias(false));
  EXPECT_FALSE(nobias->bias.defined());
  EXPECT_EQ(nobias->parameters().size(), 1u);
  fc->forward(x()).sum().backward();
  EXPECT_TRUE(values_are(fc->bias.grad(), {2}, {2, 2}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(fc->weight.grad(), {2, 3}, {0.0, 2.5, 3.0, 0.0, 2.5, 3.0}, 1e-12, 1e-12));
}

TEST(LinearInit, PyTorchBounds) {
  manual_seed(0);
  nn::Linear fc(400, 300);
  // kaiming_uniform_(a = sqrt(5)): bound = gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + 5)) -> 1 / sqrt(fan_in).
  const double bound = 1.0 / std::sqrt(400.0);
  const Tensor wabs = fc->weight.detach().abs();
  EXPECT_LE(wabs.max().item<double>(), bound);
  EXPECT_GT(wabs.max().item<double>(), 0.99 * bound);
  // U(-b, b) has variance b^2 / 3.
  EXPECT_NEAR(fc->weight.detach().pow(2).mean().item<double>(), bound * bound / 3.0, 0.02 * bound * bound);
  EXPECT_NEAR(fc->weight.detach().mean().item<double>(), 0.0, 0.01 * bound);
  const Tensor babs = fc->bias.detach().abs();
  EXPECT_LE(babs.max().item<double>(), bound);
  EXPECT_GT(babs.max().item<double>(), 0.9 * bound);
  // reset_parameters draws new values.
  const Tensor before = fc->weight.detach().clone();
  fc->reset_parameters();
  EXPECT_FALSE(all_close(fc->weight, before));
}

TEST_P(LinearTest, Gradcheck) {
  const Tensor xx = rand_leaf({7, 5}, device()), ww = rand_leaf({3, 5}, device()), bb = rand_leaf({3}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return F::linear(in[0], in[1], in[2]); }, {xx, ww, bb}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return F::linear(in[0], in[1]); }, {xx, ww}));
  const Tensor x3 = rand_leaf({2, 3, 5}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return F::linear(in[0], in[1], in[2]); }, {x3, ww, bb}));
  // Non-contiguous: a transposed input and a sliced weight.
  const Tensor xt = rand_leaf({5, 7}, device()), wide = rand_leaf({3, 10}, device());
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) { return F::linear(in[0].t(), in[1].slice(1, 0, 10, 2), in[2]); },
      {xt, wide, bb}));
  const Tensor x1 = rand_leaf({5}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return F::linear(in[0], in[1], in[2]); }, {x1, ww, bb}));
  // The layer in float64.
  nn::Linear fc(5, 3);
  fc->to(device(), kFloat64);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return fc->forward(in[0]); }, {xx, fc->weight, fc->bias}));
}

// Compares the CUDA backend with the CPU: instantiated on cuda:0 only.
class LinearTestCuda : public LinearTest {};

TEST_P(LinearTestCuda, CudaMatchesCpu) {
  nn::Linear fc(33, 17);
  const Tensor xc = randn({65, 33});
  const Tensor yc = fc->forward(xc);
  auto g = std::dynamic_pointer_cast<nn::LinearImpl>(fc->clone(device()));
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(all_close(g->forward(xc.to(device())).cpu(), yc, 1e-4, 1e-4));
  const Tensor x3 = randn({4, 5, 33});
  EXPECT_TRUE(all_close(g->forward(x3.to(device())).cpu(), fc->forward(x3), 1e-4, 1e-4));
}

TEST_P(LinearTest, PrintingAndBadInput) {
  std::ostringstream os;
  nn::Linear(784, 10)->pretty_print(os);
  EXPECT_EQ(os.str(), "Linear(in_features=784, out_features=10, bias=True)");
  os.str("");
  nn::Linear(nn::LinearOptions(3, 4).bias(false))->pretty_print(os);
  EXPECT_EQ(os.str(), "Linear(in_features=3, out_features=4, bias=False)");

  nn::Linear fc(784, 10);
  fc->to(device());
  EXPECT_EMBER_ERROR(fc->forward(zeros({64, 100}, opts())), "Linear", "[*, 784]", "in_features", "[64, 100]");
  EXPECT_EMBER_ERROR(fc->forward(zeros({}, opts())), "Linear", "[*, 784]", "[]");
  EXPECT_EMBER_ERROR(F::linear(zeros({2, 3}, opts()), zeros({4, 5}, opts())), "linear", "[2, 3]", "[4, 5]");
  EXPECT_EMBER_ERROR(F::linear(zeros({2, 3}, opts()), zeros({4, 3}, opts()), zeros({3}, opts())), "linear", "bias",
                     "[4]", "[3]");
  EXPECT_EMBER_ERROR(F::linear(zeros({2, 3}, opts()), zeros({4, 3}, opts(kFloat64))), "float32", "float64");
}

EMBER_INSTANTIATE_DEVICE_TESTS(LinearTest);
EMBER_INSTANTIATE_CUDA_TESTS(LinearTestCuda);

}  // namespace
}  // namespace ember
