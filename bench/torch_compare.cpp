// ember vs LibTorch on the CPU, side by side: element-wise, tiny-op overhead, matmul, reductions, conv and the
// Fashion-MNIST MLP and CNN training steps at batch 64 and 256. bench/compare.py reads its JSON (the pairs
// "<case>/ember" and "<case>/libtorch") and checks the targets of bench/README.md.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "ember.h"

// Note [Side-by-side benchmarks]
// Every case is registered twice, "<case>/ember" and "<case>/libtorch", on the same shapes, dtype
// (float32) and thread count (LibTorch is set to omp_get_max_threads(), which is what ember's
// OpenMP loops use). Both libraries allocate their outputs each iteration, as user code does, and
// keep autograd on (no NoGradGuard) unless the case says otherwise. Times are wall-clock
// (UseRealTime): the ops are multi-threaded. After the run a summary prints, per case, both
// throughputs and ember's throughput divided by LibTorch's (> 1: ember is faster).
//
// Both libraries end up on one BLAS: this binary lists ember's libopenblas.so.0 (the OpenMP build,
// see Note [OpenBLAS flavour] in cmake/EmberDependencies.cmake) before libtorch, so LibTorch's sgemm_
// calls, which it makes through libblas.so.3, bind to that same OpenBLAS (check with
// LD_DEBUG=bindings). LibTorch's convolutions use its bundled oneDNN (MKL-DNN) where it chooses to.

