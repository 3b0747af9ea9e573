// Tests of the caching allocator's bookkeeping on a fake device: rounding, reuse, split/merge, stream
// ownership, record_stream deferral, stats, empty_cache, the OOM path and concurrent use.
#include "runtime/caching_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/error.h"
#include "tests/runtime/fake_device_memory.h"

namespace {

using ember::CachingAllocator;
using ember::MemoryStats;
using ember::StreamHandle;
using ember::test::FakeDeviceMemory;
using ember::test::fake_stream;
using Block = CachingAllocator::Block;

constexpr size_t kKiB = size_t{1} << 10;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGiB = size_t{1} << 30;

uintptr_t addr(const Block* b) { return reinterpret_cast<uintptr_t>(CachingAllocator::block_ptr(b)); }

// The message of the ember::Error that `f` throws ("" and a test failure if it throws none).
std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const ember::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an ember::Error";
  return "";
}

class CachingAllocatorTest : public ::testing::Test {
 protected:
  FakeDeviceMemory device{size_t{8} << 30};  // declared first: outlives the allocator
  CachingAllocator alloc{device.make_backend(), "cuda:0"};
  StreamHandle s0 = fake_stream(0);
  StreamHandle s1 = fake_stream(1);
  StreamHandle s2 = fake_stream(2);
};

TEST(CachingAllocatorRounding, RoundSize) {
  EXPECT_EQ(CachingAllocator::round_size(0), 512u);
  EXPECT_EQ(CachingAllocator::round_size(1), 512u);
  EXPECT_EQ(CachingAllocator::round_size(511), 512u);
  EXPECT_EQ(CachingAllocator::round_size(512), 512u);
  EXPECT_EQ(CachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CachingAllocator::round_size(1000), 1024u);
  EXPECT_EQ(CachingAllocator::round_size(kMiB), kMiB);
  EXPECT_EQ(CachingAllocator::round_size(kMiB + 1), kMiB + 512);
  EXPECT_EQ(CachingAllocator::round_size(10 * kMiB + 1), 10 * kMiB + 512);
  std::string msg = error_message([] { CachingAllocator::round_size(std::numeric_limits<size_t>::max()); });
  EXPECT_NE(msg.find("too large"), std::string::npos) << msg;
}

TEST(CachingAllocatorRounding, SegmentSize) {
  EXPECT_EQ(CachingAllocator::segment_size(512), 2 * kMiB);
  EXPECT_EQ(CachingAllocator::segment_size(kMiB), 2 * kMiB);
  EXPECT_EQ(CachingAllocator::segment_size(kMiB + 512), 20 * kMiB);
  EXPECT_EQ(CachingAllocator::segment_size(10 * kMiB - 512), 20 * kMiB);
  EXPECT_EQ(CachingAllocator::segment_size(10 * kMiB), 10 * kMiB);
  EXPECT_EQ(CachingAllocator::segment_size(10 * kMiB + 512), 12 * kMiB);
  EXPECT_EQ(CachingAllocator::segment_size(21 * kMiB), 22 * kMiB);
  EXPECT_EQ(CachingAllocator::segment_size(22 * kMiB), 22 * kMiB);
}

TEST_F(CachingAllocatorTest, ZeroSizeIsNullAndNullIsNoOp) {
  Block* b = alloc.allocate(0, s0);
  EXPECT_EQ(b, nullptr);
  EXPECT_EQ(CachingAllocator::block_ptr(b), nullptr);
  EXPECT_EQ(CachingAllocator::block_size(b), 0u);
  EXPECT_EQ(CachingAllocator::block_stream(b), nullptr);
  EXPECT_NO_THROW(alloc.record_stream(nullptr, s1));
  EXPECT_NO_THROW(alloc.free(nullptr));
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.num_allocs, 0u);
  EXPECT_EQ(st.num_frees, 0u);
  EXPECT_EQ(st.reserved, 0u);
  EXPECT_EQ(device.counters().mallocs, 0u);
}

TEST_F(CachingAllocatorTest, FreedBlockIsReused) {
  Block* a = alloc.allocate(1000, s0);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(CachingAllocator::block_size(a), 1024u);
  EXPECT_EQ(CachingAllocator::block_stream(a), s0);
  EXPECT_EQ(addr(a) % 512, 0u);
  uintptr_t pa = addr(a);
  alloc.free(a);
  Block* b = alloc.allocate(700, s0);  // same 1 KiB size class
  EXPECT_EQ(addr(b), pa);
  EXPECT_EQ(device.counters().mallocs, 1u);
  EXPECT_EQ(alloc.stats().num_device_mallocs, 1u);
  alloc.free(b);
}

