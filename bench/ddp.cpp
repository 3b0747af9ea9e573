// DataParallel and DistributedDataParallel against the bare module, step by step (families "dp" and
// "ddp"): the per-step overhead of each wrapper, the share of all-reduce time hidden behind backward,
// and allocations per step. The DDP cases run in ember_bench's process group: alone (a world of one)
// or under `mpirun -np K ember_bench --benchmark_filter=^ddp/`; only rank 0 reports.
//
// Every rank must run the same collectives the same number of times, so the DDP cases have a fixed
// iteration count (no adaptive timing) and every rank registers the same list.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/models.h"

namespace ember::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void sync_if_cuda(Device d) {
  if (d.is_cuda()) cuda::synchronize(d.index());
}

// Each iteration runs one step of the bare module and one of the same module under DDP, interleaved so
// that drift in the machine's speed hits both alike. Reported: DDP's step time (the benchmark's time),
// the bare step, DDP's overhead, the all-reduce time of one step's buckets measured alone, the part of it
// backward hid (1 - exposed / all-reduce, exposed = the time backward's final callback spent finishing
// reductions), and host allocations per step of each.
template <class Model>
void ddp_step(benchmark::State& state, int64_t batch, bool on_gpu) {
  auto& pg = world();
  const Device device = on_gpu ? pg->cuda_device() : Device::cpu();
  manual_seed(0);
  Model bare;
  manual_seed(0);
  Model net;
  bare->to(device);
  net->to(device);
  parallel::DistributedDataParallel<typename Model::ContainedType> ddp(net, pg);
  optim::SGD bare_opt(bare->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  manual_seed(1 + static_cast<uint64_t>(pg->rank()));
  const Tensor x = randn({batch, 1, 28, 28}, device);
  const Tensor y = randint(0, 10, {batch}, TensorOptions().dtype(kInt64).device(device));
  auto bare_step = [&] {
    bare_opt.zero_grad(/*set_to_none=*/false);
    nn::functional::cross_entropy(bare->forward(x), y).backward();
    bare_opt.step();
    sync_if_cuda(device);
  };
  auto ddp_step = [&] {
    opt.zero_grad(/*set_to_none=*/false);
    nn::functional::cross_entropy(ddp->forward(x), y).backward();
    opt.step();
    sync_if_cuda(device);
  };
  for (int i = 0; i < 3; ++i) {
    bare_step();
    ddp_step();
  }
  double bare_total = 0, exposed_total = 0;
  uint64_t bare_allocs = 0, ddp_allocs = 0;
  for (auto _ : state) {
    uint64_t a0 = host_allocation_count();
    auto t0 = Clock::now();
    bare_step();
    bare_total += seconds_since(t0);
    bare_allocs += host_allocation_count() - a0;
    a0 = host_allocation_count();
    t0 = Clock::now();
    ddp_step();
    state.SetIterationTime(seconds_since(t0));
    ddp_allocs += host_allocation_count() - a0;
    exposed_total += ddp->reducer().last_finalize_seconds();
  }
  // The same buckets all-reduced alone, synchronously: what communication costs when nothing hides it.
  const int rounds = 10;
  const auto& reducer = ddp->reducer();
  auto t0 = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    for (size_t b = 0; b < reducer.num_buckets(); ++b) pg->all_reduce(reducer.bucket_buffer(0, b));
    sync_if_cuda(device);
  }
  const double comm = seconds_since(t0) / rounds;

  const double n = static_cast<double>(state.iterations());
  const double bare_s = bare_total / n, exposed = exposed_total / n;
  state.counters["bare_ms"] = bare_s * 1e3;
  state.counters["allreduce_ms"] = comm * 1e3;
  state.counters["exposed_ms"] = exposed * 1e3;
  state.counters["comm_hidden"] = comm > 0 ? std::clamp(1.0 - exposed / comm, 0.0, 1.0) : 1.0;
  state.counters["ranks"] = pg->size();
  state.counters["buckets"] = static_cast<double>(reducer.num_buckets());
  state.counters["bare_allocs/step"] = static_cast<double>(bare_allocs) / n;
  state.counters["ddp_allocs/step"] = static_cast<double>(ddp_allocs) / n;
  set_rate(state, "images/s", static_cast<double>(batch * pg->size()));
}

