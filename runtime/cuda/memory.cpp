// CUDA memory: the cudaMalloc backend of the caching allocator, the per-device allocators and their
// statistics, and the caching allocator of page-locked (pinned) host memory.
#include "runtime/cuda/memory.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/internal.h"
#include "runtime/error.h"

namespace ember::cuda {

namespace {

using Block = CachingAllocator::Block;

std::string format_bytes(size_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

// Answers cudaEventQuery / cudaStreamQuery style results: done, not yet, or an error.
bool query_result(cudaError_t err, const char* expr) {
  if (err == cudaSuccess) return true;
  if (err == cudaErrorNotReady) {
    (void)cudaGetLastError();  // "not ready" is an answer, not an error
    return false;
  }
  detail::throw_cuda_error(err, expr, __FILE__, __LINE__);
}

// ---- device memory ------------------------------------------------------------------------------

// The real DeviceMemoryBackend of one GPU. Every call runs under a guard for that GPU: cudaMalloc
// allocates on the current device, and the legacy default stream (nullptr) names the current
// device's default stream.
class CudaMemoryBackend final : public DeviceMemoryBackend {
 public:
  explicit CudaMemoryBackend(int device) : device_(device) {}

  void* malloc(size_t nbytes) override {
    DeviceGuard guard(device_);
    void* ptr = nullptr;
    const cudaError_t err = cudaMalloc(&ptr, nbytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // the allocator flushes its cache and retries: not an error yet
      return nullptr;
    }
    EMBER_CUDA_CHECK(err);
    return ptr;
  }

  void free(void* ptr) override {
    DeviceGuard guard(device_);
    EMBER_CUDA_CHECK(cudaFree(ptr));
  }

  std::pair<size_t, size_t> mem_get_info() override {
    DeviceGuard guard(device_);
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    EMBER_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return {free_bytes, total_bytes};
  }

  EventHandle create_event() override {
    DeviceGuard guard(device_);
    cudaEvent_t event = nullptr;
    EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    return event;
  }

  void destroy_event(EventHandle event) override { EMBER_CUDA_WARN(cudaEventDestroy(static_cast<cudaEvent_t>(event))); }

  void record_event(EventHandle event, StreamHandle stream) override {
    DeviceGuard guard(device_);
    EMBER_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)));
  }

  bool query_event(EventHandle event) override {
    return query_result(cudaEventQuery(static_cast<cudaEvent_t>(event)), "cudaEventQuery(event)");
  }

  void synchronize_event(EventHandle event) override {
    EMBER_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
  }

  void synchronize_device() override {
    DeviceGuard guard(device_);
    EMBER_CUDA_CHECK(cudaDeviceSynchronize());
  }

 private:
  int device_;
};

// Note [Leaked CUDA registries]
// The per-device allocators and the pinned allocator live in objects made with `new` and never
// deleted. Static destructors run after the CUDA runtime may already have shut down (flashlight
// hit this with NCCL communicators); returning memory then fails or crashes, and the driver
// reclaims everything at process exit anyway. This is the one place ember uses a naked `new`.
class DeviceAllocators {
 public:
  // `device` must be a checked device index.
  CachingAllocator& get(int device) {
    if (CachingAllocator* a = created_[device].load(std::memory_order_acquire)) [[likely]]
      return *a;
    std::call_once(once_[device], [&] {
      owned_[device] =
          std::make_unique<CachingAllocator>(std::make_unique<CudaMemoryBackend>(device), Device::cuda(device).str());
      created_[device].store(owned_[device].get(), std::memory_order_release);
    });
    return *created_[device].load(std::memory_order_acquire);
  }

  // The allocator of `device` if it was ever used, else nullptr.
  CachingAllocator* find(int device) const { return created_[device].load(std::memory_order_acquire); }

 private:
  std::array<std::once_flag, kMaxCudaDevices> once_;
  std::array<std::unique_ptr<CachingAllocator>, kMaxCudaDevices> owned_;
  std::array<std::atomic<CachingAllocator*>, kMaxCudaDevices> created_{};
};

DeviceAllocators& device_allocators() {
  static DeviceAllocators* registry = new DeviceAllocators();  // see Note [Leaked CUDA registries]
  return *registry;
}

