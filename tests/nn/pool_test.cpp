// Pooling ops (max, avg, adaptive avg), their nn::functional forms and layers, and nn::Flatten.
#include "kernels/pool.h"

#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "nn/functional/conv.h"
#include "nn/layers/flatten.h"
#include "nn/layers/pool.h"
#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;
namespace F = nn::functional;

// The deterministic input of tests/nn/data/conv_pool_reference.py: value i = scale * sin(0.7 * i + offset).
Tensor pattern(IntArrayRef shape, const TensorOptions& options) {
  std::vector<double> v(static_cast<size_t>(product(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.7 * static_cast<double>(i));
  return tensor(v).view(shape).to(options);
}

class PoolTest : public testing::DeviceTest {};

TEST_P(PoolTest, MaxPaddingCountsAsMinusInfinity) {
  // All values negative: a zero from the padding would win if padding were zeros.
  const Tensor x = (arange(16, opts(kFloat64)) + 1).neg().view({1, 1, 4, 4});
  auto [v, i] = max_pool2d_with_indices(x, 3, 2, 1);
  EXPECT_TRUE(values_are(v, {1, 1, 2, 2}, {-1, -2, -5, -6}));
  EXPECT_EQ(i.dtype(), kInt64);
  EXPECT_EQ(i.cpu().to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 4, 5}));
}

TEST_P(PoolTest, MaxCeilModeAndDilation) {
  const Tensor x = pattern({1, 2, 5, 5}, opts(kFloat64));
  auto [v, i] = F::max_pool2d_with_indices(x, F::MaxPool2dFuncOptions(2).ceil_mode(true));
  EXPECT_TRUE(
      values_are(v, {1, 2, 3, 3},
                 {0.644217687238, 0.985449729988, 0.334988150156, 0.988168233877, 0.854598908088, 0.669569762197,
                  0.990607355695, 0.303118356746, -0.887567033582, 0.836655638536, 0.681963620068, 0.992766405836,
                  0.270905788308, 0.994644773878, 0.827327900595, 0.70616945718, 0.996241928755, 0.254682332844},
                 1e-10, 1e-11));
  EXPECT_EQ(i.cpu().to_vector<int64_t>(),
            (std::vector<int64_t>{1, 2, 4, 11, 12, 19, 20, 22, 24, 5, 3, 4, 15, 13, 14, 21, 22, 24}));

  auto [v2, i2] = max_pool2d_with_indices(x, {2, 3}, {1, 2}, {1, 1}, {2, 1});
  EXPECT_TRUE(
      values_are(v2, {1, 2, 5, 3},
                 {-0.35078322769,  -0.631266637872, 0.016813900484, 0.988168233877, 0.988168233877,  0.863209366649,
                  -0.35078322769,  0.033623047221,  0.669569762197, 0.990607355695, 0.988168233877,  0.319098362349,
                  -0.879695759972, 0.033623047221,  0.669569762197, 0.836655638536, 0.287052651328,  -0.89518736782,
                  0.067208072525,  0.994644773878,  0.994644773878, 0.836655638536, 0.287052651328,  -0.577715044446,
                  0.70616945718,   0.996241928755,  0.994644773878, 0.270905788308, -0.412927549241, -0.577715044446},
                 1e-10, 1e-11));
  EXPECT_EQ(i2.cpu().to_vector<int64_t>(),
            (std::vector<int64_t>{5, 8, 9, 11, 11, 3,  5, 18, 19, 20, 11, 13, 15, 18, 19,
                                  5, 6, 8, 11, 13, 13, 5, 6,  19, 21, 22, 13, 15, 16, 19}));
  // Plain-argument spelling and the layer give the same values.
  EXPECT_TRUE(all_close(F::max_pool2d(x, {2, 3}, {1, 2}, {1, 1}, {2, 1}), v2));
  nn::MaxPool2d layer(nn::MaxPool2dOptions({2, 3}).stride({1, 2}).padding(1).dilation({2, 1}));
  EXPECT_TRUE(all_close(layer->forward(x), v2));
}

