// Communicator::get (a cache of communicators per device list), the tensor checks, and the CPU collectives.
#include "parallel/comm/communicator.h"

#include <cstdlib>
#include <map>
#include <mutex>

#include "kernels/cpu/loops.h"
#include "kernels/dispatch.h"
#include "kernels/ops.h"

namespace ember::parallel {

void Communicator::check_tensors(const char* op, const std::vector<Tensor>& tensors) const {
  EMBER_CHECK(tensors.size() == devices_.size(), op, ": got ", tensors.size(), " tensors for a communicator of ",
              devices_.size(), " devices");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    EMBER_CHECK(t.defined(), op, ": tensor ", i, " is undefined");
    EMBER_CHECK(t.device() == devices_[i], op, ": tensor ", i, " is on ", t.device(), " but the communicator expects ",
                devices_[i]);
    EMBER_CHECK(t.is_contiguous(), op, ": tensor ", i, " is not contiguous");
    EMBER_CHECK(t.dtype() == tensors[0].dtype(), op, ": tensor ", i, " has dtype ", t.dtype(), " but tensor 0 has ",
                tensors[0].dtype());
  }
}

void Communicator::check_same_sizes(const char* op, const std::vector<Tensor>& tensors) {
  for (size_t i = 1; i < tensors.size(); ++i)
    EMBER_CHECK(tensors[i].sizes() == tensors[0].sizes(), op, ": tensor ", i, " has shape ", tensors[i].sizes(),
                " but tensor 0 has ", tensors[0].sizes());
}

namespace {

// Logical CPU devices share host memory: collectives are plain loops over the buffers.
class CpuCommunicator final : public Communicator {
 public:
  explicit CpuCommunicator(std::vector<Device> devices) : Communicator(std::move(devices)) {}

  void all_reduce(const std::vector<Tensor>& tensors) override {
    check_tensors("all_reduce", tensors);
    check_same_sizes("all_reduce", tensors);
    sum_into(tensors, tensors[0]);
    for (size_t i = 1; i < tensors.size(); ++i) copy_raw(tensors[0], tensors[i]);
  }
  void broadcast(const std::vector<Tensor>& tensors, int root) override {
    check_tensors("broadcast", tensors);
    check_same_sizes("broadcast", tensors);
    check_root("broadcast", root);
    for (size_t i = 0; i < tensors.size(); ++i)
      if (static_cast<int>(i) != root) copy_raw(tensors[static_cast<size_t>(root)], tensors[i]);
  }
  void reduce(const std::vector<Tensor>& tensors, int root) override {
    check_tensors("reduce", tensors);
    check_same_sizes("reduce", tensors);
    check_root("reduce", root);
    sum_into(tensors, tensors[static_cast<size_t>(root)]);
  }
  void all_gather(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) override {
    check_tensors("all_gather", inputs);
    check_tensors("all_gather", outputs);
    check_same_sizes("all_gather", inputs);
    const size_t chunk = inputs[0].nbytes();
    for (const Tensor& out : outputs) {
      EMBER_CHECK(out.nbytes() == chunk * inputs.size(), "all_gather: each output must hold ", inputs.size(),
                  " inputs of ", chunk, " bytes; got ", out.nbytes(), " bytes");
      for (size_t j = 0; j < inputs.size(); ++j)
        std::memcpy(static_cast<char*>(out.raw_data()) + j * chunk, inputs[j].raw_data(), chunk);
    }
  }
  void barrier() override {}

 private:
  void check_root(const char* op, int root) const {
    EMBER_CHECK(root >= 0 && root < static_cast<int>(size()), op, ": root ", root, " is out of range for ", size(),
                " devices");
  }
  static void copy_raw(const Tensor& src, const Tensor& dst) {
    if (src.raw_data() != dst.raw_data()) std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
  }
  // out[k] = sum_j tensors[j][k], summed in device order (deterministic); `out` may be one of them.
  static void sum_into(const std::vector<Tensor>& tensors, const Tensor& out) {
    dispatch_numeric(out.dtype(), "all_reduce", [&](auto tag) {
      using T = typename decltype(tag)::type;
      std::vector<const T*> srcs;
      for (const Tensor& t : tensors) srcs.push_back(static_cast<const T*>(t.raw_data()));
      T* dst = static_cast<T*>(out.raw_data());
      cpu::parallel_for(out.numel(), cpu::kParallelGrain, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          T acc = srcs[0][k];
          for (size_t j = 1; j < srcs.size(); ++j) acc += srcs[j][k];
          dst[k] = acc;
        }
      });
    });
  }
};

}  // namespace

