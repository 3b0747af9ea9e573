// CachingAllocator: pools, best-fit, block splitting and merging, deferred cross-stream frees, the
// OOM flush-and-retry path and the statistics (see Note [Caching allocator] in the header).
#include "runtime/caching_allocator.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <iterator>
#include <list>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/error.h"

namespace ember {
namespace detail {
struct CachingSegment;
}  // namespace detail

// A range of one segment: handed out (allocated), free in a pool, or freed but waiting for the
// events of the streams recorded on it (event_count > 0). A segment's blocks tile it in address
// order in the segment's std::list, which is the doubly linked list that merging walks.
struct CachingAllocator::Block {
  uintptr_t addr = 0;
  size_t size = 0;
  size_t requested = 0;  // the unrounded request while allocated
  StreamHandle stream = nullptr;
  bool is_small = false;
  bool allocated = false;
  int event_count = 0;                     // outstanding events of a deferred free
  std::vector<StreamHandle> stream_uses;   // streams from record_stream, other than `stream`
  detail::CachingSegment* segment = nullptr;
  std::list<Block>::iterator pos;          // this block in segment->blocks
};

namespace detail {

// One backend allocation. It belongs to one stream and one pool, like all of its blocks.
struct CachingSegment {
  uintptr_t base = 0;
  size_t size = 0;
  std::list<CachingAllocator::Block> blocks;
};

}  // namespace detail

namespace {

using Block = CachingAllocator::Block;
using Segment = detail::CachingSegment;

constexpr size_t kKiB = size_t{1} << 10;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGiB = size_t{1} << 30;
// Larger requests cannot be rounded without overflow and exceed any device anyway.
constexpr size_t kMaxRequest = size_t{1} << 62;

size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

std::string format_bytes(size_t n) {
  char buf[64];
  if (n < kKiB) {
    std::snprintf(buf, sizeof(buf), "%zu bytes", n);
  } else if (n < kMiB) {
    std::snprintf(buf, sizeof(buf), "%.2f KiB", static_cast<double>(n) / kKiB);
  } else if (n < kGiB) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", static_cast<double>(n) / kMiB);
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(n) / kGiB);
  }
  return buf;
}

// Pool order: by stream first, so that a lower_bound search never leaves the requesting stream's
// range, then by size for best fit, then by address so that equal sizes are distinct keys.
struct BlockKey {
  uintptr_t stream;
  size_t size;
  uintptr_t addr;
};

struct BlockLess {
  using is_transparent = void;
  static BlockKey key(const Block* b) {
    return {reinterpret_cast<uintptr_t>(b->stream), b->size, b->addr};
  }
  static bool less(const BlockKey& a, const BlockKey& b) {
    return std::tie(a.stream, a.size, a.addr) < std::tie(b.stream, b.size, b.addr);
  }
  bool operator()(const Block* a, const Block* b) const { return less(key(a), key(b)); }
  bool operator()(const Block* a, const BlockKey& b) const { return less(key(a), b); }
  bool operator()(const BlockKey& a, const Block* b) const { return less(a, key(b)); }
};

using Pool = std::set<Block*, BlockLess>;

bool is_free(const Block* b) { return !b->allocated && b->event_count == 0; }

bool is_whole_segment(const Block* b) { return b->segment->blocks.size() == 1; }

}  // namespace

// Note [Caching allocator invariants]
// - Every block is exactly one of: allocated (in `live`), free (in the pool of its size class,
//   event_count == 0), or deferred (event_count > 0, one entry per event in `pending`).
// - Free blocks never touch: a freed block is merged with free neighbours at once, and a deferred
//   block is merged when its last event completes.
// - A block's stream, pool and segment never change; only its address range does (split/merge),
//   and only while it is out of its pool's set, whose keys include size and address.
// - stats.reserved is the sum of the segments' sizes; stats.allocated the sum of live block sizes
//   (a block that was not split counts its whole size, as it is all handed out).
struct CachingAllocator::Impl {
  Impl(std::unique_ptr<DeviceMemoryBackend> b, std::string name)
      : backend(std::move(b)), device_name(std::move(name)) {}