TEST_F(CachingAllocatorTest, SmallAllocationsSplitOneSegment) {
  Block* a = alloc.allocate(1000, s0);
  Block* b = alloc.allocate(1000, s0);
  EXPECT_EQ(device.counters().mallocs, 1u);
  auto segs = device.live_segments();
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs.begin()->first, addr(a));
  EXPECT_EQ(segs.begin()->second, 2 * kMiB);
  EXPECT_EQ(addr(b), addr(a) + 1024);
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.reserved, 2 * kMiB);
  EXPECT_EQ(st.allocated, 2048u);
  EXPECT_EQ(st.requested, 2000u);
  EXPECT_EQ(st.num_segments, 1u);
  EXPECT_EQ(st.num_cached_blocks, 1u);  // the rest of the segment
  alloc.free(a);
  alloc.free(b);
}

TEST_F(CachingAllocatorTest, SmallRemainderOf512IsSplitOff) {
  Block* x = alloc.allocate(512, s0);
  Block* y = alloc.allocate(1536, s0);
  Block* z = alloc.allocate(512, s0);
  EXPECT_EQ(addr(y), addr(x) + 512);
  EXPECT_EQ(addr(z), addr(x) + 2048);
  uintptr_t py = addr(y);
  alloc.free(y);  // a 1536-byte hole between live x and z
  Block* h1 = alloc.allocate(1024, s0);  // best fit: the hole, not the segment's tail
  EXPECT_EQ(addr(h1), py);
  EXPECT_EQ(CachingAllocator::block_size(h1), 1024u);
  Block* h2 = alloc.allocate(512, s0);  // the 512-byte remainder
  EXPECT_EQ(addr(h2), py + 1024);
  EXPECT_EQ(alloc.stats().num_cached_blocks, 1u);
  EXPECT_EQ(device.counters().mallocs, 1u);
  for (Block* b : {x, z, h1, h2}) alloc.free(b);
  EXPECT_EQ(alloc.stats().num_cached_blocks, 1u);
}

TEST_F(CachingAllocatorTest, FreeBlocksMergeWithFreeNeighboursOnly) {
  Block* a = alloc.allocate(512 * kKiB, s0);
  Block* b = alloc.allocate(512 * kKiB, s0);
  Block* c = alloc.allocate(kMiB, s0);  // fills the 2 MiB segment
  ASSERT_EQ(device.counters().mallocs, 1u);
  EXPECT_EQ(addr(b), addr(a) + 512 * kKiB);
  EXPECT_EQ(addr(c), addr(a) + kMiB);
  EXPECT_EQ(alloc.stats().num_cached_blocks, 0u);
  uintptr_t pa = addr(a);

  alloc.free(b);  // neighbours a and c are live: no merge
  EXPECT_EQ(alloc.stats().num_cached_blocks, 1u);
  alloc.free(a);  // merges with b
  EXPECT_EQ(alloc.stats().num_cached_blocks, 1u);
  Block* d = alloc.allocate(kMiB, s0);  // only the merged a+b can hold it
  EXPECT_EQ(addr(d), pa);
  EXPECT_EQ(device.counters().mallocs, 1u);
  EXPECT_EQ(alloc.stats().num_cached_blocks, 0u);

  // Three-way merge: freeing the middle block last joins both sides into the whole segment,
  // which empty_cache can then return.
  Block* d1 = alloc.allocate(512 * kKiB, s0);  // nothing free: a new segment
  EXPECT_EQ(device.counters().mallocs, 2u);
  alloc.free(d1);
  alloc.empty_cache();  // returns d1's segment
  EXPECT_EQ(device.num_live_segments(), 1u);
  alloc.free(d);
  alloc.free(c);
  EXPECT_EQ(alloc.stats().num_cached_blocks, 1u);
  alloc.empty_cache();
  EXPECT_EQ(device.num_live_segments(), 0u);
  EXPECT_EQ(alloc.stats().reserved, 0u);
}

TEST_F(CachingAllocatorTest, MiddleBlockFreedLastMergesBothSides) {
  Block* a = alloc.allocate(512 * kKiB, s0);
  Block* b = alloc.allocate(512 * kKiB, s0);
  Block* c = alloc.allocate(kMiB, s0);
  alloc.free(a);
  alloc.free(c);
  EXPECT_EQ(alloc.stats().num_cached_blocks, 2u);
  alloc.free(b);
  EXPECT_EQ(alloc.stats().num_cached_blocks, 1u);
  alloc.empty_cache();  // only a whole free segment can go back
  EXPECT_EQ(device.num_live_segments(), 0u);
  EXPECT_EQ(alloc.stats().num_device_frees, 1u);
}

