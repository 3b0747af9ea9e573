// DistributedDataParallel over the world group (run with 1, 2 and 3 ranks): DDP equals one process training
// on the concatenated batch; no_sync, buffers, gradient views, buckets, comm hooks, unused parameters,
// join() with uneven inputs, and mismatched models.
//
// Every rank builds the same data from the same seeds and takes its shard, so each rank can also compute
// the single-process reference by itself. Assertions never return early before a collective (a rank that
// left a test early would leave the others waiting).
#include "nn/nn.h"
#include "parallel/ddp.h"
#include "tests/distributed/dist_testing.h"

namespace ember {
namespace {

using distributed::testing::world;
std::shared_ptr<distributed::ProcessGroup> group() { return distributed::testing::world_slot(); }
using parallel::DDPOptions;
using parallel::DistributedDataParallel;

struct NetImpl : nn::Cloneable<NetImpl> {
  explicit NetImpl(bool use_bn = false) : use_bn(use_bn) { reset(); }
  void reset() override {
    fc1 = register_module("fc1", nn::Linear(6, 16));
    if (use_bn) bn = register_module("bn", nn::BatchNorm1d(16));
    fc2 = register_module("fc2", nn::Linear(16, 3));
  }
  Tensor forward(const Tensor& x) {
    Tensor h = fc1->forward(x);
    if (use_bn) h = bn->forward(h);
    return fc2->forward(h.tanh());
  }
  bool use_bn;
  nn::Linear fc1{nullptr}, fc2{nullptr};
  nn::BatchNorm1d bn{nullptr};
};
EMBER_MODULE(Net);

// The same model on every rank when `seed` is the same (float64, so comparisons can be tight).
Net make_net(uint64_t seed, bool use_bn = false) {
  manual_seed(seed);
  Net net(use_bn);
  net->to(kFloat64);
  return net;
}

struct Batch {
  Tensor x, y;
};
// The global batch of step `step` (every rank makes the same) and this rank's shard of it.
Batch global_batch(int step, int64_t per_rank) {
  manual_seed(1000 + static_cast<uint64_t>(step));
  const int64_t n = per_rank * world().size();
  return {randn({n, 6}, kFloat64), randint(0, 3, {n})};
}
Batch shard(const Batch& b, int rank, int64_t per_rank) {
  return {b.x.narrow(0, rank * per_rank, per_rank), b.y.narrow(0, rank * per_rank, per_rank)};
}
Tensor loss_of(const Tensor& logits, const Tensor& y) { return nn::functional::cross_entropy(logits, y); }

::testing::AssertionResult same_grads(nn::Module& a, nn::Module& b, double rtol = 1e-10, double atol = 1e-12) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& [name, p] : pa) {
    const Tensor q = pb.at(name);
    if (!p.grad().defined() || !q.grad().defined())
      return ::testing::AssertionFailure() << name << ": a gradient is undefined";
    auto r = testing::all_close(p.grad().cpu(), q.grad().cpu(), rtol, atol);
    if (!r) return r << " (gradient of " << name << ")";
  }
  return ::testing::AssertionSuccess();
}
::testing::AssertionResult same_params(nn::Module& a, nn::Module& b, double rtol = 1e-10, double atol = 1e-12) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& [name, p] : pa) {
    auto r = testing::all_close(p.cpu(), pb.at(name).cpu(), rtol, atol);
    if (!r) return r << " (parameter " << name << ")";
  }
  return ::testing::AssertionSuccess();
}