namespace {

constexpr int64_t k16M = 16 * 1024 * 1024;

void set_rate(benchmark::State& state, const char* name, double per_iteration) {
  state.counters[name] = benchmark::Counter(per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}
double gb(double bytes) { return bytes / 1e9; }

// ---- element-wise and reductions ------------------------------------------------------------------

void ember_add_16m(benchmark::State& state) {
  ember::Tensor a = ember::randn({k16M}), b = ember::randn({k16M});
  for (auto _ : state) {
    ember::Tensor c = a + b;
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_rate(state, "GB/s", gb(3.0 * 4 * k16M));
}
void torch_add_16m(benchmark::State& state) {
  at::Tensor a = torch::randn({k16M}), b = torch::randn({k16M});
  for (auto _ : state) {
    at::Tensor c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_rate(state, "GB/s", gb(3.0 * 4 * k16M));
}

// Everything but the arithmetic: checks, output allocation, dispatch (and recording the graph node).
void ember_tiny_add(benchmark::State& state, bool record) {
  ember::Tensor a = ember::ones({1}), b = ember::ones({1});
  if (record) a.requires_grad_();
  for (auto _ : state) {
    ember::Tensor c = a + b;
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_rate(state, "Mops/s", 1e-6);
}
void torch_tiny_add(benchmark::State& state, bool record) {
  at::Tensor a = torch::ones({1}), b = torch::ones({1});
  if (record) a.requires_grad_();
  for (auto _ : state) {
    at::Tensor c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_rate(state, "Mops/s", 1e-6);
}

void ember_sum_16m(benchmark::State& state) {
  ember::Tensor a = ember::randn({k16M});
  for (auto _ : state) {
    ember::Tensor s = a.sum();
    benchmark::DoNotOptimize(s.raw_data());
  }
  set_rate(state, "GB/s", gb(4.0 * k16M));
}
void torch_sum_16m(benchmark::State& state) {
  at::Tensor a = torch::randn({k16M});
  for (auto _ : state) {
    at::Tensor s = a.sum();
    benchmark::DoNotOptimize(s.data_ptr());
  }
  set_rate(state, "GB/s", gb(4.0 * k16M));
}

void ember_log_softmax(benchmark::State& state) {
  ember::Tensor a = ember::randn({4096, 1000});
  for (auto _ : state) {
    ember::Tensor y = a.log_softmax(1);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_rate(state, "GB/s", gb(2.0 * 4 * 4096 * 1000));
}
void torch_log_softmax(benchmark::State& state) {
  at::Tensor a = torch::randn({4096, 1000});
  for (auto _ : state) {
    at::Tensor y = a.log_softmax(1);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_rate(state, "GB/s", gb(2.0 * 4 * 4096 * 1000));
}

void ember_mul_16m(benchmark::State& state) {
  ember::Tensor a = ember::randn({k16M}), b = ember::randn({k16M});
  for (auto _ : state) {
    ember::Tensor c = a * b;
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_rate(state, "GB/s", gb(3.0 * 4 * k16M));
}
void torch_mul_16m(benchmark::State& state) {
  at::Tensor a = torch::randn({k16M}), b = torch::randn({k16M});
  for (auto _ : state) {
    at::Tensor c = a * b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_rate(state, "GB/s", gb(3.0 * 4 * k16M));
}

void ember_softmax(benchmark::State& state) {
  ember::Tensor a = ember::randn({4096, 1000});
  for (auto _ : state) {
    ember::Tensor y = a.softmax(1);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_rate(state, "GB/s", gb(2.0 * 4 * 4096 * 1000));
}
void torch_softmax(benchmark::State& state) {
  at::Tensor a = torch::randn({4096, 1000});
  for (auto _ : state) {
    at::Tensor y = a.softmax(1);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_rate(state, "GB/s", gb(2.0 * 4 * 4096 * 1000));
}

// ---- matmul and conv --------------------------------------------------------------------------------

void ember_matmul_1024(benchmark::State& state) {
  ember::Tensor a = ember::randn({1024, 1024}), b = ember::randn({1024, 1024});
  for (auto _ : state) {
    ember::Tensor c = a.matmul(b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_rate(state, "GFLOP/s", 2.0 * 1024 * 1024 * 1024 / 1e9);
}
void torch_matmul_1024(benchmark::State& state) {
  at::Tensor a = torch::randn({1024, 1024}), b = torch::randn({1024, 1024});
  for (auto _ : state) {
    at::Tensor c = a.matmul(b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_rate(state, "GFLOP/s", 2.0 * 1024 * 1024 * 1024 / 1e9);
}

void ember_matmul_256(benchmark::State& state) {
  ember::Tensor a = ember::randn({256, 256}), b = ember::randn({256, 256});
  for (auto _ : state) {
    ember::Tensor c = a.matmul(b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_rate(state, "GFLOP/s", 2.0 * 256 * 256 * 256 / 1e9);
}
void torch_matmul_256(benchmark::State& state) {
  at::Tensor a = torch::randn({256, 256}), b = torch::randn({256, 256});
  for (auto _ : state) {
    at::Tensor c = a.matmul(b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_rate(state, "GFLOP/s", 2.0 * 256 * 256 * 256 / 1e9);
}

// [64, 32, 14, 14] * [64, 32, 3, 3], padding 1: forward plus the input and weight gradients, each
// 2 * N * C_out * H * W * C_in * 9 FLOP.
constexpr double kConvFlop = 3.0 * 2 * 64 * 64 * 14 * 14 * 32 * 9;

void ember_conv2d_fwd_bwd(benchmark::State& state) {
  ember::Tensor x = ember::randn({64, 32, 14, 14}).requires_grad_();
  ember::Tensor w = ember::randn({64, 32, 3, 3}).mul(0.05).detach().requires_grad_();
  ember::Tensor g = ember::randn({64, 64, 14, 14});
  for (auto _ : state) {
    ember::Tensor y = ember::conv2d(x, w, {}, 1, 1);
    y.backward(g);
    benchmark::DoNotOptimize(w.grad().raw_data());
    x.set_grad({});
    w.set_grad({});
  }
  set_rate(state, "GFLOP/s", kConvFlop / 1e9);
}
void torch_conv2d_fwd_bwd(benchmark::State& state) {
  at::Tensor x = torch::randn({64, 32, 14, 14}).requires_grad_();
  at::Tensor w = (torch::randn({64, 32, 3, 3}) * 0.05).detach().requires_grad_();
  at::Tensor g = torch::randn({64, 64, 14, 14});
  for (auto _ : state) {
    at::Tensor y = at::conv2d(x, w, {}, 1, 1);
    y.backward(g);
    benchmark::DoNotOptimize(w.grad().data_ptr());
    x.mutable_grad().reset();
    w.mutable_grad().reset();
  }
  set_rate(state, "GFLOP/s", kConvFlop / 1e9);
}

// ---- training steps (examples/fashion_mnist.cpp's models, AdamW lr 2e-3, weight decay 1e-2) ----------

struct EmberCnnImpl : ember::nn::Cloneable<EmberCnnImpl> {
  EmberCnnImpl() { reset(); }
  void reset() override {
    using namespace ember::nn;
    features = register_module(
        "features",
        Sequential(Conv2d(Conv2dOptions(1, 32, 3).padding(1).bias(false)), BatchNorm2d(32), ReLU(),
                   MaxPool2d(MaxPool2dOptions(2)), Conv2d(Conv2dOptions(32, 64, 3).padding(1).bias(false)),
                   BatchNorm2d(64), ReLU(), MaxPool2d(MaxPool2dOptions(2))));
    classifier = register_module(
        "classifier", Sequential(Flatten(), Linear(64 * 7 * 7, 128), ReLU(), Dropout(0.25), Linear(128, 10)));
  }
  ember::Tensor forward(const ember::Tensor& x) { return classifier->forward(features->forward(x)); }
  ember::nn::Sequential features{nullptr}, classifier{nullptr};
};
EMBER_MODULE(EmberCnn);

torch::nn::Sequential torch_cnn() {
  using namespace torch::nn;
  return Sequential(Conv2d(Conv2dOptions(1, 32, 3).padding(1).bias(false)), BatchNorm2d(32), ReLU(),
                    MaxPool2d(MaxPool2dOptions(2)), Conv2d(Conv2dOptions(32, 64, 3).padding(1).bias(false)),
                    BatchNorm2d(64), ReLU(), MaxPool2d(MaxPool2dOptions(2)), Flatten(), Linear(64 * 7 * 7, 128),
                    ReLU(), Dropout(0.25), Linear(128, 10));
}

ember::nn::Sequential ember_mlp() {
  using namespace ember::nn;
  return Sequential(Flatten(), Linear(784, 256), ReLU(), Linear(256, 128), ReLU(), Linear(128, 10));
}
torch::nn::Sequential torch_mlp() {
  using namespace torch::nn;
  return Sequential(Flatten(), Linear(784, 256), ReLU(), Linear(256, 128), ReLU(), Linear(128, 10));
}

template <class Model>
void ember_train_step(benchmark::State& state, Model model, int64_t batch) {
  ember::manual_seed(0);
  model->train();
  ember::optim::AdamW opt(model->parameters(), ember::optim::AdamWOptions(2e-3).weight_decay(1e-2));
  ember::Tensor x = ember::randn({batch, 1, 28, 28});
  ember::Tensor y = ember::randint(0, 10, {batch});
  for (auto _ : state) {
    opt.zero_grad();
    ember::Tensor loss = ember::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  set_rate(state, "images/s", static_cast<double>(batch));
}
void torch_train_step(benchmark::State& state, torch::nn::Sequential model, int64_t batch) {
  torch::manual_seed(0);
  model->train();
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(2e-3).weight_decay(1e-2));
  at::Tensor x = torch::randn({batch, 1, 28, 28});
  at::Tensor y = torch::randint(0, 10, {batch});
  for (auto _ : state) {
    // Gradients to None, as ember's zero_grad (LibTorch 1.13's Optimizer::zero_grad fills zeros).
    model->zero_grad(/*set_to_none=*/true);
    at::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  set_rate(state, "images/s", static_cast<double>(batch));
}

// ---- registration and the summary -------------------------------------------------------------------

// Keeps every run's time and counters, prints as the console reporter does.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.error_occurred || r.run_type != Run::RT_Iteration) continue;
      Result& res = results_[r.run_name.function_name];
      res.seconds = r.GetAdjustedRealTime() / unit_per_second(r.time_unit);
      for (const auto& [name, counter] : r.counters) {
        res.counter_name = name;
        res.counter = counter.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void print_summary() const {
    std::printf("\nember vs LibTorch %s on %d threads (ratio = ember throughput / LibTorch throughput, > 1: ember faster)\n",
                TORCH_VERSION, omp_get_max_threads());
    std::printf("%-26s %14s %14s %12s %16s %16s %7s\n", "case", "ember time", "LibTorch time", "counter", "ember",
                "LibTorch", "ratio");
    for (const auto& [name, ours] : results_) {
      const std::string base = name.substr(0, name.rfind('/'));
      if (name.substr(name.rfind('/') + 1) != "ember") continue;
      auto it = results_.find(base + "/libtorch");
      if (it == results_.end()) continue;
      const Result& theirs = it->second;
      std::printf("%-26s %14s %14s %12s %16.4g %16.4g %7.2f\n", base.c_str(), human(ours.seconds).c_str(),
                  human(theirs.seconds).c_str(), ours.counter_name.c_str(), ours.counter, theirs.counter,
                  theirs.seconds / ours.seconds);
    }
  }

 private:
  struct Result {
    double seconds = 0;
    std::string counter_name;
    double counter = 0;
  };
  static double unit_per_second(benchmark::TimeUnit u) {
    switch (u) {
      case benchmark::kNanosecond: return 1e9;
      case benchmark::kMicrosecond: return 1e6;
      case benchmark::kMillisecond: return 1e3;
      case benchmark::kSecond: return 1;
    }
    return 1e9;
  }
  static std::string human(double s) {
    char buf[32];
    if (s < 1e-6) std::snprintf(buf, sizeof(buf), "%.1f ns", s * 1e9);
    else if (s < 1e-3) std::snprintf(buf, sizeof(buf), "%.2f us", s * 1e6);
    else std::snprintf(buf, sizeof(buf), "%.2f ms", s * 1e3);
    return buf;
  }
  std::map<std::string, Result> results_;
};

template <class FE, class FT>
void register_pair(const std::string& name, FE ours, FT theirs, benchmark::TimeUnit unit) {
  benchmark::RegisterBenchmark((name + "/ember").c_str(), ours)->UseRealTime()->Unit(unit);
  benchmark::RegisterBenchmark((name + "/libtorch").c_str(), theirs)->UseRealTime()->Unit(unit);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = omp_get_max_threads();
  torch::set_num_threads(threads);
  using benchmark::kMicrosecond;
  using benchmark::kMillisecond;
  using benchmark::kNanosecond;
  register_pair("add_16M", ember_add_16m, torch_add_16m, kMillisecond);
  register_pair("tiny_add", [](benchmark::State& s) { ember_tiny_add(s, false); },
                [](benchmark::State& s) { torch_tiny_add(s, false); }, kNanosecond);
  register_pair("tiny_add_autograd", [](benchmark::State& s) { ember_tiny_add(s, true); },
                [](benchmark::State& s) { torch_tiny_add(s, true); }, kNanosecond);
  register_pair("matmul_1024", ember_matmul_1024, torch_matmul_1024, kMillisecond);
  register_pair("sum_16M", ember_sum_16m, torch_sum_16m, kMillisecond);
  register_pair("log_softmax_4096x1000", ember_log_softmax, torch_log_softmax, kMillisecond);
  register_pair("conv2d_fwd_bwd", ember_conv2d_fwd_bwd, torch_conv2d_fwd_bwd, kMillisecond);
  register_pair("mul_16M", ember_mul_16m, torch_mul_16m, kMillisecond);
  register_pair("softmax_4096x1000", ember_softmax, torch_softmax, kMillisecond);
  register_pair("matmul_256", ember_matmul_256, torch_matmul_256, kMicrosecond);
  for (int64_t batch : {64, 256}) {
    const std::string b = std::to_string(batch);
    register_pair("cnn_train_step_b" + b, [batch](benchmark::State& s) { ember_train_step(s, EmberCnn(), batch); },
                  [batch](benchmark::State& s) { torch_train_step(s, torch_cnn(), batch); }, kMillisecond);
    register_pair("mlp_train_step_b" + b, [batch](benchmark::State& s) { ember_train_step(s, ember_mlp(), batch); },
                  [batch](benchmark::State& s) { torch_train_step(s, torch_mlp(), batch); }, kMicrosecond);
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_summary();
  benchmark::Shutdown();
  return 0;
}
