// ember_scaling: training throughput across device counts (weak and strong scaling), DataParallel over a
// device list or DDP under mpirun, a merge of per-rank-count runs, and a projection to 1024 GPUs from a
// measured one-device step (bench/scaling_model.h) validated against what was measured here.
//
//   ember_scaling --model cnn --devices cpu:0,cpu:1,cpu:2 --json dp.json           DataParallel, k = 1..3
//   mpirun -np K ember_scaling --ddp --model cnn --max-devices K --json ddp_K.json  DDP at world size K
//   ember_scaling --merge ddp_1.json ddp_2.json ddp_3.json --json ddp.json          (bench/scaling.sh does both)
//   ember_scaling --project --from ddp.json --json projection.json                  projection + validation
//   ember_scaling --project --model cnn --devices cuda:0                            measure one GPU, project
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/models.h"
#include "bench/scaling_model.h"
#include "ember.h"

namespace {

using namespace ember;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
namespace model = ember::bench::model;

struct Options {
  std::string model = "cnn";
  int64_t batch = 64;         // per device (weak scaling)
  int64_t global_batch = 0;   // strong scaling; 0: batch * max devices
  int steps = 20, warmup = 3;
  std::string devices;        // DataParallel: device list; DDP: "cpu" or "cuda"
  bool ddp = false;
  int max_devices = 0;        // DDP: the largest world size the runs will use (for the global batch)
  std::string scaling = "both";
  std::string json_path;
  std::vector<std::string> merge;
  bool project = false;
  std::string from;
  int max_gpus = 1024, per_node = 8;
  double intra_bw = 370, inter_bw = 45, intra_lat_us = 1, inter_lat_us = 5;  // GB/s, microseconds
  double link_alpha_us = -1, link_bw = -1;  // this machine's all-reduce, instead of the fit
  int cores = 0;
  double tolerance = 0.15;
};

std::shared_ptr<distributed::ProcessGroup> g_world;
bool is_root() { return !g_world || g_world->rank() == 0; }

template <class... A>
void say(const char* fmt, A... a) {
  if (!is_root()) return;
  std::printf(fmt, a...);
  std::fflush(stdout);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
double mean(const std::vector<double>& v) {
  return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void sync(Device d) {
  if (d.is_cuda()) cuda::synchronize();
}

// ---- the machine ----------------------------------------------------------------------------------------

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto pos = line.find(':');
      return pos == std::string::npos ? line : line.substr(pos + 2);
    }
  return "unknown CPU";
}

int hardware_cores() {
  const unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

json machine_json(const Options& o) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  json m;
  m["date"] = now_utc();
  m["host"] = host;
  m["cpu"] = cpu_model();
  m["cores"] = o.cores > 0 ? o.cores : hardware_cores();
  m["omp_threads"] = omp_get_max_threads();
  if (cuda::is_available()) {
    const cuda::DeviceProperties p = cuda::get_device_properties(0);
    m["gpu"] = p.name;
    m["gpus"] = cuda::device_count();
  }
  return m;
}

std::string device_kind(Device d) {
  if (d.is_cuda()) return "cuda (" + cuda::get_device_properties(d.index()).name + ")";
  return "cpu";
}

// ---- rows -----------------------------------------------------------------------------------------------

struct Row {
  int devices = 1;
  std::string scaling = "weak";  // "weak": batch per device fixed; "strong": global batch fixed
  int64_t batch_per_device = 0, global_batch = 0;
  double step_ms = 0, step_ms_mean = 0;
  std::optional<double> efficiency;
  double comm_ms = 0, exposed_ms = 0;
  std::optional<double> comm_hidden;
  // DDP runs: the bare module's step at the same batch, ended by a small all-reduce, timed between
  // the DDP steps (Note [Interleaved bare steps]).
  std::optional<double> bare_sync_ms;
  double images_per_sec() const { return step_ms > 0 ? static_cast<double>(global_batch) / (step_ms / 1e3) : 0; }
};

json row_json(const Row& r) {
  json j;
  j["devices"] = r.devices;
  j["scaling"] = r.scaling;
  j["batch_per_device"] = r.batch_per_device;
  j["global_batch"] = r.global_batch;
  j["step_ms"] = r.step_ms;
  j["step_ms_mean"] = r.step_ms_mean;
  j["images_per_sec"] = r.images_per_sec();
  j["efficiency"] = r.efficiency ? json(*r.efficiency) : json(nullptr);
  j["comm_ms"] = r.comm_ms;
  j["exposed_ms"] = r.exposed_ms;
  j["comm_hidden"] = r.comm_hidden ? json(*r.comm_hidden) : json(nullptr);
  if (r.bare_sync_ms) j["bare_sync_ms"] = *r.bare_sync_ms;
  return j;
}

Row row_from(const json& j) {
  Row r;
  r.devices = j.at("devices");
  r.scaling = j.at("scaling");
  r.batch_per_device = j.at("batch_per_device");
  r.global_batch = j.at("global_batch");
  r.step_ms = j.at("step_ms");
  r.step_ms_mean = j.value("step_ms_mean", r.step_ms);
  if (!j.at("efficiency").is_null()) r.efficiency = j.at("efficiency").get<double>();
  r.comm_ms = j.value("comm_ms", 0.0);
  r.exposed_ms = j.value("exposed_ms", 0.0);
  if (j.contains("comm_hidden") && !j.at("comm_hidden").is_null()) r.comm_hidden = j.at("comm_hidden").get<double>();
  if (j.contains("bare_sync_ms")) r.bare_sync_ms = j.at("bare_sync_ms").get<double>();
  return r;
}

// Efficiency against perfect linear scaling, from the one-device row of the same kind.
void fill_efficiency(std::vector<Row>& rows) {
  for (Row& r : rows) {
    auto base = std::find_if(rows.begin(), rows.end(),
                             [&](const Row& b) { return b.devices == 1 && b.scaling == r.scaling; });
    if (base == rows.end() || r.step_ms <= 0) continue;
    r.efficiency = r.scaling == "weak" ? base->step_ms / r.step_ms : base->step_ms / (r.devices * r.step_ms);
  }
}

void print_rows(const std::vector<Row>& rows) {
  say("%-7s %7s %9s %7s %9s %10s %10s %8s %10s %11s\n", "scaling", "devices", "batch/dev", "global", "step ms",
      "images/s", "efficiency", "comm ms", "exposed ms", "comm hidden");
  for (const std::string kind : {"weak", "strong"})
    for (const Row& r : rows) {
      if (r.scaling != kind) continue;
      char eff[16] = "-", hid[16] = "-";
      if (r.efficiency) std::snprintf(eff, sizeof(eff), "%.1f%%", 100 * *r.efficiency);
      if (r.comm_hidden) std::snprintf(hid, sizeof(hid), "%.0f%%", 100 * *r.comm_hidden);
      say("%-7s %7d %9lld %7lld %9.2f %10.0f %10s %8.3f %10.3f %11s\n", r.scaling.c_str(), r.devices,
          static_cast<long long>(r.batch_per_device), static_cast<long long>(r.global_batch), r.step_ms,
          r.images_per_sec(), eff, r.comm_ms, r.exposed_ms, hid);
    }
}

// ---- models ---------------------------------------------------------------------------------------------

// Calls f.template operator()<Model>() for the model named `name`.
template <class F>
auto with_model(const std::string& name, F&& f) {
  if (name == "mlp") return f.template operator()<bench::Mlp>();
  if (name == "cnn") return f.template operator()<bench::Cnn>();
  throw Error("ember_scaling: unknown --model '" + name + "' (mlp or cnn)");
}

template <class Model>
std::pair<Tensor, Tensor> synthetic_batch(int64_t batch, Device d, uint64_t seed) {
  manual_seed(seed);
  Tensor x = randn({batch, 1, 28, 28}, d);
  Tensor y = randint(0, 10, {batch}, TensorOptions().dtype(kInt64).device(d));
  return {x, y};
}

// ---- the one-device profile -----------------------------------------------------------------------------

// Marks taken on the host clock, or as CUDA events on the current stream (GPU work is asynchronous:
// when a hook runs says little about when its gradient exists on the device).
class Marks {
 public:
  Marks(Device d, size_t n) : cuda_(d.is_cuda()), host_(n) {
    if (cuda_)
      for (size_t i = 0; i < n; ++i) events_.emplace_back(/*enable_timing=*/true);
  }
  void mark(size_t i) {
    if (cuda_) events_[i].record();
    else host_[i] = Clock::now();
  }
  // Seconds from mark a to mark b (after the step has been synchronised).
  double between(size_t a, size_t b) const {
    if (cuda_) return static_cast<double>(events_[a].elapsed_ms(events_[b])) / 1e3;
    return std::chrono::duration<double>(host_[b] - host_[a]).count();
  }