// A DataPtr deleter receives only (context, ptr), and the context is the Block, so the device is in
// the deleter itself: one instantiation per device index. Comparing a DataPtr's deleter with the
// entry of its device also tells whether the memory came from the caching allocator.
void free_device_block(int device, void* block) noexcept {
  try {
    CachingAllocator* allocator = device_allocators().find(device);
    if (allocator != nullptr) allocator->free(static_cast<Block*>(block));
  } catch (const std::exception& e) {
    ember::detail::log_warning(ember::detail::str_cat("freeing CUDA memory on cuda:", device, " failed: ", e.what()));
  }
}

template <int kDevice>
void free_on_device(void* context, void* /*ptr*/) {
  free_device_block(kDevice, context);
}

template <size_t... I>
constexpr std::array<DataPtr::Deleter, sizeof...(I)> make_device_deleters(std::index_sequence<I...>) {
  return {&free_on_device<static_cast<int>(I)>...};
}

constexpr std::array<DataPtr::Deleter, kMaxCudaDevices> kDeviceDeleters =
    make_device_deleters(std::make_index_sequence<kMaxCudaDevices>{});

bool is_device_allocation(const DataPtr& ptr) {
  return ptr.device().is_cuda() && ptr.deleter() == kDeviceDeleters[ptr.device().index()];
}

// Note [Uncached CUDA memory]
// With EMBER_CUDA_NO_CACHING=1 in the environment every CUDA tensor gets its own exact-size
// cudaMalloc and gives it back with cudaFree (which waits for the device), like PyTorch's
// PYTORCH_NO_CUDA_MEMORY_CACHING. Slow, but compute-sanitizer's memcheck then sees every
// allocation's true bounds: with the cache, an overrun that stays inside a cached block is invisible.
// The caching allocator's statistics do not count this memory.
bool caching_disabled() {
  static const bool disabled = [] {
    const char* v = std::getenv("EMBER_CUDA_NO_CACHING");
    return v != nullptr && v[0] != '\0' && std::string(v) != "0";
  }();
  return disabled;
}

void free_uncached(void* context, void* ptr) {
  const int device = static_cast<int>(reinterpret_cast<intptr_t>(context));
  int previous = -1;
  if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
  if (previous != device) EMBER_CUDA_WARN(cudaSetDevice(device));
  EMBER_CUDA_WARN(cudaFree(ptr));
  if (previous >= 0 && previous != device) EMBER_CUDA_WARN(cudaSetDevice(previous));
}

bool is_uncached_allocation(const DataPtr& ptr) { return ptr.deleter() == &free_uncached; }

CachingAllocator& allocator_for(int device, const char* op) {
  return device_allocators().get(detail::resolve_device(device, op));
}

// ---- pinned host memory -------------------------------------------------------------------------

// Note [Pinned memory cache]
// cudaHostAlloc and cudaFreeHost are slow (they map pages for the GPU and may synchronise), so, as
// PyTorch's CachingHostAllocator does, freed pinned blocks are kept by size class (powers of two)
// for reuse. An asynchronous copy from or to a pinned block may still be running when its tensor
// dies; record_pinned_use records an event on the copy's stream, and a freed block is reused only
// once all its events have completed (checked with cudaEventQuery when memory is requested, so the
// host never waits).
class PinnedAllocator {
 public:
  DataPtr allocate(size_t nbytes, Device cpu_device) {
    if (!is_available()) {
      EMBER_THROW("pin_memory: page-locked host memory needs a CUDA device, and none is available (",
                  detail::no_device_reason(), ")");
    }
    if (nbytes == 0) return DataPtr(nullptr, nullptr, &free_pinned, cpu_device);
    EMBER_CHECK(nbytes <= kMaxSize, "pin_memory: a request of ", nbytes, " bytes is too large");
    const size_t size = std::bit_ceil(std::max(nbytes, kMinSize));
    if (PinnedBlock* b = reuse(size)) return DataPtr(b->ptr, b, &free_pinned, cpu_device);

    void* ptr = host_alloc(size);
    if (ptr == nullptr) {
      release_cached();  // free what the cache holds and try once more
      ptr = host_alloc(size);
    }
    if (ptr == nullptr) {
      std::lock_guard<std::mutex> lock(mutex_);
      EMBER_THROW("pin_memory: out of page-locked host memory: cudaHostAlloc of ", format_bytes(size), " (for ", nbytes,
                  " bytes) failed; ember holds ", format_bytes(total_bytes_), " of pinned memory in ", blocks_.size(),
                  " blocks");
    }
    auto block = std::make_unique<PinnedBlock>();
    block->ptr = ptr;
    block->size = size;
    PinnedBlock* b = block.get();
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_.emplace(b, std::move(block));
    total_bytes_ += size;
    return DataPtr(ptr, b, &free_pinned, cpu_device);
  }

