// DataPtr (owning pointer with a deleter and a device) and the allocators that make them.
#pragma once

#include <cstddef>
#include <utility>

#include "runtime/device.h"

namespace ember {

// Owns one allocation: frees it through `deleter(ctx, ptr)` when destroyed. Move-only.
class DataPtr {
 public:
  using Deleter = void (*)(void* ctx, void* ptr);

  DataPtr() = default;
  DataPtr(void* ptr, void* ctx, Deleter deleter, Device device)
      : ptr_(ptr), ctx_(ctx), deleter_(deleter), device_(device) {}
  DataPtr(const DataPtr&) = delete;
  DataPtr& operator=(const DataPtr&) = delete;
  DataPtr(DataPtr&& o) noexcept { swap(o); }
  DataPtr& operator=(DataPtr&& o) noexcept {
    DataPtr tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~DataPtr() { reset(); }

  void reset() {
    if (deleter_) deleter_(ctx_, ptr_);
    ptr_ = ctx_ = nullptr;
    deleter_ = nullptr;
  }
  void* get() const { return ptr_; }
  void* context() const { return ctx_; }
  Deleter deleter() const { return deleter_; }
  Device device() const { return device_; }
  explicit operator bool() const { return ptr_ != nullptr; }

 private:
  void swap(DataPtr& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(ctx_, o.ctx_);
    std::swap(deleter_, o.deleter_);
    std::swap(device_, o.device_);
  }
  void* ptr_ = nullptr;
  void* ctx_ = nullptr;
  Deleter deleter_ = nullptr;
  Device device_;
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Never returns a null DataPtr for nbytes > 0; throws ember::Error when memory is exhausted.
  virtual DataPtr allocate(size_t nbytes) = 0;
};

inline constexpr size_t kCpuAlignment = 64;

// 64-byte aligned host memory; the DataPtr is tagged with `device` (a logical CPU device).
DataPtr cpu_allocate(size_t nbytes, Device device = Device::cpu());
// Host allocations made so far by cpu_allocate (non-empty ones, cached or not), process-wide: lets tests
// and benchmarks check that a steady training step allocates no more than it must.
uint64_t host_allocation_count();
// The cache of large host blocks behind cpu_allocate (Note [Host memory cache] in allocator.cpp):
// bytes it holds now, emptying it, and the cap on what it keeps (EMBER_HOST_CACHE_MB, default 512 MiB;
// 0 disables it; lowering the cap below what is held empties it).
size_t host_cache_bytes();
void empty_host_cache();
void set_host_cache_limit(size_t bytes);
size_t host_cache_limit();
// A cap on the host memory cpu_allocate holds (live tensors plus the cache above), for tests of
// out-of-memory handling on machines without a GPU, as cuda::set_memory_limit does for a GPU: past it,
// the cache is emptied and, if that is not enough, cpu_allocate throws ember::Error ("out of host
// memory: ...", with the request, the bytes in use and the limit). 0 (the default) means no cap.
// host_memory_in_use() is the bytes of live cpu_allocate blocks (as rounded), whatever the cap.
void set_host_memory_limit(size_t bytes);
size_t host_memory_limit();
size_t host_memory_in_use();
// Page-locked host memory (cudaHostAlloc), cached for reuse; throws without CUDA.
DataPtr pinned_allocate(size_t nbytes, Device device = Device::cpu());
// Whether `ptr` came from the pinned allocator.
bool is_pinned_ptr(const DataPtr& ptr);

// Storage for a tensor on `device`: host memory for cpu:N (pinned on request), the CUDA caching
// allocator on the device's current stream for cuda:N.
DataPtr allocate_bytes(Device device, size_t nbytes, bool pinned = false);

}  // namespace ember
