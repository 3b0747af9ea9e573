// Out-of-memory faults in a training step: with a cap on host memory (set_host_memory_limit; on a GPU the
// caching allocator's cuda::set_memory_limit) a step too large throws a clear ember::Error, everything it
// allocated is freed, the parameters and optimizer state are as before the step, and training goes on with a
// smaller batch exactly as if the failed step had never been tried.
#include <memory>
#include <string>
#include <vector>

#include "nn/optim/adam.h"
#include "runtime/allocator.h"
#include "tests/testing.h"

namespace ember {
namespace {

// A small CNN: convolution, batch norm, pooling, dropout and linear layers, so that the failing allocation
// can come from any of their forward or backward kernels (some run in OpenMP regions).
nn::Sequential make_cnn(Device device) {
  manual_seed(7);
  nn::Sequential m(nn::Conv2d(nn::Conv2dOptions(1, 8, 3).padding(1)), nn::BatchNorm2d(8), nn::ReLU(),
                   nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Flatten(), nn::Dropout(0.25),
                   nn::Linear(8 * 14 * 14, 32), nn::ReLU(), nn::Linear(32, 10));
  m->to(device);
  return m;
}

// Batch `i` of size n: inputs and labels that depend on (i, n) only.
std::pair<Tensor, Tensor> batch(int i, int64_t n, Device device) {
  Tensor x = ((arange(0, n * 28 * 28, 1, TensorOptions(kFloat32)) * 0.013 + i).sin()).view({n, 1, 28, 28});
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) labels[static_cast<size_t>(k)] = (k * 7 + i) % 10;
  Tensor y = tensor(labels);
  return {x.to(device), y.to(device)};
}

void step(nn::Sequential& model, optim::Optimizer& opt, int i, int64_t n, Device device) {
  auto [x, y] = batch(i, n, device);
  opt.zero_grad();
  Tensor loss = nn::functional::cross_entropy(model->forward(x), y);
  loss.backward();
  opt.step();
}

std::vector<Tensor> snapshot(const nn::Sequential& model, const optim::Optimizer& opt) {
  std::vector<Tensor> out;
  for (const auto& [name, t] : model->state_dict()) out.push_back(t.cpu().clone());
  for (const auto& [i, st] : opt.state_dict().state)
    for (const auto& [name, t] : st) out.push_back(t.cpu().clone());
  return out;
}

void expect_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(equal(a[i], b[i])) << "tensor " << i;
}

// Restores the cap (and the host cache) however a test ends.
struct HostLimitGuard {
  ~HostLimitGuard() { set_host_memory_limit(0); }
};

TEST(HostMemoryLimit, AllocationsPastTheCapThrowAndFreeingRestoresTheCount) {
  HostLimitGuard guard;
  const size_t base = host_memory_in_use();
  {
    Tensor a = empty({1000}, kFloat32);
    EXPECT_GE(host_memory_in_use(), base + 4000);
  }
  EXPECT_EQ(host_memory_in_use(), base);
  set_host_memory_limit(base + (4 << 20));
  EXPECT_EQ(host_memory_limit(), base + (4 << 20));
  Tensor ok = empty({1 << 18}, kFloat32);  // 1 MiB
  EXPECT_EMBER_ERROR(empty({1 << 20}, kFloat32), "out of host memory", "4194304 bytes", "host memory limit",
                     "set_host_memory_limit");
  ok = Tensor();
  EXPECT_EQ(host_memory_in_use(), base);
  Tensor fits = empty({1 << 19}, kFloat32);  // 2 MiB: the cached 1 MiB block does not stand in the way
  fits = Tensor();
  set_host_memory_limit(0);
  Tensor big = empty({1 << 22}, kFloat32);  // no cap
}

