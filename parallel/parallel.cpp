// scatter / gather / broadcast / all_reduce / replicate, and the per-device worker threads of run_on_devices.
#include "parallel/parallel.h"

#include <omp.h>

#include <algorithm>

#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "kernels/ops.h"
#include "parallel/comm/communicator.h"
#include "runtime/autograd/grad_mode.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"

namespace ember::parallel {

std::vector<int64_t> chunk_sizes(int64_t size, size_t n) {
  EMBER_CHECK(n > 0, "scatter: no devices given");
  if (size == 0) return {0};
  const int64_t chunks = std::min<int64_t>(size, static_cast<int64_t>(n));
  std::vector<int64_t> out(static_cast<size_t>(chunks), size / chunks);
  for (int64_t i = 0; i < size % chunks; ++i) ++out[static_cast<size_t>(i)];
  return out;
}

std::vector<Tensor> scatter(const Tensor& x, const std::vector<Device>& devices, int64_t dim) {
  EMBER_CHECK(x.defined(), "scatter: the input is undefined");
  EMBER_CHECK(x.dim() > 0, "scatter: cannot scatter a 0-d tensor (shape ", x.sizes(), ")");
  EMBER_CHECK(dim >= -x.dim() && dim < x.dim(), "scatter: dim ", dim, " does not exist in an input of shape ",
              x.sizes());
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  const std::vector<int64_t> sizes = chunk_sizes(x.size(d), devices.size());
  std::vector<Tensor> out;
  int64_t start = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    out.push_back(x.narrow(d, start, sizes[i]).to(devices[i]));
    start += sizes[i];
  }
  return out;
}

std::vector<Tensor> scatter(const Tensor& x, const std::vector<Device>& devices, int64_t dim,
                            const std::vector<int64_t>& sizes) {
  EMBER_CHECK(x.defined(), "scatter: the input is undefined");
  EMBER_CHECK(x.dim() > 0, "scatter: cannot scatter a 0-d tensor (shape ", x.sizes(), ")");
  EMBER_CHECK(dim >= -x.dim() && dim < x.dim(), "scatter: dim ", dim, " does not exist in an input of shape ",
              x.sizes());
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  EMBER_CHECK(!sizes.empty() && sizes.size() <= devices.size(), "scatter: ", sizes.size(), " chunk sizes for ",
              devices.size(), " devices");
  int64_t total = 0;
  for (int64_t c : sizes) {
    EMBER_CHECK(c > 0, "scatter: chunk sizes must be positive, got ", IntArrayRef(sizes));
    total += c;
  }
  EMBER_CHECK(total == x.size(d), "scatter: chunk sizes ", IntArrayRef(sizes), " sum to ", total, " but dim ", d,
              " of the input (shape ", x.sizes(), ") has ", x.size(d));
  std::vector<Tensor> out;
  int64_t start = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    out.push_back(x.narrow(d, start, sizes[i]).to(devices[i]));
    start += sizes[i];
  }
  return out;
}

