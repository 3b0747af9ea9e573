// Helpers shared by the CUDA runtime files (device.cpp, stream.cpp, memory.cpp); not a public header.
#pragma once

#include <string>

#include "runtime/device.h"

namespace ember::cuda::detail {

// `device` as a checked CUDA device index; -1 means the calling thread's current device. Throws
// ember::Error prefixed with `op` when there is no such device (or no device at all).
int resolve_device(int device, const char* op);

// Why no CUDA device can be used, e.g. "cudaGetDeviceCount: no CUDA-capable device is detected".
std::string no_device_reason();

// Throws the error check_device would give for `device` (never returns); cold path of the checks.
[[noreturn]] void throw_bad_device(Device device, const char* op);

}  // namespace ember::cuda::detail