TEST_F(CachingAllocatorTest, LargeBlocksMerge) {
  Block* x = alloc.allocate(8 * kMiB, s0);
  Block* y = alloc.allocate(8 * kMiB, s0);
  EXPECT_EQ(addr(y), addr(x) + 8 * kMiB);  // both in one 20 MiB segment
  EXPECT_EQ(device.counters().mallocs, 1u);
  uintptr_t px = addr(x);
  alloc.free(x);
  alloc.free(y);
  EXPECT_EQ(alloc.stats().num_cached_blocks, 1u);
  Block* z = alloc.allocate(16 * kMiB, s0);
  EXPECT_EQ(addr(z), px);
  EXPECT_EQ(CachingAllocator::block_size(z), 16 * kMiB);
  EXPECT_EQ(device.counters().mallocs, 1u);
  alloc.free(z);
}

TEST_F(CachingAllocatorTest, LargeRoundingAndSegments) {
  // Mid sizes share 20 MiB segments.
  Block* a = alloc.allocate(3 * kMiB, s0);
  Block* b = alloc.allocate(5 * kMiB, s0);
  EXPECT_EQ(addr(b), addr(a) + 3 * kMiB);
  EXPECT_EQ(device.live_segments().begin()->second, 20 * kMiB);
  EXPECT_EQ(alloc.stats().reserved, 20 * kMiB);
  Block* c = alloc.allocate(12 * kMiB, s0);  // exactly the remaining 12 MiB
  EXPECT_EQ(addr(c), addr(a) + 8 * kMiB);
  EXPECT_EQ(device.counters().mallocs, 1u);
  Block* d = alloc.allocate(kMiB + 1, s0);
  EXPECT_EQ(CachingAllocator::block_size(d), kMiB + 512);
  EXPECT_EQ(device.counters().mallocs, 2u);
  EXPECT_EQ(alloc.stats().reserved, 40 * kMiB);

  // >= 10 MiB: a segment rounded up to 2 MiB; a remainder of at most 1 MiB stays in the block.
  Block* e = alloc.allocate(11 * kMiB, s1);
  EXPECT_EQ(CachingAllocator::block_size(e), 12 * kMiB);
  EXPECT_EQ(device.counters().mallocs, 3u);
  EXPECT_EQ(alloc.stats().reserved, 52 * kMiB);
  // ... a larger one is split off and serves a later mid-size request.
  Block* f = alloc.allocate(10 * kMiB + 1, s2);
  EXPECT_EQ(CachingAllocator::block_size(f), 10 * kMiB + 512);
  EXPECT_EQ(device.counters().mallocs, 4u);
  EXPECT_EQ(alloc.stats().reserved, 64 * kMiB);
  Block* g = alloc.allocate(1536 * kKiB, s2);
  EXPECT_EQ(addr(g), addr(f) + 10 * kMiB + 512);
  EXPECT_EQ(CachingAllocator::block_size(g), 2 * kMiB - 512);  // 511.5 KiB left: not split
  EXPECT_EQ(device.counters().mallocs, 4u);

  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.allocated, 20 * kMiB + (kMiB + 512) + 12 * kMiB + 12 * kMiB);
  for (Block* blk : {a, b, c, d, e, f, g}) alloc.free(blk);
  EXPECT_EQ(alloc.stats().allocated, 0u);
}

TEST_F(CachingAllocatorTest, PoolsDoNotMix) {
  Block* big = alloc.allocate(5 * kMiB, s0);
  alloc.free(big);  // a free 20 MiB large block
  Block* small = alloc.allocate(1000, s0);
  EXPECT_EQ(device.counters().mallocs, 2u);
  EXPECT_EQ(device.live_segments().at(addr(small)), 2 * kMiB);
  alloc.free(small);  // a free 2 MiB small block
  alloc.empty_cache();
  Block* s = alloc.allocate(1000, s0);
  alloc.free(s);  // cached 2 MiB small segment
  Block* mid = alloc.allocate(1536 * kKiB, s0);
  EXPECT_EQ(device.counters().mallocs, 4u);
  EXPECT_EQ(device.live_segments().at(addr(mid)), 20 * kMiB);
  alloc.free(mid);
}

TEST_F(CachingAllocatorTest, OversizedCachedBlockIsNotCarvedWhileMemoryIsAvailable) {
  Block* big = alloc.allocate(100 * kMiB, s0);
  uintptr_t pbig = addr(big);
  alloc.free(big);
  Block* x = alloc.allocate(12 * kMiB, s0);  // 100 >= 12 + 20: gets its own segment
  EXPECT_NE(addr(x), pbig);
  EXPECT_EQ(device.counters().mallocs, 2u);
  Block* y = alloc.allocate(90 * kMiB, s0);  // within 20 MiB of the cached block: reuses it
  EXPECT_EQ(addr(y), pbig);
  EXPECT_EQ(device.counters().mallocs, 2u);
  alloc.free(x);
  alloc.free(y);
}