 private:
  bool cuda_;
  std::vector<Clock::time_point> host_;
  std::vector<cuda::Event> events_;
};

struct Profile {
  int64_t batch = 0;
  double forward = 0, backward = 0, optimizer = 0, step = 0;  // seconds (medians)
  std::vector<model::Bucket> buckets;
  std::vector<int> bucket_params;
};

json profile_json(const Profile& p) {
  json j;
  j["batch"] = p.batch;
  j["forward_ms"] = p.forward * 1e3;
  j["backward_ms"] = p.backward * 1e3;
  j["optimizer_ms"] = p.optimizer * 1e3;
  j["step_ms"] = p.step * 1e3;
  double bytes = 0;
  json buckets = json::array();
  for (size_t b = 0; b < p.buckets.size(); ++b) {
    bytes += p.buckets[b].bytes;
    buckets.push_back({{"bytes", p.buckets[b].bytes},
                       {"params", p.bucket_params[b]},
                       {"ready_ms", p.buckets[b].ready * 1e3}});
  }
  j["grad_bytes"] = bytes;
  j["buckets"] = buckets;
  return j;
}

Profile profile_from(const json& j) {
  Profile p;
  p.batch = j.at("batch");
  p.forward = j.at("forward_ms").get<double>() / 1e3;
  p.backward = j.at("backward_ms").get<double>() / 1e3;
  p.optimizer = j.at("optimizer_ms").get<double>() / 1e3;
  p.step = j.at("step_ms").get<double>() / 1e3;
  for (const json& b : j.at("buckets")) {
    p.buckets.push_back({b.at("bytes").get<double>(), b.at("ready_ms").get<double>() / 1e3});
    p.bucket_params.push_back(b.value("params", 0));
  }
  return p;
}

model::StepProfile to_model(const Profile& p, double step) {
  model::StepProfile m;
  m.forward = p.forward;
  m.backward = p.backward;
  m.optimizer = p.optimizer;
  m.step = step;
  m.buckets = p.buckets;
  return m;
}

// Forward, backward and optimizer time of the bare module on one device, and when in backward each of
// the reducer's buckets has all its gradients (post-accumulate hooks on the parameters). The buckets
// are the ones DataParallel's and DDP's reducer builds for this module (same rule, same defaults).
template <class Model>
Profile measure_profile(Device d, int64_t batch, const Options& o) {
  using Impl = typename Model::ContainedType;
  Profile prof;
  prof.batch = batch;
  std::vector<std::vector<size_t>> layout;
  {
    Model probe_net;
    probe_net->to(d);
    parallel::DataParallel<Impl> probe(probe_net, std::vector<Device>{d});
    layout = probe->reducer().bucket_layout();
  }
  manual_seed(0);
  Model net;
  net->to(d);
  net->train();
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  auto [x, y] = synthetic_batch<Model>(batch, d, 1);
  const std::vector<Tensor> params = net->parameters();
  const size_t np = params.size();
  Marks marks(d, 4 + np);
  for (size_t i = 0; i < np; ++i)
    params[i].register_post_accumulate_grad_hook([&marks, i](const Tensor&) { marks.mark(4 + i); });
  std::vector<double> fwd, bwd, opt_t, step;
  std::vector<std::vector<double>> ready(np);
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    opt.zero_grad(/*set_to_none=*/false);
    marks.mark(0);
    Tensor loss = nn::functional::cross_entropy(net->forward(x), y);
    marks.mark(1);
    loss.backward();
    marks.mark(2);
    opt.step();
    marks.mark(3);
    sync(d);
    if (s < o.warmup) continue;
    fwd.push_back(marks.between(0, 1));
    bwd.push_back(marks.between(1, 2));
    opt_t.push_back(marks.between(2, 3));
    step.push_back(marks.between(0, 3));
    for (size_t i = 0; i < np; ++i) ready[i].push_back(marks.between(1, 4 + i));
  }
  prof.forward = median(fwd);
  prof.backward = median(bwd);
  prof.optimizer = median(opt_t);
  prof.step = median(step);
  for (const auto& bucket : layout) {
    model::Bucket b;
    for (size_t i : bucket) {
      b.bytes += static_cast<double>(params[i].nbytes());
      b.ready = std::max(b.ready, median(ready[i]));
    }
    prof.buckets.push_back(b);
    prof.bucket_params.push_back(static_cast<int>(bucket.size()));
  }
  return prof;
}

