// Argument errors a rank sees alone (they throw before any communication), options, and GPU requests without one.
#include "parallel/distributed/detail.h"
#include "tests/distributed/dist_testing.h"

namespace ember::distributed::testing {
namespace {

TEST(ProcessGroupErrors, BadRoot) {
  ProcessGroup& pg = world();
  Tensor t = ones({3});
  EXPECT_EMBER_ERROR(pg.broadcast(t, -1), "broadcast", "root -1", "not a rank");
  EXPECT_EMBER_ERROR(pg.broadcast_async(t, pg.size()), "broadcast", "root " + std::to_string(pg.size()),
                     "of " + std::to_string(pg.size()));
}

TEST(ProcessGroupErrors, AvgNeedsFloatingPoint) {
  ProcessGroup& pg = world();
  EXPECT_EMBER_ERROR(pg.all_reduce(ones({2}, kInt64), ReduceOp::Avg), "all_reduce", "Avg", "int64");
  EXPECT_EMBER_ERROR(pg.all_reduce(ones({2}, kBool), ReduceOp::Avg), "Avg", "bool");
  std::vector<Tensor> ins(static_cast<size_t>(pg.size()), zeros({2}, kUInt8));
  EXPECT_EMBER_ERROR(pg.reduce_scatter(zeros({2}, kUInt8), ins, ReduceOp::Avg), "reduce_scatter", "Avg", "uint8");
}

TEST(ProcessGroupErrors, UndefinedAndNonContiguousTensors) {
  ProcessGroup& pg = world();
  EXPECT_EMBER_ERROR(pg.all_reduce(Tensor()), "all_reduce", "undefined");
  Tensor t = zeros({3, 4}).t();
  EXPECT_EMBER_ERROR(pg.all_reduce(t), "all_reduce", "not contiguous", "float32 [4, 3]");
  EXPECT_EMBER_ERROR(pg.broadcast(t, 0), "broadcast", "not contiguous");
}

TEST(ProcessGroupErrors, AllGatherOutputsMustMatchTheInput) {
  ProcessGroup& pg = world();
  const size_t n = static_cast<size_t>(pg.size());
  Tensor in = ones({4});
  std::vector<Tensor> too_many(n + 1, zeros({4}));
  EXPECT_EMBER_ERROR(pg.all_gather(too_many, in), "all_gather", std::to_string(n + 1) + " output tensors",
                     "float32 [4]");
  std::vector<Tensor> wrong_shape(n, zeros({4}));
  wrong_shape.back() = zeros({5});
  EXPECT_EMBER_ERROR(pg.all_gather(wrong_shape, in), "all_gather", "outputs[" + std::to_string(n - 1) + "]",
                     "float32 [5]", "float32 [4]");
  std::vector<Tensor> wrong_dtype(n, zeros({4}, kFloat64));
  EXPECT_EMBER_ERROR(pg.all_gather(wrong_dtype, in), "outputs[0]", "float64 [4]", "float32 [4]");
  std::vector<Tensor> with_undefined(n, zeros({4}));
  with_undefined[0] = Tensor();
  EXPECT_EMBER_ERROR(pg.all_gather(with_undefined, in), "outputs[0]", "undefined");
}

TEST(ProcessGroupErrors, ReduceScatterInputsMustMatchTheOutput) {
  ProcessGroup& pg = world();
  const size_t n = static_cast<size_t>(pg.size());
  Tensor out = zeros({2, 3}, kInt32);
  std::vector<Tensor> too_few(n - 1, zeros({2, 3}, kInt32));
  EXPECT_EMBER_ERROR(pg.reduce_scatter(out, too_few), "reduce_scatter", std::to_string(n - 1) + " input tensors",
                     "int32 [2, 3]");
  std::vector<Tensor> wrong_shape(n, zeros({3, 2}, kInt32));
  EXPECT_EMBER_ERROR(pg.reduce_scatter(out, wrong_shape), "inputs[0]", "int32 [3, 2]", "int32 [2, 3]");
}

TEST(ProcessGroupErrors, ArgumentErrorsSendNothing) {
  // Had the failed calls above sent anything, this collective would mismatch across ranks.
  ProcessGroup& pg = world();
  Tensor t = full({2}, 1.0);
  pg.all_reduce(t);
  EXPECT_TRUE(equals(t, std::vector<double>(2, pg.size())));
}

TEST(ProcessGroupOptions, Validation) {
  EXPECT_EMBER_ERROR(init_process_group(InitOptions().backend("gloo")), "unknown backend 'gloo'", "auto", "nccl",
                     "mpi");
  EXPECT_EMBER_ERROR(init_process_group(InitOptions().timeout(std::chrono::milliseconds(0))), "timeout", "positive");
  EXPECT_EMBER_ERROR(init_process_group(InitOptions().device_id(-2)), "device_id(-2)");
  InitOptions o;
  EXPECT_EQ(o.backend(), "auto");
  EXPECT_EQ(o.timeout(), std::chrono::seconds(300));
  EXPECT_EQ(o.device_id(), -1);
  o.timeout(std::chrono::seconds(7));  // seconds convert
  EXPECT_EQ(o.timeout().count(), 7000);
}

TEST(ProcessGroupErrors, GpuRequestsWithoutAGpu) {
  if (cuda::is_available()) GTEST_SKIP() << "this machine has a GPU (the _CUDA tests cover it)";
  // Every rank fails alike, before any communication.
  EXPECT_EMBER_ERROR(init_process_group(InitOptions().backend("nccl")), "init_process_group", "\"nccl\"", "GPU",
                     cuda::is_compiled() ? "no CUDA device" : "built without CUDA");
  EXPECT_EMBER_ERROR(init_process_group(InitOptions().device_id(0)), "device_id(0)", "0 GPUs");
  EXPECT_EMBER_ERROR(world().cuda_device(), "cuda_device", "no GPU");
  // What a CUDA tensor reaching the group would hit: the NCCL backend cannot be made.
  detail::GroupConfig config;
  config.device = 0;
  auto impl = std::make_shared<detail::GroupImpl>(config);
  EXPECT_EMBER_ERROR(detail::make_nccl_backend(impl), cuda::is_compiled() ? "cuda:0" : "built without CUDA");
}

}  // namespace
}  // namespace ember::distributed::testing
