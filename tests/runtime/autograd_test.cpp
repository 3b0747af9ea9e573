// Tests of the autograd engine: accumulation, retain_graph, hooks, version counters, views, grad mode,
// multi-device graphs and concurrent backward passes.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "runtime/autograd/engine.h"
#include "tests/testing.h"

namespace ember {
namespace {

using testing::values_are;

class AutogradTest : public testing::DeviceTest {};

TEST_P(AutogradTest, LeavesAndSimpleBackward) {
  Tensor w = tensor({1.0, 2.0, 3.0}, opts(kFloat64)).requires_grad_();
  EXPECT_TRUE(w.requires_grad());
  EXPECT_TRUE(w.is_leaf());
  EXPECT_FALSE(w.grad().defined());
  Tensor y = (w * w).sum();  // d/dw = 2w
  EXPECT_FALSE(y.is_leaf());
  EXPECT_TRUE(y.requires_grad());
  ASSERT_TRUE(y.grad_fn() != nullptr);
  y.backward();
  EXPECT_TRUE(values_are(w.grad(), {3}, {2, 4, 6}));
  // Gradients accumulate across backward calls.
  (w * 3).sum().backward();
  EXPECT_TRUE(values_are(w.grad(), {3}, {5, 7, 9}));
  Tensor d = w.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_alias_of(w));
  EXPECT_EMBER_ERROR(zeros({2}, opts(kInt64)).requires_grad_(), "requires_grad_", "floating-point", "int64");
}

TEST_P(AutogradTest, SharedSubgraphsSumTheirGradients) {
  Tensor x = tensor({2.0}, opts(kFloat64)).requires_grad_();
  Tensor a = x * 3;
  Tensor b = a * a + a;  // b = 9x^2 + 3x, db/dx = 18x + 3 = 39
  b.sum().backward();
  EXPECT_TRUE(values_are(x.grad(), {1}, {39}));
}

TEST_P(AutogradTest, NonScalarNeedsAGradient) {
  Tensor x = ones({2, 2}, opts()).requires_grad_();
  Tensor y = x * 2;
  EXPECT_EMBER_ERROR(y.backward(), "backward", "scalar outputs", "[2, 2]");
  y.backward(full({2, 2}, 0.5, opts()));
  EXPECT_TRUE(values_are(x.grad(), {2, 2}, {1, 1, 1, 1}));
  EXPECT_EMBER_ERROR((x * 2).backward(ones({3}, opts())), "backward", "[3]", "[2, 2]");
  EXPECT_EMBER_ERROR(ones({1}, opts()).backward(), "does not require grad");
}

TEST_P(AutogradTest, BackwardTwiceNeedsRetainGraph) {
  Tensor x = tensor({1.0, 2.0}, opts(kFloat64)).requires_grad_();
  Tensor y = (x * x).sum();
  y.backward({}, /*retain_graph=*/true);
  y.backward();
  EXPECT_TRUE(values_are(x.grad(), {2}, {4, 8}));
  EXPECT_EMBER_ERROR(y.backward(), "backward through the graph a second time", "retain_graph");
}

TEST_P(AutogradTest, NoGradGuardRecordsNothing) {
  Tensor x = ones({3}, opts()).requires_grad_();
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(GradMode::is_enabled());
    Tensor y = x * 2;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_TRUE(y.grad_fn() == nullptr);
    {
      EnableGradGuard enable;
      EXPECT_TRUE((x * 2).requires_grad());
    }
  }
  EXPECT_TRUE(GradMode::is_enabled());
  // Grad mode is per thread.
  NoGradGuard no_grad;
  bool other_thread_enabled = false;
  std::thread t([&] { other_thread_enabled = GradMode::is_enabled(); });
  t.join();
  EXPECT_TRUE(other_thread_enabled);
}

