// All-reduce bandwidth (family "allreduce") over message sizes, for every communicator ember has: the
// in-process one of logical CPU devices, MPI across processes (run under `mpirun -np K ember_bench`),
// NCCL over the GPUs of one process, and NCCL across processes. Reported as nccl-tests does: algbw =
// bytes / time, busbw = algbw * 2(p-1)/p, the figure that compares with a link's bandwidth whatever p.
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"

namespace ember::bench {
namespace {

using Clock = std::chrono::steady_clock;

const std::vector<int64_t> kSizes = {int64_t{4} << 10, int64_t{64} << 10, int64_t{1} << 20,
                                     int64_t{4} << 20, int64_t{16} << 20, int64_t{64} << 20};

std::string size_tag(int64_t bytes) {
  if (bytes >= (int64_t{1} << 20)) return std::to_string(bytes >> 20) + "MiB";
  return std::to_string(bytes >> 10) + "KiB";
}

void set_bandwidth(benchmark::State& state, int64_t bytes, int p) {
  const double b = static_cast<double>(bytes);
  set_rate(state, "algbw_GB/s", b / 1e9);
  set_rate(state, "busbw_GB/s", p > 1 ? b * 2.0 * (p - 1) / p / 1e9 : 0.0);
  state.counters["bytes"] = b;
  state.counters["p"] = p;
}

// Logical CPU devices in one process: the host-memory communicator DataParallel uses on the CPU.
void cpu_comm(benchmark::State& state, int devices, int64_t bytes) {
  std::vector<Device> devs;
  std::vector<Tensor> ts;
  for (int i = 0; i < devices; ++i) {
    devs.push_back(Device::cpu(i));
    ts.push_back(ones({bytes / 4}, Device::cpu(i)));
  }
  auto comm = parallel::Communicator::get(devs);
  comm->all_reduce(ts);
  for (auto _ : state) comm->all_reduce(ts);
  set_bandwidth(state, bytes, devices);
}

// NCCL over every GPU of this process (ncclCommInitAll), timed with CUDA events on cuda:0.
void nccl_comm(benchmark::State& state, int64_t bytes) {
  skip_on_error(state, [&] {
    std::vector<Device> devs;
    std::vector<Tensor> ts;
    for (int i = 0; i < cuda::device_count(); ++i) {
      devs.push_back(Device::cuda(i));
      ts.push_back(ones({bytes / 4}, Device::cuda(i)));
    }
    auto comm = parallel::Communicator::get(devs);
    run_timed(state, Device::cuda(0), 3, [&] { comm->all_reduce(ts); });
    comm->barrier();
    set_bandwidth(state, bytes, static_cast<int>(devs.size()));
  });
}

// Across processes (the process group of ember_bench): every rank runs the same fixed number of
// collectives. Timed on each rank with the wall clock from a barrier; rank 0's time is reported.
void process_group(benchmark::State& state, int64_t bytes, bool on_gpu) {
  auto& pg = world();
  Tensor t;
  try {
    t = on_gpu ? ones({bytes / 4}, pg->cuda_device()) : ones({bytes / 4});
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());  // equal on every rank: no rank is left waiting in a collective
    return;
  }
  for (int i = 0; i < 2; ++i) pg->all_reduce(t);
  if (on_gpu) cuda::synchronize();
  pg->barrier();
  for (auto _ : state) {
    const auto t0 = Clock::now();
    pg->all_reduce(t);
    if (on_gpu) cuda::synchronize();
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  set_bandwidth(state, bytes, pg->size());
}

int64_t fixed_iterations(int64_t bytes) {
  return std::clamp<int64_t>((int64_t{256} << 20) / bytes, 5, 200);
}

}  // namespace

void register_allreduce() {
  using benchmark::RegisterBenchmark;
  for (int devices : {2, 3})
    for (int64_t bytes : kSizes)
      RegisterBenchmark(("allreduce/cpu_comm_" + size_tag(bytes) + "/" + std::to_string(devices) + "cpu").c_str(),
                        cpu_comm, devices, bytes)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  const int p = world()->size();
  if (p > 1)
    for (int64_t bytes : kSizes)
      RegisterBenchmark(("allreduce/mpi_" + size_tag(bytes) + "/" + std::to_string(p) + "ranks").c_str(),
                        process_group, bytes, false)
          ->Iterations(fixed_iterations(bytes))
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  if (!cuda::is_available()) return;
  for (int64_t bytes : kSizes)
    RegisterBenchmark(("allreduce/nccl_" + size_tag(bytes) + "/" + std::to_string(cuda::device_count()) + "gpu").c_str(),
                      nccl_comm, bytes)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  if (p > 1)
    for (int64_t bytes : kSizes)
      RegisterBenchmark(("allreduce/nccl_pg_" + size_tag(bytes) + "/" + std::to_string(p) + "ranks").c_str(),
                        process_group, bytes, true)
          ->Iterations(fixed_iterations(bytes))
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
}

}  // namespace ember::bench
