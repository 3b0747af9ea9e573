// Thread-safety: tensor creation, allocators, RNG, copies and device state used from many threads at once.
#include <atomic>
#include <thread>

#include "tests/testing.h"

namespace ember {
namespace {

class ThreadsTest : public testing::DeviceTest {};

TEST_P(ThreadsTest, HammerTensorCreationAndAllocators) {
  constexpr int kThreads = 8;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int i = 0; i < 200; ++i) {
          const int64_t n = 1 + (i * 37 + t * 11) % 5000;
          Tensor a = full({n}, static_cast<double>(t), opts());
          Tensor b = randn({n}, opts());
          Tensor c = empty({n, 2}, opts(kFloat64));
          c.select(1, 0).copy_(a);
          c.select(1, 1).copy_(b);
          Tensor back = c.select(1, 0).to(kFloat32);
          const std::vector<float> v = back.to_vector<float>();
          for (float x : v)
            if (x != static_cast<float>(t)) {
              ++failures;
              break;
            }
          // Logical CPU devices from several threads too.
          if (device().is_cpu()) {
            Tensor moved = a.to(Device::cpu(1 + t % 3)).to(device());
            if (moved.to_vector<float>() != a.to_vector<float>()) ++failures;
          }
        }
      } catch (const std::exception& e) {
        ++failures;
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  if (device().is_cuda()) {
    cuda::synchronize();
    EXPECT_EQ(cuda::memory_allocated(device().index()), 0u);
  }
}

TEST_P(ThreadsTest, GeneratorHandsOutDisjointStreams) {
  // Concurrent draws reserve disjoint counter ranges: no two threads get the same numbers.
  manual_seed(5);
  constexpr int kThreads = 6;
  std::vector<std::vector<float>> draws(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] { draws[static_cast<size_t>(t)] = rand({256}, opts()).to_vector<float>(); });
  for (auto& th : threads) th.join();
  for (int a = 0; a < kThreads; ++a)
    for (int b = a + 1; b < kThreads; ++b) EXPECT_NE(draws[static_cast<size_t>(a)], draws[static_cast<size_t>(b)]);
}

EMBER_INSTANTIATE_DEVICE_TESTS(ThreadsTest);

}  // namespace
}  // namespace ember
