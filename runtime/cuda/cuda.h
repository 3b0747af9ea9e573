// The public CUDA runtime API of ember: availability, devices, synchronisation, memory statistics.
// No CUDA header is needed to include this; in a CPU-only build every call that needs a GPU throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/device.h"

namespace ember::cuda {

// Whether ember was built with its CUDA backend.
bool is_compiled();
// Whether at least one GPU can be used (false in a CPU-only build or without a driver/GPU).
bool is_available();
int device_count();
// Waits for all work on `device` (-1: every device) to finish.
void synchronize(int device = -1);

// The calling thread's current CUDA device (as cudaGetDevice); DeviceGuard changes it.
int current_device();
void set_device(int device);

// What DataParallel's balance check and the benchmarks need to know of a GPU.
struct DeviceProperties {
  std::string name;
  size_t total_memory = 0;        // bytes
  int multiprocessor_count = 0;
  int major = 0, minor = 0;       // compute capability
};
DeviceProperties get_device_properties(int device = -1);

// Throws ember::Error unless `device` is a usable CUDA device: names the device, the GPU count
// and whether ember was built with CUDA. `op` prefixes the message.
void check_device(Device device, const char* op = nullptr);

// ---- caching allocator (see runtime/caching_allocator.h) --------------------------------------
// Releases every cached, unused block back to the driver (device -1: all devices).
void empty_cache(int device = -1);
size_t memory_allocated(int device = -1);      // bytes in live tensors
size_t memory_reserved(int device = -1);       // bytes held from cudaMalloc (live + cached)
size_t max_memory_allocated(int device = -1);  // peak of memory_allocated since the last reset
size_t max_memory_reserved(int device = -1);
void reset_peak_memory_stats(int device = -1);
// Number of real cudaMalloc / cudaFree calls the allocator made on `device`.
uint64_t num_device_mallocs(int device = -1);
uint64_t num_device_frees(int device = -1);
// Caps what the allocator may reserve on `device` (0: no cap beyond the GPU's memory).
void set_memory_limit(size_t bytes, int device = -1);
std::string memory_summary(int device = -1);

// TF32 tensor cores for float32 matmul (cuBLAS) and convolution (cuDNN). Off by default, as in PyTorch.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace ember::cuda
