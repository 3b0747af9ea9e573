// One training step (family "train_step") of the Fashion-MNIST MLP and CNN (forward, cross-entropy,
// backward, AdamW) at batch 64 and 256: images/s, and the allocations a steady step makes (host
// allocations on the CPU; cudaMalloc calls on the GPU, where the target is zero after warm-up).
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/models.h"
#include "bench/timing.h"

namespace ember::bench {
namespace {

// The step on data already on the device (no loader, no loss.item()), so what is timed is the model's
// own work: on the GPU device time between CUDA events, which includes any launch gaps the host causes.
template <class Model>
void train_step(benchmark::State& state, int64_t batch, Device device) {
  skip_on_error(state, [&] {
    if (device.is_cuda()) cuda::set_allow_tf32(false);
    manual_seed(0);
    Model model;
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
    for (int i = 0; i < 2; ++i) step();  // optimizer state, cuDNN algorithms, allocator cache
    const uint64_t host0 = host_allocation_count();
    const uint64_t dev0 = device.is_cuda() ? cuda::num_device_mallocs(device.index()) : 0;
    run_timed(state, device, 3, step);
    const double steps = static_cast<double>(state.iterations() + 3);
    state.counters["host_allocs/step"] = static_cast<double>(host_allocation_count() - host0) / steps;
    if (device.is_cuda())
      state.counters["cudaMalloc/step"] = static_cast<double>(cuda::num_device_mallocs(device.index()) - dev0) / steps;
    set_rate(state, "images/s", static_cast<double>(batch));
  });
}

}  // namespace

void register_train_step() {
  std::vector<Device> devices{Device::cpu()};
  if (cuda::is_available()) devices.push_back(Device::cuda(0));
  for (const Device& d : devices) {
    for (int64_t batch : {64, 256}) {
      const std::string tail = "_b" + std::to_string(batch) + "/" + device_tag(d);
      auto* mlp = benchmark::RegisterBenchmark(("train_step/mlp" + tail).c_str(), train_step<Mlp>, batch, d);
      auto* cnn = benchmark::RegisterBenchmark(("train_step/cnn" + tail).c_str(), train_step<Cnn>, batch, d);
      for (auto* b : {mlp, cnn}) {
        b->Unit(benchmark::kMillisecond);
        if (d.is_cuda())
          b->UseManualTime();
        else
          b->UseRealTime();  // the work runs on several threads
      }
    }
  }
}

}  // namespace ember::bench
