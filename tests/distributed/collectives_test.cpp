// Every collective of the world group on CPU tensors (MPI, or identities in a world of one), on every dtype.
#include <thread>

#include "tests/distributed/collective_checks.h"

namespace ember::distributed::testing {
namespace {

const Device kCpu = Device::cpu();

TEST(ProcessGroupWorld, DescribesTheJob) {
  ProcessGroup& pg = world();
  EXPECT_GE(pg.size(), 1);
  EXPECT_GE(pg.rank(), 0);
  EXPECT_LT(pg.rank(), pg.size());
  EXPECT_GE(pg.local_rank(), 0);
  EXPECT_LT(pg.local_rank(), pg.local_size());
  EXPECT_LE(pg.local_size(), pg.size());
  EXPECT_EQ(pg.backend(), "auto");
  EXPECT_EQ(pg.timeout(), std::chrono::seconds(60));
  EXPECT_FALSE(pg.is_aborted());
  // Every rank agrees on the size, and ranks are 0..n-1 each once.
  std::vector<Tensor> ranks;
  pg.all_gather(ranks, tensor(std::vector<int64_t>{pg.rank(), pg.size()}));
  for (int r = 0; r < pg.size(); ++r) {
    EXPECT_EQ(ranks[static_cast<size_t>(r)].to_vector<int64_t>(), (std::vector<int64_t>{r, pg.size()}));
  }
}

TEST(ProcessGroupAllReduce, EveryDtypeOpAndShape) {
  for (DType dt : all_dtypes())
    for (ReduceOp op : ops_for(dt))
      for (const auto& sizes : test_shapes()) check_all_reduce(world(), kCpu, dt, op, sizes);
}

TEST(ProcessGroupAllReduce, LargeTensors) {
  // Large enough for MPI's rendezvous protocols and several pipeline rounds.
  check_all_reduce(world(), kCpu, kFloat32, ReduceOp::Sum, {1 << 18});
  check_all_reduce(world(), kCpu, kFloat64, ReduceOp::Avg, {3, 1 << 15});
  check_all_reduce(world(), kCpu, kFloat16, ReduceOp::Max, {1 << 16});
  check_all_reduce(world(), kCpu, kInt64, ReduceOp::Min, {1 << 16});
}

TEST(ProcessGroupBroadcast, FromEveryRootEveryDtype) {
  for (DType dt : all_dtypes())
    for (const auto& sizes : test_shapes()) check_broadcast(world(), kCpu, dt, sizes);
  check_broadcast(world(), kCpu, kFloat32, {1 << 17});
}

TEST(ProcessGroupAllGather, EveryDtypeAndKindOfOutputs) {
  for (DType dt : all_dtypes())
    for (OutputKind kind : {OutputKind::Allocated, OutputKind::Separate, OutputKind::ChunksOfOne, OutputKind::InPlace})
      for (const auto& sizes : test_shapes()) check_all_gather(world(), kCpu, dt, sizes, kind);
  check_all_gather(world(), kCpu, kFloat32, {1 << 16}, OutputKind::ChunksOfOne);
}

TEST(ProcessGroupReduceScatter, EveryDtypeOpAndKindOfInputs) {
  for (DType dt : all_dtypes())
    for (ReduceOp op : ops_for(dt))
      for (InputKind kind : {InputKind::Separate, InputKind::ChunksOfOne, InputKind::InPlace})
        for (const auto& sizes : test_shapes()) check_reduce_scatter(world(), kCpu, dt, op, sizes, kind);
  check_reduce_scatter(world(), kCpu, kFloat32, ReduceOp::Sum, {1 << 16}, InputKind::Separate);
}

TEST(ProcessGroupBarrier, SyncAndAsync) {
  ProcessGroup& pg = world();
  for (int i = 0; i < 3; ++i) pg.barrier();
  auto a = pg.barrier_async();
  auto b = pg.barrier_async();
  b->wait();
  a->wait();
  EXPECT_TRUE(a->is_success());
  EXPECT_EQ(a->collective(), "barrier");
}

TEST(ProcessGroupBarrier, HoldsEveryRankUntilAllArrive) {
  ProcessGroup& pg = world();
  if (pg.size() < 2) GTEST_SKIP() << "needs two ranks";
  // The last rank arrives 300 ms late; nobody may leave the barrier before it arrives.
  if (pg.rank() == pg.size() - 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  pg.barrier();
  const auto waited = std::chrono::steady_clock::now() - start;
  if (pg.rank() != pg.size() - 1) {
    EXPECT_GE(waited, std::chrono::milliseconds(200));
  }
}

TEST(ProcessGroupAllGatherBytes, DifferentLengthsPerRank) {
  ProcessGroup& pg = world();
  auto bytes_of = [](int r) {
    if (r == 0) return std::string();  // rank 0 sends nothing
    std::string s(static_cast<size_t>(r) * 5, static_cast<char>('a' + r));
    s.push_back('\0');  // binary-safe
    s += "rank " + std::to_string(r);
    return s;
  };
  const std::vector<std::string> all = pg.all_gather_bytes(bytes_of(pg.rank()));
  ASSERT_EQ(all.size(), static_cast<size_t>(pg.size()));
  for (int r = 0; r < pg.size(); ++r) EXPECT_EQ(all[static_cast<size_t>(r)], bytes_of(r)) << "from rank " << r;
  // A large message from the last rank only.
  const std::string big(200000, 'z');
  const auto all2 = pg.all_gather_bytes(pg.rank() == pg.size() - 1 ? big : std::string("x"));
  for (int r = 0; r < pg.size(); ++r)
    EXPECT_EQ(all2[static_cast<size_t>(r)], r == pg.size() - 1 ? big : std::string("x"));
}

TEST(ProcessGroupAsync, SeveralInFlightWaitedOutOfOrder) { check_async_out_of_order(world(), kCpu); }

TEST(ProcessGroupAsync, CompletesWithoutWait) {
  ProcessGroup& pg = world();
  Tensor t = full({16}, pg.rank() + 1.0);
  auto work = pg.all_reduce_async(t);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!work->is_completed() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(work->is_completed());
  EXPECT_TRUE(work->is_success());
  const double n = pg.size();
  EXPECT_TRUE(equals(t, std::vector<double>(16, n * (n + 1) / 2)));
}

TEST(ProcessGroupSequence, CountsEveryCollectiveAndNoFailedCheck) {
  ProcessGroup& pg = world();
  const uint64_t s0 = pg.sequence_number();
  pg.barrier();
  EXPECT_EQ(pg.sequence_number(), s0 + 1);
  Tensor t = ones({3});
  pg.all_reduce(t);
  pg.broadcast(t, 0);
  EXPECT_EQ(pg.sequence_number(), s0 + 3);
  pg.all_gather_bytes("x");
  EXPECT_EQ(pg.sequence_number(), s0 + 4);
  EXPECT_THROW(pg.broadcast(t, -1), Error);
  EXPECT_THROW(pg.all_reduce(ones({2}, kInt64), ReduceOp::Avg), Error);
  EXPECT_EQ(pg.sequence_number(), s0 + 4) << "argument errors use no sequence number";
  auto w = pg.all_reduce_async(t);
  EXPECT_EQ(w->sequence_number(), s0 + 5);
  w->wait();
}

TEST(ProcessGroupInit, SecondGroupIsIndependent) {
  ProcessGroup& pg = world();
  auto g2 = init_process_group(InitOptions().backend("mpi").timeout(std::chrono::seconds(30)));
  EXPECT_EQ(g2->rank(), pg.rank());
  EXPECT_EQ(g2->size(), pg.size());
  EXPECT_EQ(g2->local_rank(), pg.local_rank());
  EXPECT_EQ(g2->backend(), "mpi");
  EXPECT_EQ(g2->timeout(), std::chrono::seconds(30));
  EXPECT_EQ(g2->sequence_number(), 0u);
  // Interleaved collectives on the two groups.
  Tensor a = full({4}, 1.0), b = full({4}, 2.0);
  auto wa = g2->all_reduce_async(a);
  auto wb = pg.all_reduce_async(b);
  wb->wait();
  wa->wait();
  EXPECT_TRUE(equals(a, std::vector<double>(4, pg.size())));
  EXPECT_TRUE(equals(b, std::vector<double>(4, 2.0 * pg.size())));
  EXPECT_EQ(g2->sequence_number(), 1u);
  destroy_process_group(g2);
  EXPECT_EMBER_ERROR(g2->barrier(), "barrier", "shut down");
  g2->shutdown();  // idempotent
}

TEST(ProcessGroupAbort, LaterCallsThrowNamingTheReason) {
  auto g = init_process_group(InitOptions().timeout(std::chrono::seconds(30)));
  Tensor t = ones({2});
  auto done = g->all_reduce_async(t);
  done->wait();
  // Every rank aborts alike (abort itself is local; nobody is left waiting).
  g->abort("the test says stop");
  EXPECT_TRUE(g->is_aborted());
  EXPECT_EMBER_ERROR(g->all_reduce(t), "all_reduce", "aborted", "the test says stop");
  EXPECT_EMBER_ERROR(g->barrier(), "barrier", "aborted", "the test says stop");
  EXPECT_EMBER_ERROR(g->all_gather_bytes("x"), "aborted");
  EXPECT_NO_THROW(done->wait()) << "a collective that finished before the abort stays a success";
  EXPECT_TRUE(done->is_success());
  g->abort("a second reason");  // the first one is kept
  EXPECT_EMBER_ERROR(g->barrier(), "the test says stop");
}

}  // namespace
}  // namespace ember::distributed::testing
