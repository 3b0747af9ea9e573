// Device discovery and selection, the TF32 switch and DeviceGuard for the CUDA build.
#include <cuda_runtime_api.h>

#include <atomic>
#include <string>

#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/internal.h"
#include "runtime/error.h"

namespace ember::cuda {

namespace {

struct DeviceInfo {
  int count = 0;
  cudaError_t error = cudaSuccess;  // why count is 0, when cudaGetDeviceCount failed
};

// Note [Device count is cached]
// The GPU set a process sees is fixed when the runtime initialises (CUDA_VISIBLE_DEVICES is read
// once), so cudaGetDeviceCount is asked once; every DeviceGuard and check_device then costs a
// compare. A machine without a driver or a GPU is not an error here: is_available() must answer
// false there, and the reason is kept for the message of the first call that needs a device.
const DeviceInfo& device_info() {
  static const DeviceInfo info = [] {
    DeviceInfo d;
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaSuccess) {
      d.count = n;
      return d;
    }
    // Clear the error so that the next CUDA check does not report it (a no-op when it is sticky,
    // as cudaErrorInsufficientDriver is: then no CUDA call can succeed anyway).
    (void)cudaGetLastError();
    d.error = err;
    if (err != cudaErrorNoDevice && err != cudaErrorInsufficientDriver) {
      ember::detail::log_warning(ember::detail::str_cat("CUDA initialisation failed, so no CUDA device can be used: ",
                                                        cudaGetErrorString(err), " (", cudaGetErrorName(err), ")"));
    }
    return d;
  }();
  return info;
}

std::atomic<bool> g_allow_tf32{false};

std::string prefix(Device device, const char* op) {
  return op != nullptr && op[0] != '\0' ? ember::detail::str_cat(op, ": ", device, ": ")
                                        : ember::detail::str_cat(device, ": ");
}

[[noreturn]] void throw_no_device(const char* op) {
  EMBER_THROW(op, ": no CUDA device is available (", detail::no_device_reason(), ")");
}

}  // namespace

namespace detail {

std::string no_device_reason() {
  const DeviceInfo& info = device_info();
  if (info.error == cudaSuccess) return "cudaGetDeviceCount found 0 devices";
  return ember::detail::str_cat("cudaGetDeviceCount: ", cudaGetErrorString(info.error));
}

void throw_bad_device(Device device, const char* op) {
  if (!device.is_cuda()) EMBER_THROW(prefix(device, op), "expected a CUDA device");
  const int count = device_info().count;
  if (count == 0) EMBER_THROW(prefix(device, op), "no CUDA device is available (", no_device_reason(), ")");
  EMBER_THROW(prefix(device, op), "CUDA device index ", device.index(), " is out of range: this machine has ", count,
              " CUDA device(s)");
}

int resolve_device(int device, const char* op) {
  if (device == -1) {
    if (device_info().count == 0) throw_no_device(op);
    return current_device();
  }
  if (device < 0 || device >= device_info().count) [[unlikely]] {
    if (device < 0 || device >= kMaxCudaDevices) {
      EMBER_THROW(op, ": invalid CUDA device index ", device,
                  ": expected -1 (the current device) or a device index >= 0");
    }
    throw_bad_device(Device::cuda(device), op);
  }
  return device;
}

}  // namespace detail

bool is_compiled() { return true; }

bool is_available() { return device_info().count > 0; }

int device_count() { return device_info().count; }

DeviceProperties get_device_properties(int device) {
  const int index = detail::resolve_device(device, "get_device_properties");
  cudaDeviceProp prop{};
  EMBER_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return DeviceProperties{prop.name, prop.totalGlobalMem, prop.multiProcessorCount, prop.major, prop.minor};
}

void check_device(Device device, const char* op) {
  if (device.is_cuda() && device.index() < device_info().count) [[likely]]
    return;
  detail::throw_bad_device(device, op);
}

int current_device() {
  if (device_info().count == 0) throw_no_device("current_device");
  int device = -1;
  EMBER_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

void set_device(int device) {
  const int index = detail::resolve_device(device, "set_device");
  EMBER_CUDA_CHECK(cudaSetDevice(index));
}

void synchronize(int device) {
  if (device == -1) {
    const int count = device_info().count;
    if (count == 0) throw_no_device("synchronize");
    for (int d = 0; d < count; ++d) {
      DeviceGuard guard(d);
      EMBER_CUDA_CHECK(cudaDeviceSynchronize());
    }
    return;
  }
  DeviceGuard guard(detail::resolve_device(device, "synchronize"));
  EMBER_CUDA_CHECK(cudaDeviceSynchronize());
}

// Relaxed is enough: the flag is a setting read when a kernel is configured, not a synchronisation
// point between threads.
void set_allow_tf32(bool allow) { g_allow_tf32.store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

}  // namespace ember::cuda

namespace ember {

DeviceGuard::DeviceGuard(Device device) {
  if (!device.is_cuda()) return;  // CPU: ops guard unconditionally, so this must cost nothing
  cuda::check_device(device);
  int current = -1;
  EMBER_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device.index()) {
    EMBER_CUDA_CHECK(cudaSetDevice(device.index()));
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) EMBER_CUDA_WARN(cudaSetDevice(previous_));
}

}  // namespace ember