  void record_use(void* context, const Stream& stream) {
    auto* b = static_cast<PinnedBlock*>(context);
    check_device(stream.device(), "record_pinned_use");
    const int device = stream.device_index();
    cudaEvent_t event = take_spare_event(device);
    try {
      DeviceGuard guard(stream.device());
      if (event == nullptr) EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
      EMBER_CUDA_CHECK(cudaEventRecord(event, static_cast<cudaStream_t>(stream.handle())));
    } catch (...) {
      if (event != nullptr) EMBER_CUDA_WARN(cudaEventDestroy(event));
      throw;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    b->events.push_back({event, device});
  }

  static void free_pinned(void* context, void* /*ptr*/) {
    if (context == nullptr) return;  // the empty allocation
    instance().release(static_cast<PinnedBlock*>(context));
  }

  static PinnedAllocator& instance() {
    static PinnedAllocator* allocator = new PinnedAllocator();  // see Note [Leaked CUDA registries]
    return *allocator;
  }

 private:
  struct PinnedEvent {
    cudaEvent_t event;
    int device;
  };
  struct PinnedBlock {
    void* ptr = nullptr;
    size_t size = 0;                  // the size class (a power of two)
    std::vector<PinnedEvent> events;  // uses by streams not yet known to be finished
  };

  static constexpr size_t kMinSize = 512;
  static constexpr size_t kMaxSize = size_t{1} << 48;

  static void* host_alloc(size_t size) {
    void* ptr = nullptr;
    // Portable: the memory counts as pinned for every device, not just the current one, so a
    // pinned batch can feed any GPU (DataParallel scatters one to several).
    const cudaError_t err = cudaHostAlloc(&ptr, size, cudaHostAllocPortable);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    EMBER_CUDA_CHECK(err);
    return ptr;
  }

  // Called from a DataPtr deleter: never throws.
  void release(PinnedBlock* b) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (b->events.empty()) {
      free_[b->size].push_back(b);
    } else {
      pending_.push_back(b);
    }
  }

  // A cached block of `size` whose recorded uses are over, or nullptr.
  PinnedBlock* reuse(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    process_pending();
    auto it = free_.find(size);
    if (it == free_.end() || it->second.empty()) return nullptr;
    PinnedBlock* b = it->second.back();
    it->second.pop_back();
    return b;
  }

  // Moves freed blocks whose events have all completed to the free lists. Lock held.
  void process_pending() {
    for (size_t i = 0; i < pending_.size();) {
      PinnedBlock* b = pending_[i];
      std::vector<PinnedEvent>& events = b->events;
      for (size_t j = 0; j < events.size();) {
        if (query_result(cudaEventQuery(events[j].event), "cudaEventQuery(event)")) {
          spare_events_[events[j].device].push_back(events[j].event);
          events[j] = events.back();
          events.pop_back();
        } else {
          ++j;
        }
      }
      if (events.empty()) {
        free_[b->size].push_back(b);
        pending_[i] = pending_.back();
        pending_.pop_back();
      } else {
        ++i;
      }
    }
  }

  cudaEvent_t take_spare_event(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<cudaEvent_t>& spare = spare_events_[device];
    if (spare.empty()) return nullptr;
    cudaEvent_t e = spare.back();
    spare.pop_back();
    return e;
  }

  // Returns every cached free block to the driver (before retrying a failed cudaHostAlloc).
  void release_cached() {
    std::vector<std::unique_ptr<PinnedBlock>> released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      process_pending();
      for (auto& [size, list] : free_) {
        for (PinnedBlock* b : list) {
          auto node = blocks_.extract(b);
          total_bytes_ -= b->size;
          released.push_back(std::move(node.mapped()));
        }
        list.clear();
      }
    }
    for (const auto& b : released) EMBER_CUDA_WARN(cudaFreeHost(b->ptr));
  }

  std::mutex mutex_;
  std::unordered_map<PinnedBlock*, std::unique_ptr<PinnedBlock>> blocks_;  // every block, owned
  std::unordered_map<size_t, std::vector<PinnedBlock*>> free_;             // reusable, by size class
  std::vector<PinnedBlock*> pending_;                                      // freed, uses in flight
  std::array<std::vector<cudaEvent_t>, kMaxCudaDevices> spare_events_;     // completed, for reuse
  size_t total_bytes_ = 0;
};

}  // namespace

// ---- internal glue (memory.h) ---------------------------------------------------------------------

