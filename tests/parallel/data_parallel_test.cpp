// Tests of scatter/gather/broadcast/all_reduce, replicate, parallel_apply and DataParallel, on logical
// CPU devices (and on GPUs when a machine has two or more).
#include "nn/nn.h"
#include "parallel/data_parallel.h"
#include "tests/testing.h"

namespace ember {
namespace {

using namespace ember::nn;
using parallel::DataParallel;

std::vector<Device> cpus(int n) {
  std::vector<Device> out;
  for (int i = 0; i < n; ++i) out.push_back(Device::cpu(i));
  return out;
}

struct NetImpl : Cloneable<NetImpl> {
  NetImpl() { reset(); }
  void reset() override {
    fc1 = register_module("fc1", Linear(6, 8));
    bn = register_module("bn", BatchNorm1d(8));
    fc2 = register_module("fc2", Linear(8, 3));
  }
  Tensor forward(const Tensor& x) { return fc2->forward(bn->forward(fc1->forward(x)).relu()); }
  Linear fc1{nullptr}, fc2{nullptr};
  BatchNorm1d bn{nullptr};
};
EMBER_MODULE(Net);

// Several tensor arguments, a non-tensor argument, and a tuple result.
struct TwoHeadImpl : Cloneable<TwoHeadImpl> {
  TwoHeadImpl() { reset(); }
  void reset() override { fc = register_module("fc", Linear(4, 2)); }
  std::tuple<Tensor, Tensor> forward(const Tensor& a, const Tensor& b, double scale) {
    Tensor h = fc->forward(a + b);
    return {h * scale, h.sum({1})};
  }
  Linear fc{nullptr};
};
EMBER_MODULE(TwoHead);

struct NotCloneableImpl : Module {
  NotCloneableImpl() { w = register_parameter("w", ones({2})); }
  Tensor forward(const Tensor& x) { return x * w; }
  Tensor w;
};
EMBER_MODULE(NotCloneable);

TEST(Parallel, ChunkSizesAreAsEvenAsPossible) {
  EXPECT_EQ(parallel::chunk_sizes(10, 4), std::vector<int64_t>({3, 3, 2, 2}));
  EXPECT_EQ(parallel::chunk_sizes(8, 4), std::vector<int64_t>({2, 2, 2, 2}));
  EXPECT_EQ(parallel::chunk_sizes(3, 4), std::vector<int64_t>({1, 1, 1}));
  EXPECT_EQ(parallel::chunk_sizes(1, 2), std::vector<int64_t>({1}));
}

TEST(Parallel, ScatterGatherBroadcastAreDifferentiable) {
  Tensor x = arange(0, 20, 1, kFloat64).view({10, 2}).requires_grad_();
  auto parts = parallel::scatter(x, cpus(3), 0);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].sizes(), IntArrayRef({4, 2}));
  EXPECT_EQ(parts[2].sizes(), IntArrayRef({3, 2}));
  EXPECT_EQ(parts[1].device(), Device::cpu(1));
  EXPECT_TRUE(testing::values_are(parts[2], {3, 2}, {14, 15, 16, 17, 18, 19}));
  std::vector<Tensor> scaled;
  for (size_t i = 0; i < parts.size(); ++i) scaled.push_back(parts[i] * static_cast<double>(i + 1));
  Tensor back = parallel::gather(scaled, Device::cpu(0), 0);
  EXPECT_EQ(back.device(), Device::cpu(0));
  EXPECT_EQ(back.sizes(), IntArrayRef({10, 2}));
  back.sum().backward();
  EXPECT_TRUE(testing::values_are(x.grad(), {10, 2}, {1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3}));
  // Scatter along dim 1.
  auto cols = parallel::scatter(ones({2, 5}), cpus(2), 1);
  EXPECT_EQ(cols[0].sizes(), IntArrayRef({2, 3}));
  EXPECT_EQ(parallel::gather(cols, Device::cpu(1), 1).sizes(), IntArrayRef({2, 5}));
  // Broadcast: gradients from every copy sum.
  Tensor w = ones({3}, kFloat64).requires_grad_();
  auto copies = parallel::broadcast(w, cpus(3));
  Tensor total = (copies[0].sum() + copies[1].sum().to(Device::cpu(0)) + copies[2].sum().to(Device::cpu(0)));
  total.backward();
  EXPECT_TRUE(testing::values_are(w.grad(), {3}, {3, 3, 3}));
  EXPECT_EMBER_ERROR(parallel::scatter(ones({2}), cpus(2), 1), "scatter", "dim 1");
  // 0-d outputs (e.g. per-replica losses) gather into a vector.
  EXPECT_EQ(parallel::gather({scalar_tensor(1.0), scalar_tensor(2.0, Device::cpu(1))}, Device::cpu(0)).sizes(),
            IntArrayRef({2}));
}