// The step that does not fit throws; the same training then goes on with smaller batches and ends exactly
// where a run that never tried the large batch ends.
TEST(HostMemoryLimit, TrainingStepOutOfMemoryThrowsAndTrainingContinues) {
  HostLimitGuard guard;
  const Device cpu = Device::cpu();
  nn::Sequential reference = make_cnn(cpu);
  optim::AdamW ref_opt(reference->parameters(), optim::AdamWOptions(1e-3));
  for (int i = 0; i < 4; ++i) step(reference, ref_opt, i, 8, cpu);

  nn::Sequential model = make_cnn(cpu);
  optim::AdamW opt(model->parameters(), optim::AdamWOptions(1e-3));
  step(model, opt, 0, 8, cpu);    // the optimizer's state exists from here on
  auto big = batch(1, 512, cpu);  // the inputs fit; the step's activations (tens of MB) do not
  const std::vector<Tensor> before = snapshot(model, opt);
  const Tensor rng_before = get_rng_state();
  opt.zero_grad();  // frees the last step's gradients, as the next step would
  empty_host_cache();
  const size_t in_use = host_memory_in_use();
  set_host_memory_limit(in_use + (4 << 20));
  try {
    opt.zero_grad();
    Tensor loss = nn::functional::cross_entropy(model->forward(big.first), big.second);
    loss.backward();
    opt.step();
    FAIL() << "a batch of 512 trained within 4 MiB";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("out of host memory"));
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("host memory limit"));
  }
  // Everything the failed step allocated is freed, and nothing it did stays.
  EXPECT_EQ(host_memory_in_use(), in_use);
  expect_equal(before, snapshot(model, opt));
  set_rng_state(rng_before);  // the failed forward drew its dropout mask

  // Smaller batches fit under the same cap.
  for (int i = 1; i < 4; ++i) step(model, opt, i, 8, cpu);
  set_host_memory_limit(0);
  expect_equal(snapshot(reference, ref_opt), snapshot(model, opt));
}

// Wherever in the step the cap is hit (forward, backward, the optimizer; inside parallel loops or not), the
// error is an ember::Error and the memory comes back.
TEST(HostMemoryLimit, EveryCapThrowsCleanly) {
  HostLimitGuard guard;
  const Device cpu = Device::cpu();
  nn::Sequential model = make_cnn(cpu);
  optim::AdamW opt(model->parameters(), optim::AdamWOptions(1e-3));
  step(model, opt, 0, 16, cpu);
  opt.zero_grad();  // gradients are freed by zero_grad, and a failed backward may leave some behind
  empty_host_cache();
  const size_t in_use = host_memory_in_use();
  int failed = 0, passed = 0;
  for (size_t extra = 0; extra <= (3u << 20); extra += (32u << 10)) {
    set_host_memory_limit(in_use + extra);
    try {
      step(model, opt, 1, 16, cpu);
      ++passed;
    } catch (const Error& e) {
      EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("out of host memory")) << "cap +" << extra;
      ++failed;
    }
    set_host_memory_limit(0);
    opt.zero_grad();
    empty_host_cache();
    EXPECT_EQ(host_memory_in_use(), in_use) << "cap +" << extra;
  }
  EXPECT_GT(failed, 0);
  EXPECT_GT(passed, 0);
  RecordProperty("caps_that_failed", failed);
  RecordProperty("caps_that_passed", passed);
}

// The same on a GPU, with the caching allocator's cap.
TEST(CudaMemoryLimit, TrainingStepOutOfMemoryThrowsAndTrainingContinues_CUDA) {
  EMBER_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  nn::Sequential reference = make_cnn(gpu);
  optim::AdamW ref_opt(reference->parameters(), optim::AdamWOptions(1e-3));
  for (int i = 0; i < 4; ++i) step(reference, ref_opt, i, 8, gpu);

  nn::Sequential model = make_cnn(gpu);
  optim::AdamW opt(model->parameters(), optim::AdamWOptions(1e-3));
  step(model, opt, 0, 8, gpu);
  auto big = batch(1, 4096, gpu);
  const std::vector<Tensor> before = snapshot(model, opt);
  const Tensor rng_before = cuda::get_rng_state(0);
  cuda::synchronize();
  cuda::empty_cache();
  cuda::set_memory_limit(cuda::memory_reserved(0) + (64 << 20), 0);
  try {
    opt.zero_grad();
    Tensor loss = nn::functional::cross_entropy(model->forward(big.first), big.second);
    loss.backward();
    opt.step();
    cuda::synchronize();
    FAIL() << "a batch of 4096 trained within 64 MiB";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("out of memory"));
  }
  expect_equal(before, snapshot(model, opt));
  cuda::set_rng_state(rng_before, 0);
  for (int i = 1; i < 4; ++i) step(model, opt, i, 8, gpu);
  cuda::set_memory_limit(0, 0);
  expect_equal(snapshot(reference, ref_opt), snapshot(model, opt));
}

}  // namespace
}  // namespace ember