TEST_P(AutogradTest, HooksObserveAndReplaceGradients) {
  Tensor x = tensor({1.0, 2.0}, opts(kFloat64)).requires_grad_();
  std::vector<double> seen;
  x.register_hook([&](const Tensor& g) { seen = g.to_vector<double>(); });
  Tensor mid = x * 2;
  mid.register_hook([](const Tensor& g) { return g * 10; });  // replaces the gradient flowing on
  (mid * 1).sum().backward();
  EXPECT_EQ(seen, std::vector<double>({20, 20}));
  EXPECT_TRUE(values_are(x.grad(), {2}, {20, 20}));
  Tensor z = ones({1}, opts());
  EXPECT_EMBER_ERROR(z.register_hook([](const Tensor&) {}), "register_hook", "does not require grad");
}

TEST_P(AutogradTest, PostAccumulateHookFiresAfterAccumulation) {
  Tensor w = ones({2}, opts(kFloat64)).requires_grad_();
  std::vector<double> at_hook;
  int calls = 0;
  w.register_post_accumulate_grad_hook([&](const Tensor& p) {
    ++calls;
    at_hook = p.grad().to_vector<double>();
  });
  Tensor y = (w * 3).sum() + (w * 4).sum();  // two paths into the same leaf: one accumulation
  y.backward();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(at_hook, std::vector<double>({7, 7}));
  EXPECT_EMBER_ERROR((w * 2).register_post_accumulate_grad_hook([](const Tensor&) {}), "leaf");
}

TEST_P(AutogradTest, RetainGradKeepsANonLeafGradient) {
  Tensor x = tensor({1.0, 2.0}, opts(kFloat64)).requires_grad_();
  Tensor h = x * 3;
  h.retain_grad();
  EXPECT_TRUE(h.retains_grad());
  (h * h).sum().backward();
  EXPECT_TRUE(values_are(h.grad(), {2}, {6, 12}));
  EXPECT_TRUE(values_are(x.grad(), {2}, {18, 36}));
}

TEST_P(AutogradTest, VersionCounterCatchesInPlaceChangesOfSavedTensors) {
  Tensor x = ones({3}, opts(kFloat64)).requires_grad_();
  Tensor a = x * 2;
  Tensor b = a * a;  // saves a
  a.add_(1);         // modifies what backward needs
  EXPECT_EMBER_ERROR(b.sum().backward(), "modified by an in-place operation", "MulBackward", "version");
  // In-place on a leaf that requires grad is refused up front.
  EXPECT_EMBER_ERROR(x.add_(1), "leaf", "in-place");
  {
    NoGradGuard no_grad;
    x.add_(1);  // allowed without grad recording, as optimizers do
  }
  EXPECT_TRUE(values_are(x, {3}, {2, 2, 2}));
}

TEST_P(AutogradTest, InPlaceOpsOnNonLeavesAreRecorded) {
  Tensor x = tensor({1.0, 2.0}, opts(kFloat64)).requires_grad_();
  Tensor y = x * 2;
  y.mul_(3);  // y = 6x
  y.add_(x);  // y = 7x
  y.sum().backward();
  EXPECT_TRUE(values_are(x.grad(), {2}, {7, 7}));
}