TEST_F(CachingAllocatorTest, OversizedCachedBlockIsUsedBeforeFlushing) {
  alloc.set_memory_limit(100 * kMiB);
  Block* big = alloc.allocate(100 * kMiB, s0);
  uintptr_t pbig = addr(big);
  alloc.free(big);
  Block* x = alloc.allocate(12 * kMiB, s0);  // no room for a new segment: carve the cached one
  EXPECT_EQ(addr(x), pbig);
  EXPECT_EQ(CachingAllocator::block_size(x), 12 * kMiB);
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.num_alloc_retries, 0u);
  EXPECT_EQ(st.num_device_mallocs, 1u);
  EXPECT_EQ(st.num_device_frees, 0u);
  alloc.free(x);
}

TEST_F(CachingAllocatorTest, BlocksBelongToTheirStream) {
  Block* a = alloc.allocate(1000, s0);
  uintptr_t pa = addr(a);
  alloc.free(a);
  Block* b = alloc.allocate(1000, s1);
  EXPECT_NE(addr(b), pa);
  EXPECT_EQ(CachingAllocator::block_stream(b), s1);
  EXPECT_EQ(device.counters().mallocs, 2u);
  Block* d = alloc.allocate(1000, nullptr);  // the default stream is a stream of its own
  EXPECT_EQ(device.counters().mallocs, 3u);
  Block* c = alloc.allocate(1000, s0);
  EXPECT_EQ(addr(c), pa);
  EXPECT_EQ(device.counters().mallocs, 3u);
  for (Block* blk : {b, c, d}) alloc.free(blk);
}

TEST_F(CachingAllocatorTest, RecordStreamDefersReuseUntilEventsComplete) {
  Block* a = alloc.allocate(1000, s0);
  uintptr_t pa = addr(a);
  device.set_stream_busy(s1, true);
  alloc.record_stream(a, s1);
  alloc.record_stream(a, s1);  // once per stream
  alloc.record_stream(a, s0);  // its own stream: nothing to wait for
  alloc.free(a);
  EXPECT_EQ(device.counters().events_created, 1u);
  EXPECT_EQ(device.counters().event_records, 1u);
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.allocated, 0u);
  EXPECT_EQ(st.num_cached_blocks, 1u);  // only the segment's tail; `a` waits outside the pool

  Block* b = alloc.allocate(1000, s0);
  EXPECT_NE(addr(b), pa);
  EXPECT_EQ(addr(b), pa + 1024);
  Block* b2 = alloc.allocate(1000, s0);  // still pending
  EXPECT_NE(addr(b2), pa);
  alloc.free(b2);

  device.set_stream_busy(s1, false);
  alloc.free(b);
  Block* c = alloc.allocate(1000, s0);  // processes the completed event first
  EXPECT_EQ(addr(c), pa);
  EXPECT_EQ(device.counters().events_destroyed, 1u);
  EXPECT_EQ(device.live_events(), 0u);
  EXPECT_EQ(device.counters().mallocs, 1u);
  alloc.free(c);
  EXPECT_EQ(device.counters().bad_calls, 0u);
}

TEST_F(CachingAllocatorTest, RecordStreamWaitsForEveryStream) {
  Block* a = alloc.allocate(kMiB, s0);
  Block* filler = alloc.allocate(kMiB, s0);  // fills the segment: a new request must reuse `a`
  uintptr_t pa = addr(a);
  device.set_stream_busy(s1, true);
  device.set_stream_busy(s2, true);
  alloc.record_stream(a, s1);
  alloc.record_stream(a, s2);
  alloc.free(a);
  EXPECT_EQ(device.counters().events_created, 2u);

  device.set_stream_busy(s1, false);
  Block* b = alloc.allocate(kMiB, s0);
  EXPECT_NE(addr(b), pa);
  EXPECT_EQ(device.counters().mallocs, 2u);
  alloc.free(b);

  device.set_stream_busy(s2, false);
  Block* c = alloc.allocate(kMiB, s0);
  EXPECT_EQ(addr(c), pa);
  EXPECT_EQ(device.live_events(), 0u);
  alloc.free(c);
  alloc.free(filler);
}

TEST_F(CachingAllocatorTest, PendingBlockIsNotMerged) {
  Block* a = alloc.allocate(kMiB, s0);
  Block* b = alloc.allocate(kMiB, s0);
  uintptr_t pa = addr(a);
  device.set_stream_busy(s1, true);
  alloc.record_stream(a, s1);
  alloc.free(a);
  alloc.free(b);
  EXPECT_EQ(alloc.stats().num_cached_blocks, 1u);
  Block* c = alloc.allocate(kMiB, s0);
  EXPECT_EQ(addr(c), pa + kMiB);  // b alone, not a merged a+b (which would start at a)
  alloc.free(c);
  // The event completing returns `a` and merges the whole segment.
  device.set_stream_busy(s1, false);
  Block* d = alloc.allocate(512, s1);  // any allocate processes events
  alloc.free(d);
  EXPECT_EQ(alloc.stats().num_segments, 2u);
  alloc.empty_cache();
  EXPECT_EQ(alloc.stats().num_segments, 0u);
}