TEST(DistributedDataParallel, EqualsOneProcessOnTheConcatenatedBatch) {
  const int rank = world().rank();
  Net net = make_net(100 + static_cast<uint64_t>(rank));  // different on every rank: DDP broadcasts rank 0's
  Net ref = make_net(100);
  DistributedDataParallel<NetImpl> ddp(net, group(), DDPOptions());
  EXPECT_TRUE(same_params(*net, *ref, 0, 0));
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  optim::SGD ref_opt(ref->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  for (int step = 0; step < 4; ++step) {
    const Batch g = global_batch(step, 5);
    const Batch mine = shard(g, rank, 5);
    opt.zero_grad();
    loss_of(ddp->forward(mine.x), mine.y).backward();
    ref_opt.zero_grad();
    loss_of(ref->forward(g.x), g.y).backward();
    EXPECT_TRUE(same_grads(*net, *ref)) << "step " << step;
    opt.step();
    ref_opt.step();
  }
  EXPECT_TRUE(same_params(*net, *ref, 1e-10, 1e-12));
  EXPECT_EQ(ddp->module().get(), net.get());
  EXPECT_EQ(ddp->parameters().size(), net->parameters().size());
  EXPECT_EQ(ddp->state_dict().keys().front(), "module.fc1.weight");
}

TEST(DistributedDataParallel, NoSyncAccumulatesLocallyAndTheNextSyncAverages) {
  const int rank = world().rank();
  Net net = make_net(7), ref = make_net(7);
  DistributedDataParallel<NetImpl> ddp(net, group());
  const uint64_t before = world().sequence_number();
  for (int micro = 0; micro < 2; ++micro) {
    auto guard = ddp->no_sync();
    const Batch mine = shard(global_batch(micro, 4), rank, 4);
    loss_of(ddp->forward(mine.x), mine.y).backward();
  }
  EXPECT_EQ(world().sequence_number(), before);  // no collective while not syncing (no buffers either)
  const Batch mine = shard(global_batch(2, 4), rank, 4);
  loss_of(ddp->forward(mine.x), mine.y).backward();
  for (int micro = 0; micro < 3; ++micro) {
    const Batch g = global_batch(micro, 4);
    loss_of(ref->forward(g.x), g.y).backward();
  }
  EXPECT_TRUE(same_grads(*net, *ref));
}

TEST(DistributedDataParallel, BuffersComeFromRankZeroBeforeEachForward) {
  const int rank = world().rank();
  for (bool broadcast : {true, false}) {
    Net net = make_net(8, /*use_bn=*/true);
    DistributedDataParallel<NetImpl> ddp(net, group(), DDPOptions().broadcast_buffers(broadcast));
    manual_seed(50 + static_cast<uint64_t>(rank));
    ddp->forward(randn({6, 6}, kFloat64) * static_cast<double>(rank + 1));  // statistics differ per rank
    const Tensor own = net->bn->running_mean.clone();
    ddp->eval();
    ddp->forward(randn({2, 6}, kFloat64));  // broadcasts (when on) and leaves the statistics alone
    std::vector<Tensor> all;
    world().all_gather(all, net->bn->running_mean.contiguous());
    for (int r = 0; r < world().size(); ++r) {
      if (broadcast) {
        EXPECT_TRUE(testing::all_close(all[static_cast<size_t>(r)], all[0], 0, 0)) << "rank " << r;
      } else if (r == rank) {
        EXPECT_TRUE(testing::all_close(all[static_cast<size_t>(r)], own, 0, 0));
      }
    }
    if (!broadcast && world().size() > 1) {
      EXPECT_FALSE(testing::all_close(all[1], all[0], 1e-6, 0));  // left alone: still different
    }
  }
}

TEST(DistributedDataParallel, GradientsAreBucketViewsAndNeedNoCopies) {
  const int rank = world().rank();
  Net net = make_net(9), plain = make_net(9), ref = make_net(9);
  DistributedDataParallel<NetImpl> ddp(net, group(), DDPOptions().bucket_cap_mb(0.0003));  // ~300-byte buckets
  DistributedDataParallel<NetImpl> copied(plain, group(), DDPOptions().gradient_as_bucket_view(false));
  EXPECT_GT(ddp->reducer().num_buckets(), 1u);
  // Buckets in reverse registration order: fc2's parameters come first.
  EXPECT_EQ(ddp->reducer().bucket_layout().front().front(), net->parameters().size() - 1);
  std::vector<const void*> where;
  for (int step = 0; step < 3; ++step) {
    const Batch g = global_batch(step, 3);
    const Batch mine = shard(g, rank, 3);
    net->zero_grad(/*set_to_none=*/false);
    plain->zero_grad(/*set_to_none=*/false);
    ref->zero_grad(false);
    loss_of(ddp->forward(mine.x), mine.y).backward();
    loss_of(copied->forward(mine.x), mine.y).backward();
    loss_of(ref->forward(g.x), g.y).backward();
    EXPECT_TRUE(same_grads(*net, *ref));
    EXPECT_TRUE(same_grads(*plain, *ref));
    std::vector<const void*> now;
    for (const Tensor& p : net->parameters()) now.push_back(p.grad().raw_data());
    if (step == 0) where = now;
    EXPECT_EQ(now, where) << "the gradients moved: a step allocated new ones";
  }
  // Every gradient lies inside its bucket's buffer.
  const auto layout = ddp->reducer().bucket_layout();
  const auto params = net->parameters();
  for (size_t b = 0; b < layout.size(); ++b)
    for (size_t k : layout[b])
      EXPECT_EQ(params[k].grad().storage().get(), ddp->reducer().bucket_buffer(0, b).storage().get());
  for (const Tensor& p : plain->parameters())  // gradient_as_bucket_view(false): tensors of their own
    EXPECT_NE(p.grad().storage().get(), copied->reducer().bucket_buffer(0, 0).storage().get());
}

TEST(DistributedDataParallel, AStepAllocatesNoMoreThanTheBareModule) {
  const int rank = world().rank();
  Net bare = make_net(16), net = make_net(16);
  DistributedDataParallel<NetImpl> ddp(net, group(), DDPOptions().bucket_cap_mb(0.001));
  const Batch mine = shard(global_batch(0, 4), rank, 4);
  auto allocations_of = [&](auto&& forward, Net& model) {
    uint64_t last = 0;
    for (int step = 0; step < 3; ++step) {  // the first steps create gradients and buckets' views
      model->zero_grad(/*set_to_none=*/false);
      const uint64_t before = host_allocation_count();
      loss_of(forward(mine.x), mine.y).backward();
      last = host_allocation_count() - before;
    }
    return last;
  };
  const uint64_t plain = allocations_of([&](const Tensor& x) { return bare->forward(x); }, bare);
  const uint64_t wrapped = allocations_of([&](const Tensor& x) { return ddp->forward(x); }, net);
  EXPECT_GT(plain, 0u);
  EXPECT_EQ(wrapped, plain) << "DDP allocates per step";
}

TEST(DistributedDataParallel, CommHooksKeepTheirPrecision) {
  const int rank = world().rank();
  struct Case {
    parallel::CommHook hook;
    double rtol;
  };
  int calls = 0;
  const parallel::CommHook counting = [&calls](distributed::ProcessGroup& pg, const parallel::GradBucket& bucket) {
    ++calls;
    EXPECT_EQ(bucket.divisor(), pg.size());
    EXPECT_FALSE(bucket.parameters().empty());
    return parallel::allreduce_hook(pg, bucket);
  };
  for (const Case& c : {Case{parallel::fp16_compress, 2e-3}, Case{parallel::bf16_compress, 2e-2}, Case{counting, 1e-10}}) {
    Net net = make_net(10), ref = make_net(10);
    DistributedDataParallel<NetImpl> ddp(net, group());
    ddp->register_comm_hook(c.hook);
    const Batch g = global_batch(0, 4);
    const Batch mine = shard(g, rank, 4);
    loss_of(ddp->forward(mine.x), mine.y).backward();
    loss_of(ref->forward(g.x), g.y).backward();
    EXPECT_TRUE(same_grads(*net, *ref, c.rtol, c.rtol * 1e-2));
  }
  EXPECT_EQ(calls, 1);  // one bucket
  Net net = make_net(10);
  DistributedDataParallel<NetImpl> ddp(net, group());
  EXPECT_EMBER_ERROR(ddp->register_comm_hook(nullptr), "register_comm_hook", "empty");
}

struct TwoBranchImpl : nn::Cloneable<TwoBranchImpl> {
  TwoBranchImpl() { reset(); }
  void reset() override {
    a = register_module("a", nn::Linear(6, 3));
    b = register_module("b", nn::Linear(6, 3));
  }
  Tensor forward(const Tensor& x, bool use_b) { return use_b ? a->forward(x) + b->forward(x) : a->forward(x); }
  nn::Linear a{nullptr}, b{nullptr};
};
EMBER_MODULE(TwoBranch);

TEST(DistributedDataParallel, UnusedParametersAreNamedOrReducedAsZeros) {
  const int rank = world().rank();
  {
    manual_seed(11);
    TwoBranch net;
    DistributedDataParallel<TwoBranchImpl> ddp(net, group());
    const Batch mine = shard(global_batch(0, 2), rank, 2);
    loss_of(ddp->forward(mine.x.to(kFloat32), false), mine.y).backward();
    EXPECT_EMBER_ERROR(ddp->forward(mine.x.to(kFloat32), false), "no gradient", "'b.weight'", "'b.bias'",
                       "find_unused_parameters(true)");
  }
  manual_seed(12);
  TwoBranch net;
  manual_seed(12);
  TwoBranch ref;
  DistributedDataParallel<TwoBranchImpl> ddp(net, group(), DDPOptions().find_unused_parameters(true));
  for (int step = 0; step < 3; ++step) {
    const bool use_b = step == 1;
    const Batch g = global_batch(step, 2);
    const Batch mine = shard(g, rank, 2);
    net->zero_grad();
    ref->zero_grad();
    loss_of(ddp->forward(mine.x.to(kFloat32), use_b), mine.y).backward();
    loss_of(ref->forward(g.x.to(kFloat32), use_b), g.y).backward();
    EXPECT_TRUE(testing::all_close(net->a->weight.grad(), ref->a->weight.grad(), 1e-5, 1e-6)) << "step " << step;
    if (use_b) {
      EXPECT_TRUE(testing::all_close(net->b->weight.grad(), ref->b->weight.grad(), 1e-5, 1e-6));
    } else {
      EXPECT_TRUE(testing::values_are(net->b->bias.grad(), {3}, {0, 0, 0}));  // reduced as zeros
    }
  }
}

TEST(DistributedDataParallel, JoinLetsRanksHoldDifferentNumbersOfBatches) {
  const int rank = world().rank();
  const int size = world().size();
  Net net = make_net(13, /*use_bn=*/true), ref = make_net(13, /*use_bn=*/true);
  DistributedDataParallel<NetImpl> ddp(net, group());
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.05));
  optim::SGD ref_opt(ref->parameters(), optim::SGDOptions(0.05));
  ref->eval();  // batch statistics differ between the sharded and the reference run; compare without them
  ddp->eval();
  // Rank r has r + 1 batches of 3: step s involves the ranks r >= s.
  {
    auto join = ddp->join();
    for (int step = 0; step <= rank; ++step) {
      manual_seed(2000 + static_cast<uint64_t>(step * 10 + rank));
      const Tensor x = randn({3, 6}, kFloat64);
      const Tensor y = randint(0, 3, {3});
      opt.zero_grad();
      loss_of(ddp->forward(x), y).backward();
      opt.step();
    }
  }
  // The reference: at step s, the average of the gradients of the ranks still training.
  for (int step = 0; step <= rank; ++step) {
    ref_opt.zero_grad();
    Tensor total;
    for (int r = step; r < size; ++r) {
      manual_seed(2000 + static_cast<uint64_t>(step * 10 + r));
      const Tensor x = randn({3, 6}, kFloat64);
      const Tensor y = randint(0, 3, {3});
      Tensor l = loss_of(ref->forward(x), y);
      total = total.defined() ? total + l : l;
    }
    (total / static_cast<double>(size - step)).backward();
    ref_opt.step();
  }
  EXPECT_TRUE(same_params(*net, *ref, 1e-9, 1e-11));
}