TEST(Parallel, AllReduceSumsInPlace) {
  std::vector<Tensor> ts;
  for (int i = 0; i < 3; ++i) ts.push_back(full({4}, static_cast<double>(i + 1), TensorOptions(Device::cpu(i))));
  parallel::all_reduce(ts);
  for (const Tensor& t : ts) EXPECT_TRUE(testing::values_are(t, {4}, {6, 6, 6, 6}));
  EXPECT_EMBER_ERROR(parallel::all_reduce({ones({2}), ones({2})}), "appears twice");
  auto comm = parallel::Communicator::get(cpus(2));
  std::vector<Tensor> b = {full({2}, 5.0), zeros({2}, Device::cpu(1))};
  comm->broadcast(b, 0);
  EXPECT_TRUE(testing::values_are(b[1], {2}, {5, 5}));
  EXPECT_EMBER_ERROR(comm->all_reduce({ones({2}), ones({3}, Device::cpu(1))}), "all_reduce", "shape");
  EXPECT_EMBER_ERROR(comm->all_reduce({ones({2}), ones({2})}), "all_reduce", "cpu:1");
}

TEST(Parallel, ReplicateAndParallelApply) {
  Net net;
  auto replicas = parallel::replicate(net.ptr(), cpus(2));
  ASSERT_EQ(replicas.size(), 2u);
  EXPECT_EQ(replicas[1]->fc1->weight.device(), Device::cpu(1));
  EXPECT_TRUE(testing::all_close(replicas[1]->fc1->weight.to(Device::cpu(0)), net->fc1->weight));
  net->eval();
  for (auto& r : replicas) r->eval();
  auto inputs = parallel::scatter(randn({6, 6}), cpus(2));
  auto outs = parallel::parallel_apply(replicas, inputs);
  EXPECT_EQ(outs[1].device(), Device::cpu(1));
  EXPECT_TRUE(testing::all_close(outs[0], net->forward(inputs[0]), 1e-6, 1e-6));
}

// The heart of the seed: DataParallel on N devices gives the single-device gradients.
class DataParallelDevices : public ::testing::TestWithParam<int> {};