// Note [In-place on views]: a write into a view becomes part of its base's history (CopySlices).
TEST_P(AutogradTest, InPlaceOnViewsRewritesTheBaseHistory) {
  Tensor x = tensor({1.0, 2.0, 3.0}, opts(kFloat64)).requires_grad_();
  Tensor y = x * 1;
  Tensor v = y.narrow(0, 1, 2);
  EXPECT_TRUE(v.is_view());
  EXPECT_TRUE(v._base().is_same(y));
  EXPECT_TRUE(v.t().unsqueeze(0)._base().is_same(y));  // the root of the chain
  EXPECT_FALSE(y.is_view());
  EXPECT_FALSE(v.detach().is_view());
  v.mul_(x.narrow(0, 0, 2));  // y = [x0, x1*x0, x2*x1]
  EXPECT_EQ(y.grad_fn()->name(), "CopySlices");
  EXPECT_EQ(v.grad_fn()->name(), "AsStridedBackward");
  EXPECT_TRUE(values_are(y, {3}, {1, 2, 6}));
  y.backward(tensor({1.0, 10.0, 100.0}, opts(kFloat64)));
  // d/dx0 = 1 + 10*x1; d/dx1 = 10*x0 + 100*x2; d/dx2 = 100*x1
  EXPECT_TRUE(values_are(x.grad(), {3}, {21, 310, 200}));

  // Into a view of a tensor that had no history at all: the base now depends on the source.
  Tensor a = tensor({4.0, 5.0}, opts(kFloat64)).requires_grad_();
  Tensor z = zeros({2, 3}, opts(kFloat64));
  Tensor other_view = z.select(1, 0);  // made before the write: picks up the new history when used
  z.select(1, 2).copy_(a);
  EXPECT_TRUE(z.requires_grad());
  EXPECT_TRUE(other_view.requires_grad());
  (z * z).sum().backward();
  EXPECT_TRUE(values_are(a.grad(), {2}, {8, 10}));

  // fill_ into a view cuts the region off from the old base.
  Tensor w = tensor({1.0, 2.0, 3.0, 4.0}, opts(kFloat64)).requires_grad_();
  Tensor u = w * 3;
  u.slice(0, 0, 4, 2).fill_(7);
  EXPECT_TRUE(values_are(u, {4}, {7, 6, 7, 12}));
  u.sum().backward();
  EXPECT_TRUE(values_are(w.grad(), {4}, {0, 3, 0, 3}));

  // An empty view: the write changes nothing and the gradient passes through.
  Tensor e = tensor({1.0, 2.0}, opts(kFloat64)).requires_grad_();
  Tensor f = e * 1;
  f.narrow(0, 2, 0).mul_(5);
  f.sum().backward();
  EXPECT_TRUE(values_are(e.grad(), {2}, {1, 1}));

  // A base moved to other memory by set_data() no longer sees writes into its old views.
  Tensor p = tensor({1.0, 2.0, 3.0}, opts(kFloat64)).requires_grad_();
  Tensor q = p * 1;
  Tensor old_view = q.narrow(0, 0, 2);
  q.set_data(zeros({4}, opts(kFloat64)));
  old_view.mul_(2);
  EXPECT_TRUE(values_are(q, {4}, {0, 0, 0, 0}));
  old_view.sum().backward();
  EXPECT_TRUE(values_are(p.grad(), {3}, {2, 2, 0}));
}

TEST_P(AutogradTest, OverwritingFillsStopTheGradient) {
  Tensor x = tensor({1.0, 2.0, 3.0}, opts(kFloat64)).requires_grad_();
  for (int which = 0; which < 4; ++which) {
    Tensor y = x * 2;
    switch (which) {
      case 0: y.fill_(1); break;
      case 1: y.uniform_(); break;
      case 2: y.normal_(); break;
      default: y.slice(0, 0, 3, 2).normal_(); break;  // only the two ends are overwritten
    }
    EXPECT_EQ(y.grad_fn()->name(), which < 3 ? "FillBackward" : "CopySlices") << which;
    x.set_grad(Tensor());
    (y + x).sum().backward();
    EXPECT_TRUE(values_are(x.grad(), {3}, which < 3 ? std::vector<double>{1, 1, 1} : std::vector<double>{1, 3, 1}))
        << which;
  }
}

