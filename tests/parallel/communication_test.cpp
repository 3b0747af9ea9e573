// The collective watchdog (with made-up collectives), the reducer's buckets and gradient views, and the
// NCCL communicator and reducer on a single GPU (so that a one-GPU machine runs every NCCL call).
#include <atomic>
#include <chrono>
#include <thread>

#include "nn/nn.h"
#include "parallel/comm/watchdog.h"
#include "parallel/data_parallel.h"
#include "parallel/reducer.h"
#include "tests/testing.h"

namespace ember {
namespace {

using namespace std::chrono_literals;
using parallel::CollectiveWatchdog;
using State = CollectiveWatchdog::State;

// ---- watchdog ---------------------------------------------------------------------------------------

TEST(CollectiveWatchdog, FinishedCollectivesLeaveNothingInFlight) {
  std::atomic<int> aborts{0};
  CollectiveWatchdog dog(2s, [&](const std::string&) { ++aborts; });
  std::atomic<int> polls{0};
  for (int i = 0; i < 3; ++i)
    dog.watch("all_reduce " + std::to_string(i), [&polls] {
      return CollectiveWatchdog::Poll{++polls > 5 ? State::Done : State::Running, {}};
    });
  dog.wait_all();
  EXPECT_EQ(dog.in_flight(), 0u);
  EXPECT_FALSE(dog.failed());
  EXPECT_EQ(aborts.load(), 0);
  EXPECT_NO_THROW(dog.check());
}

TEST(CollectiveWatchdog, AnAsynchronousErrorAbortsOnceAndIsRethrown) {
  std::atomic<int> aborts{0};
  std::string reason;
  CollectiveWatchdog dog(10s, [&](const std::string& r) {
    ++aborts;
    reason = r;
  });
  dog.watch("NCCL all_reduce over cuda:0, cuda:1",
            [] { return CollectiveWatchdog::Poll{State::Failed, "unhandled cuda error"}; });
  EXPECT_EMBER_ERROR(dog.wait_all(), "NCCL all_reduce over cuda:0, cuda:1", "failed", "unhandled cuda error",
                     "aborted");
  EXPECT_EQ(aborts.load(), 1);
  EXPECT_THAT(reason, ::testing::HasSubstr("unhandled cuda error"));
  EXPECT_TRUE(dog.failed());
  // Every later use says what happened first.
  EXPECT_EMBER_ERROR(dog.check(), "unhandled cuda error");
  EXPECT_EMBER_ERROR(dog.watch("broadcast", [] { return CollectiveWatchdog::Poll{State::Done, {}}; }),
                     "unhandled cuda error");
  EXPECT_EQ(aborts.load(), 1);
}

TEST(CollectiveWatchdog, AStalledCollectiveTimesOutWithinBounds) {
  std::atomic<int> aborts{0};
  CollectiveWatchdog dog(150ms, [&](const std::string&) { ++aborts; });
  dog.watch("NCCL broadcast over cuda:0", [] { return CollectiveWatchdog::Poll{}; });  // never finishes
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EMBER_ERROR(dog.wait_all(), "NCCL broadcast over cuda:0", "did not complete within the timeout of 150 ms",
                     "waited", "aborted");
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 150ms);
  EXPECT_LT(waited, 5s);
  EXPECT_EQ(aborts.load(), 1);
}

TEST(CollectiveWatchdog, TimeoutIsSettableAndChecked) {
  CollectiveWatchdog dog(10s, [](const std::string&) {});
  dog.set_timeout(50ms);
  EXPECT_EQ(dog.timeout(), 50ms);
  dog.watch("all_gather", [] { return CollectiveWatchdog::Poll{}; });
  EXPECT_EMBER_ERROR(dog.wait_all(), "all_gather", "50 ms");
  EXPECT_EMBER_ERROR(dog.set_timeout(0ms), "timeout", "positive");
  EXPECT_EMBER_ERROR(parallel::Communicator::set_collective_timeout(-1ms), "timeout", "positive");
}

TEST(CollectiveWatchdog, DestroyingWhileCollectivesAreInFlightReturns) {
  auto dog = std::make_unique<CollectiveWatchdog>(1h, [](const std::string&) {});
  dog->watch("all_reduce", [] { return CollectiveWatchdog::Poll{}; });
  dog.reset();  // joins its thread without waiting for the collective
  SUCCEED();
}

// ---- reducer ----------------------------------------------------------------------------------------

struct MlpImpl : nn::Cloneable<MlpImpl> {
  MlpImpl() { reset(); }
  void reset() override {
    fc1 = register_module("fc1", nn::Linear(5, 7));
    fc2 = register_module("fc2", nn::Linear(7, 3));
  }
  Tensor forward(const Tensor& x) { return fc2->forward(fc1->forward(x).relu()); }
  nn::Linear fc1{nullptr}, fc2{nullptr};
};
EMBER_MODULE(Mlp);

TEST(Reducer, GradientsAreViewsOfTheBucketsAndBucketsLaunchInOrder) {
  manual_seed(1);
  Mlp net;
  std::vector<size_t> launched;
  // Caps of 16 and 100 bytes: fc2.bias (12 B) + fc2.weight (84 B) close the first bucket, fc1.bias (28 B)
  // + fc1.weight (140 B) the second (PyTorch's rule: a bucket closes once it holds its cap).
  parallel::ReducerOptions options;
  options.first_bucket_bytes = 16;
  options.bucket_bytes = 100;
  options.always_communicate = true;
  auto reducer = parallel::Reducer::create(
      {net->parameters()}, {Device::cpu()},
      [&](size_t b, const std::vector<Tensor>& flats) -> std::function<void()> {
        EXPECT_EQ(flats.size(), 1u);
        launched.push_back(b);
        return [&log = launched] { log.push_back(1000); };  // a finishing step runs at the end
      },
      options);
  ASSERT_EQ(reducer->num_buckets(), 2u);
  EXPECT_EQ(reducer->bucket_layout(), (std::vector<std::vector<size_t>>{{3, 2}, {1, 0}}));
  const Tensor x = randn({4, 5});
  for (int step = 0; step < 2; ++step) {
    reducer->prepare_for_backward(1);
    launched.clear();
    net->forward(x).sum().backward();
    EXPECT_EQ(launched, (std::vector<size_t>{0, 1, 1000, 1000}));
    EXPECT_EQ(reducer->buckets_reduced_early(), 2u);
    // Every .grad is its slot: the first parameter of a bucket starts at its buffer, the others follow.
    const auto params = net->parameters();
    for (size_t b = 0; b < 2; ++b) {
      const size_t k = reducer->bucket_layout()[b][0];
      EXPECT_EQ(params[k].grad().raw_data(), reducer->bucket_buffer(0, b).raw_data()) << "param " << k;
      const size_t k2 = reducer->bucket_layout()[b][1];
      EXPECT_EQ(params[k2].grad().storage().get(), reducer->bucket_buffer(0, b).storage().get()) << "param " << k2;
    }
  }
}

TEST(Reducer, AccumulatesIntoTheBucketsAcrossStepsAndAfterSetToNone) {
  manual_seed(2);
  Mlp net;
  Mlp ref = std::dynamic_pointer_cast<MlpImpl>(net->clone());
  auto reducer = parallel::Reducer::create({net->parameters()}, {Device::cpu()}, parallel::Reducer::kFirstBucketBytes,
                                           parallel::Reducer::kBucketBytes, /*always_communicate=*/true);
  const Tensor x1 = randn({4, 5}), x2 = randn({4, 5});
  for (const Tensor& x : {x1, x2}) {  // no zero_grad in between: gradients add up
    reducer->prepare_for_backward(1);
    net->forward(x).pow(2).sum().backward();
    ref->forward(x).pow(2).sum().backward();
  }
  auto p = net->parameters(), q = ref->parameters();
  for (size_t k = 0; k < p.size(); ++k) EXPECT_TRUE(testing::all_close(p[k].grad(), q[k].grad(), 1e-5, 1e-6));
  net->zero_grad();  // set_to_none: the next backward's gradient is copied into the slot again
  ref->zero_grad();
  reducer->prepare_for_backward(1);
  net->forward(x2).sum().backward();
  ref->forward(x2).sum().backward();
  p = net->parameters();
  for (size_t k = 0; k < p.size(); ++k) {
    EXPECT_TRUE(testing::all_close(p[k].grad(), q[k].grad(), 1e-5, 1e-6));
    EXPECT_EQ(p[k].grad().storage().get(), reducer->bucket_buffer(0, 0).storage().get());
  }
}

TEST(Reducer, WithoutFindUnusedParametersTheUnreadyAreNamed) {
  struct TwoPathsImpl : nn::Cloneable<TwoPathsImpl> {
    TwoPathsImpl() { reset(); }
    void reset() override {
      a = register_module("a", nn::Linear(3, 3));
      b = register_module("b", nn::Linear(3, 3));
    }
    Tensor forward(const Tensor& x) { return a->forward(x); }
    nn::Linear a{nullptr}, b{nullptr};
  };
  auto net = std::make_shared<TwoPathsImpl>();
  parallel::ReducerOptions options;
  options.find_unused_parameters = false;
  options.always_communicate = true;
  int reduced = 0;
  auto reducer = parallel::Reducer::create(
      {net->parameters()}, {Device::cpu()},
      [&](size_t, const std::vector<Tensor>&) -> std::function<void()> {
        ++reduced;
        return nullptr;
      },
      options);
  reducer->prepare_for_backward(1);
  net->forward(ones({2, 3})).sum().backward();
  EXPECT_EQ(reducer->take_unready_parameters(), (std::vector<size_t>{2, 3}));  // b.weight, b.bias
  EXPECT_EQ(reduced, 0);  // one bucket holds all four: it never became ready
  EXPECT_TRUE(reducer->take_unready_parameters().empty());
}

TEST(Reducer, NoSyncSkipsCommunication) {
  Mlp net;
  int reduced = 0;
  parallel::ReducerOptions options;
  options.always_communicate = true;
  auto reducer = parallel::Reducer::create(
      {net->parameters()}, {Device::cpu()},
      [&](size_t, const std::vector<Tensor>&) -> std::function<void()> {
        ++reduced;
        return nullptr;
      },
      options);
  reducer->set_require_sync(false);
  reducer->prepare_for_backward(1);
  net->forward(ones({2, 5})).sum().backward();
  EXPECT_EQ(reduced, 0);
  reducer->set_require_sync(true);
  reducer->prepare_for_backward(1);
  net->forward(ones({2, 5})).sum().backward();
  EXPECT_EQ(reduced, 1);
}

// ---- NCCL on one GPU ----------------------------------------------------------------------------------

TEST(NcclSingleGpu, EveryCollective_CUDA) {
  EMBER_REQUIRE_CUDA();
  auto comm = parallel::Communicator::get({Device::cuda(0)});
  const TensorOptions o = TensorOptions().device(Device::cuda(0));
  // Values made on a side stream: the collective must wait for them (Note [Communication streams]).
  const cuda::Stream side = cuda::get_stream_from_pool(0);
  side.wait(cuda::current_stream(0));
  Tensor t;
  {
    cuda::StreamGuard guard(side);
    t = arange(0, 1 << 20, 1, kFloat32).to(Device::cuda(0)) * 2.0;
  }
  cuda::current_stream(0).wait(side);
  comm->all_reduce({t});
  EXPECT_TRUE(testing::all_close(t.cpu(), arange(0, 1 << 20, 1, kFloat32) * 2.0));
  Tensor b = full({5}, 3.0, o);
  comm->broadcast({b}, 0);
  EXPECT_TRUE(testing::values_are(b.cpu(), {5}, {3, 3, 3, 3, 3}));
  Tensor r = full({3}, 4.0, o.dtype(kFloat64));
  comm->reduce({r}, 0);
  EXPECT_TRUE(testing::values_are(r.cpu(), {3}, {4, 4, 4}));
  Tensor in = arange(0, 4, 1, kInt64).to(Device::cuda(0)), out = zeros({4}, o.dtype(kInt64));
  comm->all_gather({in}, {out});
  EXPECT_TRUE(testing::values_are(out.cpu(), {4}, {0, 1, 2, 3}));
  for (DType dt : {kFloat16, kBFloat16, kInt32, kUInt8}) {
    Tensor v = ones({7}, o.dtype(dt));
    comm->all_reduce({v});
    EXPECT_TRUE(testing::values_are(v.cpu().to(kFloat64), {7}, {1, 1, 1, 1, 1, 1, 1})) << dtype_name(dt);
  }
  comm->barrier();
  EXPECT_EMBER_ERROR(comm->broadcast({b}, 1), "broadcast", "root 1");
  EXPECT_EMBER_ERROR(comm->all_reduce({ones({2}, o.dtype(kBool))}), "all_reduce", "bool");
}

TEST(NcclSingleGpu, DestroyedCommunicatorsAreRecreated_CUDA) {
  EMBER_REQUIRE_CUDA();
  auto first = parallel::Communicator::get({Device::cuda(0)});
  parallel::destroy_communicators();
  Tensor t = ones({3}, Device::cuda(0));
  EXPECT_EMBER_ERROR(first->all_reduce({t}), "shut down");
  auto second = parallel::Communicator::get({Device::cuda(0)});
  EXPECT_NE(first.get(), second.get());
  second->all_reduce({t});
  EXPECT_TRUE(testing::values_are(t.cpu(), {3}, {1, 1, 1}));
}

TEST(NcclSingleGpu, ReducerOverOneReplicaGoesThroughTheCollective_CUDA) {
  EMBER_REQUIRE_CUDA();
  manual_seed(7);
  Mlp net;
  Mlp ref = std::dynamic_pointer_cast<MlpImpl>(net->clone());
  net->to(Device::cuda(0));
  auto reducer = parallel::Reducer::create({net->parameters()}, {Device::cuda(0)}, 16, 100,
                                           /*always_communicate=*/true);
  const Tensor x = randn({64, 5});
  for (int step = 0; step < 3; ++step) {
    reducer->prepare_for_backward(1);
    net->forward(x.cuda()).pow(2).mean().backward();
    ref->forward(x).pow(2).mean().backward();
    EXPECT_EQ(reducer->buckets_reduced_early(), reducer->num_buckets());
  }
  auto p = net->parameters(), q = ref->parameters();
  for (size_t k = 0; k < p.size(); ++k) EXPECT_TRUE(testing::all_close(p[k].grad().cpu(), q[k].grad(), 1e-4, 1e-5));
}

}  // namespace
}  // namespace ember
