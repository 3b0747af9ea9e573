// LibTorch oracle: layers' default initialisation (bounds and statistics) and module printing vs PyTorch's repr.
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>
#include <sstream>
#include <string>

#include "tests/torch/oracle.h"

namespace ember {
namespace {

using namespace oracle;

// Summary statistics of a weight, taken in float64 by LibTorch for both libraries.
struct Stats {
  double min, max, mean, std;
  int64_t n;
};
Stats stats_of(const at::Tensor& w) {
  at::Tensor d = w.detach().to(at::kDouble);
  return {d.min().item<double>(), d.max().item<double>(), d.mean().item<double>(), d.std().item<double>(), d.numel()};
}

// Note [Checking a uniform initialisation]
// PyTorch's Linear/Conv2d init is kaiming_uniform_(a = sqrt(5)) = U(-b, b) with b = 1/sqrt(fan_in)
// for the weight and the same bound for the bias. Two samples from the same distribution are
// compared by what the distribution guarantees and by statistics with known spread: every value
// lies in [-b, b]; with n samples the extremes come within b * 20/n of the bounds (probability
// 1 - 2e-9 each); the mean is within 6 standard errors (b / sqrt(3n)) of 0; the sample standard
// deviation of a uniform has a relative standard error of sqrt(0.8 / (4n)) (kurtosis 1.8), so
// std / (b / sqrt(3)) is within 6 of those of 1, for ember and for LibTorch alike.
void expect_uniform(const Stats& s, double bound, const std::string& who) {
  SCOPED_TRACE(who);
  const double n = static_cast<double>(s.n);
  EXPECT_GE(s.min, -bound);
  EXPECT_LE(s.max, bound);
  EXPECT_GT(s.max, bound * (1 - 20.0 / n));
  EXPECT_LT(s.min, -bound * (1 - 20.0 / n));
  EXPECT_NEAR(s.mean, 0.0, 6 * bound / std::sqrt(3 * n));
  EXPECT_NEAR(s.std / (bound / std::sqrt(3.0)), 1.0, 6 * std::sqrt(0.8 / (4 * n)));
}

TEST(InitOracle, LinearMatchesLibTorchsDistribution) {
  manual_seed(61);
  torch::manual_seed(61);
  nn::Linear ours(1000, 300);
  torch::nn::Linear theirs(1000, 300);
  const double bound = 1.0 / std::sqrt(1000.0);
  expect_uniform(stats_of(to_torch(ours->weight)), bound, "ember Linear.weight");
  expect_uniform(stats_of(theirs->weight), bound, "LibTorch Linear.weight");
  // The bias has only 300 values: bounds and extremes (0.9^300 ~ 2e-14 for missing the top 10%).
  for (const auto& [who, b] : {std::pair<std::string, at::Tensor>{"ember", to_torch(ours->bias)},
                               std::pair<std::string, at::Tensor>{"LibTorch", theirs->bias.detach()}}) {
    const Stats s = stats_of(b);
    EXPECT_GE(s.min, -bound) << who;
    EXPECT_LE(s.max, bound) << who;
    EXPECT_GT(s.max, 0.9 * bound) << who;
    EXPECT_LT(s.min, -0.9 * bound) << who;
  }
  EXPECT_EQ(ours->weight.sizes(), IntArrayRef(std::vector<int64_t>(theirs->weight.sizes().begin(), theirs->weight.sizes().end())));
  EXPECT_EQ(ours->weight.dtype(), kFloat32);
  EXPECT_TRUE(ours->weight.requires_grad());
  EXPECT_TRUE(ours->bias.requires_grad());
}

TEST(InitOracle, Conv2dMatchesLibTorchsDistribution) {
  manual_seed(62);
  torch::manual_seed(62);
  // fan_in = in / groups * kH * kW = 64 / 2 * 3 * 3 = 288.
  nn::Conv2d ours(nn::Conv2dOptions(64, 128, 3).groups(2));
  torch::nn::Conv2d theirs(torch::nn::Conv2dOptions(64, 128, 3).groups(2));
  const double bound = 1.0 / std::sqrt(288.0);
  EXPECT_EQ(oracle::shape_of(ours->weight), std::vector<int64_t>(theirs->weight.sizes().begin(), theirs->weight.sizes().end()));
  expect_uniform(stats_of(to_torch(ours->weight)), bound, "ember Conv2d.weight");
  expect_uniform(stats_of(theirs->weight), bound, "LibTorch Conv2d.weight");
  for (const auto& [who, b] : {std::pair<std::string, at::Tensor>{"ember", to_torch(ours->bias)},
                               std::pair<std::string, at::Tensor>{"LibTorch", theirs->bias.detach()}}) {
    const Stats s = stats_of(b);
    EXPECT_GE(s.min, -bound) << who;
    EXPECT_LE(s.max, bound) << who;
    EXPECT_GT(s.max, 0.9 * bound) << who;  // 128 values: 0.9^128 ~ 1e-6
    EXPECT_LT(s.min, -0.9 * bound) << who;
  }
}

// Embedding ~ N(0, 1): mean within 6 standard errors of 0, std within 6 relative standard errors
// (sqrt(2 / (4n)) for a normal) of 1; the padding row is zero in both.
TEST(InitOracle, EmbeddingIsStandardNormalWithZeroPaddingRow) {
  manual_seed(63);
  torch::manual_seed(63);
  nn::Embedding ours(nn::EmbeddingOptions(1000, 64).padding_idx(3));
  torch::nn::Embedding theirs(torch::nn::EmbeddingOptions(1000, 64).padding_idx(3));
  for (const auto& [who, w] : {std::pair<std::string, at::Tensor>{"ember", to_torch(ours->weight)},
                               std::pair<std::string, at::Tensor>{"LibTorch", theirs->weight.detach()}}) {
    const Stats s = stats_of(w);
    const double n = static_cast<double>(s.n);
    EXPECT_NEAR(s.mean, 0.0, 6 / std::sqrt(n)) << who;
    EXPECT_NEAR(s.std, 1.0, 6 * std::sqrt(2 / (4 * n))) << who;
    EXPECT_EQ(w[3].abs().max().item<double>(), 0.0) << who << ": padding row";
  }
}

// Deterministic inits compared exactly: BatchNorm's weight/bias/running stats/num_batches_tracked, LayerNorm's.
TEST(InitOracle, NormLayersMatchExactly) {
  nn::BatchNorm2d bn(7);
  torch::nn::BatchNorm2d tbn(7);
  EXPECT_TRUE(oracle::equal(bn->weight, tbn->weight));
  EXPECT_TRUE(oracle::equal(bn->bias, tbn->bias));
  EXPECT_TRUE(oracle::equal(bn->running_mean, tbn->running_mean));
  EXPECT_TRUE(oracle::equal(bn->running_var, tbn->running_var));
  EXPECT_TRUE(oracle::equal(bn->num_batches_tracked, tbn->num_batches_tracked));
  nn::LayerNorm ln({7, 13});
  torch::nn::LayerNorm tln(torch::nn::LayerNormOptions({7, 13}));
  EXPECT_TRUE(oracle::equal(ln->weight, tln->weight));
  EXPECT_TRUE(oracle::equal(ln->bias, tln->bias));
}

// BatchNorm2d as a module: a training forward (values, running stats, num_batches_tracked), then eval.
TEST(InitOracle, BatchNorm2dModuleTrainThenEval) {
  manual_seed(64);
  nn::BatchNorm2d bn(nn::BatchNormOptions(3).momentum(0.2));
  torch::nn::BatchNorm2d tbn(torch::nn::BatchNormOptions(3).momentum(0.2));
  for (int step = 0; step < 3; ++step) {
    Tensor x = randn({4, 3, 5, 7}).mul(1.5).add(0.25);
    at::Tensor tx = to_torch(x);
    EXPECT_TRUE(oracle::all_close(bn->forward(x), tbn->forward(tx), oracle::accum_tol(kFloat32, 140, 4.0)));
  }
  EXPECT_TRUE(oracle::all_close(bn->running_mean, tbn->running_mean, oracle::accum_tol(kFloat32, 140, 4.0)));
  EXPECT_TRUE(oracle::all_close(bn->running_var, tbn->running_var, oracle::accum_tol(kFloat32, 140, 4.0)));
  EXPECT_TRUE(oracle::equal(bn->num_batches_tracked, tbn->num_batches_tracked));
  bn->eval();
  tbn->eval();
  Tensor x = randn({2, 3, 5, 7});
  EXPECT_TRUE(oracle::all_close(bn->forward(x), tbn->forward(to_torch(x)), oracle::tol(kFloat32)));
}

// momentum None: a cumulative moving average (momentum 1 / num_batches_tracked); BatchNorm1d over [N, C, L].
TEST(InitOracle, BatchNorm1dCumulativeAverage) {
  manual_seed(65);
  nn::BatchNorm1d bn(nn::BatchNormOptions(5).momentum(std::nullopt));
  torch::nn::BatchNorm1d tbn(torch::nn::BatchNormOptions(5).momentum(c10::nullopt));
  const oracle::Tol t = oracle::accum_tol(kFloat32, 4 * 9, 4.0);
  for (int step = 0; step < 4; ++step) {
    Tensor x = randn({4, 5, 9}).mul(static_cast<double>(step + 1)).add(static_cast<double>(step));
    EXPECT_TRUE(oracle::all_close(bn->forward(x), tbn->forward(to_torch(x)), t)) << "step " << step;
  }
  EXPECT_TRUE(oracle::all_close(bn->running_mean, tbn->running_mean, t));
  EXPECT_TRUE(oracle::all_close(bn->running_var, tbn->running_var, t));
  EXPECT_TRUE(oracle::equal(bn->num_batches_tracked, tbn->num_batches_tracked));
}

// ---- printing --------------------------------------------------------------------------------------

// The expected strings are PyTorch's repr(), printed by torch 1.13 (Debian's python3-torch) with
//   python3 -c "import torch.nn as nn; print(repr(nn.Linear(784, 10)))"
// and so on; LibTorch's C++ pretty_print (torch::nn::Linear(in_features=784, ...)) is not the format
// ember claims, so the Python repr is the oracle here.
template <class M>
std::string printed(const M& module) {
  std::ostringstream os;
  os << *module.ptr();
  return os.str();
}

TEST(ReprOracle, LayersPrintLikePyTorch) {
  EXPECT_EQ(printed(nn::Linear(784, 10)), "Linear(in_features=784, out_features=10, bias=True)");
  EXPECT_EQ(printed(nn::Linear(nn::LinearOptions(3, 4).bias(false))), "Linear(in_features=3, out_features=4, bias=False)");
  EXPECT_EQ(printed(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1).bias(false))),
            "Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)");
  EXPECT_EQ(printed(nn::Conv2d(nn::Conv2dOptions(3, 8, 3))), "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1))");
  EXPECT_EQ(printed(nn::Conv2d(nn::Conv2dOptions(16, 32, {3, 5}).stride(2).padding({1, 2}).dilation(2).groups(4))),
            "Conv2d(16, 32, kernel_size=(3, 5), stride=(2, 2), padding=(1, 2), dilation=(2, 2), groups=4)");
  EXPECT_EQ(printed(nn::Conv2d(nn::Conv2dOptions(4, 4, {1, 1}).stride({2, 1}))),
            "Conv2d(4, 4, kernel_size=(1, 1), stride=(2, 1))");
  EXPECT_EQ(printed(nn::BatchNorm2d(32)), "BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  EXPECT_EQ(printed(nn::BatchNorm1d(nn::BatchNormOptions(10).eps(1e-3).momentum(0.2).affine(false))),
            "BatchNorm1d(10, eps=0.001, momentum=0.2, affine=False, track_running_stats=True)");
  EXPECT_EQ(printed(nn::BatchNorm1d(nn::BatchNormOptions(7).momentum(std::nullopt).track_running_stats(false))),
            "BatchNorm1d(7, eps=1e-05, momentum=None, affine=True, track_running_stats=False)");
  EXPECT_EQ(printed(nn::BatchNorm2d(nn::BatchNormOptions(3).eps(0.001).momentum(0.01))),
            "BatchNorm2d(3, eps=0.001, momentum=0.01, affine=True, track_running_stats=True)");
  EXPECT_EQ(printed(nn::LayerNorm({4})), "LayerNorm((4,), eps=1e-05, elementwise_affine=True)");
  EXPECT_EQ(printed(nn::LayerNorm(nn::LayerNormOptions({7, 13}).eps(1e-6).elementwise_affine(false))),
            "LayerNorm((7, 13), eps=1e-06, elementwise_affine=False)");
  EXPECT_EQ(printed(nn::Embedding(10, 3)), "Embedding(10, 3)");
  EXPECT_EQ(printed(nn::Embedding(nn::EmbeddingOptions(10, 3).padding_idx(0))), "Embedding(10, 3, padding_idx=0)");
  // nn.Embedding(10, 3, padding_idx=-1) stores and prints the normalised index 9.
  EXPECT_EQ(printed(nn::Embedding(nn::EmbeddingOptions(10, 3).padding_idx(-1))), "Embedding(10, 3, padding_idx=9)");
  EXPECT_EQ(printed(nn::Dropout(0.25)), "Dropout(p=0.25, inplace=False)");
  EXPECT_EQ(printed(nn::Dropout()), "Dropout(p=0.5, inplace=False)");
  EXPECT_EQ(printed(nn::Dropout(1e-5)), "Dropout(p=1e-05, inplace=False)");
  EXPECT_EQ(printed(nn::ReLU()), "ReLU()");
  EXPECT_EQ(printed(nn::ReLU(nn::ReLUOptions(true))), "ReLU(inplace=True)");
  EXPECT_EQ(printed(nn::GELU()), "GELU(approximate='none')");
  EXPECT_EQ(printed(nn::GELU(nn::GELUOptions().approximate("tanh"))), "GELU(approximate='tanh')");
  EXPECT_EQ(printed(nn::Tanh()), "Tanh()");
  EXPECT_EQ(printed(nn::Sigmoid()), "Sigmoid()");
  EXPECT_EQ(printed(nn::MaxPool2d(nn::MaxPool2dOptions(2))),
            "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  EXPECT_EQ(printed(nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1))),
            "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)");
  EXPECT_EQ(printed(nn::MaxPool2d(nn::MaxPool2dOptions({3, 2}).stride({2, 1}).dilation({2, 1}).ceil_mode(true))),
            "MaxPool2d(kernel_size=(3, 2), stride=(2, 1), padding=0, dilation=(2, 1), ceil_mode=True)");
  EXPECT_EQ(printed(nn::AvgPool2d(nn::AvgPool2dOptions(2))), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
  EXPECT_EQ(printed(nn::AvgPool2d(nn::AvgPool2dOptions(3).stride(2).padding(1))),
            "AvgPool2d(kernel_size=3, stride=2, padding=1)");
  EXPECT_EQ(printed(nn::AvgPool2d(
                nn::AvgPool2dOptions({3, 2}).stride(1).padding({1, 0}).ceil_mode(true).count_include_pad(false))),
            "AvgPool2d(kernel_size=(3, 2), stride=1, padding=(1, 0))");
  EXPECT_EQ(printed(nn::AdaptiveAvgPool2d(3)), "AdaptiveAvgPool2d(output_size=3)");
  EXPECT_EQ(printed(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({3, 4}))), "AdaptiveAvgPool2d(output_size=(3, 4))");
  EXPECT_EQ(printed(nn::Flatten()), "Flatten(start_dim=1, end_dim=-1)");
  EXPECT_EQ(printed(nn::Flatten(nn::FlattenOptions().start_dim(0).end_dim(2))), "Flatten(start_dim=0, end_dim=2)");
}

