// Tests of the host block cache behind cpu_allocate (Note [Host memory cache]): reuse by size class,
// the cap, emptying, alignment, and tensors going through it.
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "runtime/allocator.h"
#include "tests/testing.h"

namespace ember {
namespace {

class HostCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_limit_ = host_cache_limit();
    set_host_cache_limit(size_t{64} << 20);
    empty_host_cache();
  }
  void TearDown() override {
    empty_host_cache();
    set_host_cache_limit(previous_limit_);
  }

 private:
  size_t previous_limit_ = 0;
};

bool aligned(const DataPtr& p) { return reinterpret_cast<uintptr_t>(p.get()) % kCpuAlignment == 0; }

TEST_F(HostCacheTest, LargeBlocksAreReusedWithinTheirSizeClass) {
  void* first = nullptr;
  {
    DataPtr a = cpu_allocate(1 << 20);
    ASSERT_TRUE(a);
    EXPECT_TRUE(aligned(a));
    first = a.get();
  }
  EXPECT_EQ(host_cache_bytes(), size_t{1} << 20);
  // 1 MiB + 100 KiB rounds to the class 1.125 MiB: a different class, so a fresh block.
  {
    DataPtr b = cpu_allocate((1 << 20) + (100 << 10));
    EXPECT_NE(b.get(), first);
    EXPECT_EQ(host_cache_bytes(), size_t{1} << 20);
  }
  EXPECT_EQ(host_cache_bytes(), (size_t{1} << 20) + (size_t{9} << 17));
  // 1 MiB - 1000 bytes is in the 1 MiB class: the first block comes back.
  DataPtr c = cpu_allocate((1 << 20) - 1000);
  EXPECT_EQ(c.get(), first);
  EXPECT_EQ(host_cache_bytes(), size_t{9} << 17);
  // The whole class is usable: writing its last byte is fine (AddressSanitizer would see otherwise).
  static_cast<char*>(c.get())[(1 << 20) - 1] = 1;
}

TEST_F(HostCacheTest, SmallBlocksAreNotCached) {
  { DataPtr a = cpu_allocate(1000); }
  { DataPtr b = cpu_allocate(100 << 10); }
  EXPECT_EQ(host_cache_bytes(), 0u);
}

TEST_F(HostCacheTest, TheCapBoundsWhatIsKeptAndEmptyCacheReleasesIt) {
  set_host_cache_limit(size_t{2} << 20);
  {
    std::vector<DataPtr> blocks;
    for (int i = 0; i < 3; ++i) blocks.push_back(cpu_allocate(1 << 20));
  }
  EXPECT_EQ(host_cache_bytes(), size_t{2} << 20);  // the third went back to malloc
  set_host_cache_limit(size_t{1} << 20);           // below what is held: emptied
  EXPECT_EQ(host_cache_bytes(), 0u);
  { DataPtr a = cpu_allocate(1 << 20); }
  EXPECT_EQ(host_cache_bytes(), size_t{1} << 20);
  empty_host_cache();
  EXPECT_EQ(host_cache_bytes(), 0u);
  set_host_cache_limit(0);  // off
  { DataPtr a = cpu_allocate(4 << 20); }
  EXPECT_EQ(host_cache_bytes(), 0u);
}

TEST_F(HostCacheTest, TensorsGoThroughItAndKeepTheirValues) {
  Tensor a = full({512, 512}, 1.5);  // 1 MiB
  const void* ptr = a.raw_data();
  a = Tensor();
  EXPECT_EQ(host_cache_bytes(), size_t{1} << 20);
  Tensor b = zeros({256, 1024});  // same class: the same memory, zeroed
  EXPECT_EQ(b.raw_data(), ptr);
  EXPECT_EQ(b.sum().item<double>(), 0.0);
  Tensor c = arange(262144, TensorOptions(kFloat32)).reshape({512, 512}) + 0.0;
  EXPECT_EQ(c.select(0, 511).select(0, 511).item<float>(), 262143.0f);
}

TEST_F(HostCacheTest, ConcurrentAllocationsFromSeveralThreads) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const size_t n = (size_t{256} << 10) * static_cast<size_t>(1 + (i + t) % 5);
        DataPtr p = cpu_allocate(n);
        auto* bytes = static_cast<unsigned char*>(p.get());
        bytes[0] = static_cast<unsigned char>(t);
        bytes[n - 1] = static_cast<unsigned char>(i);
        if (bytes[0] != t || bytes[n - 1] != static_cast<unsigned char>(i) || !aligned(p)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(host_cache_bytes(), host_cache_limit());
}

}  // namespace
}  // namespace ember