// ---- DataParallel over a device list ----------------------------------------------------------------------

template <class Model>
Row run_dp(const std::vector<Device>& devices, int64_t global, const std::string& scaling, const Options& o) {
  using Impl = typename Model::ContainedType;
  const Device d0 = devices[0];
  manual_seed(0);
  Model net;
  net->to(d0);
  net->train();
  parallel::DataParallel<Impl> dp(net, devices);
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  auto [x, y] = synthetic_batch<Model>(global, d0, 1);
  std::vector<double> times, exposed;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    const auto t0 = Clock::now();
    opt.zero_grad(/*set_to_none=*/false);
    nn::functional::cross_entropy(dp->forward(x), y).backward();
    opt.step();
    sync(d0);
    if (s < o.warmup) continue;
    times.push_back(seconds_since(t0));
    exposed.push_back(dp->reducer().last_finalize_seconds());
  }
  Row r;
  r.devices = static_cast<int>(devices.size());
  r.scaling = scaling;
  r.global_batch = global;
  r.batch_per_device = (global + r.devices - 1) / r.devices;
  r.step_ms = median(times) * 1e3;
  r.step_ms_mean = mean(times) * 1e3;
  if (devices.size() > 1) {
    // The buckets all-reduced alone, synchronously: what communication costs when nothing hides it.
    const auto& red = dp->reducer();
    const int rounds = 10;
    const auto t0 = Clock::now();
    for (int i = 0; i < rounds; ++i) {
      for (size_t b = 0; b < red.num_buckets(); ++b) {
        std::vector<Tensor> flats;
        for (size_t k = 0; k < devices.size(); ++k) flats.push_back(red.bucket_buffer(k, b));
        parallel::all_reduce(flats);
      }
      sync(d0);
    }
    r.comm_ms = seconds_since(t0) / rounds * 1e3;
    r.exposed_ms = mean(exposed) * 1e3;
    // On logical CPU devices the in-process all-reduce runs inline, in the hook of the last replica to
    // finish a bucket: it delays that replica's backward but leaves nothing for the final callback to
    // wait for, so "exposed" reads zero whether or not anything was hidden. No figure then.
    if (d0.is_cuda()) r.comm_hidden = r.comm_ms > 0 ? std::clamp(1.0 - r.exposed_ms / r.comm_ms, 0.0, 1.0) : 1.0;
  }
  return r;
}

// ---- DDP: this process is one rank of the world -------------------------------------------------------------

template <class Model>
Row run_ddp(Device device, int64_t global, const std::string& scaling, const Options& o) {
  using Impl = typename Model::ContainedType;
  auto& pg = g_world;
  const int k = pg->size();
  EMBER_CHECK(global >= k, "ember_scaling: a global batch of ", global, " cannot be split over ", k, " ranks");
  const int64_t mine = scaling == "weak" ? o.batch : parallel::chunk_sizes(global, static_cast<size_t>(k))[pg->rank()];
  manual_seed(0);
  Model net;
  net->to(device);
  net->train();
  parallel::DistributedDataParallel<Impl> ddp(net, pg);
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  auto [x, y] = synthetic_batch<Model>(mine, device, 1 + static_cast<uint64_t>(pg->rank()));
  // Note [Interleaved bare steps]
  // After each DDP step, each rank also runs one step of a bare copy of the module (no DDP, no gradient
  // communication) on the same batch, ended by a small all-reduce, as the final wait ends a DDP step.
  // That is the one-device step as this host runs it while p ranks share it (cores, caches, memory
  // bandwidth, and the scheduler's delays at each synchronisation), measured in the same seconds as the
  // DDP steps: this host's speed drifts by tens of percent between runs minutes apart, and the two
  // drift together. The validation takes it as the compute the model's communication adds to (Note
  // [Ranks sharing cores]); on GPUs it is the one-device step itself.
  manual_seed(0);
  Model bare;
  bare->to(device);
  bare->train();
  optim::SGD bare_opt(bare->parameters(), optim::SGDOptions(0.01).momentum(0.9));
  Tensor small = ones({256}, device);
  std::vector<double> times, exposed, bare_times;
  pg->barrier();
  for (int s = 0; s < o.warmup + o.steps; ++s) {  // the same count on every rank: collectives must match
    const auto t0 = Clock::now();
    opt.zero_grad(/*set_to_none=*/false);
    nn::functional::cross_entropy(ddp->forward(x), y).backward();
    opt.step();
    sync(device);
    const double t_ddp = seconds_since(t0);
    const double e = ddp->reducer().last_finalize_seconds();
    const auto t1 = Clock::now();
    bare_opt.zero_grad(/*set_to_none=*/false);
    nn::functional::cross_entropy(bare->forward(x), y).backward();
    bare_opt.step();
    pg->all_reduce(small);
    sync(device);
    if (s < o.warmup) continue;
    times.push_back(t_ddp);
    exposed.push_back(e);
    bare_times.push_back(seconds_since(t1));
  }
  const auto& red = ddp->reducer();
  const int rounds = 10;
  pg->barrier();
  const auto t0 = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    for (size_t b = 0; b < red.num_buckets(); ++b) pg->all_reduce(red.bucket_buffer(0, b));
    sync(device);
  }
  const double comm = seconds_since(t0) / rounds;
  // The slowest rank sets the pace: the maximum over ranks of each figure.
  Tensor figures = tensor(std::vector<double>{median(times), mean(times), mean(exposed), comm, median(bare_times)});
  pg->all_reduce(figures, distributed::ReduceOp::Max);
  const std::vector<double> f = figures.to_vector<double>();
  Row r;
  r.devices = k;
  r.scaling = scaling;
  r.global_batch = scaling == "weak" ? o.batch * k : global;
  r.batch_per_device = scaling == "weak" ? o.batch : (global + k - 1) / k;
  r.step_ms = f[0] * 1e3;
  r.step_ms_mean = f[1] * 1e3;
  // At one rank too: there they are what the communication path itself costs (a world of one's
  // all-reduce still goes through the backend: the hand-off to the worker thread and back).
  r.exposed_ms = f[2] * 1e3;
  r.comm_ms = f[3] * 1e3;
  if (k > 1) r.comm_hidden = f[3] > 0 ? std::clamp(1.0 - f[2] / f[3], 0.0, 1.0) : 1.0;
  r.bare_sync_ms = f[4] * 1e3;
  return r;
}