std::shared_ptr<Communicator> make_cpu_communicator(const std::vector<Device>& devices) {
  return std::make_shared<CpuCommunicator>(devices);
}

namespace {

struct CommunicatorCache {
  std::mutex mutex;
  std::map<std::vector<int>, std::shared_ptr<Communicator>> entries;
  std::chrono::milliseconds timeout{0};
  bool exit_hook_installed = false;
};

// Leaked on purpose: the cache must still exist when the exit hook runs, whatever the order of static
// destructors; the hook empties it.
CommunicatorCache& cache() {
  static auto* c = new CommunicatorCache();
  return *c;
}

std::chrono::milliseconds default_timeout() {
  if (const char* env = std::getenv("EMBER_COLLECTIVE_TIMEOUT_MS")) {
    const long long ms = std::atoll(env);
    if (ms > 0) return std::chrono::milliseconds(ms);
  }
  return std::chrono::seconds(300);
}

}  // namespace

std::chrono::milliseconds Communicator::collective_timeout() {
  CommunicatorCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.timeout.count() <= 0) c.timeout = default_timeout();
  return c.timeout;
}

void Communicator::set_collective_timeout(std::chrono::milliseconds timeout) {
  EMBER_CHECK(timeout.count() > 0, "set_collective_timeout: the timeout must be positive, got ", timeout.count(),
              " ms");
  CommunicatorCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.timeout = timeout;
  for (auto& [key, comm] : c.entries) comm->set_timeout(timeout);
}

void destroy_communicators() {
  std::map<std::vector<int>, std::shared_ptr<Communicator>> entries;
  {
    CommunicatorCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    entries.swap(c.entries);
  }
  // Runs from an exit hook too: nothing may escape (std::terminate).
  for (auto& [key, comm] : entries) {
    try {
      comm->shutdown();
    } catch (const std::exception& e) {
      detail::log_warning(std::string("destroy_communicators: ") + e.what());
    }
  }
}

std::shared_ptr<Communicator> Communicator::get(const std::vector<Device>& devices) {
  EMBER_CHECK(!devices.empty(), "Communicator: the device list is empty");
  for (size_t i = 0; i < devices.size(); ++i) {
    EMBER_CHECK(devices[i].type() == devices[0].type(), "Communicator: the devices mix CPU and CUDA (",
                devices[0], " and ", devices[i], ")");
    for (size_t j = 0; j < i; ++j)
      EMBER_CHECK(devices[i] != devices[j], "Communicator: device ", devices[i], " appears twice");
  }
  // NCCL communicators are expensive to create and must outlive every collective issued on them:
  // keep one per device list until destroy_communicators() (at the latest, at exit).
  const std::chrono::milliseconds timeout = collective_timeout();
  std::vector<int> key;
  for (const Device& d : devices) key.push_back(d.flat_index());
  CommunicatorCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.entries.find(key);
  if (it != c.entries.end()) return it->second;
  auto comm = devices[0].is_cuda() ? make_nccl_communicator(devices) : make_cpu_communicator(devices);
  comm->set_timeout(timeout);
  c.entries.emplace(key, comm);
  if (devices[0].is_cuda() && !c.exit_hook_installed) {
    // Registered after the CUDA runtime initialised (the communicator needed it), so it runs before
    // the runtime's own teardown: NCCL communicators are destroyed while CUDA still works.
    std::atexit([] { destroy_communicators(); });
    c.exit_hook_installed = true;
  }
  return comm;
}

}  // namespace ember::parallel