  std::unique_ptr<DeviceMemoryBackend> backend;
  std::string device_name;
  mutable std::mutex mutex;
  Pool small_pool;
  Pool large_pool;
  std::unordered_map<const Segment*, std::unique_ptr<Segment>> segments;
  // Allocated blocks: lets free() and record_stream() reject a double free or a foreign block
  // before touching it.
  std::unordered_set<const Block*> live;
  std::vector<std::pair<EventHandle, Block*>> pending;  // events of deferred frees
  MemoryStats stats;
  size_t limit = 0;

  Pool& pool_of(bool is_small) { return is_small ? small_pool : large_pool; }

  void update_peaks() {
    stats.max_allocated = std::max(stats.max_allocated, stats.allocated);
    stats.max_reserved = std::max(stats.max_reserved, stats.reserved);
  }

  // Best fit within the requesting stream's part of the pool. A request of kMinLargeAlloc or more
  // gets its own segment of about its size (segment_size), so carving it out of a cached block
  // that is larger by kLargeBuffer or more would only fragment that block: an unsplit cached
  // segment can still be returned whole by the OOM flush, a split one cannot while the piece
  // lives. Such a block is used only when no new segment can be had (`allow_oversize`), which is
  // still better than flushing the cache.
  Block* find_free_block(StreamHandle stream, size_t rounded, bool is_small, bool allow_oversize) {
    Pool& pool = pool_of(is_small);
    auto it = pool.lower_bound(BlockKey{reinterpret_cast<uintptr_t>(stream), rounded, 0});
    if (it == pool.end() || (*it)->stream != stream) return nullptr;
    Block* b = *it;
    if (!is_small && !allow_oversize && rounded >= kMinLargeAlloc && b->size >= rounded + kLargeBuffer) {
      return nullptr;
    }
    return b;
  }

  bool under_limit(size_t extra) const {
    return limit == 0 || (stats.reserved <= limit && extra <= limit - stats.reserved);
  }

  // A new segment holding one free block (in its pool), or nullptr when the backend is out of
  // memory or the segment would pass the limit.
  Block* malloc_segment(StreamHandle stream, size_t rounded, bool is_small) {
    size_t seg_size = segment_size(rounded);
    if (!under_limit(seg_size)) return nullptr;
    void* ptr = backend->malloc(seg_size);
    if (ptr == nullptr) return nullptr;
    auto seg = std::make_unique<Segment>();
    seg->base = reinterpret_cast<uintptr_t>(ptr);
    seg->size = seg_size;
    Block& b = seg->blocks.emplace_back();
    b.pos = seg->blocks.begin();
    b.addr = seg->base;
    b.size = seg_size;
    b.stream = stream;
    b.is_small = is_small;
    b.segment = seg.get();
    const Segment* key = seg.get();
    segments.emplace(key, std::move(seg));
    pool_of(is_small).insert(&b);
    stats.reserved += seg_size;
    ++stats.num_device_mallocs;
    stats.num_segments = segments.size();
    update_peaks();
    return &b;
  }

  // A remainder is worth a block of its own in the small pool when it can serve any small
  // request; in the large pool only when it can serve a large one (smaller ones go to the small
  // pool anyway).
  static bool should_split(bool is_small, size_t remaining) {
    return is_small ? remaining >= kMinBlockSize : remaining > kSmallSize;
  }

  // Hands out the free block `b` for a request of `rounded` bytes, splitting off the remainder.
  Block* take(Block* b, size_t rounded, size_t nbytes) {
    Pool& pool = pool_of(b->is_small);
    pool.erase(b);
    size_t remaining = b->size - rounded;
    if (should_split(b->is_small, remaining)) {
      auto& blocks = b->segment->blocks;
      auto it = blocks.emplace(std::next(b->pos));
      Block& rest = *it;
      rest.pos = it;
      rest.addr = b->addr + rounded;
      rest.size = remaining;
      rest.stream = b->stream;
      rest.is_small = b->is_small;
      rest.segment = b->segment;
      b->size = rounded;
      pool.insert(&rest);
    }
    b->allocated = true;
    b->requested = nbytes;
    live.insert(b);
    stats.allocated += b->size;
    stats.requested += nbytes;
    ++stats.num_allocs;
    update_peaks();
    return b;
  }