namespace detail {

DataPtr allocate(Device device, size_t nbytes) {
  check_device(device);
  if (nbytes == 0) return DataPtr(nullptr, nullptr, nullptr, device);
  const int index = device.index();
  if (caching_disabled()) {
    DeviceGuard guard(device);
    void* ptr = nullptr;
    const cudaError_t err = cudaMalloc(&ptr, nbytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      EMBER_THROW("CUDA out of memory on ", device, ": tried to allocate ", nbytes,
                  " bytes (EMBER_CUDA_NO_CACHING is set, so nothing is cached to free)");
    }
    EMBER_CUDA_CHECK(err);
    return DataPtr(ptr, reinterpret_cast<void*>(static_cast<intptr_t>(index)), &free_uncached, device);
  }
  CachingAllocator& allocator = device_allocators().get(index);
  Block* block = allocator.allocate(nbytes, current_stream(index).handle());
  return DataPtr(CachingAllocator::block_ptr(block), block, kDeviceDeleters[index], device);
}

void record_stream(const DataPtr& ptr, const Stream& stream) {
  if (!ptr) return;  // an empty allocation has no memory to protect
  if (is_uncached_allocation(ptr)) return;  // cudaFree waits for every stream
  EMBER_CHECK(is_device_allocation(ptr), "record_stream: the memory (on ", ptr.device(),
              ") does not come from ember's CUDA caching allocator");
  EMBER_CHECK(stream.device() == ptr.device(), "record_stream: the stream is on ", stream.device(),
              " but the memory is on ", ptr.device(), "; record a stream of the memory's device");
  device_allocators().get(ptr.device().index()).record_stream(static_cast<Block*>(ptr.context()), stream.handle());
}

DataPtr allocate_pinned(size_t nbytes, Device cpu_device) {
  EMBER_CHECK(cpu_device.is_cpu(), "pin_memory: pinned memory is host memory; got device ", cpu_device);
  return PinnedAllocator::instance().allocate(nbytes, cpu_device);
}

bool is_pinned(const DataPtr& ptr) { return ptr.deleter() == &PinnedAllocator::free_pinned; }

void record_pinned_use(const DataPtr& ptr, const Stream& stream) {
  // Pageable or empty memory: nothing to keep alive, so callers need not check first.
  if (!is_pinned(ptr) || ptr.context() == nullptr) return;
  PinnedAllocator::instance().record_use(ptr.context(), stream);
}

CachingAllocator& device_allocator(int device) { return allocator_for(device, "device_allocator"); }

}  // namespace detail

// ---- public statistics (cuda.h) -------------------------------------------------------------------

void empty_cache(int device) {
  if (device == -1) {
    // Only allocators that exist hold memory; without a GPU there are none, so this is a no-op.
    for (int d = 0; d < kMaxCudaDevices; ++d) {
      if (CachingAllocator* a = device_allocators().find(d)) a->empty_cache();
    }
    return;
  }
  const int index = detail::resolve_device(device, "empty_cache");
  if (CachingAllocator* a = device_allocators().find(index)) a->empty_cache();
}

size_t memory_allocated(int device) { return allocator_for(device, "memory_allocated").stats().allocated; }
size_t memory_reserved(int device) { return allocator_for(device, "memory_reserved").stats().reserved; }
size_t max_memory_allocated(int device) { return allocator_for(device, "max_memory_allocated").stats().max_allocated; }
size_t max_memory_reserved(int device) { return allocator_for(device, "max_memory_reserved").stats().max_reserved; }
void reset_peak_memory_stats(int device) { allocator_for(device, "reset_peak_memory_stats").reset_peak_stats(); }
uint64_t num_device_mallocs(int device) {
  return allocator_for(device, "num_device_mallocs").stats().num_device_mallocs;
}
uint64_t num_device_frees(int device) { return allocator_for(device, "num_device_frees").stats().num_device_frees; }
void set_memory_limit(size_t bytes, int device) { allocator_for(device, "set_memory_limit").set_memory_limit(bytes); }

std::string memory_summary(int device) {
  const int index = detail::resolve_device(device, "memory_summary");
  CachingAllocator& allocator = device_allocators().get(index);
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  {
    DeviceGuard guard(index);
    EMBER_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  }
  return ember::detail::str_cat(allocator.summary(), "  device:    ", format_bytes(free_bytes), " free of ",
                                format_bytes(total_bytes), " (cudaMemGetInfo)\n");
}

}  // namespace ember::cuda