// DataParallel over `devices` (logical CPU devices or GPUs) against the bare module on devices[0], on the
// same global batch, interleaved as above. With one device the difference is DataParallel's own cost
// (scatter, replica bookkeeping, gather); with several on the CPU they share the same cores, so the
// figure is overhead plus whatever the threads lose to each other, not a speed-up.
template <class Model>
void dp_step(benchmark::State& state, int64_t batch, std::vector<Device> devices) {
  skip_on_error(state, [&] {
    const Device d0 = devices[0];
    manual_seed(0);
    Model bare;
    manual_seed(0);
    Model net;
    bare->to(d0);
    net->to(d0);
    parallel::DataParallel<typename Model::ContainedType> dp(net, devices);
    optim::SGD bare_opt(bare->parameters(), optim::SGDOptions(0.01).momentum(0.9));
    optim::SGD opt(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
    const Tensor x = randn({batch, 1, 28, 28}, d0);
    const Tensor y = randint(0, 10, {batch}, TensorOptions().dtype(kInt64).device(d0));
    auto bare_step = [&] {
      bare_opt.zero_grad(/*set_to_none=*/false);
      nn::functional::cross_entropy(bare->forward(x), y).backward();
      bare_opt.step();
      sync_if_cuda(d0);
    };
    auto dp_step = [&] {
      opt.zero_grad(/*set_to_none=*/false);
      nn::functional::cross_entropy(dp->forward(x), y).backward();
      opt.step();
      if (d0.is_cuda()) cuda::synchronize();
    };
    for (int i = 0; i < 3; ++i) {
      bare_step();
      dp_step();
    }
    double bare_total = 0;
    uint64_t bare_allocs = 0, dp_allocs = 0;
    for (auto _ : state) {
      uint64_t a0 = host_allocation_count();
      auto t0 = Clock::now();
      bare_step();
      bare_total += seconds_since(t0);
      bare_allocs += host_allocation_count() - a0;
      a0 = host_allocation_count();
      t0 = Clock::now();
      dp_step();
      state.SetIterationTime(seconds_since(t0));
      dp_allocs += host_allocation_count() - a0;
    }
    const double n = static_cast<double>(state.iterations());
    state.counters["bare_ms"] = bare_total / n * 1e3;
    state.counters["devices"] = static_cast<double>(devices.size());
    state.counters["bare_allocs/step"] = static_cast<double>(bare_allocs) / n;
    state.counters["dp_allocs/step"] = static_cast<double>(dp_allocs) / n;
    set_rate(state, "images/s", static_cast<double>(batch));
  });
}

}  // namespace

// DDP time over bare time, from the counters above, is the overhead; with one rank it is DDP's own cost
// (hooks, buckets, a collective that is an identity), the goal being at most 3%.
void register_data_parallel() {
  using benchmark::RegisterBenchmark;
  const std::string ranks = std::to_string(world()->size());
  auto ddp = [&](const std::string& name, auto fn, int64_t batch, bool gpu, int iterations) {
    RegisterBenchmark(join({"ddp/", name, "/", ranks, gpu ? "ranks_cuda" : "ranks"}).c_str(), fn, batch, gpu)
        ->Iterations(iterations)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  ddp("step_mlp_b64", ddp_step<Mlp>, 64, false, 300);
  ddp("step_mlp_b256", ddp_step<Mlp>, 256, false, 100);
  ddp("step_cnn_b64", ddp_step<Cnn>, 64, false, 30);
  if (cuda::is_available()) {
    ddp("step_mlp_b256", ddp_step<Mlp>, 256, true, 300);
    ddp("step_cnn_b256", ddp_step<Cnn>, 256, true, 100);
  }

  auto dp = [&](const std::string& name, auto fn, int64_t batch, std::vector<Device> devices) {
    const std::string count = std::to_string(devices.size());
    RegisterBenchmark(join({"dp/", name, "/", count, devices[0].is_cuda() ? "gpu" : "cpu"}).c_str(), fn, batch, devices)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  for (const std::vector<Device>& devices :
       {std::vector<Device>{Device::cpu(0)}, std::vector<Device>{Device::cpu(0), Device::cpu(1), Device::cpu(2)}}) {
    dp("step_mlp_b64", dp_step<Mlp>, 64, devices);
    dp("step_cnn_b64", dp_step<Cnn>, 64, devices);
  }
  if (cuda::is_available()) {
    std::vector<Device> gpus;
    for (int i = 0; i < cuda::device_count(); ++i) gpus.push_back(Device::cuda(i));
    dp("step_mlp_b256", dp_step<Mlp>, 256, {gpus[0]});
    dp("step_cnn_b256", dp_step<Cnn>, 256, {gpus[0]});
    if (gpus.size() > 1) {
      dp("step_mlp_b256", dp_step<Mlp>, 256, gpus);
      dp("step_cnn_b256", dp_step<Cnn>, 256, gpus);
    }
  }
}

}  // namespace ember::bench