  // Puts a block whose last use is over into its pool, merged with free neighbours.
  void return_to_pool(Block* b) {
    Pool& pool = pool_of(b->is_small);
    auto& blocks = b->segment->blocks;
    if (b->pos != blocks.begin()) {
      auto prev = std::prev(b->pos);
      if (is_free(&*prev)) {
        pool.erase(&*prev);
        b->addr = prev->addr;
        b->size += prev->size;
        blocks.erase(prev);
      }
    }
    auto next = std::next(b->pos);
    if (next != blocks.end() && is_free(&*next)) {
      pool.erase(&*next);
      b->size += next->size;
      blocks.erase(next);
    }
    pool.insert(b);
  }

  // Called with the lock held after a deferred block's event is done (and removed from
  // `pending`).
  void event_done(EventHandle event, Block* b) {
    if (--b->event_count == 0) return_to_pool(b);
    backend->destroy_event(event);
  }

  void process_events() {
    for (size_t i = 0; i < pending.size();) {
      auto [event, block] = pending[i];
      if (!backend->query_event(event)) {
        ++i;
        continue;
      }
      pending[i] = pending.back();
      pending.pop_back();
      event_done(event, block);
    }
  }

  void synchronize_events() {
    while (!pending.empty()) {
      auto [event, block] = pending.back();
      backend->synchronize_event(event);
      pending.pop_back();
      event_done(event, block);
    }
  }

  bool has_releasable() const {
    if (!pending.empty()) return true;
    for (const Pool* pool : {&small_pool, &large_pool}) {
      for (const Block* b : *pool) {
        if (is_whole_segment(b)) return true;
      }
    }
    return false;
  }

