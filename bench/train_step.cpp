// One training step of the Fashion-MNIST CNN (forward, cross-entropy, backward, AdamW) at batch 64 and 512: images/s.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench/timing.h"
#include "ember.h"

namespace {

using namespace ember;

// The model of examples/fashion_mnist.cpp (bench/pytorch/bench_torch.py builds the same one in PyTorch):
// two conv-BN-ReLU-pool blocks and a classifier, about 422k parameters.
struct CnnImpl : nn::Cloneable<CnnImpl> {
  CnnImpl() { reset(); }
  void reset() override {
    features = register_module(
        "features", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1).bias(false)), nn::BatchNorm2d(32),
                                   nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                                   nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1).bias(false)), nn::BatchNorm2d(64),
                                   nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2))));
    classifier = register_module("classifier", nn::Sequential(nn::Flatten(), nn::Linear(64 * 7 * 7, 128), nn::ReLU(),
                                                              nn::Dropout(0.25), nn::Linear(128, 10)));
  }
  Tensor forward(const Tensor& x) { return classifier->forward(features->forward(x)); }
  nn::Sequential features{nullptr}, classifier{nullptr};
};
EMBER_MODULE(Cnn);

// The step on data already on the device (no loader, no loss.item()), so what is timed is the model's
// own work: on the GPU device time between CUDA events, which includes any launch gaps the host causes.
void train_step(benchmark::State& state, int64_t batch, Device device) {
  if (device.is_cuda() && !cuda::is_available()) {
    state.SkipWithError("no CUDA device (or ember built without CUDA)");
    return;
  }
  if (device.is_cuda()) cuda::set_allow_tf32(false);
  manual_seed(0);
  Cnn model;
  model->to(device);
  model->train();
  optim::AdamW opt(model->parameters(), optim::AdamWOptions(2e-3).weight_decay(1e-2));
  const Tensor x = randn({batch, 1, 28, 28}, TensorOptions().device(device));
  const Tensor y = randint(0, 10, {batch}, TensorOptions().dtype(kInt64).device(device));
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    opt.step();
  };
  bench::run_timed(state, device, 5, step);  // warm-up: optimizer state, cuDNN algorithms, allocator cache
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  struct Case {
    int64_t batch;
    Device device;
  };
  // Batch 512 on the CPU takes seconds a step and says nothing batch 64 does not.
  const std::vector<Case> cases = {{64, Device::cpu()}, {64, Device::cuda(0)}, {512, Device::cuda(0)}};
  for (const Case& c : cases) {
    const std::string name = "train_step/cnn_b" + std::to_string(c.batch) + "/" + (c.device.is_cuda() ? "cuda" : "cpu");
    auto* b = benchmark::RegisterBenchmark(name.c_str(), train_step, c.batch, c.device);
    b->Unit(benchmark::kMillisecond);
    if (c.device.is_cuda())
      b->UseManualTime();
    else
      b->UseRealTime();  // the work runs on several threads
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