TEST_F(CachingAllocatorTest, EmptyCacheSynchronizesDeferredFrees) {
  Block* a = alloc.allocate(1000, s0);
  device.set_stream_busy(s1, true);
  alloc.record_stream(a, s1);
  alloc.free(a);
  EXPECT_EQ(device.incomplete_events(), 1u);
  alloc.empty_cache();
  EXPECT_EQ(device.num_live_segments(), 0u);
  EXPECT_EQ(device.live_events(), 0u);
  EXPECT_GE(device.counters().device_syncs, 1u);
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.reserved, 0u);
  EXPECT_EQ(st.num_segments, 0u);
  EXPECT_EQ(st.num_cached_blocks, 0u);
}

TEST_F(CachingAllocatorTest, Stats) {
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.allocated, 0u);
  EXPECT_EQ(st.reserved, 0u);
  EXPECT_EQ(st.max_allocated, 0u);

  Block* a = alloc.allocate(1000, s0);
  st = alloc.stats();
  EXPECT_EQ(st.allocated, 1024u);
  EXPECT_EQ(st.requested, 1000u);
  EXPECT_EQ(st.reserved, 2 * kMiB);
  EXPECT_EQ(st.max_allocated, 1024u);
  EXPECT_EQ(st.max_reserved, 2 * kMiB);
  EXPECT_EQ(st.num_allocs, 1u);
  EXPECT_EQ(st.num_device_mallocs, 1u);
  EXPECT_EQ(st.num_segments, 1u);
  EXPECT_EQ(st.num_cached_blocks, 1u);

  Block* b = alloc.allocate(5 * kMiB, s0);
  st = alloc.stats();
  EXPECT_EQ(st.allocated, 1024 + 5 * kMiB);
  EXPECT_EQ(st.requested, 1000 + 5 * kMiB);
  EXPECT_EQ(st.reserved, 22 * kMiB);
  EXPECT_EQ(st.num_device_mallocs, 2u);
  EXPECT_EQ(st.num_segments, 2u);

  alloc.free(b);
  st = alloc.stats();
  EXPECT_EQ(st.allocated, 1024u);
  EXPECT_EQ(st.requested, 1000u);
  EXPECT_EQ(st.max_allocated, 1024 + 5 * kMiB);
  EXPECT_EQ(st.num_frees, 1u);
  EXPECT_EQ(st.num_cached_blocks, 2u);

  alloc.reset_peak_stats();
  st = alloc.stats();
  EXPECT_EQ(st.max_allocated, 1024u);
  EXPECT_EQ(st.max_reserved, 22 * kMiB);

  alloc.empty_cache();
  st = alloc.stats();
  EXPECT_EQ(st.reserved, 2 * kMiB);
  EXPECT_EQ(st.max_reserved, 22 * kMiB);
  EXPECT_EQ(st.num_device_frees, 1u);
  EXPECT_EQ(st.num_segments, 1u);
  alloc.reset_peak_stats();
  EXPECT_EQ(alloc.stats().max_reserved, 2 * kMiB);

  alloc.free(a);
  st = alloc.stats();
  EXPECT_EQ(st.allocated, 0u);
  EXPECT_EQ(st.requested, 0u);
  EXPECT_EQ(st.num_allocs, 2u);
  EXPECT_EQ(st.num_frees, 2u);
  EXPECT_EQ(st.num_ooms, 0u);
  EXPECT_EQ(st.num_alloc_retries, 0u);
}

TEST_F(CachingAllocatorTest, EmptyCacheKeepsLiveSegments) {
  Block* a = alloc.allocate(1000, s0);
  Block* b = alloc.allocate(3 * kMiB, s0);
  Block* c = alloc.allocate(2000, s0);
  alloc.free(b);
  alloc.free(c);
  alloc.empty_cache();
  EXPECT_EQ(device.num_live_segments(), 1u);
  EXPECT_TRUE(device.is_live_segment(CachingAllocator::block_ptr(a)));
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.num_device_frees, 1u);
  EXPECT_EQ(st.reserved, 2 * kMiB);
  EXPECT_EQ(device.counters().device_syncs, 1u);
  alloc.empty_cache();  // nothing to release: no device synchronize
  EXPECT_EQ(device.counters().device_syncs, 1u);
  alloc.free(a);
  alloc.empty_cache();
  EXPECT_EQ(device.num_live_segments(), 0u);
  EXPECT_EQ(device.used(), 0u);
}