// The all-reduce of this world on its own, over message sizes around the buckets' (for the link fit):
// back to back after a barrier, as nccl-tests and the OSU benchmarks time collectives; the slowest rank's
// mean.
json measure_link(Device device, const std::vector<double>& extra_sizes) {
  auto& pg = g_world;
  std::set<int64_t> sizes = {int64_t{16} << 10, int64_t{64} << 10, int64_t{256} << 10, int64_t{1} << 20,
                             int64_t{4} << 20};
  for (double s : extra_sizes) sizes.insert(static_cast<int64_t>(s) / 4 * 4);
  json samples = json::array();
  for (int64_t bytes : sizes) {
    Tensor t = ones({bytes / 4}, device);
    for (int i = 0; i < 3; ++i) pg->all_reduce(t);
    sync(device);
    const int reps = bytes >= (int64_t{1} << 20) ? 20 : 50;
    pg->barrier();
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) pg->all_reduce(t);
    sync(device);
    Tensor m = tensor(std::vector<double>{seconds_since(t0) / reps});
    pg->all_reduce(m, distributed::ReduceOp::Max);
    samples.push_back({{"p", pg->size()}, {"bytes", bytes}, {"seconds", m.to_vector<double>()[0]}});
  }
  return samples;
}

// Busy work on one core: a dependent multiply-add chain (no memory traffic), `n` links long; the result
// goes to a volatile so that the compiler keeps the loop.
volatile double g_spin_sink = 0;
void spin(int64_t n) {
  volatile double seed = 1.0;
  double x = seed;
  for (int64_t i = 0; i < n; ++i) x = x * 1.0000001 + 1e-9;
  g_spin_sink = x;
}

// Note [Host sharing probe]
// What ranks that share a host's cores cost each other, measured without the model: each rank times a
// burst of busy work alone (the others wait in a barrier), then all ranks run "burst, then a small
// all-reduce" together. For two burst lengths, together = slowdown * alone + delay + small all-reduce:
// slowdown is how much slower a rank computes beside the others (1 while each has a core; p / cores
// past that, if the scheduler shares evenly), delay what each synchronising step loses on top (a rank
// that was not running when the others arrived). GPUs have no such term (each rank its own device).
json measure_host_sharing() {
  auto& pg = g_world;
  const int p = pg->size();
  Tensor small = ones({1024});
  auto alone = [&](int64_t n) {
    double mine = 0;
    for (int r = 0; r < p; ++r) {
      pg->barrier();
      if (r != pg->rank()) continue;
      std::vector<double> t;
      for (int i = 0; i < 5; ++i) {
        const auto t0 = Clock::now();
        spin(n);
        t.push_back(seconds_since(t0));
      }
      mine = median(t);
    }
    Tensor m = tensor(std::vector<double>{mine});
    pg->all_reduce(m, distributed::ReduceOp::Max);
    return m.to_vector<double>()[0];
  };
  auto together = [&](int64_t n) {
    std::vector<double> t;
    pg->barrier();
    for (int i = 0; i < 15; ++i) {
      const auto t0 = Clock::now();
      spin(n);
      pg->all_reduce(small);
      if (i >= 3) t.push_back(seconds_since(t0));
    }
    Tensor m = tensor(std::vector<double>{median(t)});
    pg->all_reduce(m, distributed::ReduceOp::Max);
    return m.to_vector<double>()[0];
  };
  // Calibrate n to ~2 ms of work on rank 0, shared with all.
  Tensor n_t = tensor(std::vector<double>{0.0});
  if (pg->rank() == 0) {
    const auto t0 = Clock::now();
    spin(int64_t{1} << 22);
    n_t = tensor(std::vector<double>{static_cast<double>(int64_t{1} << 22) * 0.002 / seconds_since(t0)});
  }
  pg->broadcast(n_t, 0);
  const int64_t n1 = std::max<int64_t>(1000, static_cast<int64_t>(n_t.to_vector<double>()[0]));
  const int64_t n2 = 10 * n1;
  std::vector<double> ar;
  pg->barrier();
  for (int i = 0; i < 20; ++i) {
    const auto t0 = Clock::now();
    pg->all_reduce(small);
    ar.push_back(seconds_since(t0));
  }
  Tensor ar_t = tensor(std::vector<double>{median(ar)});
  pg->all_reduce(ar_t, distributed::ReduceOp::Max);
  const double a1 = alone(n1), a2 = alone(n2), t1 = together(n1), t2 = together(n2);
  const double small_ar = ar_t.to_vector<double>()[0];
  const double slowdown = std::max(1.0, (t2 - t1) / (a2 - a1));
  const double delay = std::max(0.0, t1 - slowdown * a1 - small_ar);
  return {{"p", p},
          {"slowdown", slowdown},
          {"delay_ms", delay * 1e3},
          {"burst_alone_ms", {a1 * 1e3, a2 * 1e3}},
          {"burst_together_ms", {t1 * 1e3, t2 * 1e3}},
          {"small_allreduce_ms", small_ar * 1e3}};
}

// ---- projection and validation --------------------------------------------------------------------------------

model::Cluster cluster_of(const Options& o) {
  model::Cluster c;
  c.per_node = o.per_node;
  c.intra = {o.intra_lat_us * 1e-6, o.intra_bw * 1e9};
  c.inter = {o.inter_lat_us * 1e-6, o.inter_bw * 1e9};
  return c;
}

const Profile* profile_for(const std::vector<Profile>& profiles, int64_t batch) {
  for (const Profile& p : profiles)
    if (p.batch == batch) return &p;
  return nullptr;
}

