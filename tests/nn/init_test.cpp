// Tests of nn::init: gains, fans, and the statistics of every initialiser (PyTorch's formulas).
#include <cmath>

#include "nn/init.h"
#include "tests/testing.h"

namespace ember {
namespace {

namespace init = nn::init;
using testing::all_close;

class InitTest : public testing::DeviceTest {
 protected:
  // Largest |x|, mean and mean square of a tensor.
  static void stats(const Tensor& t, double& max_abs, double& mean, double& mean_sq) {
    const Tensor d = t.detach().to(kFloat64);
    max_abs = d.abs().max().item<double>();
    mean = d.mean().item<double>();
    mean_sq = d.pow(2).mean().item<double>();
  }
};

TEST(Init, CalculateGain) {
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::kLinear), 1.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::Nonlinearity::Conv2D), 1.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::kSigmoid), 1.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::kTanh), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::kReLU), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::kSELU), 0.75);
  // Values from torch.nn.init.calculate_gain (PyTorch 1.13).
  EXPECT_NEAR(init::calculate_gain(init::kLeakyReLU), 1.4141428569978354, 1e-15);
  EXPECT_NEAR(init::calculate_gain(init::kLeakyReLU, std::sqrt(5.0)), 0.5773502691896257, 1e-15);
}

TEST(Init, FanInAndFanOut) {
  EXPECT_EQ(init::_calculate_fan_in_and_fan_out(empty({300, 400})), std::make_tuple(int64_t{400}, int64_t{300}));
  EXPECT_EQ(init::_calculate_fan_in_and_fan_out(empty({16, 8, 3, 5})), std::make_tuple(int64_t{120}, int64_t{240}));
  EXPECT_EMBER_ERROR(init::_calculate_fan_in_and_fan_out(empty({5})), "fan in and fan out", "fewer than 2", "[5]");
  EXPECT_EMBER_ERROR(init::kaiming_uniform_(empty({5})), "fewer than 2");
}

TEST_P(InitTest, KaimingUniformBoundAndVariance) {
  manual_seed(0);
  Tensor w = empty({256, 512}, opts());
  Tensor r = init::kaiming_uniform_(w, 0.0, init::kFanIn, init::kReLU);
  EXPECT_TRUE(r.is_same(w));
  const double bound = std::sqrt(2.0) * std::sqrt(3.0 / 512.0);
  double mx, mean, msq;
  stats(w, mx, mean, msq);
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.999 * bound);
  EXPECT_NEAR(mean, 0.0, 0.01 * bound);
  EXPECT_NEAR(msq, bound * bound / 3.0, 0.02 * bound * bound / 3.0);
  // fan_out, leaky_relu with the default slope a = 0.
  init::kaiming_uniform_(w, 0.0, init::kFanOut);
  stats(w, mx, mean, msq);
  const double bound_out = init::calculate_gain(init::kLeakyReLU, 0.0) * std::sqrt(3.0 / 256.0);
  EXPECT_LE(mx, bound_out);
  EXPECT_GT(mx, 0.999 * bound_out);
}

TEST_P(InitTest, KaimingNormalStd) {
  manual_seed(1);
  Tensor w = empty({64, 32, 3, 3}, opts());
  init::kaiming_normal_(w, 0.0, init::kFanOut, init::kReLU);
  const double sd = std::sqrt(2.0) / std::sqrt(64.0 * 9.0);
  double mx, mean, msq;
  stats(w, mx, mean, msq);
  EXPECT_NEAR(mean, 0.0, 0.02 * sd);
  EXPECT_NEAR(std::sqrt(msq), sd, 0.02 * sd);
}

TEST_P(InitTest, XavierUniformAndNormal) {
  manual_seed(2);
  Tensor w = empty({300, 500}, opts());
  init::xavier_uniform_(w, 2.0);
  const double a = 2.0 * std::sqrt(6.0 / 800.0);
  double mx, mean, msq;
  stats(w, mx, mean, msq);
  EXPECT_LE(mx, a);
  EXPECT_GT(mx, 0.999 * a);
  EXPECT_NEAR(msq, a * a / 3.0, 0.02 * a * a / 3.0);
  init::xavier_normal_(w);
  const double sd = std::sqrt(2.0 / 800.0);
  stats(w, mx, mean, msq);
  EXPECT_NEAR(std::sqrt(msq), sd, 0.02 * sd);
  EXPECT_NEAR(mean, 0.0, 0.02 * sd);
}

TEST_P(InitTest, UniformNormalConstant) {
  manual_seed(3);
  Tensor w = empty({100000}, opts());
  init::uniform_(w, -3.0, 1.0);
  EXPECT_GE(w.min().item<double>(), -3.0);
  EXPECT_LT(w.max().item<double>(), 1.0);
  EXPECT_NEAR(w.mean().item<double>(), -1.0, 0.02);
  init::normal_(w, 2.0, 0.5);
  EXPECT_NEAR(w.mean().item<double>(), 2.0, 0.01);
  EXPECT_NEAR((w - 2.0).pow(2).mean().item<double>(), 0.25, 0.01);
  init::constant_(w, 0.25);
  EXPECT_TRUE(all_close(w, full({100000}, 0.25, opts())));
  init::zeros_(w);
  EXPECT_EQ(w.abs().max().item<double>(), 0.0);
  init::ones_(w);
  EXPECT_EQ(w.min().item<double>(), 1.0);
}

TEST_P(InitTest, WorksOnParametersThatRequireGradWithoutRecording) {
  Tensor w = empty({4, 3}, opts()).requires_grad_();
  init::kaiming_uniform_(w);
  init::xavier_normal_(w);
  init::constant_(w, 1.0);
  EXPECT_TRUE(w.is_leaf());
  EXPECT_TRUE(w.requires_grad());
  EXPECT_EQ(w.grad_fn(), nullptr);
  // Zero-element tensors are left alone.
  Tensor e = empty({0, 3}, opts());
  EXPECT_TRUE(init::kaiming_uniform_(e).is_same(e));
}

EMBER_INSTANTIATE_DEVICE_TESTS(InitTest);

}  // namespace
}  // namespace ember
