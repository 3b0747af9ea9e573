// main() of the multi-process tests: makes the world group, prints on rank 0 (others print only their
// failures, prefixed with their rank), and exits non-zero on every rank when any rank failed.
#include <cstdio>

#include "tests/distributed/dist_testing.h"

namespace ember::distributed::testing {

std::shared_ptr<ProcessGroup>& world_slot() {
  static std::shared_ptr<ProcessGroup> world;
  return world;
}

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                 r.message());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      std::fprintf(stderr, "[rank %d] [  FAILED  ] %s.%s\n", rank_, info.test_suite_name(), info.name());
  }

 private:
  int rank_;
};

}  // namespace
}  // namespace ember::distributed::testing

int main(int argc, char** argv) {
  using namespace ember;
  ::testing::InitGoogleTest(&argc, argv);
  auto& world = distributed::testing::world_slot();
  world = distributed::init_process_group(distributed::InitOptions().timeout(std::chrono::seconds(60)));
  const int rank = world->rank();
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    std::unique_ptr<::testing::TestEventListener> printer(listeners.Release(listeners.default_result_printer()));
    listeners.Append(new distributed::testing::RankFailurePrinter(rank));  // gtest takes ownership
  }
  const int rc = RUN_ALL_TESTS();

  // Every rank exits with the job's result, and rank 0 says which ranks failed.
  int status = rc == 0 ? 0 : 1;
  try {
    std::vector<Tensor> all;
    world->all_gather(all, tensor(std::vector<int32_t>{status}));
    std::string failed;
    for (size_t r = 0; r < all.size(); ++r)
      if (all[r].item<int32_t>() != 0) failed += (failed.empty() ? "" : ", ") + std::to_string(r);
    if (!failed.empty()) {
      status = 1;
      if (rank == 0) std::fprintf(stderr, "ranks with failed tests: %s (of %d)\n", failed.c_str(), world->size());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] gathering the results failed: %s\n", rank, e.what());
    status = 1;
  }
  world.reset();
  return status;
}
