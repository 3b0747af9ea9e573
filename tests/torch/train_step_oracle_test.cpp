// LibTorch oracle end to end: the Fashion-MNIST CNN and MLP, same weights, three AdamW training steps.
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>

#include <string>
#include <vector>

#include "tests/torch/oracle.h"

namespace ember {
namespace {

using namespace oracle;

// examples/fashion_mnist.cpp's CNN, flat: conv-BN-ReLU-pool twice, then the classifier.
nn::Sequential ember_cnn() {
  using namespace nn;
  return Sequential(Conv2d(Conv2dOptions(1, 32, 3).padding(1).bias(false)), BatchNorm2d(32), ReLU(),
                    MaxPool2d(MaxPool2dOptions(2)), Conv2d(Conv2dOptions(32, 64, 3).padding(1).bias(false)),
                    BatchNorm2d(64), ReLU(), MaxPool2d(MaxPool2dOptions(2)), Flatten(), Linear(64 * 7 * 7, 128),
                    ReLU(), Dropout(0.25), Linear(128, 10));
}
torch::nn::Sequential torch_cnn() {
  using namespace torch::nn;
  return Sequential(Conv2d(Conv2dOptions(1, 32, 3).padding(1).bias(false)), BatchNorm2d(32), ReLU(),
                    MaxPool2d(MaxPool2dOptions(2)), Conv2d(Conv2dOptions(32, 64, 3).padding(1).bias(false)),
                    BatchNorm2d(64), ReLU(), MaxPool2d(MaxPool2dOptions(2)), Flatten(), Linear(64 * 7 * 7, 128),
                    ReLU(), Dropout(0.25), Linear(128, 10));
}
constexpr size_t kCnnDropout = 11;

nn::Sequential ember_mlp() {
  using namespace nn;
  return Sequential(Flatten(), Linear(784, 256), ReLU(), Linear(256, 128), ReLU(), Linear(128, 10));
}
torch::nn::Sequential torch_mlp() {
  using namespace torch::nn;
  return Sequential(Flatten(), Linear(784, 256), ReLU(), Linear(256, 128), ReLU(), Linear(128, 10));
}

// Copies ember's parameters and buffers (registration order is the same in both) into LibTorch's model.
void copy_state(nn::Sequential& ours, torch::nn::Sequential& theirs) {
  torch::NoGradGuard no_grad;
  auto ps = ours->parameters();
  auto tps = theirs->parameters();
  ASSERT_EQ(ps.size(), tps.size());
  for (size_t i = 0; i < ps.size(); ++i) {
    ASSERT_EQ(oracle::shape_of(ps[i]), std::vector<int64_t>(tps[i].sizes().begin(), tps[i].sizes().end()));
    tps[i].copy_(to_torch(ps[i]));
  }
  auto bs = ours->buffers();
  auto tbs = theirs->buffers();
  ASSERT_EQ(bs.size(), tbs.size());
  for (size_t i = 0; i < bs.size(); ++i) tbs[i].copy_(to_torch(bs[i]));
}

// Note [End-to-end tolerance]
// In float64 every rounding difference is ~1e-16 relative; the longest accumulations are the BN
// statistics over N*H*W = 8*28*28 = 6272 values and the 3136-long Linear dot products, whose sums
// and their gradients' sums stay within accum_tol(kFloat64, 6272) (8 * n * 2^-53 ~ 5.6e-12 atol on
// top of 1e-10 relative). Adam's update divides by sqrt(v) + eps, which amplifies a gradient's
// relative error only by O(1) while |g| >> eps.
void train_and_compare(nn::Sequential ours, torch::nn::Sequential theirs, std::vector<int64_t> input_shape,
                       int dropout_index, const std::string& what) {
  SCOPED_TRACE(what);
  ours->to(kFloat64);
  theirs->to(torch::kFloat64);
  copy_state(ours, theirs);
  ours->train();
  theirs->train();
  if (dropout_index >= 0) {  // the masks cannot match: compare with dropout in eval mode (identity)
    (*ours)[static_cast<size_t>(dropout_index)]->eval();
    theirs->ptr(static_cast<size_t>(dropout_index))->eval();
  }
  optim::AdamW opt(ours->parameters(), optim::AdamWOptions(2e-3).weight_decay(1e-2));
  torch::optim::AdamW topt(theirs->parameters(), torch::optim::AdamWOptions(2e-3).weight_decay(1e-2));
  const Tol t = accum_tol(kFloat64, 6272, 4.0);
  for (int step = 1; step <= 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    Tensor x = randn(input_shape, TensorOptions().dtype(kFloat64));
    Tensor y = randint(0, 10, {input_shape[0]});
    opt.zero_grad();
    topt.zero_grad();
    Tensor logits = ours->forward(x);
    at::Tensor tlogits = theirs->forward(to_torch(x));
    EXPECT_TRUE(oracle::all_close(logits, tlogits, t)) << "logits";
    Tensor loss = nn::functional::cross_entropy(logits, y);
    at::Tensor tloss = torch::nn::functional::cross_entropy(tlogits, to_torch(y));
    EXPECT_TRUE(oracle::all_close(loss, tloss, t)) << "loss";
    loss.backward();
    tloss.backward();
    auto ps = ours->named_parameters();
    auto tps = theirs->parameters();
    size_t i = 0;
    for (const auto& [name, p] : ps) EXPECT_TRUE(oracle::all_close(p.grad(), tps[i++].grad(), t)) << "grad of " << name;
    opt.step();
    topt.step();
    i = 0;
    for (const auto& [name, p] : ps) EXPECT_TRUE(oracle::all_close(p, tps[i++], t)) << name << " after the step";
    auto bs = ours->named_buffers();
    auto tbs = theirs->buffers();
    i = 0;
    for (const auto& [name, b] : bs) {
      // num_batches_tracked: LibTorch 1.13's C++ Module::to(kFloat64) converts integer buffers too (Python's
      // Module.to(dtype) leaves them integral, as ember does), so its count is compared as int64.
      EXPECT_TRUE(b.is_floating_point() ? oracle::all_close(b, tbs[i], t) : oracle::equal(b, tbs[i].to(at::kLong)))
          << name;
      ++i;
    }
  }
  // Eval mode uses the running statistics both libraries accumulated.
  ours->eval();
  theirs->eval();
  Tensor x = randn(input_shape, TensorOptions().dtype(kFloat64));
  EXPECT_TRUE(oracle::all_close(ours->forward(x), theirs->forward(to_torch(x)), t)) << "eval forward";
}

TEST(TrainStepOracle, FashionMnistCnnAdamW) {
  manual_seed(81);
  train_and_compare(ember_cnn(), torch_cnn(), {8, 1, 28, 28}, kCnnDropout, "CNN");
}

TEST(TrainStepOracle, FashionMnistMlpAdamW) {
  manual_seed(82);
  train_and_compare(ember_mlp(), torch_mlp(), {16, 1, 28, 28}, -1, "MLP");
}

}  // namespace
}  // namespace ember
