// One optimizer step (family "optim") over a small CNN's parameters (~0.5M in 12 tensors), CPU and CUDA.
#include <memory>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"
#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"

namespace ember::bench {
namespace {

// conv1, bn1, conv2, bn2, fc1, fc2 of a Fashion-MNIST CNN: 521,642 parameters in 12 tensors.
const std::vector<std::vector<int64_t>> kShapes = {
    {32, 1, 3, 3}, {32}, {32}, {32}, {64, 32, 3, 3}, {64}, {64}, {64}, {160, 3136}, {160}, {10, 160}, {10},
};

// Parameters with gradients (random values) on `device`.
std::vector<Tensor> make_params(Device device) {
  manual_seed(0);
  std::vector<Tensor> params;
  for (const auto& shape : kShapes) {
    Tensor p = (randn(shape, TensorOptions().device(device)) * 0.1).detach().requires_grad_();
    p.set_grad(randn(shape, TensorOptions().device(device)) * 0.01);
    params.push_back(p);
  }
  return params;
}

int64_t total_numel(const std::vector<Tensor>& params) {
  int64_t n = 0;
  for (const Tensor& p : params) n += p.numel();
  return n;
}

// Counters per step: parameters updated per second, and the bytes the update must move (Adam reads
// param, grad, exp_avg, exp_avg_sq and writes three of them: 7 floats per parameter; SGD with
// momentum reads 3 and writes 2: 5 floats).
void set_counters(benchmark::State& state, int64_t numel, int floats_moved) {
  const double steps = static_cast<double>(state.iterations());
  state.counters["params/s"] = benchmark::Counter(steps * static_cast<double>(numel), benchmark::Counter::kIsRate);
  state.counters["GB/s"] =
      benchmark::Counter(steps * static_cast<double>(numel) * floats_moved * 4.0 / 1e9, benchmark::Counter::kIsRate);
  state.counters["params"] = static_cast<double>(numel);
}

template <class Make>
void run_cpu(benchmark::State& state, Make make_optimizer, int floats_moved) {
  std::vector<Tensor> params = make_params(Device::cpu());
  auto opt = make_optimizer(params);
  opt->step();  // creates the state
  for (auto _ : state) opt->step();
  set_counters(state, total_numel(params), floats_moved);
}

template <class Make>
void run_cuda(benchmark::State& state, Make make_optimizer, int floats_moved) {
  if (!require_gpu(state)) return;
  std::vector<Tensor> params = make_params(Device::cuda(0));
  auto opt = make_optimizer(params);
  run_timed(state, Device::cuda(0), 10, [&] { opt->step(); });  // warm-up: state, kernel load
  set_counters(state, total_numel(params), floats_moved);
}

auto make_adam = [](const std::vector<Tensor>& params) {
  return std::make_unique<optim::Adam>(params, optim::AdamOptions(1e-3));
};
auto make_adamw = [](const std::vector<Tensor>& params) {
  return std::make_unique<optim::AdamW>(params, optim::AdamWOptions(1e-3));
};
auto make_sgd = [](const std::vector<Tensor>& params) {
  return std::make_unique<optim::SGD>(params, optim::SGDOptions(0.01).momentum(0.9).weight_decay(5e-4));
};

}  // namespace

void register_optim() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("optim/adam_step/cpu", [](benchmark::State& s) { run_cpu(s, make_adam, 7); })
      ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("optim/adamw_step/cpu", [](benchmark::State& s) { run_cpu(s, make_adamw, 7); })
      ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("optim/sgd_momentum_step/cpu", [](benchmark::State& s) { run_cpu(s, make_sgd, 5); })
      ->Unit(benchmark::kMicrosecond);
  if (!cuda::is_available()) return;
  RegisterBenchmark("optim/adam_step/cuda", [](benchmark::State& s) { run_cuda(s, make_adam, 7); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("optim/adamw_step/cuda", [](benchmark::State& s) { run_cuda(s, make_adamw, 7); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("optim/sgd_momentum_step/cuda", [](benchmark::State& s) { run_cuda(s, make_sgd, 5); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace ember::bench