TEST_F(CachingAllocatorTest, OomUnderLimitFlushesCacheAndRetries) {
  alloc.set_memory_limit(24 * kMiB);
  EXPECT_EQ(alloc.memory_limit(), 24 * kMiB);
  Block* a = alloc.allocate(5 * kMiB, s0);  // 20 MiB segment
  alloc.free(a);
  Block* b = alloc.allocate(22 * kMiB, s0);  // 20 + 22 > 24: flush the cached segment, retry
  ASSERT_NE(b, nullptr);
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.num_alloc_retries, 1u);
  EXPECT_EQ(st.num_device_frees, 1u);
  EXPECT_EQ(st.reserved, 22 * kMiB);
  EXPECT_EQ(st.num_ooms, 0u);
  EXPECT_EQ(device.counters().failed_mallocs, 0u);  // the cap is checked before the backend
  EXPECT_EQ(device.num_live_segments(), 1u);
  alloc.free(b);
}

TEST(CachingAllocatorOom, BackendOomFlushesCacheAndRetries) {
  FakeDeviceMemory device(30 * kMiB);
  CachingAllocator alloc(device.make_backend(), "cuda:0");
  Block* a = alloc.allocate(5 * kMiB, fake_stream(0));
  alloc.free(a);
  Block* b = alloc.allocate(22 * kMiB, fake_stream(0));
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(device.counters().failed_mallocs, 1u);
  EXPECT_EQ(device.counters().frees, 1u);
  EXPECT_EQ(alloc.stats().num_alloc_retries, 1u);
  EXPECT_EQ(alloc.stats().reserved, 22 * kMiB);
  EXPECT_EQ(device.used(), 22 * kMiB);
  alloc.free(b);
}

TEST(CachingAllocatorOom, RetryReusesBlocksOfCompletedDeferredFrees) {
  FakeDeviceMemory device(2 * kMiB);
  CachingAllocator alloc(device.make_backend(), "cuda:0");
  StreamHandle s0 = fake_stream(0);
  Block* a = alloc.allocate(kMiB, s0);
  Block* filler = alloc.allocate(kMiB, s0);
  uintptr_t pa = addr(a);
  device.set_stream_busy(fake_stream(1), true);
  alloc.record_stream(a, fake_stream(1));
  alloc.free(a);
  // No device memory left and `a` pending: the flush synchronizes and hands `a` out.
  Block* b = alloc.allocate(kMiB, s0);
  EXPECT_EQ(addr(b), pa);
  EXPECT_EQ(alloc.stats().num_alloc_retries, 1u);
  EXPECT_EQ(device.counters().mallocs, 1u);
  alloc.free(b);
  alloc.free(filler);
}

TEST_F(CachingAllocatorTest, OomErrorReportsTheFigures) {
  device.set_capacity(kGiB);
  alloc.set_memory_limit(24 * kMiB);
  Block* a = alloc.allocate(5 * kMiB, s0);
  std::string msg = error_message([&] { alloc.allocate(22 * kMiB, s0); });
  EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tried to allocate 22.00 MiB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("5.00 MiB allocated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("20.00 MiB reserved"), std::string::npos) << msg;
  EXPECT_NE(msg.find("memory limit 24.00 MiB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1.00 GiB"), std::string::npos) << msg;                // device total
  EXPECT_NE(msg.find("1004.00 MiB is free"), std::string::npos) << msg;     // 1 GiB - 20 MiB
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.num_ooms, 1u);
  EXPECT_EQ(st.num_alloc_retries, 1u);
  EXPECT_EQ(st.num_allocs, 1u);
  EXPECT_EQ(st.allocated, 5 * kMiB);
  EXPECT_EQ(st.reserved, 20 * kMiB);

  // The failure leaves the allocator usable.
  alloc.free(a);
  Block* b = alloc.allocate(22 * kMiB, s0);
  EXPECT_EQ(CachingAllocator::block_size(b), 22 * kMiB);
  EXPECT_EQ(alloc.stats().num_alloc_retries, 2u);
  alloc.free(b);
}