TEST(DistributedDataParallel, ModelsThatDifferBetweenRanksAreRejectedByName) {
  const int rank = world().rank();
  manual_seed(14);
  nn::Sequential seq(nn::Linear(4, rank == 1 ? 5 : 4), nn::ReLU(), nn::Linear(rank == 1 ? 5 : 4, 2));
  if (world().size() == 1) {
    EXPECT_NO_THROW((void)DistributedDataParallel<nn::SequentialImpl>(seq, group()));
    return;
  }
  EXPECT_EMBER_ERROR((void)DistributedDataParallel<nn::SequentialImpl>(seq, group()), "not the same on every rank",
                     "parameter '0.weight' [4, 4]", "rank 1 has parameter '0.weight' [5, 4]",
                     "Ranks whose model differs from rank 0's: 1");
}

TEST(DistributedDataParallel, BadOptionsAndModulesAreClearErrors) {
  EXPECT_EMBER_ERROR(DDPOptions().bucket_cap_mb(0), "bucket_cap_mb", "positive");
  Net net = make_net(15);
  EXPECT_EMBER_ERROR((void)DistributedDataParallel<NetImpl>(net, nullptr), "process group is null");
  DistributedDataParallel<NetImpl> ddp(net, group());
  auto join = ddp->join();
  EXPECT_EMBER_ERROR((void)ddp->no_sync(), "no_sync() inside join()");
}