// Projection rows for p = 1, 2, 4, ..., max_gpus at the weak-scaling batch.
json project(const Profile& prof, double base_step, const Options& o) {
  const model::Cluster c = cluster_of(o);
  const model::StepProfile sp = to_model(prof, base_step);
  json rows = json::array();
  say("\nprojection (weak scaling, batch %lld per GPU; %d GPUs per node, within a node %.0f GB/s bus bandwidth and "
      "%.1f us per step, across nodes %.0f GB/s per GPU and %.1f us per step)\n",
      static_cast<long long>(prof.batch), c.per_node, o.intra_bw, o.intra_lat_us, o.inter_bw, o.inter_lat_us);
  say("%7s %6s %9s %10s %10s %8s %10s %11s %9s\n", "devices", "nodes", "step ms", "images/s", "efficiency",
      "comm ms", "exposed ms", "comm hidden", "algorithm");
  for (int p = 1; p <= o.max_gpus; p *= 2) {
    const model::StepEstimate e =
        model::estimate_step(sp, p, 1.0, [&](double n, int q) { return model::allreduce_cost(n, q, c); });
    const int nodes = (p + c.per_node - 1) / c.per_node;
    json r;
    r["devices"] = p;
    r["nodes"] = nodes;
    r["scaling"] = "weak";
    r["batch_per_device"] = prof.batch;
    r["global_batch"] = prof.batch * p;
    r["step_ms"] = e.step * 1e3;
    r["images_per_sec"] = static_cast<double>(prof.batch * p) / e.step;
    r["efficiency"] = base_step / e.step;
    r["comm_ms"] = e.comm * 1e3;
    r["exposed_ms"] = e.exposed * 1e3;
    r["comm_hidden"] = p > 1 ? json(e.hidden) : json(nullptr);
    r["algorithm"] = e.algorithm;
    r["projected"] = true;
    rows.push_back(r);
    say("%7d %6d %9.3f %10.0f %9.1f%% %8.4f %10.4f %11s %9s\n", p, nodes, e.step * 1e3,
        static_cast<double>(prof.batch * p) / e.step, 100 * base_step / e.step, e.comm * 1e3, e.exposed * 1e3,
        p > 1 ? (std::to_string(static_cast<int>(std::lround(100 * e.hidden))) + "%").c_str() : "-",
        e.algorithm.c_str());
  }
  return rows;
}

// Note [Ranks sharing cores]
// On GPUs every rank has a device of its own: compute does not slow down with p, and nothing is lost
// to scheduling. Ranks on one host's CPU share its cores, caches and memory bandwidth, and every DDP
// step ends in collectives that wait for the slowest rank. So the validation's compute at p ranks is
// the bare step measured in the same run, interleaved with the DDP steps (Note [Interleaved bare
// steps]), times DDP's own cost measured at one rank (Note [DDP's own cost]); the model adds what
// the gradient all-reduces leave exposed. What that leaves to check is the part that carries to GPUs:
// the all-reduce costs from the link fit, the buckets, and how much of them backward hides. Rows
// without the interleaved step (files from before it) fall back on the busy-work probe's slowdown and
// delay (Note [Host sharing probe]), or without that on a fair scheduler: slowdown
// max(1, p * threads / cores) and no delay.
struct HostSharing {
  double slowdown = 1, delay = 0;  // delay in seconds
  bool measured = false;
  std::string source = "fair share assumed";
};
HostSharing host_sharing(const json& doc, int p, int threads, int cores) {
  for (const json& h : doc.value("host_sharing", json::array()))
    if (h.at("p").get<int>() == p)
      return {h.at("slowdown").get<double>(), h.at("delay_ms").get<double>() / 1e3, true, "busy-work probe"};
  return {std::max(1.0, static_cast<double>(p) * threads / std::max(1, cores)), 0.0, false};
}