TEST_P(DataParallelDevices, GradientsEqualSingleDeviceTraining) {
  const int n = GetParam();
  manual_seed(1);
  Net single;
  single->to(kFloat64);
  Net wrapped;
  wrapped->to(kFloat64);
  wrapped->load_state_dict(single->state_dict());
  DataParallel<NetImpl> dp(wrapped, cpus(n));
  optim::SGD opt_single(single->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  optim::SGD opt_dp(dp->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  for (int step = 0; step < 3; ++step) {
    Tensor x = randn({11, 6}, kFloat64);  // 11 does not split evenly
    Tensor y = randint(0, 3, {11});
    opt_single.zero_grad();
    opt_dp.zero_grad();
    Tensor l1 = functional::cross_entropy(single->forward(x), y);
    Tensor out = dp->forward(x);
    EXPECT_EQ(out.device(), Device::cpu(0));
    EXPECT_EQ(out.sizes(), IntArrayRef({11, 3}));
    Tensor l2 = functional::cross_entropy(out, y);
    l1.backward();
    l2.backward();
    for (const auto& [name, p] : single->named_parameters()) {
      if (name.rfind("bn.", 0) == 0) continue;  // batch statistics differ per chunk (as in PyTorch)
      const Tensor g = wrapped->named_parameters().at(name).grad();
      ASSERT_TRUE(g.defined()) << name;
      EXPECT_EQ(g.device(), Device::cpu(0));
    }
    opt_single.step();
    opt_dp.step();
  }
  EXPECT_GE(dp->reducer().num_buckets(), 1u);
}

// Without batch norm the whole forward is per-example, so DataParallel equals single-device exactly.
TEST_P(DataParallelDevices, MatchesSingleDeviceWithoutBatchStatistics) {
  const int n = GetParam();
  manual_seed(2);
  Sequential single(Linear(6, 16), ReLU(), Linear(16, 16), Tanh(), Linear(16, 3));
  single->to(kFloat64);
  auto copy = std::dynamic_pointer_cast<SequentialImpl>(single->clone());
  Sequential wrapped(copy);
  DataParallel<SequentialImpl> dp(wrapped, cpus(n));
  optim::Adam opt_single(single->parameters(), optim::AdamOptions(0.01));
  optim::Adam opt_dp(dp->parameters(), optim::AdamOptions(0.01));
  for (int step = 0; step < 4; ++step) {
    Tensor x = randn({13, 6}, kFloat64);
    Tensor y = randn({13, 3}, kFloat64);
    opt_single.zero_grad();
    opt_dp.zero_grad();
    functional::mse_loss(single->forward(x), y).backward();
    functional::mse_loss(dp->forward(x), y).backward();
    for (const auto& [name, p] : single->named_parameters())
      EXPECT_TRUE(testing::all_close(wrapped->named_parameters().at(name).grad(), p.grad(), 1e-10, 1e-12))
          << name << " at step " << step;
    opt_single.step();
    opt_dp.step();  // replicas are refreshed from the updated module on the next forward
  }
  for (const auto& [name, p] : single->named_parameters())
    EXPECT_TRUE(testing::all_close(wrapped->named_parameters().at(name), p, 1e-10, 1e-12)) << name;
}

INSTANTIATE_TEST_SUITE_P(Cpu, DataParallelDevices, ::testing::Values(1, 2, 3, 4),
                         [](const ::testing::TestParamInfo<int>& info) { return std::to_string(info.param) + "devices"; });

TEST(DataParallel, GradientAccumulationAcrossStepsMatches) {
  manual_seed(3);
  Sequential single(Linear(4, 5), ReLU(), Linear(5, 2));
  single->to(kFloat64);
  Sequential wrapped(std::dynamic_pointer_cast<SequentialImpl>(single->clone()));
  DataParallel<SequentialImpl> dp(wrapped, cpus(2));
  for (int micro = 0; micro < 3; ++micro) {  // no zero_grad in between: gradients accumulate
    Tensor x = randn({6, 4}, kFloat64);
    single->forward(x).pow(2).sum().backward();
    dp->forward(x).pow(2).sum().backward();
  }
  for (const auto& [name, p] : single->named_parameters())
    EXPECT_TRUE(testing::all_close(wrapped->named_parameters().at(name).grad(), p.grad(), 1e-10, 1e-12)) << name;
}

TEST(DataParallel, SmallBatchesUseFewerDevicesAndExtraArgumentsPassThrough) {
  TwoHead net;
  DataParallel<TwoHeadImpl> dp(net, cpus(4));
  Tensor a = randn({2, 4}), b = randn({2, 4});
  auto [scaled, sums] = dp->forward(a, b, 2.0);
  EXPECT_EQ(scaled.sizes(), IntArrayRef({2, 2}));
  EXPECT_EQ(sums.sizes(), IntArrayRef({2}));
  auto [ref_scaled, ref_sums] = net->forward(a, b, 2.0);
  EXPECT_TRUE(testing::all_close(scaled, ref_scaled, 1e-6, 1e-6));
  EXPECT_TRUE(testing::all_close(sums, ref_sums, 1e-6, 1e-6));
  (scaled.sum() + sums.sum()).backward();
  EXPECT_TRUE(net->fc->weight.grad().defined());
  EXPECT_EMBER_ERROR(dp->forward(randn({2, 4}), randn({3, 4}), 1.0), "DataParallel", "splits into");
}

TEST(DataParallel, ModuleAccessStateDictAndBuffers) {
  Net net;
  DataParallel<NetImpl> dp(net, cpus(2));
  EXPECT_EQ(dp->module().get(), net.get());
  EXPECT_EQ(dp->parameters().size(), net->parameters().size());
  const auto keys = dp->state_dict().keys();
  EXPECT_EQ(keys.front(), "module.fc1.weight");
  EXPECT_NE(std::find(keys.begin(), keys.end(), "module.bn.running_mean"), keys.end());
  // The module (replica 0) keeps its batch-norm statistics; they reach the other replica on the next forward.
  dp->forward(randn({8, 6}));
  EXPECT_EQ(net->bn->num_batches_tracked.item<int64_t>(), 1);
  std::ostringstream os;
  os << *dp;
  EXPECT_THAT(os.str(), ::testing::HasSubstr("DataParallel(\n  (module): Net("));
}

TEST(DataParallel, BadUseIsAClearError) {
  Net net;
  EXPECT_EMBER_ERROR(DataParallel<NetImpl>(net, std::vector<Device>{}), "DataParallel", "empty");
  EXPECT_EMBER_ERROR(DataParallel<NetImpl>(net, std::vector<Device>{Device::cpu(0), Device::cpu(0)}), "appears twice");
  EXPECT_EMBER_ERROR(DataParallel<NetImpl>(net, std::vector<Device>{Device::cpu(0), Device::cuda(0)}), "mixes CPU and CUDA");
  EXPECT_EMBER_ERROR(DataParallel<NetImpl>(net, std::vector<Device>{Device::cpu(1), Device::cpu(0)}),
                     "must be on device_ids[0]", "cpu:1");
  DataParallel<NetImpl> dp(net, cpus(2));
  EXPECT_EMBER_ERROR(dp->forward(ones({6})), "on cpu:0", "Linear", "[3]");  // a replica error names its device
  DataParallel<NetImpl> dp_dim(net, cpus(2), std::nullopt, 3);
  EXPECT_EMBER_ERROR(dp_dim->forward(ones({4, 6})), "dim 3 does not exist");
  NotCloneable plain;
  EXPECT_EMBER_ERROR(DataParallel<NotCloneableImpl>(plain, cpus(2)), "not cloneable", "nn::Cloneable");
  if (!cuda::is_available()) EXPECT_EMBER_ERROR(DataParallel<NetImpl>(net, std::vector<int>{0, 1}), "cuda:0");
}

TEST(DataParallel, FunctionalFormMatchesTheModule) {
  manual_seed(5);
  Sequential net(Linear(3, 4), ReLU(), Linear(4, 2));
  net->to(kFloat64);
  Tensor x = randn({9, 3}, kFloat64);
  Tensor ref = net->forward(x);
  Tensor out = parallel::data_parallel(net, x, cpus(3));
  EXPECT_TRUE(testing::all_close(out, ref, 1e-12, 1e-12));
  out.sum().backward();
  Tensor g = net->named_parameters().at("0.weight").grad().clone();
  net->zero_grad();
  ref = net->forward(x);
  ref.sum().backward();
  EXPECT_TRUE(testing::all_close(g, net->named_parameters().at("0.weight").grad(), 1e-12, 1e-12));
}

TEST(DataParallel, FunctionalFormTakesSeveralInputsAndOtherArguments) {
  manual_seed(6);
  TwoHead net;
  Tensor a = randn({5, 4}), b = randn({5, 4});
  auto [scaled, sums] = parallel::data_parallel(net, std::make_tuple(a, b, 3.0), cpus(2));
  auto [ref_scaled, ref_sums] = net->forward(a, b, 3.0);
  EXPECT_TRUE(testing::all_close(scaled, ref_scaled, 1e-6, 1e-6));
  EXPECT_TRUE(testing::all_close(sums, ref_sums, 1e-6, 1e-6));
  if (!cuda::is_available())
    EXPECT_EMBER_ERROR(parallel::data_parallel(net, std::make_tuple(a, b, 3.0), std::vector<int>{0}), "cuda:0");
}

TEST(DataParallel, ChunkSizesSplitTheBatchUnevenly) {
  EXPECT_EQ(parallel::scale_chunk_sizes({2, 6}, 8), (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(parallel::scale_chunk_sizes({1, 3}, 10), (std::vector<int64_t>{3, 7}));  // 2.5 / 7.5: ties to the first
  EXPECT_EQ(parallel::scale_chunk_sizes({1, 1, 2}, 7), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_TRUE(parallel::scale_chunk_sizes({1, 9}, 3).empty());  // the first share would be empty
  EXPECT_EMBER_ERROR(parallel::scale_chunk_sizes({1, 0}, 3), "positive");

  manual_seed(7);
  Sequential single(Linear(4, 3));
  single->to(kFloat64);
  Sequential wrapped(std::dynamic_pointer_cast<SequentialImpl>(single->clone()));
  DataParallel<SequentialImpl> dp(wrapped, cpus(2));
  dp->set_chunk_sizes({1, 3});
  const Tensor x = randn({8, 4}, kFloat64);
  const auto parts = parallel::scatter(x, cpus(2), 0, parallel::scale_chunk_sizes(dp->chunk_sizes(), 8));
  EXPECT_EQ(parts[0].size(0), 2);
  EXPECT_EQ(parts[1].size(0), 6);
  EXPECT_EQ(parts[1].device(), Device::cpu(1));
  Tensor out = dp->forward(x);
  EXPECT_TRUE(testing::all_close(out, single->forward(x), 1e-12, 1e-12));
  out.pow(2).sum().backward();
  single->forward(x).pow(2).sum().backward();
  for (const auto& [name, p] : single->named_parameters())
    EXPECT_TRUE(testing::all_close(wrapped->named_parameters().at(name).grad(), p.grad(), 1e-10, 1e-12)) << name;
  // A batch too small for the proportions is split evenly.
  EXPECT_EQ(dp->forward(randn({2, 4}, kFloat64)).sizes(), IntArrayRef({2, 3}));
  EXPECT_EMBER_ERROR(dp->set_chunk_sizes({1, 2, 3}), "set_chunk_sizes", "3 sizes for 2 devices");
  EXPECT_EMBER_ERROR(parallel::scatter(x, cpus(2), 0, {3, 3}), "scatter", "sum to 6");
}

TEST(DataParallel, ImbalancedGpusAreNamed) {
  using cuda::DeviceProperties;
  const std::vector<Device> gpus{Device::cuda(0), Device::cuda(1)};
  const DeviceProperties h100{"H100", size_t{80} << 30, 132, 9, 0}, small{"L4", size_t{24} << 30, 58, 8, 9};
  EXPECT_FALSE(parallel::imbalance_warning(gpus, {h100, h100}).has_value());
  const auto w = parallel::imbalance_warning(gpus, {h100, small});
  ASSERT_TRUE(w.has_value());
  EXPECT_THAT(*w, ::testing::HasSubstr("cuda:1 (L4) has less than 75%"));
  EXPECT_THAT(*w, ::testing::HasSubstr("of cuda:0 (H100)"));
  // Same memory, fewer multiprocessors.
  DeviceProperties fewer = h100;
  fewer.multiprocessor_count = 66;
  EXPECT_TRUE(parallel::imbalance_warning(gpus, {fewer, h100}).has_value());
  parallel::warn_if_imbalanced(cpus(2));  // logical CPU devices: nothing to compare, no CUDA call
}

TEST(DataParallel, FunctionalFormReleasesDroppedModules) {
  std::weak_ptr<SequentialImpl> weak;
  {
    Sequential net(Linear(3, 2));
    weak = net.ptr();
    parallel::data_parallel(net, randn({4, 3}), cpus(2));
  }
  EXPECT_FALSE(weak.expired());  // cached until the next call notices the module was dropped
  Sequential other(Linear(3, 2));
  parallel::data_parallel(other, randn({4, 3}), cpus(2));
  EXPECT_TRUE(weak.expired());
}

TEST(DataParallel, TwoGpusMatchOneGpu_MultiGPU) {
  if (cuda::device_count() < 2) GTEST_SKIP() << "needs two CUDA devices (this machine has " << cuda::device_count() << ")";
  manual_seed(4);
  Sequential single(Linear(6, 16), ReLU(), Linear(16, 3));
  Sequential wrapped(std::dynamic_pointer_cast<SequentialImpl>(single->clone()));
  single->to(Device::cuda(0));
  wrapped->to(Device::cuda(0));
  DataParallel<SequentialImpl> dp(wrapped, std::vector<int>{0, 1});
  Tensor x = randn({32, 6}), y = randn({32, 3});
  functional::mse_loss(single->forward(x.cuda()), y.cuda()).backward();
  functional::mse_loss(dp->forward(x), y.cuda()).backward();
  for (const auto& [name, p] : single->named_parameters())
    EXPECT_TRUE(testing::all_close(wrapped->named_parameters().at(name).grad(), p.grad(), 1e-4, 1e-5)) << name;
}

}  // namespace
}  // namespace ember
