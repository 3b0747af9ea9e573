// The stream-ordered caching allocator behind CUDA tensors, written against an abstract device-memory
// backend so that its bookkeeping runs (and is tested) on the CPU with a fake backend.
//
// Note [Caching allocator]
// Like PyTorch's: requests are rounded up to 512 bytes; requests of at most 1 MiB come from the small
// pool (2 MiB segments), larger ones from the large pool (20 MiB segments below 10 MiB, else rounded
// up to 2 MiB). A free block is best-fit matched within the pool of the requesting stream and split
// when the remainder is worth keeping (>= 512 B small, > 1 MiB large). Freed blocks merge with free
// neighbours of the same segment. A block belongs to the stream it was allocated on; record_stream
// adds streams that also use it, and freeing such a block records an event on each of them and
// returns the block to the pool only when all those events have completed. When the backend is out
// of memory (or the cap set by set_memory_limit would be exceeded), every cached free segment is
// released and the request retried once; then an ember::Error reports the request and the
// allocated, reserved and free figures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace ember {

// Opaque stream and event handles (cudaStream_t / cudaEvent_t for the real backend).
using StreamHandle = void*;
using EventHandle = void*;

class DeviceMemoryBackend {
 public:
  virtual ~DeviceMemoryBackend() = default;
  // nullptr when out of memory; never throws for OOM.
  virtual void* malloc(size_t nbytes) = 0;
  virtual void free(void* ptr) = 0;
  // {free bytes, total bytes} on the device.
  virtual std::pair<size_t, size_t> mem_get_info() = 0;
  virtual EventHandle create_event() = 0;
  virtual void destroy_event(EventHandle event) = 0;
  virtual void record_event(EventHandle event, StreamHandle stream) = 0;
  // true when the work before the event has completed.
  virtual bool query_event(EventHandle event) = 0;
  virtual void synchronize_event(EventHandle event) = 0;
  // Waits for all work on the device (before memory goes back to the driver).
  virtual void synchronize_device() = 0;
};

struct MemoryStats {
  size_t allocated = 0;       // bytes in blocks handed out (rounded sizes)
  size_t reserved = 0;        // bytes in segments obtained from the backend
  size_t max_allocated = 0;
  size_t max_reserved = 0;
  size_t requested = 0;       // bytes asked for (unrounded), live
  uint64_t num_allocs = 0;    // blocks handed out (allocate() calls that returned one)
  uint64_t num_frees = 0;
  uint64_t num_device_mallocs = 0;  // backend malloc calls that succeeded
  uint64_t num_device_frees = 0;
  uint64_t num_ooms = 0;            // requests that failed with an error
  uint64_t num_alloc_retries = 0;   // times the cache was flushed to retry a backend malloc
  size_t num_segments = 0;
  size_t num_cached_blocks = 0;     // free blocks held in the pools
};

class CachingAllocator {
 public:
  struct Block;  // opaque to users; the DataPtr context of a CUDA allocation

  // `device_name` (e.g. "cuda:0") appears in error messages.
  CachingAllocator(std::unique_ptr<DeviceMemoryBackend> backend, std::string device_name);
  ~CachingAllocator();  // returns all cached segments; live blocks are reported, not freed
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `nbytes` usable on `stream`. nbytes == 0 gives a null block (nullptr).
  // Throws ember::Error when memory is exhausted even after flushing the cache.
  Block* allocate(size_t nbytes, StreamHandle stream);
  // Returns the block to its stream's pool (or defers until recorded streams are done with it).
  void free(Block* block);
  // Marks `block` as also used by `stream` (no-op for its own stream).
  void record_stream(Block* block, StreamHandle stream);
  // Releases every free segment to the backend (after waiting for the deferred frees).
  void empty_cache();

  MemoryStats stats() const;
  void reset_peak_stats();
  // 0: no cap. Otherwise reserved bytes may never exceed `bytes` (a request past it is an OOM).
  void set_memory_limit(size_t bytes);
  size_t memory_limit() const;
  std::string summary() const;

  static void* block_ptr(const Block* block);
  static size_t block_size(const Block* block);
  static StreamHandle block_stream(const Block* block);

  // Rounding rules (exposed for tests).
  static constexpr size_t kMinBlockSize = 512;
  static constexpr size_t kSmallSize = 1 << 20;        // largest "small" request
  static constexpr size_t kSmallBuffer = 2 << 20;      // small-pool segment size
  static constexpr size_t kLargeBuffer = 20 << 20;     // large-pool segment for requests < kMinLargeAlloc
  static constexpr size_t kMinLargeAlloc = 10 << 20;
  static constexpr size_t kRoundLarge = 2 << 20;
  static size_t round_size(size_t nbytes);
  static size_t segment_size(size_t rounded);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ember