// The measured runs of `doc` (DDP on this machine) against the model with this machine's link figures.
json validate(const json& doc, const std::vector<Profile>& profiles, const Options& o) {
  json out;
  std::vector<model::Sample> samples;
  for (const json& s : doc.value("links", json::array()))
    samples.push_back({s.at("p").get<int>(), s.at("bytes").get<double>(), s.at("seconds").get<double>()});
  model::Link link = model::fit_ring_link(samples);
  std::string link_source = "fit of the measured all-reduces (" + std::to_string(samples.size()) + " samples)";
  if (o.link_alpha_us >= 0 && o.link_bw > 0) {
    link = {o.link_alpha_us * 1e-6, o.link_bw * 1e9};
    link_source = "given (--link-alpha-us, --link-bw)";
  }
  if (link.busbw <= 1) {
    say("validation: no all-reduce measurements in the input (run ember_scaling --ddp at 2+ ranks)\n");
    return out;
  }
  const json& mach = doc.at("machine");
  const int cores = o.cores > 0 ? o.cores : mach.value("cores", hardware_cores());
  const int threads = doc.value("threads_per_rank", 1);
  say("\nvalidation on this machine (%s, %d cores, %d thread(s) per rank): link alpha %.1f us per step, bus bandwidth "
      "%.2f GB/s (%s)\n",
      mach.value("cpu", "?").c_str(), cores, threads, link.alpha * 1e6, link.busbw / 1e9, link_source.c_str());
  json fit_rows = json::array();
  for (const model::Sample& s : samples) {
    const double pred = model::ring_cost(s.bytes, s.p, link);
    fit_rows.push_back({{"p", s.p}, {"bytes", s.bytes}, {"measured_ms", s.seconds * 1e3}, {"fit_ms", pred * 1e3}});
  }
  out["link"] = {{"alpha_us", link.alpha * 1e6}, {"busbw_GBps", link.busbw / 1e9}, {"source", link_source},
                 {"samples", fit_rows}};
  std::vector<Row> rows;
  for (const json& r : doc.at("results")) rows.push_back(row_from(r));
  auto measured = [&](int k, const std::string& kind) -> const Row* {
    for (const Row& r : rows)
      if (r.devices == k && r.scaling == kind) return &r;
    return nullptr;
  };
  // Note [DDP's own cost]
  // DDP's own cost (gradient hooks, the copies into the buckets and back, the hand-off to the MPI worker
  // at the final wait) comes from the one-rank run of the same kind: its DDP step over the bare step
  // interleaved with it, as a factor on the bare step at p ranks. Files from before the interleaved
  // steps: the one-rank DDP step over the bare profile's step, on the profile's step.
  const Row* weak1 = measured(1, "weak");
  const Profile* weak_prof = weak1 ? profile_for(profiles, weak1->batch_per_device) : nullptr;
  const double old_wrapper = weak1 && weak_prof && weak_prof->step > 0 ? weak1->step_ms / 1e3 / weak_prof->step : 1.0;
  auto own_cost = [&](const Row& r) -> std::optional<double> {
    const Row* one = measured(1, r.scaling);
    if (!one || !one->bare_sync_ms || !r.bare_sync_ms || *one->bare_sync_ms <= 0) return std::nullopt;
    return one->step_ms / *one->bare_sync_ms;
  };
  say("DDP's own cost at one rank (Note [DDP's own cost]):");
  for (const char* kind : {"weak", "strong"}) {
    const Row* one = measured(1, kind);
    if (one && one->bare_sync_ms)
      say(" %s (batch %lld) x%.3f over the interleaved bare step;", kind, static_cast<long long>(one->batch_per_device),
          one->step_ms / *one->bare_sync_ms);
  }
  say("\n");
  say("%-7s %7s %9s %12s %9s %13s %8s %15s %16s %s\n", "scaling", "devices", "batch/dev", "measured ms", "bare ms",
      "projected ms", "error", "measured hidden", "projected hidden", "verdict");
  json vrows = json::array();
  bool all_ok = true;
  int checked = 0;
  for (const Row& r : rows) {
    const Profile* prof = profile_for(profiles, r.batch_per_device);
    if (!prof) continue;
    const std::optional<double> own = own_cost(r);
    HostSharing h;
    double base = r.step_ms / 1e3;  // one rank: the measured step
    if (r.devices > 1 && own) {
      // Note [Ranks sharing cores]: compute = the interleaved bare step x DDP's own cost, written as the
      // profile's step (its bucket times) slowed by the factor that makes it so.
      h.slowdown = *r.bare_sync_ms / 1e3 / prof->step;
      h.measured = true;
      h.source = "interleaved bare step";
      base = *r.bare_sync_ms / 1e3 * *own / h.slowdown;
    } else if (r.devices > 1) {
      h = host_sharing(doc, r.devices, threads, cores);
      base = prof->step * old_wrapper;
    }
    model::StepEstimate e = model::estimate_step(
        to_model(*prof, base), r.devices, h.slowdown,
        [&](double n, int p) { return model::AllReduceCost{model::ring_cost(n, p, link), "ring"}; });
    e.step += h.delay;
    const double err = e.step / (r.step_ms / 1e3) - 1.0;
    const bool ok = std::abs(err) <= o.tolerance;
    all_ok = all_ok && ok;
    ++checked;
    char mh[16] = "-", ph[16] = "-", bare[16] = "-";
    if (r.comm_hidden) std::snprintf(mh, sizeof(mh), "%.0f%%", 100 * *r.comm_hidden);
    if (r.devices > 1) std::snprintf(ph, sizeof(ph), "%.0f%%", 100 * e.hidden);
    if (r.bare_sync_ms) std::snprintf(bare, sizeof(bare), "%.2f", *r.bare_sync_ms);
    say("%-7s %7d %9lld %12.2f %9s %13.2f %+7.1f%% %15s %16s %s\n", r.scaling.c_str(), r.devices,
        static_cast<long long>(r.batch_per_device), r.step_ms, bare, e.step * 1e3, 100 * err, mh, ph,
        ok ? "within tolerance" : "OUTSIDE tolerance");
    vrows.push_back({{"devices", r.devices},
                     {"scaling", r.scaling},
                     {"batch_per_device", r.batch_per_device},
                     {"measured_step_ms", r.step_ms},
                     {"bare_sync_ms", r.bare_sync_ms ? json(*r.bare_sync_ms) : json(nullptr)},
                     {"projected_step_ms", e.step * 1e3},
                     {"error", err},
                     {"measured_comm_hidden", r.comm_hidden ? json(*r.comm_hidden) : json(nullptr)},
                     {"projected_comm_hidden", r.devices > 1 ? json(e.hidden) : json(nullptr)},
                     {"slowdown", h.slowdown},
                     {"ddp_own_cost", own ? json(*own) : json(nullptr)},
                     {"sync_delay_ms", h.delay * 1e3},
                     {"host_sharing", r.devices > 1 ? h.source : "-"},
                     {"within_tolerance", ok}});
  }
  say("validation: %s: the model reproduces %d measured step time(s) %s %.0f%%\n",
      checked == 0 ? "NOTHING TO CHECK" : all_ok ? "PASSED" : "FAILED", checked,
      all_ok ? "within" : "NOT all within", 100 * o.tolerance);
  out["rows"] = vrows;
  out["tolerance"] = o.tolerance;
  out["passed"] = checked > 0 && all_ok;
  out["cores"] = cores;
  out["threads_per_rank"] = threads;
  return out;
}

// ---- the modes ----------------------------------------------------------------------------------------------------

std::vector<Device> parse_devices(const std::string& list) {
  std::vector<Device> out;
  if (list == "cuda") {
    for (int i = 0; i < cuda::device_count(); ++i) out.push_back(Device::cuda(i));
    return out;
  }
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(Device(item));
  return out;
}

std::vector<std::string> scalings(const Options& o) {
  if (o.scaling == "weak") return {"weak"};
  if (o.scaling == "strong") return {"strong"};
  return {"weak", "strong"};
}

json header(const Options& o, const std::string& mode, const std::string& kind) {
  json doc;
  doc["model"] = o.model;
  doc["device_kind"] = kind;
  doc["mode"] = mode;
  doc["batch_size"] = o.batch;
  doc["global_batch"] = o.global_batch;
  doc["steps"] = o.steps;
  doc["warmup"] = o.warmup;
  doc["threads_per_rank"] = omp_get_max_threads();
  doc["machine"] = machine_json(o);
  return doc;
}

void write_json(const json& doc, const std::string& path) {
  if (path.empty() || !is_root()) return;
  std::ofstream f(path);
  f << doc.dump(1) << "\n";
  if (!f) throw Error("ember_scaling: cannot write " + path);
  say("wrote %s\n", path.c_str());
}

json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error("ember_scaling: cannot read " + path);
  return json::parse(f);
}

int run_dp_mode(Options& o) {
  const std::vector<Device> devices = parse_devices(o.devices.empty() ? "cpu:0,cpu:1,cpu:2" : o.devices);
  if (devices.empty()) throw Error("ember_scaling: --devices is empty");
  const int K = static_cast<int>(devices.size());
  if (o.global_batch <= 0) o.global_batch = o.batch * K;
  json doc = header(o, "dp", device_kind(devices[0]) + (devices[0].is_cuda() ? "" : " (logical devices, shared cores)"));
  say("ember_scaling: %s, DataParallel over %s, %d steps (+%d warm-up), weak: batch %lld per device, strong: "
      "global batch %lld\n",
      o.model.c_str(), o.devices.c_str(), o.steps, o.warmup, static_cast<long long>(o.batch),
      static_cast<long long>(o.global_batch));
  if (!devices[0].is_cuda())
    say("note: logical CPU devices share this machine's %d cores: efficiency here measures DataParallel's overhead "
        "and the cores' sharing, not a speed-up; their all-reduce runs inline in backward, so no hidden fraction\n",
        hardware_cores());
  std::vector<Row> rows;
  for (int k = 1; k <= K; ++k) {
    const std::vector<Device> sub(devices.begin(), devices.begin() + k);
    for (const std::string& kind : scalings(o)) {
      const int64_t global = kind == "weak" ? o.batch * k : o.global_batch;
      rows.push_back(with_model(o.model, [&]<class M>() { return run_dp<M>(sub, global, kind, o); }));
    }
  }
  fill_efficiency(rows);
  print_rows(rows);
  const Profile prof = with_model(o.model, [&]<class M>() { return measure_profile<M>(devices[0], o.batch, o); });
  json results = json::array();
  for (const Row& r : rows) results.push_back(row_json(r));
  doc["results"] = results;
  doc["profiles"] = json::array({profile_json(prof)});
  write_json(doc, o.json_path);
  return 0;
}

