// A stalled rank: the others must throw within timeout + 3 s, naming the collective, its sequence number, the
// missing rank and the time waited. Disabled by default; CTest runs it alone (distributed.stall_*).
#include <thread>

#include "tests/distributed/dist_testing.h"

namespace ember::distributed::testing {
namespace {

using Clock = std::chrono::steady_clock;

TEST(Stall, DISABLED_LastRankStallsAndTheOthersThrow) {
  ProcessGroup& w = world();
  if (w.size() < 2) GTEST_SKIP() << "needs at least two ranks";
  const auto timeout = std::chrono::seconds(2);
  auto pg = init_process_group(InitOptions().timeout(timeout));
  pg->barrier();  // sequence number 1: everybody is here
  const int stalled = pg->size() - 1;
  Tensor t = ones({4});
  if (pg->rank() == stalled) {
    // Stalls past the others' timeout and their questions, then leaves without the collective.
    std::this_thread::sleep_for(timeout + std::chrono::milliseconds(2500));
    EXPECT_FALSE(pg->is_aborted());
    EXPECT_EQ(pg->sequence_number(), 1u);
    return;
  }
  const auto start = Clock::now();
  std::string message;
  try {
    pg->all_reduce(t);
    ADD_FAILURE() << "all_reduce with a stalled rank returned";
  } catch (const Error& e) {
    message = e.what();
  }
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, timeout - std::chrono::milliseconds(50));
  EXPECT_LE(elapsed, timeout + std::chrono::seconds(3));
  EXPECT_THAT(message, ::testing::HasSubstr("all_reduce (sequence number 2"));
  EXPECT_THAT(message, ::testing::HasSubstr("timed out on rank " + std::to_string(pg->rank())));
  EXPECT_THAT(message, ::testing::HasSubstr("Ranks that did not arrive: " + std::to_string(stalled) + " ("));
  EXPECT_THAT(message, ::testing::HasSubstr("rank " + std::to_string(stalled) +
                                            "'s last collective: barrier (sequence number 1)"));
  EXPECT_THAT(message, ::testing::ContainsRegex("after waiting [0-9]+ ms \\(timeout 2000 ms\\)"));
  EXPECT_TRUE(pg->is_aborted());
  // Later calls throw at once, naming the first failure.
  const auto again = Clock::now();
  EXPECT_EMBER_ERROR(pg->barrier(), "barrier", "aborted", "all_reduce (sequence number 2", "did not arrive");
  EXPECT_EMBER_ERROR(pg->all_reduce(t), "aborted", "all_reduce (sequence number 2");
  EXPECT_LT(Clock::now() - again, std::chrono::milliseconds(500));
  if (pg->rank() == 0) std::printf("the error every surviving rank got:\n  %s\n", message.c_str());
}

}  // namespace
}  // namespace ember::distributed::testing