TEST_P(PoolTest, MaxTiesGoToTheFirstMaximum) {
  const Tensor x = ones({1, 1, 4, 4}, opts(kFloat64)).requires_grad_();
  const Tensor y = max_pool2d(x, 2);
  y.sum().backward();
  EXPECT_TRUE(values_are(x.grad(), {1, 1, 4, 4}, {1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0}));
  // Overlapping windows add up at a shared maximum.
  const Tensor z = tensor({0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0}).view({1, 1, 3, 3}).to(opts(kFloat64));
  const Tensor zl = z.requires_grad_();
  max_pool2d(zl, 2, 1).sum().backward();
  EXPECT_TRUE(values_are(zl.grad(), {1, 1, 3, 3}, {0, 0, 0, 0, 4, 0, 0, 0, 0}));
}

TEST_P(PoolTest, MaxPropagatesNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = tensor({1.0, nan, 3.0, 2.0}).view({1, 1, 2, 2}).to(opts(kFloat64));
  auto [v, i] = max_pool2d_with_indices(x, 2);
  EXPECT_TRUE(std::isnan(v.item<double>()));
  EXPECT_EQ(i.item<int64_t>(), 1);
}

TEST_P(PoolTest, AvgKnownValues) {
  const Tensor x = pattern({1, 1, 5, 5}, opts(kFloat64));
  EXPECT_TRUE(values_are(avg_pool2d(x, 3, 2, 1), {1, 1, 3, 3},
                         {-0.064237923652, 0.000842417885, 0.064860531046, -0.15956418407, -0.209680145863,
                          0.004595478347, -0.002502144698, -0.088544224829, -0.062938404594},
                         1e-9, 1e-11));
  EXPECT_TRUE(values_are(avg_pool2d(x, 3, 2, 1, false, /*count_include_pad=*/false), {1, 1, 3, 3},
                         {-0.144535328216, 0.001263626827, 0.145936194854, -0.239346276105, -0.209680145863,
                          0.006893217521, -0.005629825571, -0.132816337244, -0.141611410337},
                         1e-9, 1e-11));
  EXPECT_TRUE(values_are(F::avg_pool2d(x, F::AvgPool2dFuncOptions(2).ceil_mode(true)), {1, 1, 3, 3},
                         {-0.144535328216, 0.058734961535, 0.17590102532, -0.053429664132, 0.147295801355,
                          0.151545316472, 0.918177093419, -0.039476530219, -0.887567033582},
                         1e-9, 1e-11));
  EXPECT_TRUE(
      values_are(avg_pool2d(pattern({1, 1, 6, 6}, opts(kFloat64)), 3, 2, 1, /*ceil_mode=*/true), {1, 1, 4, 4},
                 {-0.134423410867, 0.09955238154, 0.278820335799, 0.106230834365, 0.002540188313, -0.002006436428,
                  -0.005360899731, -0.002006715924, -0.004032437752, -0.003311398961, 0.003733682332, 0.003222909798,
                  0.187284714977, -0.167615066602, -0.409723890571, -0.147839382466},
                 1e-9, 1e-11));
  EXPECT_TRUE(values_are(avg_pool2d(x, 2, {}, 0, false, true, 3), {1, 1, 2, 2},
                         {-0.192713770955, 0.078313282047, -0.071239552176, 0.196394401807}, 1e-9, 1e-11));
  nn::AvgPool2d layer(nn::AvgPool2dOptions(3).stride(2).padding(1).count_include_pad(false));
  EXPECT_TRUE(all_close(layer->forward(x), avg_pool2d(x, 3, 2, 1, false, false)));
}