int run_ddp_mode(Options& o) {
  const int k = g_world->size();
  const Device device = o.devices.rfind("cuda", 0) == 0 ? g_world->cuda_device() : Device::cpu();
  const int K = std::max(o.max_devices, k);
  if (o.global_batch <= 0) o.global_batch = o.batch * K;
  json doc = header(o, "ddp", device_kind(device));
  doc["world_size"] = k;
  say("ember_scaling: %s, DDP on %d rank(s) (%s), %d steps (+%d warm-up), weak: batch %lld per rank, strong: global "
      "batch %lld, %d thread(s) per rank\n",
      o.model.c_str(), k, device.str().c_str(), o.steps, o.warmup, static_cast<long long>(o.batch),
      static_cast<long long>(o.global_batch), omp_get_max_threads());
  std::vector<Row> rows;
  for (const std::string& kind : scalings(o)) {
    const int64_t global = kind == "weak" ? o.batch * k : o.global_batch;
    rows.push_back(with_model(o.model, [&]<class M>() { return run_ddp<M>(device, global, kind, o); }));
  }
  if (k == 1) fill_efficiency(rows);
  print_rows(rows);
  json profiles = json::array();
  if (k == 1) {
    // The one-device step of every per-device batch the runs up to K ranks use, for the projection.
    std::set<int64_t> batches = {o.batch};
    for (int j = 1; j <= K; ++j) batches.insert((o.global_batch + j - 1) / j);
    for (int64_t b : batches) {
      const Profile p = with_model(o.model, [&]<class M>() { return measure_profile<M>(device, b, o); });
      say("profile: batch %lld: forward %.2f ms, backward %.2f ms, optimizer %.2f ms, step %.2f ms, %zu bucket(s)\n",
          static_cast<long long>(b), p.forward * 1e3, p.backward * 1e3, p.optimizer * 1e3, p.step * 1e3,
          p.buckets.size());
      profiles.push_back(profile_json(p));
    }
  } else {
    std::vector<double> sizes;
    const Profile p = with_model(o.model, [&]<class M>() {
      Options quick = o;
      quick.steps = 1;
      quick.warmup = 0;
      return measure_profile<M>(device, o.batch, quick);
    });
    for (const auto& b : p.buckets) sizes.push_back(b.bytes);
    doc["links"] = measure_link(device, sizes);
    if (!device.is_cuda()) {
      doc["host_sharing"] = json::array({measure_host_sharing()});
      const json& h = doc["host_sharing"][0];
      say("host sharing (Note [Host sharing probe]): %d ranks compute x%.2f slower than alone, +%.2f ms per "
          "synchronising step\n",
          k, h["slowdown"].get<double>(), h["delay_ms"].get<double>());
    }
  }
  json results = json::array();
  for (const Row& r : rows) results.push_back(row_json(r));
  doc["results"] = results;
  doc["profiles"] = profiles;
  write_json(doc, o.json_path);
  return 0;
}

int run_merge(Options& o) {
  json out;
  std::vector<Row> rows;
  json profiles = json::array(), links = json::array(), sharing = json::array();
  for (const std::string& path : o.merge) {
    const json doc = read_json(path);
    if (out.empty()) {
      out = doc;
      out.erase("results");
      out.erase("profiles");
      out.erase("links");
      out.erase("host_sharing");
      out.erase("world_size");
    }
    for (const json& r : doc.at("results")) rows.push_back(row_from(r));
    for (const json& p : doc.value("profiles", json::array())) profiles.push_back(p);
    for (const json& l : doc.value("links", json::array())) links.push_back(l);
    for (const json& h : doc.value("host_sharing", json::array())) sharing.push_back(h);
  }
  // Repeated runs of one configuration (scaling.sh REPEATS=n) become one row: the run with the median
  // step, with the interleaved bare step of that same run (Note [Interleaved bare steps]).
  std::map<std::pair<std::string, int>, std::vector<Row>> groups;
  for (const Row& r : rows) groups[{r.scaling, r.devices}].push_back(r);
  rows.clear();
  for (auto& [key, g] : groups) {
    std::sort(g.begin(), g.end(), [](const Row& a, const Row& b) { return a.step_ms < b.step_ms; });
    rows.push_back(g[g.size() / 2]);
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.scaling != b.scaling ? a.scaling > b.scaling : a.devices < b.devices;
  });
  fill_efficiency(rows);
  // Profiles of one batch from repeated runs: the one with the median step.
  std::map<int64_t, std::vector<json>> by_batch;
  for (const json& p : profiles) by_batch[p.at("batch").get<int64_t>()].push_back(p);
  profiles = json::array();
  for (auto& [batch, g] : by_batch) {
    std::sort(g.begin(), g.end(), [](const json& a, const json& b) { return a.at("step_ms") < b.at("step_ms"); });
    profiles.push_back(g[g.size() / 2]);
  }
  // Host-sharing probes of one rank count: the median slowdown and delay.
  std::map<int, std::vector<json>> by_p;
  for (const json& h : sharing) by_p[h.at("p").get<int>()].push_back(h);
  sharing = json::array();
  for (auto& [p, g] : by_p) {
    std::vector<double> slow, delay;
    for (const json& h : g) {
      slow.push_back(h.at("slowdown"));
      delay.push_back(h.at("delay_ms"));
    }
    json h = g[0];
    h["slowdown"] = median(slow);
    h["delay_ms"] = median(delay);
    h["runs"] = g.size();
    sharing.push_back(h);
  }
  say("ember_scaling: %s, %s on %s, %zu run(s) merged\n", out.value("model", "?").c_str(),
      out.value("mode", "?").c_str(), out.value("device_kind", "?").c_str(), o.merge.size());
  print_rows(rows);
  json results = json::array();
  for (const Row& r : rows) results.push_back(row_json(r));
  out["results"] = results;
  out["profiles"] = profiles;
  out["links"] = links;
  out["host_sharing"] = sharing;
  write_json(out, o.json_path);
  return 0;
}