  // Returns every free whole segment to the backend. The device is synchronized first: a cached
  // block may still be used by work queued on its own stream, and deferred frees are completed
  // so that their segments can go too.
  void release_cached_segments() {
    backend->synchronize_device();
    synchronize_events();
    for (Pool* pool : {&small_pool, &large_pool}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block* b = *it;
        if (!is_whole_segment(b)) {
          ++it;
          continue;
        }
        Segment* seg = b->segment;
        backend->free(reinterpret_cast<void*>(seg->base));
        it = pool->erase(it);
        stats.reserved -= seg->size;
        ++stats.num_device_frees;
        segments.erase(seg);
        stats.num_segments = segments.size();
      }
    }
  }

  [[noreturn]] void throw_oom(size_t nbytes) {
    ++stats.num_ooms;
    std::string device_figures;
    try {
      auto [free_bytes, total_bytes] = backend->mem_get_info();
      device_figures = detail::str_cat(device_name, " has a total capacity of ", format_bytes(total_bytes),
                                       " of which ", format_bytes(free_bytes), " is free");
    } catch (const std::exception& e) {
      device_figures = detail::str_cat("free memory of ", device_name, " unknown (", e.what(), ")");
    }
    std::string limit_figures;
    if (limit != 0) {
      limit_figures = detail::str_cat("; memory limit ", format_bytes(limit), " (",
                                      format_bytes(stats.reserved <= limit ? limit - stats.reserved : 0),
                                      " free under the limit)");
    }
    EMBER_THROW("CachingAllocator: out of memory on ", device_name, ": tried to allocate ", format_bytes(nbytes),
                " (", nbytes, " bytes); ", device_figures, "; ", format_bytes(stats.allocated),
                " allocated by ember, ", format_bytes(stats.reserved), " reserved (",
                format_bytes(stats.reserved - stats.allocated), " reserved but unallocated)", limit_figures,
                ". Free tensors that are no longer needed or use smaller batches",
                limit != 0 ? ", or raise the memory limit" : "", ".");
  }

  Block* allocate(size_t nbytes, StreamHandle stream) {
    std::lock_guard<std::mutex> lock(mutex);
    process_events();
    if (nbytes > kMaxRequest) throw_oom(nbytes);
    size_t rounded = round_size(nbytes);
    bool is_small = rounded <= kSmallSize;
    Block* b = find_free_block(stream, rounded, is_small, /*allow_oversize=*/false);
    if (b == nullptr) b = malloc_segment(stream, rounded, is_small);
    if (b == nullptr) b = find_free_block(stream, rounded, is_small, /*allow_oversize=*/true);
    if (b == nullptr) {
      // Flushing may complete deferred frees of this stream, so look in the pool again first.
      release_cached_segments();
      ++stats.num_alloc_retries;
      b = find_free_block(stream, rounded, is_small, /*allow_oversize=*/true);
      if (b == nullptr) b = malloc_segment(stream, rounded, is_small);
    }
    if (b == nullptr) throw_oom(nbytes);
    return take(b, rounded, nbytes);
  }

  // Records one event per extra stream; the block returns to the pool when all have completed.
  void defer_free(Block* b) {
    std::vector<EventHandle> events;
    events.reserve(b->stream_uses.size());
    try {
      for (StreamHandle s : b->stream_uses) {
        events.push_back(backend->create_event());
        backend->record_event(events.back(), s);
      }
    } catch (const std::exception& e) {
      // free() runs in deleters, so it must not throw for a backend failure. Waiting for the
      // whole device gives the same guarantee as the events; if even that fails the device is
      // in an unrecoverable error state and runs no more work, so reuse is harmless.
      for (EventHandle ev : events) {
        try {
          backend->destroy_event(ev);
        } catch (const std::exception&) {
        }
      }
      std::string why = e.what();
      try {
        backend->synchronize_device();
      } catch (const std::exception& e2) {
        why += detail::str_cat("; synchronize failed too: ", e2.what());
      }
      detail::log_warning(detail::str_cat("CachingAllocator(", device_name,
                                          "): could not record events for a cross-stream free, "
                                          "synchronized the device instead: ",
                                          why));
      b->stream_uses.clear();
      return_to_pool(b);
      return;
    }
    b->stream_uses.clear();
    b->event_count = static_cast<int>(events.size());
    for (EventHandle ev : events) pending.emplace_back(ev, b);
  }

  void free(Block* b) {
    std::lock_guard<std::mutex> lock(mutex);
    EMBER_ASSERT(live.count(b) == 1, "CachingAllocator(", device_name, ")::free: block ",
                 static_cast<const void*>(b),
                 " is not allocated here (double free, or a block of another allocator)");
    live.erase(b);
    b->allocated = false;
    stats.allocated -= b->size;
    stats.requested -= b->requested;
    b->requested = 0;
    ++stats.num_frees;
    if (b->stream_uses.empty()) {
      return_to_pool(b);
    } else {
      defer_free(b);
    }
  }

  void record_stream(Block* b, StreamHandle stream) {
    std::lock_guard<std::mutex> lock(mutex);
    EMBER_ASSERT(live.count(b) == 1, "CachingAllocator(", device_name, ")::record_stream: block ",
                 static_cast<const void*>(b), " is not allocated here");
    if (stream == b->stream) return;
    for (StreamHandle s : b->stream_uses) {
      if (s == stream) return;
    }
    b->stream_uses.push_back(stream);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex);
    // A device synchronize is not free: skip it when nothing can be released.
    if (has_releasable()) release_cached_segments();
  }

  MemoryStats get_stats() const {
    std::lock_guard<std::mutex> lock(mutex);
    MemoryStats s = stats;
    s.num_cached_blocks = small_pool.size() + large_pool.size();
    return s;
  }

  std::string summary() const {
    std::lock_guard<std::mutex> lock(mutex);
    size_t cached_bytes = 0;
    for (const Pool* pool : {&small_pool, &large_pool}) {
      for (const Block* b : *pool) cached_bytes += b->size;
    }
    size_t deferred_blocks = 0;
    size_t deferred_bytes = 0;
    std::unordered_set<const Block*> seen;
    for (const auto& entry : pending) {
      if (seen.insert(entry.second).second) {
        ++deferred_blocks;
        deferred_bytes += entry.second->size;
      }
    }
    return detail::str_cat(
        "CachingAllocator(", device_name, ")\n",
        "  allocated: ", format_bytes(stats.allocated), " in ", live.size(), " blocks (peak ",
        format_bytes(stats.max_allocated), "), requested ", format_bytes(stats.requested), "\n",
        "  reserved:  ", format_bytes(stats.reserved), " in ", segments.size(), " segments (peak ",
        format_bytes(stats.max_reserved), ")", limit != 0 ? ", limit " + format_bytes(limit) : std::string(),
        "\n", "  cached:    ", format_bytes(cached_bytes), " in ", small_pool.size(), " small and ",
        large_pool.size(), " large free blocks; ", deferred_blocks, " blocks (", format_bytes(deferred_bytes),
        ") waiting for other streams\n", "  calls:     ", stats.num_allocs, " allocs, ", stats.num_frees,
        " frees, ", stats.num_device_mallocs, " device mallocs, ", stats.num_device_frees, " device frees, ",
        stats.num_alloc_retries, " flush-and-retries, ", stats.num_ooms, " OOMs\n");
  }

  // Destructor work: returns what can be returned; live blocks' segments stay with the device,
  // since their memory may still be in use.
  void shutdown() {
    std::lock_guard<std::mutex> lock(mutex);
    if (has_releasable()) release_cached_segments();
    if (!live.empty()) {
      detail::log_warning(detail::str_cat("CachingAllocator(", device_name, ") destroyed with ", live.size(),
                                          " live blocks (", format_bytes(stats.allocated), ") in ",
                                          segments.size(),
                                          " segments; those segments are not returned to the device"));
    }
  }
};