TEST_P(PoolTest, AdaptiveUnevenSplits) {
  EXPECT_TRUE(values_are(adaptive_avg_pool2d(pattern({1, 1, 7, 7}, opts(kFloat64)), 3), {1, 1, 3, 3},
                         {-0.243621172351, 0.253547131745, 0.329810535498, 0.116980757419, -0.342533738184,
                          -0.233419719071, 0.025937232285, 0.383857646433, 0.104549142604},
                         1e-9, 1e-11));
  EXPECT_TRUE(
      values_are(F::adaptive_avg_pool2d(pattern({1, 2, 7, 5}, opts(kFloat64)), {3, 2}), {1, 2, 3, 2},
                 {0.21384550502, 0.154884448663, 0.24024618699, -0.008249583961, 0.148398778918, -0.167323208555,
                  0.101313853711, 0.23742911934, 0.223191299019, 0.138357967773, 0.23521499325, -0.028812351719},
                 1e-9, 1e-11));
  EXPECT_TRUE(values_are(adaptive_avg_pool2d(pattern({1, 1, 2, 3}, opts(kFloat64)), {4, 5}), {1, 1, 4, 5},
                         {0.0,
                          0.322108843619,
                          0.644217687238,
                          0.814833708613,
                          0.985449729988,
                          0.0,
                          0.322108843619,
                          0.644217687238,
                          0.814833708613,
                          0.985449729988,
                          0.863209366649,
                          0.599098758402,
                          0.334988150156,
                          -0.007897538767,
                          -0.35078322769,
                          0.863209366649,
                          0.599098758402,
                          0.334988150156,
                          -0.007897538767,
                          -0.35078322769},
                         1e-9, 1e-11));
  nn::AdaptiveAvgPool2d layer(1);  // global average pooling
  const Tensor x = pattern({2, 3, 4, 5}, opts());
  EXPECT_TRUE(all_close(layer->forward(x), x.mean({2, 3}, true), 1e-5, 1e-6));
}

TEST_P(PoolTest, UnbatchedInput) {
  const Tensor x = pattern({2, 5, 5}, opts(kFloat64));
  const Tensor batched = x.unsqueeze(0);
  EXPECT_TRUE(all_close(max_pool2d(x, 2), max_pool2d(batched, 2).squeeze(0)));
  EXPECT_TRUE(all_close(avg_pool2d(x, 3, 1, 1), avg_pool2d(batched, 3, 1, 1).squeeze(0)));
  EXPECT_TRUE(all_close(adaptive_avg_pool2d(x, 2), adaptive_avg_pool2d(batched, 2).squeeze(0)));
  EXPECT_EQ(max_pool2d(x, 2).sizes(), IntArrayRef({2, 2, 2}));
}

TEST_P(PoolTest, EmptyBatch) {
  const Tensor x = zeros({0, 3, 6, 6}, opts()).requires_grad_();
  EXPECT_EQ(max_pool2d(x, 2).sizes(), IntArrayRef({0, 3, 3, 3}));
  EXPECT_EQ(avg_pool2d(x, 2).sizes(), IntArrayRef({0, 3, 3, 3}));
  const Tensor y = adaptive_avg_pool2d(x, 2);
  EXPECT_EQ(y.sizes(), IntArrayRef({0, 3, 2, 2}));
  y.sum().backward();
  EXPECT_EQ(x.grad().sizes(), x.sizes());
}

TEST_P(PoolTest, GradcheckMaxPool) {
  manual_seed(21);
  const Tensor x = rand_leaf({2, 3, 7, 9}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return max_pool2d(in[0], 3, 2, 1); }, {x}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        return max_pool2d(in[0], {2, 3}, {2, 1}, {1, 1}, {2, 1}, true);
      },
      {x}));
  // A non-contiguous view (H and W swapped), unbatched.
  const Tensor x3 = rand_leaf({2, 5, 7}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return max_pool2d(in[0].transpose(1, 2), 2, 1); }, {x3}));
}

TEST_P(PoolTest, GradcheckAvgPool) {
  manual_seed(22);
  const Tensor x = rand_leaf({2, 2, 7, 6}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return avg_pool2d(in[0], 3, 2, 1); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return avg_pool2d(in[0], 3, 2, 1, true, false); }, {x}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        return avg_pool2d(in[0], {2, 3}, {1, 2}, {1, 0}, true);
      },
      {x}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) { return avg_pool2d(in[0].slice(3, 0, 6, 2), 2, 1, 0, false, true, 5); }, {x}));
}

TEST_P(PoolTest, GradcheckAdaptiveAvgPool) {
  manual_seed(23);
  const Tensor x = rand_leaf({2, 3, 7, 5}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], {3, 2}); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], {4, 7}); }, {x}));
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0].transpose(2, 3), 3); }, {x}));
}