TEST_P(AutogradTest, GradcheckInPlaceOnViews) {
  // A chain of views written by several in-place ops, then read through the base and another view.
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor y = in[0] * 1.0;
        Tensor before = y.select(0, 1);  // a view made before the writes
        y.t().narrow(0, 1, 2).mul_(in[1]);
        y.select(0, 1).add_(in[2]);
        y.slice(1, 0, 4, 3).div_(in[0].slice(1, 1, 3).add(2.0));
        return y * 2.0 + before.unsqueeze(0);
      },
      {testing::rand_leaf({3, 4}, device()), testing::rand_leaf({2, 3}, device()),
       testing::rand_leaf({4}, device())}));
  // copy_ of a broadcast source into a view of a tensor without history.
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor y = zeros({4, 3}, in[0].options());
        y.narrow(0, 1, 2).copy_(in[0]);
        y.narrow(0, 3, 1).copy_(in[1] * in[1]);
        return (y * y.t().sum(1)).sum(0);
      },
      {testing::rand_leaf({3}, device()), testing::rand_leaf({1, 3}, device())}));
}

TEST_P(AutogradTest, InPlaceOnViewsThatWouldLoseGradientsIsRefused) {
  Tensor x = rand({2, 3}, opts(kFloat64)).requires_grad_();
  // A view of a leaf that requires grad (only under NoGradGuard, as optimizers do).
  EXPECT_EMBER_ERROR(x.select(0, 0).mul_(2), "mul_", "view of a leaf", "[2, 3]");
  // A view made with grad mode off of a tensor that requires grad: the write would be invisible.
  Tensor y = x * 2;
  Tensor v;
  {
    NoGradGuard no_grad;
    v = y.select(0, 1);
  }
  EXPECT_FALSE(v.requires_grad());
  EXPECT_EMBER_ERROR(v.add_(1), "add_", "grad mode off", "MulBackward");
  {
    NoGradGuard no_grad;
    v.add_(1);  // fine without recording
    x.select(0, 0).zero_();
  }
  EXPECT_EMBER_ERROR(y.select(0, 0).detach_(), "detach_", "view");
}

TEST_P(AutogradTest, ViewsPropagateGradients) {
  Tensor x = rand({3, 4}, opts(kFloat64)).requires_grad_();
  Tensor y = x.t().reshape({12}).narrow(0, 2, 5).unsqueeze(0).expand({2, 5});
  y.sum().backward();
  // Each of the 5 selected elements was used twice (expand).
  const std::vector<double> g = x.grad().to_vector<double>();
  double total = 0;
  for (double v : g) total += v;
  EXPECT_DOUBLE_EQ(total, 10.0);
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) {
        return in[0].t().reshape({12}).slice(0, 1, 11, 3).unsqueeze(1).expand({4, 3}) * 1.5;
      },
      {testing::rand_leaf({3, 4}, device())}));
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) { return in[0].select(1, 2) + in[0].permute({1, 0}).select(0, 0); },
      {testing::rand_leaf({5, 5}, device())}));
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) { return in[0].as_strided({3, 2}, {1, 2}, 1); },
      {testing::rand_leaf({7}, device())}));
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) {
        auto parts = in[0].chunk(3, 2);
        return parts[0] * 2 + parts[2] - in[0].squeeze().unsqueeze(0).view({1, 7, 3}).narrow(2, 0, 1);
      },
      {testing::rand_leaf({1, 7, 3}, device())}));
}

TEST_P(AutogradTest, CopiesAreDifferentiable) {
  Tensor x = rand({4}, opts(kFloat64)).requires_grad_();
  Tensor on1 = x.to(Device::cpu(1));
  (on1 * 2).sum().backward();
  EXPECT_EQ(x.grad().device(), device());  // gradient flowed back to the source device
  EXPECT_TRUE(values_are(x.grad(), {4}, {2, 2, 2, 2}));
  Tensor f = rand({3}, opts(kFloat64)).requires_grad_();
  (f.to(kFloat32) * 3).sum().backward();
  EXPECT_EQ(f.grad().dtype(), kFloat64);
  EXPECT_TRUE(values_are(f.grad(), {3}, {3, 3, 3}));
  EXPECT_TRUE(testing::gradcheck([](const std::vector<Tensor>& in) { return in[0].clone() * in[0].contiguous(); },
                                 {testing::rand_leaf({3, 2}, device())}));
  Tensor dst = zeros({2, 3}, opts(kFloat64));
  Tensor src = rand({3}, opts(kFloat64)).requires_grad_();
  dst.copy_(src);  // broadcast copy: src's gradient sums over the broadcast rows
  (dst * 2).sum().backward();
  EXPECT_TRUE(values_are(src.grad(), {3}, {4, 4, 4}));
}