TEST(CachingAllocatorOom, BackendOomErrorWithoutLimit) {
  FakeDeviceMemory device(16 * kMiB);
  CachingAllocator alloc(device.make_backend(), "cuda:3");
  std::string msg = error_message([&] { alloc.allocate(20 * kMiB, fake_stream(0)); });
  EXPECT_NE(msg.find("out of memory on cuda:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("20.00 MiB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("total capacity of 16.00 MiB of which 16.00 MiB is free"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0 bytes allocated"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("limit"), std::string::npos) << msg;
  EXPECT_EQ(alloc.stats().num_ooms, 1u);
  EXPECT_EQ(device.counters().failed_mallocs, 2u);  // first try and the retry
}

TEST_F(CachingAllocatorTest, HugeRequestIsAnOom) {
  std::string msg = error_message([&] { alloc.allocate(std::numeric_limits<size_t>::max(), s0); });
  EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
  EXPECT_EQ(alloc.stats().num_ooms, 1u);
  msg = error_message([&] { alloc.allocate(size_t{1} << 50, s0); });  // 1 PiB: the backend refuses
  EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
  EXPECT_EQ(alloc.stats().num_ooms, 2u);
  EXPECT_EQ(alloc.stats().reserved, 0u);
}

TEST_F(CachingAllocatorTest, LoweringTheLimitReleasesCachedSegments) {
  Block* a = alloc.allocate(5 * kMiB, s0);
  alloc.free(a);
  Block* b = alloc.allocate(1000, s0);
  EXPECT_EQ(alloc.stats().reserved, 22 * kMiB);
  alloc.set_memory_limit(4 * kMiB);
  EXPECT_EQ(alloc.stats().reserved, 2 * kMiB);
  EXPECT_EQ(device.num_live_segments(), 1u);
  std::string msg = error_message([&] { alloc.allocate(3 * kMiB, s0); });  // needs a 20 MiB segment
  EXPECT_NE(msg.find("memory limit 4.00 MiB (2.00 MiB free under the limit)"), std::string::npos) << msg;
  alloc.set_memory_limit(0);
  EXPECT_EQ(alloc.memory_limit(), 0u);
  Block* c = alloc.allocate(3 * kMiB, s0);
  EXPECT_NE(c, nullptr);
  alloc.free(b);
  alloc.free(c);
}

TEST_F(CachingAllocatorTest, InvalidFreesAreCaught) {
  Block* a = alloc.allocate(1000, s0);
  alloc.free(a);
  std::string msg = error_message([&] { alloc.free(a); });
  EXPECT_NE(msg.find("double free"), std::string::npos) << msg;
  msg = error_message([&] { alloc.record_stream(a, s1); });
  EXPECT_NE(msg.find("not allocated"), std::string::npos) << msg;

  FakeDeviceMemory other_device(kGiB);
  CachingAllocator other(other_device.make_backend(), "cuda:1");
  Block* foreign = other.allocate(1000, s0);
  msg = error_message([&] { alloc.free(foreign); });
  EXPECT_NE(msg.find("another allocator"), std::string::npos) << msg;
  other.free(foreign);
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.num_frees, 1u);
  EXPECT_EQ(st.allocated, 0u);
}

TEST_F(CachingAllocatorTest, Summary) {
  Block* a = alloc.allocate(1000, s0);
  std::string s = alloc.summary();
  EXPECT_NE(s.find("cuda:0"), std::string::npos) << s;
  EXPECT_NE(s.find("allocated: 1.00 KiB in 1 blocks"), std::string::npos) << s;
  EXPECT_NE(s.find("reserved:  2.00 MiB in 1 segments"), std::string::npos) << s;
  EXPECT_GE(std::count(s.begin(), s.end(), '\n'), 4);
  alloc.free(a);
}

TEST(CachingAllocatorLifetime, DestructorReturnsCachedSegmentsAndEvents) {
  FakeDeviceMemory device(kGiB);
  {
    CachingAllocator alloc(device.make_backend(), "cuda:1");
    alloc.free(alloc.allocate(1000, fake_stream(0)));
    alloc.free(alloc.allocate(5 * kMiB, fake_stream(0)));
    Block* c = alloc.allocate(1000, fake_stream(1));
    device.set_stream_busy(fake_stream(2), true);
    alloc.record_stream(c, fake_stream(2));
    alloc.free(c);
    EXPECT_EQ(device.num_live_segments(), 3u);
  }
  EXPECT_EQ(device.num_live_segments(), 0u);
  EXPECT_EQ(device.used(), 0u);
  EXPECT_EQ(device.counters().frees, 3u);
  EXPECT_EQ(device.live_events(), 0u);
  EXPECT_EQ(device.counters().bad_calls, 0u);
}

TEST(CachingAllocatorLifetime, DestructorReportsLiveBlocks) {
  FakeDeviceMemory device(kGiB);
  ::testing::internal::CaptureStderr();
  {
    CachingAllocator alloc(device.make_backend(), "cuda:1");
    alloc.allocate(1000, fake_stream(0));          // never freed
    alloc.free(alloc.allocate(5 * kMiB, fake_stream(0)));
  }
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("cuda:1"), std::string::npos) << err;
  EXPECT_NE(err.find("1 live blocks (1.00 KiB)"), std::string::npos) << err;
  EXPECT_EQ(device.num_live_segments(), 1u);  // the live block's segment stays with the device
  EXPECT_EQ(device.used(), 2 * kMiB);
}

TEST(CachingAllocatorLifetime, NullBackendIsRejected) {
  std::string msg = error_message([] { CachingAllocator alloc(nullptr, "cuda:0"); });
  EXPECT_NE(msg.find("backend is null"), std::string::npos) << msg;
}

// Several threads allocate and free on their own streams, recording some blocks on a side stream
// that another thread keeps toggling busy; a shared map of live ranges checks that no two live
// blocks ever overlap.
TEST(CachingAllocatorThreads, Hammer) {
  FakeDeviceMemory device(size_t{64} << 30);
  CachingAllocator alloc(device.make_backend(), "cuda:0");
  constexpr int kThreads = 4;
  constexpr int kOps = 3000;
  StreamHandle side = fake_stream(100);

  std::mutex ranges_mu;
  std::map<uintptr_t, size_t> live_ranges;
  std::atomic<int> errors{0};
  std::atomic<uint64_t> total_allocs{0};
  std::atomic<bool> done{false};

  auto add_range = [&](const Block* b) {
    std::lock_guard<std::mutex> lock(ranges_mu);
    uintptr_t p = addr(b);
    size_t n = CachingAllocator::block_size(b);
    auto next = live_ranges.lower_bound(p);
    if (next != live_ranges.end() && next->first < p + n) ++errors;
    if (next != live_ranges.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second > p) ++errors;
    }
    live_ranges.emplace(p, n);
  };
  auto remove_range = [&](const Block* b) {
    std::lock_guard<std::mutex> lock(ranges_mu);
    if (live_ranges.erase(addr(b)) != 1) ++errors;
  };

  auto worker = [&](int t) {
    std::mt19937_64 rng(1234 + t);
    StreamHandle stream = fake_stream(t);
    std::vector<Block*> held;
    for (int op = 0; op < kOps; ++op) {
      bool do_alloc = held.empty() || (held.size() < 64 && rng() % 100 < 55);
      if (do_alloc) {
        uint64_t kind = rng() % 100;
        size_t n = kind < 70   ? 1 + rng() % kMiB
                   : kind < 95 ? kMiB + 1 + rng() % (9 * kMiB)
                               : 10 * kMiB + rng() % (30 * kMiB);
        Block* b = alloc.allocate(n, stream);
        if (b == nullptr || CachingAllocator::block_size(b) < n || addr(b) % 512 != 0 ||
            CachingAllocator::block_stream(b) != stream) {
          ++errors;
          continue;
        }
        add_range(b);
        if (rng() % 10 == 0) alloc.record_stream(b, side);
        held.push_back(b);
        ++total_allocs;
      } else {
        size_t i = rng() % held.size();
        remove_range(held[i]);
        alloc.free(held[i]);
        held[i] = held.back();
        held.pop_back();
      }
    }
    for (Block* b : held) {
      remove_range(b);
      alloc.free(b);
    }
  };

  std::thread observer([&] {
    bool busy = false;
    while (!done.load()) {
      busy = !busy;
      device.set_stream_busy(side, busy);
      MemoryStats st = alloc.stats();
      if (st.allocated > st.reserved || st.max_allocated < st.allocated) ++errors;
      if (alloc.summary().empty()) ++errors;
      std::this_thread::yield();
    }
    device.set_stream_busy(side, false);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  done = true;
  observer.join();

  EXPECT_EQ(errors.load(), 0);
  EXPECT_TRUE(live_ranges.empty());
  MemoryStats st = alloc.stats();
  EXPECT_EQ(st.allocated, 0u);
  EXPECT_EQ(st.requested, 0u);
  EXPECT_EQ(st.num_allocs, total_allocs.load());
  EXPECT_EQ(st.num_frees, total_allocs.load());
  EXPECT_EQ(st.num_ooms, 0u);
  EXPECT_GT(st.max_allocated, 0u);
  EXPECT_LE(st.reserved, st.max_reserved);
  EXPECT_EQ(st.reserved, device.used());
  EXPECT_EQ(st.num_segments, device.num_live_segments());
  EXPECT_EQ(st.num_device_mallocs - st.num_device_frees, device.num_live_segments());
  EXPECT_EQ(device.counters().mallocs, st.num_device_mallocs);
  // The run exercised the cache and the deferred frees, not just the backend.
  EXPECT_LT(st.num_device_mallocs * 10, st.num_allocs);
  EXPECT_GT(device.counters().events_created, 0u);

  alloc.empty_cache();
  st = alloc.stats();
  EXPECT_EQ(st.reserved, 0u);
  EXPECT_EQ(st.num_segments, 0u);
  EXPECT_EQ(st.num_cached_blocks, 0u);
  EXPECT_EQ(device.num_live_segments(), 0u);
  EXPECT_EQ(device.live_events(), 0u);
  EXPECT_EQ(device.counters().bad_calls, 0u);
}

}  // namespace
