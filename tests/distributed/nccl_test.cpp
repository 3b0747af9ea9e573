// Every collective on CUDA tensors (NCCL), also in a world of one, so that one GPU runs every NCCL call.
#include "runtime/cuda/stream.h"
#include "tests/distributed/collective_checks.h"

namespace ember::distributed::testing {
namespace {

// One GPU per rank of this node (NCCL cannot put two ranks on one GPU); uniform across a job's ranks.
#define REQUIRE_GPU_PER_RANK()                                                                               \
  do {                                                                                                       \
    EMBER_REQUIRE_CUDA();                                                                                    \
    if (cuda::device_count() < world().local_size())                                                         \
      GTEST_SKIP() << world().local_size() << " ranks on this node but " << cuda::device_count() << " GPUs"; \
  } while (0)

Device gpu() { return world().cuda_device(); }

TEST(ProcessGroupNccl, DeviceIsLocalRankModuloGpus_CUDA) {
  REQUIRE_GPU_PER_RANK();
  EXPECT_EQ(gpu(), Device::cuda(world().local_rank() % cuda::device_count()));
}

TEST(ProcessGroupNccl, AllReduceEveryDtypeOpAndShape_CUDA) {
  REQUIRE_GPU_PER_RANK();
  for (DType dt : all_dtypes())
    for (ReduceOp op : ops_for(dt))
      for (const auto& sizes : test_shapes()) check_all_reduce(world(), gpu(), dt, op, sizes);
  check_all_reduce(world(), gpu(), kFloat32, ReduceOp::Sum, {1 << 22});
}

TEST(ProcessGroupNccl, BroadcastFromEveryRoot_CUDA) {
  REQUIRE_GPU_PER_RANK();
  for (DType dt : all_dtypes())
    for (const auto& sizes : test_shapes()) check_broadcast(world(), gpu(), dt, sizes);
}

TEST(ProcessGroupNccl, AllGatherEveryKindOfOutputs_CUDA) {
  REQUIRE_GPU_PER_RANK();
  for (DType dt : all_dtypes())
    for (OutputKind kind : {OutputKind::Allocated, OutputKind::Separate, OutputKind::ChunksOfOne, OutputKind::InPlace})
      for (const auto& sizes : test_shapes()) check_all_gather(world(), gpu(), dt, sizes, kind);
}

TEST(ProcessGroupNccl, ReduceScatterEveryKindOfInputs_CUDA) {
  REQUIRE_GPU_PER_RANK();
  for (DType dt : all_dtypes())
    for (ReduceOp op : ops_for(dt))
      for (InputKind kind : {InputKind::Separate, InputKind::ChunksOfOne, InputKind::InPlace})
        for (const auto& sizes : test_shapes()) check_reduce_scatter(world(), gpu(), dt, op, sizes, kind);
}

TEST(ProcessGroupNccl, SeveralInFlightWaitedOutOfOrder_CUDA) {
  REQUIRE_GPU_PER_RANK();
  check_async_out_of_order(world(), gpu());
}

TEST(ProcessGroupNccl, OrderedWithTheCallersStream_CUDA) {
  REQUIRE_GPU_PER_RANK();
  ProcessGroup& pg = world();
  // Produce on a side stream, reduce, and consume on the same stream right after wait().
  cuda::StreamGuard guard(cuda::get_stream_from_pool(gpu().index()));
  const double n = pg.size();
  for (int round = 0; round < 5; ++round) {
    Tensor t = full({1 << 20}, 1.0, TensorOptions().device(gpu())) * static_cast<double>(pg.rank() + round);
    auto work = pg.all_reduce_async(t);
    work->wait();
    Tensor doubled = t * 2.0;
    const double sum_ranks = n * (n - 1) / 2 + n * round;
    EXPECT_EQ(doubled.sum().item<float>(), static_cast<float>(2.0 * sum_ranks * (1 << 20))) << "round " << round;
  }
}

TEST(ProcessGroupNccl, BackendsTakeOnlyTheirDevices_CUDA) {
  REQUIRE_GPU_PER_RANK();
  auto nccl = init_process_group(InitOptions().backend("nccl"));
  EXPECT_EMBER_ERROR(nccl->all_reduce(ones({2})), "all_reduce", "\"nccl\"", "CUDA tensors only");
  Tensor t = ones({2}, TensorOptions().device(gpu()));
  nccl->all_reduce(t);
  EXPECT_TRUE(equals(t, std::vector<double>(2, nccl->size())));
  nccl->barrier();  // MPI (or nothing in a world of one)
  EXPECT_EQ(nccl->all_gather_bytes("b").size(), static_cast<size_t>(nccl->size()));
  auto mpi = init_process_group(InitOptions().backend("mpi"));
  EXPECT_EMBER_ERROR(mpi->all_reduce(t), "all_reduce", "\"mpi\"", "CPU tensors only");
  if (cuda::device_count() > 1) {
    const int other = (gpu().index() + 1) % cuda::device_count();
    EXPECT_EMBER_ERROR(nccl->all_reduce(ones({2}, TensorOptions().device(Device::cuda(other)))), "drives cuda:");
  }
}

TEST(ProcessGroupNccl, AbortFailsLaterCalls_CUDA) {
  REQUIRE_GPU_PER_RANK();
  auto g = init_process_group(InitOptions().timeout(std::chrono::seconds(30)));
  Tensor t = ones({8}, TensorOptions().device(gpu()));
  auto done = g->all_reduce_async(t);
  done->wait();
  g->abort("stop the GPU test");
  EXPECT_EMBER_ERROR(g->all_reduce(t), "aborted", "stop the GPU test");
  EXPECT_TRUE(done->is_success());
  g->shutdown();
}

}  // namespace
}  // namespace ember::distributed::testing