TEST_P(PoolTest, BadInput) {
  EXPECT_EMBER_ERROR(max_pool2d(zeros({4, 4}, opts()), 2), "max_pool2d", "3-D", "4-D", "[4, 4]");
  EXPECT_EMBER_ERROR(avg_pool2d(zeros({1, 1, 1, 4, 4}, opts()), 2), "avg_pool2d", "[1, 1, 1, 4, 4]");
  EXPECT_EMBER_ERROR(max_pool2d(zeros({1, 1, 4, 4}, opts()), 2, 2, 2), "max_pool2d",
                     "padding should be at most half of the kernel size", "[2, 2]");
  EXPECT_EMBER_ERROR(max_pool2d(zeros({1, 1, 2, 2}, opts()), 3), "max_pool2d", "too small", "[2, 2]");
  EXPECT_EMBER_ERROR(avg_pool2d(zeros({1, 1, 4, 4}, opts()), 2, 0), "avg_pool2d", "stride must be positive");
  EXPECT_EMBER_ERROR(max_pool2d(zeros({1, 1, 4, 4}, opts()), 0), "max_pool2d", "kernel_size must be positive");
  EXPECT_EMBER_ERROR(max_pool2d(zeros({1, 1, 4, 4}, opts()), 2, {}, 0, 0), "max_pool2d", "dilation must be positive");
  EXPECT_EMBER_ERROR(adaptive_avg_pool2d(zeros({1, 1, 4, 4}, opts()), 0), "adaptive_avg_pool2d",
                     "output_size must be positive");
  EXPECT_EMBER_ERROR(adaptive_avg_pool2d(zeros({1, 1, 4, 4}, opts()), {1, 2, 3}), "adaptive_avg_pool2d", "3 values");
  EXPECT_EMBER_ERROR(max_pool2d(zeros({1, 1, 4, 4}, opts(kInt64)), 2), "max_pool2d", "floating-point", "int64");
  if (device().is_cpu())
    EXPECT_EMBER_ERROR(avg_pool2d(zeros({1, 1, 4, 4}, opts(kBFloat16)), 2), "avg_pool2d", "bfloat16", "CUDA only");
  EXPECT_EMBER_ERROR(avg_pool2d(zeros({1, 0, 4, 4}, opts()), 2), "avg_pool2d", "non-empty", "[1, 0, 4, 4]");
  EXPECT_EMBER_ERROR(avg_pool2d(zeros({1, 1, 4, 4}, opts()), 2, {}, 0, false, true, 0), "avg_pool2d",
                     "divisor_override must be positive");
  nn::MaxPool2d layer(2);
  EXPECT_EMBER_ERROR(layer->forward(zeros({4, 4}, opts())), "MaxPool2d", "[4, 4]");
}

// CUDA kernels against the CPU loops on the same random data.
// Compares the CUDA backend with the CPU: instantiated on cuda:0 only.
class PoolTestCuda : public PoolTest {};

TEST_P(PoolTestCuda, CudaMatchesCpu) {
  manual_seed(24);
  for (DType dt : {kFloat32, kFloat64}) {
    const Tensor x = randn({4, 5, 13, 11}, TensorOptions().dtype(dt));
    auto run = [&](Device d, int which) {
      const Tensor xl = x.to(d, false, true).requires_grad_();  // a fresh leaf on each device
      Tensor y, idx;
      if (which == 0) std::tie(y, idx) = max_pool2d_with_indices(xl, {3, 2}, {2, 1}, {1, 1}, {1, 2}, true);
      if (which == 1) y = avg_pool2d(xl, 3, 2, 1, true, false);
      if (which == 2) y = avg_pool2d(xl, {2, 3}, 1, {1, 1}, false, true);
      if (which == 3) y = adaptive_avg_pool2d(xl, {4, 3});
      if (which == 4) y = adaptive_avg_pool2d(xl, {17, 12});
      const Tensor g = arange(y.numel(), TensorOptions().dtype(dt)).view(y.sizes()).div(100.0).to(d);
      (y * g).sum().backward();
      std::vector<Tensor> r{y.cpu(), xl.grad().cpu()};
      if (idx.defined()) r.push_back(idx.cpu());
      return r;
    };
    for (int which = 0; which < 5; ++which) {
      const auto ref = run(Device::cpu(), which), got = run(device(), which);
      for (size_t i = 0; i < ref.size(); ++i)
        EXPECT_TRUE(all_close(got[i], ref[i], 1e-5, 1e-6)) << "case " << which << " output " << i << " " << dt;
    }
  }
  const Tensor x = randn({2, 3, 9, 9}, opts());
  EXPECT_TRUE(all_close(max_pool2d(x.to(kFloat16), 3, 2).to(kFloat32), max_pool2d(x.to(kFloat16).to(kFloat32), 3, 2)));
}

