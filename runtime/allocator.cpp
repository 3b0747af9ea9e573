// Host allocation (64-byte aligned) and the device switch used by tensor creation.
#include "runtime/allocator.h"

#include <cstdlib>
#include <new>

#include "runtime/cuda/memory.h"
#include "runtime/error.h"

namespace ember {

namespace {
void cpu_free(void*, void* ptr) { std::free(ptr); }
}  // namespace

DataPtr cpu_allocate(size_t nbytes, Device device) {
  EMBER_ASSERT(device.is_cpu(), "cpu_allocate on ", device);
  if (nbytes == 0) return DataPtr(nullptr, nullptr, nullptr, device);
  const size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
  void* p = std::aligned_alloc(kCpuAlignment, rounded);
  EMBER_CHECK(p != nullptr, "out of host memory: failed to allocate ", nbytes, " bytes on ", device);
  return DataPtr(p, nullptr, &cpu_free, device);
}

DataPtr pinned_allocate(size_t nbytes, Device device) {
  EMBER_CHECK(device.is_cpu(), "pin_memory: pinned memory is host memory; got device ", device);
  return cuda::detail::allocate_pinned(nbytes, device);
}

bool is_pinned_ptr(const DataPtr& ptr) { return ptr.deleter() != nullptr && cuda::detail::is_pinned(ptr); }

DataPtr allocate_bytes(Device device, size_t nbytes, bool pinned) {
  if (device.is_cuda()) return cuda::detail::allocate(device, nbytes);
  if (pinned) return pinned_allocate(nbytes, device);
  return cpu_allocate(nbytes, device);
}

}  // namespace ember
