// Internal glue between tensors' storage and the CUDA allocators (device caching allocator, pinned host).
#pragma once

#include <cstddef>

#include "runtime/allocator.h"
#include "runtime/caching_allocator.h"
#include "runtime/cuda/stream.h"

namespace ember::cuda::detail {

// Device memory from `device`'s caching allocator, owned by the device's current stream.
// The DataPtr's context is the CachingAllocator::Block. Throws ember::Error on OOM / bad device.
DataPtr allocate(Device device, size_t nbytes);
// Marks memory of a device allocation as used by `stream` too (CachingAllocator::record_stream).
void record_stream(const DataPtr& ptr, const Stream& stream);

// Page-locked host memory from a caching pinned allocator (tagged with the logical CPU device).
DataPtr allocate_pinned(size_t nbytes, Device cpu_device);
bool is_pinned(const DataPtr& ptr);
// A pinned block used by an asynchronous copy on `stream`: it is not reused until that copy is done.
void record_pinned_use(const DataPtr& ptr, const Stream& stream);

// The allocator of a device (created on first use); for stats and tests.
CachingAllocator& device_allocator(int device);

}  // namespace ember::cuda::detail