EMBER_INSTANTIATE_DEVICE_TESTS(PoolTest);
EMBER_INSTANTIATE_CUDA_TESTS(PoolTestCuda);

// ---- the 2x2 max-pooling loops (Note [2x2 max pooling]) ----------------------------------------------

// max_pool2d(x, 2) by PyTorch's loop: windows in row-major order, a strictly greater value or a NaN wins.
void reference_max_pool_2x2(const std::vector<double>& x, int64_t planes, int64_t h, int64_t w, std::vector<double>& y,
                            std::vector<int64_t>& idx) {
  const int64_t oh_n = h / 2, ow_n = w / 2;
  y.assign(static_cast<size_t>(planes * oh_n * ow_n), 0.0);
  idx.assign(y.size(), 0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < oh_n; ++oh)
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        double best = -std::numeric_limits<double>::infinity();
        int64_t bi = 2 * oh * w + 2 * ow;
        for (int64_t i = 2 * oh; i < 2 * oh + 2; ++i)
          for (int64_t j = 2 * ow; j < 2 * ow + 2; ++j) {
            const double v = x[static_cast<size_t>(p * h * w + i * w + j)];
            if (v > best || std::isnan(v)) {
              best = v;
              bi = i * w + j;
            }
          }
        y[static_cast<size_t>((p * oh_n + oh) * ow_n + ow)] = best;
        idx[static_cast<size_t>((p * oh_n + oh) * ow_n + ow)] = bi;
      }
}

TEST(MaxPool2x2Test, MatchesPyTorchsLoopOnEveryRowWidth) {
  // Row widths 1-20 windows (odd input sizes leave a row and column out) cover the one-window loop, the
  // 4-lane and 8-lane blocks and their overlapping last block; values are drawn from {-1, 0, 1, NaN, -inf}
  // so that ties, NaNs and -inf windows are common.
  std::mt19937 rng(31);
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const double levels[] = {-1.0, 0.0, 1.0, nan, -inf};
  std::discrete_distribution<int> pick({30, 30, 30, 3, 2});
  for (DType dtype : {kFloat32, kFloat64}) {
    for (int64_t w = 2; w <= 41; ++w) {
      const int64_t h = 2 + (w * 7) % 9, planes = 3;
      std::vector<double> xv(static_cast<size_t>(planes * h * w));
      for (double& v : xv) v = levels[pick(rng)];
      const Tensor x = tensor(xv).view({1, planes, h, w}).to(dtype);
      auto [y, i] = max_pool2d_with_indices(x, 2);
      std::vector<double> ry;
      std::vector<int64_t> ri;
      reference_max_pool_2x2(xv, planes, h, w, ry, ri);
      ASSERT_EQ(y.sizes(), IntArrayRef({1, planes, h / 2, w / 2}));
      const std::vector<double> yv = y.to_vector<double>();
      const std::vector<int64_t> iv = i.to_vector<int64_t>();
      int bad = 0;
      for (size_t k = 0; k < yv.size(); ++k) {
        const bool same = (std::isnan(yv[k]) && std::isnan(ry[k])) || yv[k] == ry[k];
        if (!same || iv[k] != ri[k]) ++bad;
      }
      EXPECT_EQ(bad, 0) << dtype << " input " << h << "x" << w;
      // The backward pass routes each output's gradient to its index.
      const Tensor xl = x.detach().requires_grad_();
      const Tensor g = randn(y.sizes(), TensorOptions(dtype));
      max_pool2d(xl, 2).backward(g);
      std::vector<double> expected(xv.size(), 0.0);
      const std::vector<double> gv = g.to_vector<double>();
      for (size_t k = 0; k < gv.size(); ++k) {
        const int64_t plane = static_cast<int64_t>(k) / ((h / 2) * (w / 2));
        expected[static_cast<size_t>(plane * h * w + ri[k])] += gv[k];
      }
      EXPECT_TRUE(values_are(xl.grad(), {1, planes, h, w}, expected, 0, 0)) << dtype << " input " << h << "x" << w;
    }
  }
}