CachingAllocator::CachingAllocator(std::unique_ptr<DeviceMemoryBackend> backend, std::string device_name) {
  EMBER_CHECK(backend != nullptr, "CachingAllocator(", device_name, "): the device memory backend is null");
  impl_ = std::make_unique<Impl>(std::move(backend), std::move(device_name));
}

CachingAllocator::~CachingAllocator() {
  try {
    impl_->shutdown();
  } catch (const std::exception& e) {
    detail::log_warning(
        detail::str_cat("CachingAllocator(", impl_->device_name, "): error while releasing the cache: ", e.what()));
  }
}

CachingAllocator::Block* CachingAllocator::allocate(size_t nbytes, StreamHandle stream) {
  if (nbytes == 0) return nullptr;
  return impl_->allocate(nbytes, stream);
}

void CachingAllocator::free(Block* block) {
  if (block == nullptr) return;
  impl_->free(block);
}

void CachingAllocator::record_stream(Block* block, StreamHandle stream) {
  if (block == nullptr) return;
  impl_->record_stream(block, stream);
}

void CachingAllocator::empty_cache() { impl_->empty_cache(); }

MemoryStats CachingAllocator::stats() const { return impl_->get_stats(); }

void CachingAllocator::reset_peak_stats() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->stats.max_allocated = impl_->stats.allocated;
  impl_->stats.max_reserved = impl_->stats.reserved;
}

void CachingAllocator::set_memory_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->limit = bytes;
  // Honour a lowered cap at once as far as the cache allows; live segments stay.
  if (bytes != 0 && impl_->stats.reserved > bytes && impl_->has_releasable()) impl_->release_cached_segments();
}

size_t CachingAllocator::memory_limit() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->limit;
}

std::string CachingAllocator::summary() const { return impl_->summary(); }

void* CachingAllocator::block_ptr(const Block* block) {
  return block == nullptr ? nullptr : reinterpret_cast<void*>(block->addr);
}

size_t CachingAllocator::block_size(const Block* block) { return block == nullptr ? 0 : block->size; }

StreamHandle CachingAllocator::block_stream(const Block* block) {
  return block == nullptr ? nullptr : block->stream;
}

size_t CachingAllocator::round_size(size_t nbytes) {
  EMBER_CHECK(nbytes <= kMaxRequest, "CachingAllocator: a request of ", nbytes, " bytes is too large");
  return nbytes < kMinBlockSize ? kMinBlockSize : round_up(nbytes, kMinBlockSize);
}

size_t CachingAllocator::segment_size(size_t rounded) {
  if (rounded <= kSmallSize) return kSmallBuffer;
  if (rounded < kMinLargeAlloc) return kLargeBuffer;
  return round_up(rounded, kRoundLarge);
}

}  // namespace ember