std::vector<int64_t> scale_chunk_sizes(const std::vector<int64_t>& requested, int64_t size) {
  EMBER_CHECK(!requested.empty(), "chunk_sizes: no sizes given");
  int64_t total = 0;
  for (int64_t c : requested) {
    EMBER_CHECK(c > 0, "chunk_sizes: sizes must be positive, got ", IntArrayRef(requested));
    total += c;
  }
  if (total == size) return requested;
  std::vector<int64_t> out(requested.size());
  std::vector<std::pair<int64_t, size_t>> remainders;  // (remainder, index): largest first, then lower index
  int64_t given = 0;
  for (size_t i = 0; i < requested.size(); ++i) {
    out[i] = requested[i] * size / total;
    given += out[i];
    remainders.emplace_back(requested[i] * size % total, i);
  }
  std::sort(remainders.begin(), remainders.end(),
            [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  for (size_t j = 0; given < size; ++j, ++given) ++out[remainders[j % remainders.size()].second];
  for (int64_t c : out)
    if (c == 0) return {};
  return out;
}

std::optional<std::string> imbalance_warning(const std::vector<Device>& devices,
                                             const std::vector<cuda::DeviceProperties>& props) {
  EMBER_ASSERT(devices.size() == props.size(), devices.size(), " devices, ", props.size(), " properties");
  auto check = [&](auto value) -> std::optional<std::string> {
    size_t lo = 0, hi = 0;
    for (size_t i = 1; i < props.size(); ++i) {
      if (value(props[i]) < value(props[lo])) lo = i;
      if (value(props[i]) > value(props[hi])) hi = i;
    }
    if (static_cast<double>(value(props[lo])) < 0.75 * static_cast<double>(value(props[hi])))
      return detail::str_cat("DataParallel: there is an imbalance between your GPUs: ", devices[lo], " (",
                             props[lo].name, ") has less than 75% of the memory or multiprocessors of ", devices[hi],
                             " (", props[hi].name, "), and every step waits for the slowest replica. Leave ",
                             devices[lo], " out of device_ids, or give it a smaller share with set_chunk_sizes()");
    return std::nullopt;
  };
  if (auto w = check([](const cuda::DeviceProperties& p) { return p.total_memory; })) return w;
  return check([](const cuda::DeviceProperties& p) { return static_cast<size_t>(p.multiprocessor_count); });
}

void warn_if_imbalanced(const std::vector<Device>& devices) {
  if (devices.size() < 2 || !devices[0].is_cuda()) return;
  static std::once_flag warned;
  std::vector<cuda::DeviceProperties> props;
  for (const Device& d : devices) props.push_back(cuda::get_device_properties(d.index()));
  if (auto w = imbalance_warning(devices, props)) std::call_once(warned, [&] { detail::log_warning(*w); });
}

Tensor gather(const std::vector<Tensor>& tensors, Device device, int64_t dim) {
  EMBER_CHECK(!tensors.empty(), "gather: no tensors given");
  std::vector<Tensor> moved;
  bool zero_dim = true;
  for (const Tensor& t : tensors) {
    EMBER_CHECK(t.defined(), "gather: an output is undefined");
    zero_dim = zero_dim && t.dim() == 0;
    moved.push_back(t.to(device));
  }
  if (zero_dim) return stack(moved, 0);
  return cat(moved, dim);
}

std::vector<Tensor> broadcast(const Tensor& x, const std::vector<Device>& devices) {
  std::vector<Tensor> out;
  for (const Device& d : devices) out.push_back(x.to(d));
  return out;
}

void all_reduce(const std::vector<Tensor>& tensors) {
  EMBER_CHECK(!tensors.empty(), "all_reduce: no tensors given");
  std::vector<Device> devices;
  for (const Tensor& t : tensors) {
    EMBER_CHECK(t.defined(), "all_reduce: a tensor is undefined");
    devices.push_back(t.device());
  }
  Communicator::get(devices)->all_reduce(tensors);
}

std::vector<std::shared_ptr<nn::Module>> replicate(const std::shared_ptr<nn::Module>& module,
                                                   const std::vector<Device>& devices) {
  EMBER_CHECK(module != nullptr, "replicate: the module is null");
  std::vector<std::shared_ptr<nn::Module>> out;
  for (const Device& d : devices) out.push_back(module->clone(d));
  return out;
}

std::vector<Device> cuda_devices(const std::vector<int>& device_ids) {
  std::vector<Device> out;
  if (device_ids.empty()) {
    for (int i = 0; i < cuda::device_count(); ++i) out.push_back(Device::cuda(i));
    EMBER_CHECK(!out.empty(), "DataParallel: no device_ids given and no CUDA device is visible; pass a list of "
                "devices (e.g. {Device::cpu(0), Device::cpu(1)})");
    return out;
  }
  for (int id : device_ids) {
    EMBER_CHECK(id >= 0, "DataParallel: device id ", id, " is negative");
    out.push_back(Device::cuda(id));
  }
  return out;
}

void check_devices(const char* op, const std::vector<Device>& devices) {
  EMBER_CHECK(!devices.empty(), op, ": the device list is empty");
  for (size_t i = 0; i < devices.size(); ++i) {
    EMBER_CHECK(devices[i].type() == devices[0].type(), op, ": the device list mixes CPU and CUDA devices (",
                devices[0], " and ", devices[i], ")");
    for (size_t j = 0; j < i; ++j) EMBER_CHECK(devices[i] != devices[j], op, ": device ", devices[i], " appears twice");
    if (devices[i].is_cuda()) cuda::check_device(devices[i], op);
  }
}

namespace {

// One long-lived thread per device: replicas keep their thread (and its CUDA context and
// per-thread cuBLAS/cuDNN handles) from step to step.
class DeviceThreads {
 public:
  static DeviceThreads& instance() {
    static auto* threads = new DeviceThreads();  // leaked: workers may outlive static destruction
    return *threads;
  }

  void run(const Device& device, std::function<void()> job) {
    Worker& w = worker(device);
    {
      std::lock_guard<std::mutex> lock(w.mutex);
      w.jobs.push_back(std::move(job));
    }
    w.cv.notify_one();
  }

 private:
  struct Worker {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::function<void()>> jobs;
    std::thread thread;
  };

  Worker& worker(const Device& device) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = workers_[device.flat_index()];
    if (!slot) {
      slot = std::make_unique<Worker>();
      Worker* w = slot.get();
      w->thread = std::thread([w] {
        while (true) {
          std::function<void()> job;
          {
            std::unique_lock<std::mutex> lock(w->mutex);
            w->cv.wait(lock, [&] { return !w->jobs.empty(); });
            job = std::move(w->jobs.front());
            w->jobs.pop_front();
          }
          job();
        }
      });
      w->thread.detach();
    }
    return *slot;
  }

  std::mutex mutex_;
  std::map<int, std::unique_ptr<Worker>> workers_;
};

}  // namespace

void run_on_devices(const std::vector<Device>& devices, const std::function<void(size_t)>& task) {
  const size_t n = devices.size();
  if (n == 0) return;
  const bool grad_enabled = GradMode::is_enabled();
  // Logical CPU devices share the cores: give each task its share of OpenMP threads.
  const int omp_threads = devices[0].is_cpu() ? std::max(1, omp_get_max_threads() / static_cast<int>(n)) : 0;
  std::mutex mutex;
  std::condition_variable cv;
  size_t remaining = n;
  std::vector<std::exception_ptr> errors(n);
  for (size_t i = 0; i < n; ++i) {
    DeviceThreads::instance().run(devices[i], [&, i] {
      try {
        AutoGradMode mode(grad_enabled);
        DeviceGuard guard(devices[i]);
        if (omp_threads > 0) omp_set_num_threads(omp_threads);
        task(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex);
      if (--remaining == 0) cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [&] { return remaining == 0; });
  }
  for (size_t i = 0; i < n; ++i) {
    if (!errors[i]) continue;
    try {
      std::rethrow_exception(errors[i]);
    } catch (const Error& e) {
      EMBER_THROW("on ", devices[i], ": ", e.what());
    }
  }
}

}  // namespace ember::parallel
