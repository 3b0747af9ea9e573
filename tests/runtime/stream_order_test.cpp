// Stream ordering in backward (Note [Stream ordering in backward]): the decisions with made-up streams on
// the CPU, and backward passes whose nodes run on several streams on a GPU.
#include "runtime/autograd/stream_order.h"

#include "tests/testing.h"

namespace ember {
namespace {

using autograd::MaybeStream;
using autograd::StreamWait;

// Streams that are never handed to CUDA: only their identity matters to the planning functions.
cuda::Stream fake(int device, uintptr_t id) { return cuda::Stream(Device::cuda(device), reinterpret_cast<void*>(id)); }

TEST(StreamOrder, AccumulateOnTheConsumersStreamAfterBothProducers) {
  const cuda::Stream a = fake(0, 0xa), b = fake(0, 0xb), c = fake(0, 0xc);
  const auto plan = autograd::plan_accumulate(Device::cuda(0), a, b, c);
  ASSERT_TRUE(plan.on.has_value());
  EXPECT_EQ(*plan.on, c);
  EXPECT_EQ(plan.waits, (std::vector<StreamWait>{{c, a}, {c, b}}));
}

TEST(StreamOrder, AccumulateOnTheSameStreamNeedsNoWait) {
  const cuda::Stream a = fake(0, 0xa);
  const auto plan = autograd::plan_accumulate(Device::cuda(0), a, a, a);
  EXPECT_EQ(*plan.on, a);
  EXPECT_TRUE(plan.waits.empty());
  // The legacy default stream (null handle) is a stream like any other.
  const cuda::Stream d = fake(0, 0);
  const auto with_default = autograd::plan_accumulate(Device::cuda(0), d, a, a);
  EXPECT_EQ(with_default.waits, (std::vector<StreamWait>{{a, d}}));
}

TEST(StreamOrder, AccumulateForAConsumerOnAnotherDeviceUsesTheIncomingStream) {
  // Gradients on cuda:1 for a node on cuda:0 (or on the host): summed where the new one was made.
  const cuda::Stream slot = fake(1, 0x1), incoming = fake(1, 0x2), consumer = fake(0, 0x3);
  const auto plan = autograd::plan_accumulate(Device::cuda(1), slot, incoming, consumer);
  EXPECT_EQ(*plan.on, incoming);
  EXPECT_EQ(plan.waits, (std::vector<StreamWait>{{incoming, slot}}));
  const auto host_consumer = autograd::plan_accumulate(Device::cuda(1), slot, incoming, std::nullopt);
  EXPECT_EQ(*host_consumer.on, incoming);
}

TEST(StreamOrder, HostGradientsNeedNoStreams) {
  const auto plan = autograd::plan_accumulate(Device::cpu(), std::nullopt, std::nullopt, std::nullopt);
  EXPECT_FALSE(plan.on.has_value());
  EXPECT_TRUE(plan.waits.empty());
  EXPECT_TRUE(autograd::plan_inputs(std::nullopt, {fake(0, 1)}).empty());
}

TEST(StreamOrder, InputsFromOtherStreamsOfTheDeviceAreWaitedForOnce) {
  const cuda::Stream consumer = fake(0, 0xc), p = fake(0, 0x1), q = fake(0, 0x2), other_device = fake(1, 0x1);
  const std::vector<MaybeStream> ready{p, consumer, std::nullopt, q, p, other_device};
  EXPECT_EQ(autograd::plan_inputs(consumer, ready), (std::vector<StreamWait>{{consumer, p}, {consumer, q}}));
}

TEST(StreamOrder, FinalWaitsOrderEveryUsedStreamBeforeTheCallersCurrentStream) {
  const cuda::Stream caller0 = fake(0, 0), caller1 = fake(1, 0x77);
  const cuda::Stream s0 = fake(0, 0x1), s1 = fake(1, 0x2);
  const auto current = [&](int device) { return device == 0 ? caller0 : caller1; };
  EXPECT_EQ(autograd::plan_final({s0, caller0, s1}, current),
            (std::vector<StreamWait>{{caller0, s0}, {caller1, s1}}));
}

// ---- on a GPU --------------------------------------------------------------------------------------
// Enough work on a side stream that an unordered consumer on another stream would read unfinished
// gradients: the results below are exact, so any missing wait shows as wrong values.

Tensor slow_square_sum(const Tensor& w, const Tensor& x) {
  Tensor h = x;
  for (int i = 0; i < 8; ++i) h = matmul(h, w).tanh();
  return (h * h).sum();
}

TEST(StreamOrder, ForwardOnASideStreamBackwardOnTheDefault_CUDA) {
  EMBER_REQUIRE_CUDA();
  manual_seed(3);
  const Tensor x = randn({512, 512}).cuda();
  const Tensor w0 = (randn({512, 512}) * 0.05).cuda();
  Tensor w = w0.clone().requires_grad_();
  Tensor expected;
  {
    Tensor wr = w0.clone().requires_grad_();
    slow_square_sum(wr, x).backward();
    expected = wr.grad().cpu();
  }
  const cuda::Stream side = cuda::get_stream_from_pool(0);
  side.wait(cuda::current_stream(0));  // the forward's inputs were made on the caller's stream
  Tensor loss;
  {
    cuda::StreamGuard guard(side);
    loss = slow_square_sum(w, x);
  }
  // The caller's stream never ran the forward: backward must order itself after the side stream, and
  // the gradient after backward's nodes.
  loss.backward();
  EXPECT_TRUE(testing::all_close(w.grad().cpu(), expected, 1e-4, 1e-5));
}

TEST(StreamOrder, BranchesOnTwoStreamsAccumulateAfterBoth_CUDA) {
  EMBER_REQUIRE_CUDA();
  manual_seed(4);
  const Tensor x = randn({384, 384}).cuda();
  Tensor w = (randn({384, 384}) * 0.05).cuda().requires_grad_();
  Tensor a, b;
  const cuda::Stream s1 = cuda::get_stream_from_pool(0), s2 = cuda::get_stream_from_pool(0, true);
  s1.wait(cuda::current_stream(0));
  s2.wait(cuda::current_stream(0));
  {
    cuda::StreamGuard guard(s1);
    a = slow_square_sum(w, x);
  }
  {
    cuda::StreamGuard guard(s2);
    b = slow_square_sum(w, x * 0.5);
  }
  (a + b).backward();
  const Tensor got = w.grad().cpu();

  Tensor wc = w.detach().cpu().requires_grad_();
  const Tensor xc = x.cpu();
  (slow_square_sum(wc, xc) + slow_square_sum(wc, xc * 0.5)).backward();
  EXPECT_TRUE(testing::all_close(got, wc.grad(), 1e-3, 1e-4));
}

TEST(StreamOrder, GradientMovedAcrossDevices_MultiGPU) {
  EMBER_REQUIRE_CUDA();
  if (cuda::device_count() < 2) GTEST_SKIP() << "needs two GPUs";
  manual_seed(5);
  Tensor w = (randn({256, 256}) * 0.05).cuda(0).requires_grad_();
  const Tensor x = randn({256, 256}).cuda(1);
  const cuda::Stream side = cuda::get_stream_from_pool(1);
  side.wait(cuda::current_stream(1));
  Tensor loss;
  {
    cuda::StreamGuard guard(side);
    loss = slow_square_sum(w.cuda(1), x);
  }
  loss.backward();
  Tensor wc = w.detach().cpu().requires_grad_();
  slow_square_sum(wc, x.cpu()).backward();
  EXPECT_TRUE(testing::all_close(w.grad().cpu(), wc.grad(), 1e-4, 1e-5));
}

}  // namespace
}  // namespace ember