int run_project(Options& o) {
  json doc;
  std::vector<Profile> profiles;
  double base = 0;
  int64_t batch = o.batch;
  if (!o.from.empty()) {
    doc = read_json(o.from);
    o.model = doc.value("model", o.model);
    batch = doc.value("batch_size", o.batch);
    for (const json& p : doc.value("profiles", json::array())) profiles.push_back(profile_from(p));
    for (const json& r : doc.value("results", json::array()))
      if (r.at("devices") == 1 && r.at("scaling") == "weak") base = r.at("step_ms").get<double>() / 1e3;
  } else {
    const std::vector<Device> devices = parse_devices(o.devices.empty() ? "cpu:0" : o.devices);
    doc = header(o, "measured", device_kind(devices[0]));
    say("ember_scaling: measuring one %s step of %s at batch %lld (%d steps)\n", devices[0].str().c_str(),
        o.model.c_str(), static_cast<long long>(o.batch), o.steps);
    profiles.push_back(with_model(o.model, [&]<class M>() { return measure_profile<M>(devices[0], o.batch, o); }));
  }
  const Profile* prof = profile_for(profiles, batch);
  if (!prof) throw Error("ember_scaling --project: no one-device profile at batch " + std::to_string(batch) + " in " + o.from);
  if (base <= 0) base = prof->step;
  say("one-device step (measured, %s, batch %lld): %.3f ms; forward %.3f, backward %.3f, optimizer %.3f ms; "
      "gradients %.2f MB in %zu bucket(s):",
      doc.value("device_kind", "?").c_str(), static_cast<long long>(batch), base * 1e3, prof->forward * 1e3,
      prof->backward * 1e3, prof->optimizer * 1e3, to_model(*prof, base).grad_bytes() / 1e6, prof->buckets.size());
  for (const auto& b : prof->buckets) say(" [%.2f MB ready at %.3f ms]", b.bytes / 1e6, b.ready * 1e3);
  say("\n");
  json out;
  out["model"] = o.model;
  out["device_kind"] = doc.value("device_kind", "?");
  out["mode"] = "projection";
  out["source"] = o.from.empty() ? "measured now" : o.from;
  out["measured_machine"] = doc.value("machine", json::object());
  out["machine"] = machine_json(o);
  out["cluster"] = {{"gpus_per_node", o.per_node},
                    {"intra_busbw_GBps", o.intra_bw},
                    {"intra_latency_us", o.intra_lat_us},
                    {"inter_busbw_GBps_per_gpu", o.inter_bw},
                    {"inter_latency_us", o.inter_lat_us}};
  out["profile"] = profile_json(*prof);
  out["base_step_ms"] = base * 1e3;
  if (doc.contains("results") && doc.value("mode", "") == "ddp") {
    out["validation"] = validate(doc, profiles, o);
    json measured = json::array();
    for (const json& r : doc.at("results")) {
      json m = r;
      m["projected"] = false;
      measured.push_back(m);
    }
    out["measured"] = measured;
  }
  out["results"] = project(*prof, base, o);
  say("projected figures come from the model (bench/README.md), not from runs on such machines; the one-device step "
      "is the measured one above\n");
  write_json(out, o.json_path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ember_scaling: training throughput across device counts, and its projection to 1024 GPUs"};
  app.add_option("--model", o.model, "mlp or cnn (the Fashion-MNIST models)")->check(CLI::IsMember({"mlp", "cnn"}));
  app.add_option("--batch-size", o.batch, "batch per device (weak scaling)")->check(CLI::PositiveNumber);
  app.add_option("--global-batch", o.global_batch, "global batch of strong scaling (default: batch-size x devices)");
  app.add_option("--steps", o.steps, "timed steps per configuration (every rank runs exactly this many)")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--devices", o.devices,
                 "DataParallel: devices, e.g. cpu:0,cpu:1,cpu:2 or cuda:0,cuda:1 or cuda (all); runs 1..k of them. "
                 "--ddp: cpu (default) or cuda");
  app.add_flag("--ddp", o.ddp, "DistributedDataParallel, one rank per device: run under mpirun -np k");
  app.add_option("--max-devices", o.max_devices, "--ddp: the largest rank count of the series (global batch, profiles)");
  app.add_option("--scaling", o.scaling, "weak, strong or both")->check(CLI::IsMember({"weak", "strong", "both"}));
  app.add_option("--json", o.json_path, "write the results here");
  app.add_option("--merge", o.merge, "merge these --ddp result files (one per rank count) and compute efficiencies");
  app.add_flag("--project", o.project, "project per-GPU efficiency to --max-gpus from a one-device step");
  app.add_option("--from", o.from, "--project: a result file with a profile (a merged --ddp file also validates)");
  app.add_option("--max-gpus", o.max_gpus, "--project: largest GPU count")->check(CLI::PositiveNumber);
  app.add_option("--gpus-per-node", o.per_node, "--project: GPUs per node")->check(CLI::PositiveNumber);
  app.add_option("--intra-bw", o.intra_bw, "--project: all-reduce bus bandwidth within a node, GB/s");
  app.add_option("--inter-bw", o.inter_bw, "--project: network bandwidth per GPU across nodes, GB/s");
  app.add_option("--intra-latency-us", o.intra_lat_us, "--project: latency of one collective step within a node");
  app.add_option("--inter-latency-us", o.inter_lat_us, "--project: latency of one collective step across nodes");
  app.add_option("--link-alpha-us", o.link_alpha_us, "validation: this machine's all-reduce step latency (else fitted)");
  app.add_option("--link-bw", o.link_bw, "validation: this machine's all-reduce bus bandwidth, GB/s (else fitted)");
  app.add_option("--cores", o.cores, "validation: cores the ranks share (default: this machine's)");
  app.add_option("--tolerance", o.tolerance, "validation: allowed relative error (default 0.15)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (!o.merge.empty()) return run_merge(o);
    if (o.project) return run_project(o);
    if (o.ddp) {
      g_world = distributed::init_process_group();
      const int rc = run_ddp_mode(o);
      g_world->barrier();
      return rc;
    }
    return run_dp_mode(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ember_scaling: %s\n", e.what());
    if (g_world && g_world->size() > 1) g_world->abort(e.what());
    return 1;
  }
}