// On GPUs (one per rank, or a world of one on a single GPU): the NCCL path of the group, the reducer's
// communication-stream ordering and the comm hooks, against the CPU reference.
TEST(DistributedDataParallel, GpuRanksMatchTheCpuReference_CUDA) {
  if (!cuda::is_available() || cuda::device_count() < world().local_size())
    GTEST_SKIP() << "needs one GPU per rank of this node";
  const int rank = world().rank();
  const Device gpu = world().cuda_device();
  for (const parallel::CommHook& hook : {parallel::CommHook(parallel::allreduce_hook), parallel::CommHook(parallel::fp16_compress)}) {
    Net net = make_net(17, /*use_bn=*/true), ref = make_net(17, /*use_bn=*/true);
    net->to(gpu);
    DistributedDataParallel<NetImpl> ddp(net, group(), DDPOptions().bucket_cap_mb(0.001));
    ddp->register_comm_hook(hook);
    ddp->eval();
    ref->eval();
    optim::SGD opt(net->parameters(), optim::SGDOptions(0.1).momentum(0.9));
    optim::SGD ref_opt(ref->parameters(), optim::SGDOptions(0.1).momentum(0.9));
    for (int step = 0; step < 3; ++step) {
      const Batch g = global_batch(step, 4);
      const Batch mine = shard(g, rank, 4);
      opt.zero_grad();
      loss_of(ddp->forward(mine.x.to(gpu)), mine.y.to(gpu)).backward();
      opt.step();
      ref_opt.zero_grad();
      loss_of(ref->forward(g.x), g.y).backward();
      ref_opt.step();
    }
    EXPECT_TRUE(same_params(*net, *ref, 2e-3, 1e-5));
  }
}

}  // namespace
}  // namespace ember