TEST(MaxPool2x2Test, LargeBatchOverThreadsMatchesReference) {
  // The CNN's shapes: planes spread over OpenMP threads.
  manual_seed(32);
  for (int64_t hw : {28, 14}) {
    const Tensor x = randn({64, 32, hw, hw});
    auto [y, i] = max_pool2d_with_indices(x, 2);
    std::vector<double> ry;
    std::vector<int64_t> ri;
    reference_max_pool_2x2(x.to_vector<double>(), 64 * 32, hw, hw, ry, ri);
    EXPECT_EQ(y.to_vector<double>(), ry);
    EXPECT_EQ(i.to_vector<int64_t>(), ri);
  }
}

// ---- layers: printing and Flatten --------------------------------------------------------------------

std::string repr(const nn::Module& m) {
  std::ostringstream os;
  m.pretty_print(os);
  return os.str();
}

TEST(PoolLayerTest, PrintsLikePyTorch) {
  // Strings from /usr/bin/python3 -c "import torch; print(torch.nn.MaxPool2d(2))" etc. (PyTorch 1.13).
  EXPECT_EQ(repr(*nn::MaxPool2d(2)), "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  EXPECT_EQ(repr(*nn::MaxPool2d(nn::MaxPool2dOptions({2, 3}).stride({1, 2}).padding(1).dilation(2).ceil_mode(true))),
            "MaxPool2d(kernel_size=(2, 3), stride=(1, 2), padding=1, dilation=2, ceil_mode=True)");
  EXPECT_EQ(repr(*nn::AvgPool2d(2)), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
  EXPECT_EQ(repr(*nn::AvgPool2d(nn::AvgPool2dOptions({2, 3}).stride(1).padding({1, 1}).ceil_mode(true))),
            "AvgPool2d(kernel_size=(2, 3), stride=1, padding=(1, 1))");
  EXPECT_EQ(repr(*nn::AdaptiveAvgPool2d(3)), "AdaptiveAvgPool2d(output_size=3)");
  EXPECT_EQ(repr(*nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({3, 4}))),
            "AdaptiveAvgPool2d(output_size=(3, 4))");
  EXPECT_EQ(repr(*nn::Flatten()), "Flatten(start_dim=1, end_dim=-1)");
  EXPECT_EQ(repr(*nn::Flatten(nn::FlattenOptions().start_dim(0).end_dim(2))), "Flatten(start_dim=0, end_dim=2)");
}

TEST(PoolLayerTest, FlattenAndLayersHaveNoParameters) {
  nn::Flatten flatten;
  const Tensor x = rand({2, 3, 4, 5}).requires_grad_();
  const Tensor y = flatten->forward(x);
  EXPECT_EQ(y.sizes(), IntArrayRef({2, 60}));
  EXPECT_TRUE(y.is_alias_of(x));  // a view of a contiguous input
  EXPECT_EQ(nn::Flatten(0, 2)->forward(x).sizes(), IntArrayRef({24, 5}));
  EXPECT_TRUE(flatten->parameters().empty());
  EXPECT_TRUE(nn::MaxPool2d(2)->parameters().empty());
  auto copy = std::dynamic_pointer_cast<nn::MaxPool2dImpl>(nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(1))->clone());
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(copy->options.stride()[0], 1);
}

}  // namespace
}  // namespace ember