TEST_P(AutogradTest, GradFunctionComputesWithoutTouchingDotGrad) {
  Tensor x = tensor({1.0, 2.0}, opts(kFloat64)).requires_grad_();
  Tensor y = tensor({3.0}, opts(kFloat64)).requires_grad_();
  Tensor out = (x * x * y).sum();
  auto grads = autograd::grad({out}, {x, y});
  EXPECT_TRUE(values_are(grads[0], {2}, {6, 12}));
  EXPECT_TRUE(values_are(grads[1], {1}, {5}));
  EXPECT_FALSE(x.grad().defined());
  Tensor unused = ones({1}, opts(kFloat64)).requires_grad_();
  EXPECT_EMBER_ERROR(autograd::grad({(x * 2).sum()}, {unused}), "not used in the graph");
}

EMBER_INSTANTIATE_DEVICE_TESTS(AutogradTest);

// A graph spanning logical devices cpu:0..cpu:3 runs each device's nodes on that device's worker
// thread (Note [Engine]) and still gives the single-device gradients.
TEST(AutogradMultiDevice, GraphAcrossLogicalDevices) {
  Tensor w = rand({6, 5}, TensorOptions(kFloat64)).requires_grad_();
  Tensor x = rand({8, 6}, TensorOptions(kFloat64));
  Tensor total;
  for (int d = 0; d < 4; ++d) {
    const Device dev = Device::cpu(d);
    Tensor part = x.narrow(0, 2 * d, 2).to(dev).matmul(w.to(dev)).relu().pow(2).sum();
    total = total.defined() ? total + part.to(Device::cpu(0)) : part.to(Device::cpu(0));
  }
  total.backward();
  Tensor w2 = w.detach().clone().requires_grad_();
  x.matmul(w2).relu().pow(2).sum().backward();
  EXPECT_TRUE(testing::all_close(w.grad(), w2.grad(), 1e-12, 1e-12));
}

TEST(AutogradMultiDevice, ErrorsInWorkerThreadsReachTheCaller) {
  Tensor x = ones({3}, TensorOptions(kFloat64)).requires_grad_();
  Tensor on2 = x.to(Device::cpu(2));
  Tensor a = on2 * 2;
  Tensor b = a * a;
  a.add_(1);  // invalidates b's saved tensor: its node fails on cpu:2's worker
  EXPECT_EMBER_ERROR(b.to(Device::cpu(0)).sum().backward(), "modified by an in-place operation");
}

