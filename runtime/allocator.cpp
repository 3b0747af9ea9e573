// Host allocation (64-byte aligned) and the device switch used by tensor creation.
#include "runtime/allocator.h"

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "runtime/cuda/memory.h"
#include "runtime/error.h"

namespace ember {

// Note [Host memory cache]
// glibc serves large requests (above its mmap threshold, 128 KiB to 32 MiB) with fresh mmap()s and
// hands them back to the kernel when freed, and trims its heap once the free space at the top
// passes a threshold: either way the next tensor of that size is page-faulted in and zeroed by the
// kernel again. A training step frees and re-allocates the same activation sizes every iteration,
// and that page-faulting was a quarter of a Fashion-MNIST CNN step on 2 cores (2385 img/s; 3050
// img/s with glibc told to keep its memory). So host blocks of at least kCacheMinBytes are rounded up
// to a size class (8 per power of two, at most 12.5% slack) and, when freed, kept on a free list of
// their class for the next request of that class, up to a cap on the bytes kept (EMBER_HOST_CACHE_MB,
// default 512; 0 turns the cache off, e.g. for AddressSanitizer runs). Smaller requests go straight
// to malloc, whose own bins already reuse them. An allocation failure empties the cache and retries
// once. Pinned memory has its own cache (runtime/cuda/memory.cpp).
namespace {

constexpr size_t kCacheMinBytes = 256 << 10;

size_t size_class(size_t nbytes) {
  const int msb = 63 - std::countl_zero(static_cast<uint64_t>(nbytes));
  const size_t step = size_t{1} << (msb - 3);
  return (nbytes + step - 1) / step * step;
}

size_t initial_limit() {
  const char* env = std::getenv("EMBER_HOST_CACHE_MB");
  if (!env || !*env) return size_t{512} << 20;
  char* end = nullptr;
  const unsigned long long mb = std::strtoull(env, &end, 10);
  if (end == env || *end != '\0') return size_t{512} << 20;
  return static_cast<size_t>(mb) << 20;
}

struct HostCache {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // size class -> blocks
  size_t cached = 0;
  std::atomic<size_t> limit{initial_limit()};

  void* take(size_t cls) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = free_blocks.find(cls);
    if (it == free_blocks.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached -= cls;
    return p;
  }
  bool keep(void* p, size_t cls) {
    std::lock_guard<std::mutex> lock(mutex);
    if (cached + cls > limit) return false;
    free_blocks[cls].push_back(p);
    cached += cls;
    return true;
  }
  void release() {
    std::unordered_map<size_t, std::vector<void*>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex);
      blocks.swap(free_blocks);
      cached = 0;
    }
    for (auto& [cls, list] : blocks)
      for (void* p : list) std::free(p);
  }
};

// Never destroyed: tensors freed during static destruction still return their blocks to it.
HostCache& host_cache() {
  static auto* cache = new HostCache();
  return *cache;
}

// Bytes of live cpu_allocate blocks (rounded sizes; size classes for cached ones) and the cap on
// them plus the cache (0: none).
std::atomic<size_t> g_host_in_use{0};
std::atomic<size_t> g_host_memory_limit{0};

// Small blocks carry their rounded size as the deleter's context.
void cpu_free(void* ctx, void* ptr) {
  g_host_in_use.fetch_sub(reinterpret_cast<size_t>(ctx), std::memory_order_relaxed);
  std::free(ptr);
}

void cached_free(void* ctx, void* ptr) {
  const auto cls = reinterpret_cast<size_t>(ctx);
  g_host_in_use.fetch_sub(cls, std::memory_order_relaxed);
  if (!host_cache().keep(ptr, cls)) std::free(ptr);
}

// Counts `bytes` as in use, or throws when that would pass the cap (after emptying the cache, which
// the cap counts too). Without a cap it only counts.
void reserve_host_bytes(size_t bytes, size_t requested, Device device) {
  const size_t limit = g_host_memory_limit.load(std::memory_order_relaxed);
  if (limit == 0) {
    g_host_in_use.fetch_add(bytes, std::memory_order_relaxed);
    return;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    size_t in_use = g_host_in_use.load(std::memory_order_relaxed);
    while (in_use + bytes + host_cache_bytes() <= limit) {
      if (g_host_in_use.compare_exchange_weak(in_use, in_use + bytes, std::memory_order_relaxed)) return;
    }
    if (attempt == 0) empty_host_cache();
  }
  EMBER_THROW("out of host memory: allocating ", requested, " bytes on ", device,
              " would pass the host memory limit of ", limit, " bytes (", g_host_in_use.load(std::memory_order_relaxed),
              " bytes in use; the limit is set by set_host_memory_limit)");
}

}  // namespace

void empty_host_cache() { host_cache().release(); }

size_t host_cache_bytes() {
  HostCache& c = host_cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.cached;
}

void set_host_cache_limit(size_t bytes) {
  HostCache& c = host_cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.limit = bytes;
    if (c.cached <= bytes) return;
  }
  empty_host_cache();
}

size_t host_cache_limit() { return host_cache().limit.load(std::memory_order_relaxed); }

void set_host_memory_limit(size_t bytes) {
  g_host_memory_limit.store(bytes, std::memory_order_relaxed);
  if (bytes != 0 && host_memory_in_use() + host_cache_bytes() > bytes) empty_host_cache();
}
size_t host_memory_limit() { return g_host_memory_limit.load(std::memory_order_relaxed); }
size_t host_memory_in_use() { return g_host_in_use.load(std::memory_order_relaxed); }

namespace {
std::atomic<uint64_t> g_host_allocations{0};
}

uint64_t host_allocation_count() { return g_host_allocations.load(std::memory_order_relaxed); }

DataPtr cpu_allocate(size_t nbytes, Device device) {
  EMBER_ASSERT(device.is_cpu(), "cpu_allocate on ", device);
  if (nbytes == 0) return DataPtr(nullptr, nullptr, nullptr, device);
  g_host_allocations.fetch_add(1, std::memory_order_relaxed);
  const size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
  if (rounded < kCacheMinBytes || host_cache_limit() == 0) {
    reserve_host_bytes(rounded, nbytes, device);
    void* p = std::aligned_alloc(kCpuAlignment, rounded);
    if (p == nullptr) {
      g_host_in_use.fetch_sub(rounded, std::memory_order_relaxed);
      EMBER_THROW("out of host memory: failed to allocate ", nbytes, " bytes on ", device);
    }
    return DataPtr(p, reinterpret_cast<void*>(rounded), &cpu_free, device);
  }
  const size_t cls = size_class(rounded);
  void* p = host_cache().take(cls);  // a cached block moves from the cache to in-use: the total stays
  if (p) {
    g_host_in_use.fetch_add(cls, std::memory_order_relaxed);
  } else {
    reserve_host_bytes(cls, nbytes, device);
    p = std::aligned_alloc(kCpuAlignment, cls);
    if (!p) {
      empty_host_cache();
      p = std::aligned_alloc(kCpuAlignment, cls);
    }
    if (p == nullptr) {
      g_host_in_use.fetch_sub(cls, std::memory_order_relaxed);
      EMBER_THROW("out of host memory: failed to allocate ", nbytes, " bytes on ", device);
    }
  }
  return DataPtr(p, reinterpret_cast<void*>(cls), &cached_free, device);
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
