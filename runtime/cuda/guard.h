// DeviceGuard: RAII that makes a device current for the calling thread and restores the previous one.
#pragma once

#include "runtime/device.h"

namespace ember {

// For a CUDA device: cudaSetDevice for the scope. For a CPU device: nothing (and no CUDA call),
// so ops can guard unconditionally.
class DeviceGuard {
 public:
  explicit DeviceGuard(Device device);
  explicit DeviceGuard(int cuda_index) : DeviceGuard(Device::cuda(cuda_index)) {}
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};

}  // namespace ember