// Independent graphs built and differentiated from several threads at once.
TEST(AutogradThreads, ConcurrentIndependentBackward) {
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &failures] {
      try {
        for (int iter = 0; iter < 50; ++iter) {
          const double c = t + 1;
          Tensor w = full({4, 4}, c, TensorOptions(kFloat64)).requires_grad_();
          Tensor x = ones({3, 4}, TensorOptions(kFloat64).device(Device::cpu(t % 3)));
          Tensor y = x.matmul(w.to(x.device())).sum() * c;  // d/dw = 3 * c everywhere
          y.backward();
          for (double g : w.grad().to_vector<double>())
            if (g != 3 * c) ++failures;
        }
      } catch (const std::exception&) {
        ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

// Note [Node boundary hook] (engine.h): called after every node the engine runs, on the thread that ran
// it, after the node's hooks; removed with nullptr.
std::atomic<int> g_boundary_calls{0};
std::mutex g_boundary_mutex;
std::vector<std::thread::id> g_boundary_threads;
std::vector<std::string> g_boundary_log;
void count_boundary() {
  ++g_boundary_calls;
  std::lock_guard<std::mutex> lock(g_boundary_mutex);
  if (std::find(g_boundary_threads.begin(), g_boundary_threads.end(), std::this_thread::get_id()) ==
      g_boundary_threads.end())
    g_boundary_threads.push_back(std::this_thread::get_id());
  g_boundary_log.push_back("node");
}

TEST(AutogradEngine, NodeBoundaryHookRunsAfterEveryNode) {
  struct Unset {
    ~Unset() { autograd::set_node_boundary_hook(nullptr); }
  } unset;
  autograd::set_node_boundary_hook(&count_boundary);
  // The root, sum, exp, mul and x's AccumulateGrad: five nodes.
  Tensor x = ones({3}, TensorOptions(kFloat64)).requires_grad_();
  x.register_post_accumulate_grad_hook([](const Tensor&) {
    std::lock_guard<std::mutex> lock(g_boundary_mutex);
    g_boundary_log.push_back("accumulated");
  });
  (x * 2).exp().sum().backward();
  EXPECT_EQ(g_boundary_calls.load(), 5);
  ASSERT_EQ(g_boundary_log.size(), 6u);
  EXPECT_EQ(g_boundary_log[4], "accumulated");  // AccumulateGrad's hook, then the boundary after it
  EXPECT_EQ(g_boundary_log[5], "node");
  EXPECT_EQ(g_boundary_threads.size(), 1u);
  EXPECT_EQ(g_boundary_threads[0], std::this_thread::get_id());
  // Nodes on another logical device run on that device's worker thread, and the hook with them.
  g_boundary_calls = 0;
  g_boundary_threads.clear();
  Tensor y = ones({3}, TensorOptions(kFloat64)).requires_grad_();
  (y.to(Device::cpu(1)) * 3).sum().to(Device::cpu(0)).backward();
  EXPECT_GE(g_boundary_calls.load(), 5);
  EXPECT_EQ(g_boundary_threads.size(), 2u);
  EXPECT_TRUE(values_are(y.grad(), {3}, {3, 3, 3}));
  // Removed: nothing more is called.
  autograd::set_node_boundary_hook(nullptr);
  g_boundary_calls = 0;
  (x * 2).sum().backward();
  EXPECT_EQ(g_boundary_calls.load(), 0);
}

}  // namespace
// Note [Backward over logical CPU devices] (engine.cpp): with nodes on two CPU devices, each thread runs
// its nodes with half the caller's OpenMP threads; the caller's setting is restored afterwards.
TEST(AutogradEngine, BackwardOverLogicalCpuDevicesSharesTheOpenMpThreads) {
  const int p = omp_get_max_threads();
  const int share = std::max(1, p / 2);
  Tensor a = ones({4}, TensorOptions(kFloat64)).requires_grad_();
  Tensor b = ones({4}, TensorOptions(kFloat64).device(Device::cpu(1))).requires_grad_();
  Tensor a2 = a * 2, b2 = b * 3;
  std::atomic<int> seen_a{-1}, seen_b{-1};
  a2.register_hook([&](const Tensor&) { seen_a = omp_get_max_threads(); });
  b2.register_hook([&](const Tensor&) { seen_b = omp_get_max_threads(); });
  (a2.sum() + b2.sum().to(Device::cpu(0))).backward();
  EXPECT_EQ(seen_a.load(), share);
  EXPECT_EQ(seen_b.load(), share);
  EXPECT_EQ(omp_get_max_threads(), p);
  EXPECT_TRUE(values_are(b.grad(), {4}, {3, 3, 3, 3}));
  // One device: the threads are left alone.
  Tensor c = ones({4}, TensorOptions(kFloat64)).requires_grad_();
  Tensor c2 = c * 2;
  c2.register_hook([&](const Tensor&) { seen_a = omp_get_max_threads(); });
  c2.sum().backward();
  EXPECT_EQ(seen_a.load(), p);
}

}  // namespace ember