// The CNN of examples/fashion_mnist.cpp, nested: PyTorch's indentation and "(name): " prefixes.
struct CnnImpl : nn::Cloneable<CnnImpl> {
  CnnImpl() { reset(); }
  void reset() override {
    features = register_module(
        "features", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1).bias(false)), nn::BatchNorm2d(32),
                                   nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2))));
    classifier = register_module("classifier", nn::Sequential(nn::Flatten(), nn::Linear(3136, 128), nn::ReLU(),
                                                              nn::Dropout(0.25), nn::Linear(128, 10)));
  }
  Tensor forward(const Tensor& x) { return classifier->forward(features->forward(x)); }
  nn::Sequential features{nullptr}, classifier{nullptr};
};
EMBER_MODULE(Cnn);

TEST(ReprOracle, NestedModulesPrintLikePyTorch) {
  EXPECT_EQ(printed(nn::Sequential(nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 10))),
            "Sequential(\n"
            "  (0): Linear(in_features=784, out_features=256, bias=True)\n"
            "  (1): ReLU()\n"
            "  (2): Linear(in_features=256, out_features=10, bias=True)\n"
            ")");
  EXPECT_EQ(printed(Cnn()),
            "Cnn(\n"
            "  (features): Sequential(\n"
            "    (0): Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)\n"
            "    (1): BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
            "    (2): ReLU()\n"
            "    (3): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
            "  )\n"
            "  (classifier): Sequential(\n"
            "    (0): Flatten(start_dim=1, end_dim=-1)\n"
            "    (1): Linear(in_features=3136, out_features=128, bias=True)\n"
            "    (2): ReLU()\n"
            "    (3): Dropout(p=0.25, inplace=False)\n"
            "    (4): Linear(in_features=128, out_features=10, bias=True)\n"
            "  )\n"
            ")");
}

}  // namespace
}  // namespace ember
