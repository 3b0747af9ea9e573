// ember_bench: ember's one benchmark program (Google Benchmark). Run alone, or under `mpirun -np K` for
// the MPI all-reduce and DDP cases; only rank 0 reports. Note [Benchmark names] says how cases are named.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "bench/bench.h"

namespace ember::bench {

std::shared_ptr<distributed::ProcessGroup>& world() {
  static std::shared_ptr<distributed::ProcessGroup> group;
  return group;
}

}  // namespace ember::bench

namespace {

// Ranks other than 0 run every benchmark (collectives need them) but print nothing.
class SilentReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

void add_context() {
  using namespace ember;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  benchmark::AddCustomContext("ember_host", host);
  benchmark::AddCustomContext("ember_omp_threads", std::to_string(omp_get_max_threads()));
  benchmark::AddCustomContext("ember_world_size", std::to_string(bench::world()->size()));
  std::string gpu = "none";
  if (cuda::is_available()) {
    const cuda::DeviceProperties p = cuda::get_device_properties(0);
    gpu = std::to_string(cuda::device_count()) + " x " + p.name;
  } else if (cuda::is_compiled()) {
    gpu = "none (CUDA build, no GPU seen: GPU cases not registered)";
  } else {
    gpu = "none (CPU-only build)";
  }
  benchmark::AddCustomContext("ember_gpu", gpu);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ember;
  bench::world() = distributed::init_process_group();
  const bool root = bench::world()->rank() == 0;
  // Only rank 0 writes --benchmark_out: the other ranks drop that flag.
  std::vector<char*> args(argv, argv + argc);
  if (!root)
    args.erase(std::remove_if(args.begin() + 1, args.end(),
                              [](const char* a) { return std::string_view(a).starts_with("--benchmark_out"); }),
               args.end());
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  add_context();
  bench::register_ops();
  bench::register_matmul();
  bench::register_conv();
  bench::register_optim();
  bench::register_train_step();
  bench::register_allocator();
  bench::register_allreduce();
  bench::register_data_parallel();
  if (root) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    SilentReporter silent;
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::Shutdown();
  bench::world()->barrier();
  return 0;
}
