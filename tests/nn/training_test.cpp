// End-to-end learning: small networks built from the layers, losses and optimizers learn simple targets.
#include "nn/nn.h"
#include "tests/testing.h"

namespace ember {
namespace {

using namespace ember::nn;

class TrainingTest : public testing::DeviceTest {};

// Linear regression: SGD recovers the weights of y = x @ w_true + b_true.
TEST_P(TrainingTest, LinearRegressionRecoversTheWeights) {
  manual_seed(0);
  Tensor w_true = tensor({2.0f, -3.0f, 0.5f}, opts()).view({3, 1});
  Tensor x = randn({256, 3}, opts());
  Tensor y = x.matmul(w_true) + 0.25;
  Linear model(3, 1);
  model->to(device());
  optim::SGD opt(model->parameters(), optim::SGDOptions(0.1));
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    functional::mse_loss(model->forward(x), y).backward();
    opt.step();
  }
  EXPECT_TRUE(testing::all_close(model->weight.t(), w_true, 1e-3, 1e-3));
  EXPECT_NEAR(model->bias.item<float>(), 0.25f, 1e-3f);
}

// Two interleaved rings: not linearly separable, learned by an MLP with Adam.
TEST_P(TrainingTest, MlpLearnsConcentricRings) {
  manual_seed(1);
  const int64_t n = 512;
  Tensor angle = rand({n}, opts()) * 6.2831853;
  Tensor label = randint(0, 2, {n}, TensorOptions(device()));
  Tensor radius = label.to(kFloat32) + 1.0 + rand({n}, opts()) * 0.3;  // ring 1 or ring 2
  Tensor x = stack({angle.cos() * radius, angle.sin() * radius}, 1);
  Sequential model(Linear(2, 32), ReLU(), Linear(32, 32), ReLU(), Linear(32, 2));
  model->to(device());
  optim::Adam opt(model->parameters(), optim::AdamOptions(0.01));
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    Tensor loss = functional::cross_entropy(model->forward(x), label);
    loss.backward();
    opt.step();
    if (step == 0) first_loss = loss.item<double>();
    last_loss = loss.item<double>();
  }
  NoGradGuard no_grad;
  const double accuracy = model->forward(x).argmax(1).eq(label).to(kFloat32).mean().item<double>();
  EXPECT_GT(accuracy, 0.97);
  EXPECT_LT(last_loss, first_loss / 5);
}

// Horizontal versus vertical bars in 8x8 images: a conv-BN-ReLU-pool network separates them, and its
// eval-mode predictions (running statistics) agree with training.
TEST_P(TrainingTest, SmallCnnLearnsBarOrientation) {
  manual_seed(2);
  const int64_t n = 128;
  Tensor images = randn({n, 1, 8, 8}, opts()) * 0.3;
  Tensor labels = randint(0, 2, {n}, TensorOptions(device()));
  {
    NoGradGuard no_grad;
    const std::vector<int64_t> lab = labels.to_vector<int64_t>();
    const std::vector<int64_t> pos = randint(0, 8, {n}).to_vector<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      Tensor img = images.select(0, i).select(0, 0);
      Tensor bar = lab[static_cast<size_t>(i)] == 0 ? img.select(0, pos[static_cast<size_t>(i)])
                                                    : img.select(1, pos[static_cast<size_t>(i)]);
      bar.add_(2.0);
    }
  }
  Sequential model(Conv2d(Conv2dOptions(1, 8, 3).padding(1)), BatchNorm2d(8), ReLU(), MaxPool2d(2), Flatten(),
                   Linear(8 * 4 * 4, 2));
  model->to(device());
  optim::AdamW opt(model->parameters(), optim::AdamWOptions(0.01));
  for (int step = 0; step < 60; ++step) {
    opt.zero_grad();
    functional::cross_entropy(model->forward(images), labels).backward();
    opt.step();
  }
  model->eval();
  NoGradGuard no_grad;
  const double accuracy = model->forward(images).argmax(1).eq(labels).to(kFloat32).mean().item<double>();
  EXPECT_GT(accuracy, 0.95);
}

EMBER_INSTANTIATE_DEVICE_TESTS(TrainingTest);

}  // namespace
}  // namespace ember
