// Random fills (reproducibility, ranges, moments; CUDA values equal to the CPU's) and the CUDA copy/fill paths.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::values_are;

double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); }
double std_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / (v.size() - 1));
}

class RandomTest : public testing::DeviceTest {};

TEST_P(RandomTest, ReproducibleAfterManualSeed) {
  manual_seed(42);
  const auto u1 = rand({1000}, opts()).to_vector<float>();
  const auto n1 = randn({1000}, opts(kFloat64)).to_vector<double>();
  const auto i1 = randint(0, 100, {77}, opts(kInt64)).to_vector<int64_t>();
  manual_seed(42);
  const auto u2 = rand({1000}, opts()).to_vector<float>();
  const auto n2 = randn({1000}, opts(kFloat64)).to_vector<double>();
  const auto i2 = randint(0, 100, {77}, opts(kInt64)).to_vector<int64_t>();
  EXPECT_EQ(u1, u2);
  EXPECT_EQ(n1, n2);
  EXPECT_EQ(i1, i2);
  // Without re-seeding, the stream moves on.
  EXPECT_NE(rand({1000}, opts()).to_vector<float>(), u1);
}

TEST_P(RandomTest, UniformInRange) {
  manual_seed(1);
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor t = empty({100000}, opts(dt));
    t.uniform_(-2, 3);
    const auto v = t.to_vector<double>();
    EXPECT_GE(*std::min_element(v.begin(), v.end()), -2.0);
    EXPECT_LT(*std::max_element(v.begin(), v.end()), 3.0);
    EXPECT_LT(*std::min_element(v.begin(), v.end()), -1.99);
    EXPECT_GT(*std::max_element(v.begin(), v.end()), 2.99);
    EXPECT_NEAR(mean_of(v), 0.5, 0.03);
    EXPECT_NEAR(std_of(v), 5.0 / std::sqrt(12.0), 0.02);
  }
}

TEST_P(RandomTest, NormalMoments) {
  manual_seed(2);
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor t = empty({100000}, opts(dt));
    t.normal_(1.5, 2.0);
    const auto v = t.to_vector<double>();
    EXPECT_NEAR(mean_of(v), 1.5, 0.03);
    EXPECT_NEAR(std_of(v), 2.0, 0.03);
  }
}

TEST_P(RandomTest, BernoulliAndRandint) {
  manual_seed(3);
  Tensor b = empty({100000}, opts());
  b.bernoulli_(0.3);
  const auto bv = b.to_vector<double>();
  for (double x : bv) ASSERT_TRUE(x == 0.0 || x == 1.0);
  EXPECT_NEAR(mean_of(bv), 0.3, 0.01);
  const auto r = randint(-3, 7, {10000}, opts(kInt64)).to_vector<int64_t>();
  EXPECT_EQ(*std::min_element(r.begin(), r.end()), -3);
  EXPECT_EQ(*std::max_element(r.begin(), r.end()), 6);
}

EMBER_INSTANTIATE_DEVICE_TESTS(RandomTest);

// ---- CUDA: random values equal the CPU's; copies and fills -------------------------------------------

// Tests the CUDA copy/random backend: instantiated on cuda:0 only.
class DeviceCopyTest : public testing::DeviceTest {};

TEST_P(DeviceCopyTest, RandomValuesEqualCpu) {
  for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    for (int64_t n : {1, 3, 1001, 65537}) {
      manual_seed(7);
      Tensor cu = rand({n}, TensorOptions(dt));
      Tensor cn = randn({n}, TensorOptions(dt));
      Tensor cw = empty({n}, TensorOptions(dt)).uniform_(-1.5, 4);
      manual_seed(7);
      Tensor gu = rand({n}, opts(dt));
      Tensor gn = randn({n}, opts(dt));
      Tensor gw = empty({n}, opts(dt)).uniform_(-1.5, 4);
      EXPECT_TRUE(equal(gu.cpu(), cu));  // bit-identical
      EXPECT_TRUE(equal(gw.cpu(), cw));
      // normal: the device's log/sin/cos may differ from the host's libm in the last bit.
      const double tol = dt == kFloat64 ? 1e-12 : dt == kFloat32 ? 1e-5 : 1e-2;
      EXPECT_TRUE(all_close(gn.cpu(), cn, tol, tol));
    }
  }
  manual_seed(11);
  Tensor ci = randint(-1000, 1000, {4097});
  Tensor cb = empty({4097}).bernoulli_(0.25);
  Tensor cbd = empty({33}, TensorOptions(kFloat64)).bernoulli_(0.5);
  Tensor ct = empty({5, 7}).t().uniform_();  // non-contiguous target
  manual_seed(11);
  Tensor gi = randint(-1000, 1000, {4097}, opts(kInt64));
  Tensor gb = empty({4097}, opts()).bernoulli_(0.25);
  Tensor gbd = empty({33}, opts(kFloat64)).bernoulli_(0.5);
  Tensor gt = empty({5, 7}, opts()).t().uniform_();
  EXPECT_TRUE(equal(gi.cpu(), ci));
  EXPECT_TRUE(equal(gb.cpu(), cb));
  EXPECT_TRUE(equal(gbd.cpu(), cbd));
  EXPECT_TRUE(equal(gt.cpu(), ct));
}

// Values every dtype holds exactly (bool sees non-zero as true).
Tensor sample(DType dt) { return tensor({0.0, 1.0, 2.0, 3.0, 100.0, 7.0}).view({2, 3}).to(dt); }

TEST_P(DeviceCopyTest, RoundTripsForEveryDtypePair) {
  const std::vector<DType> dtypes = {kFloat32, kFloat64, kInt64, kInt32, kBool, kUInt8, kFloat16, kBFloat16};
  for (DType s : dtypes) {
    for (DType d : dtypes) {
      SCOPED_TRACE(dtype_name(s) + " -> " + dtype_name(d));
      Tensor x = sample(s);
      Tensor g = x.to(device(), d);  // host -> device with conversion
      EXPECT_EQ(g.device(), device());
      EXPECT_EQ(g.dtype(), d);
      EXPECT_TRUE(equal(g.cpu(), x.to(d)));
      EXPECT_TRUE(equal(g.to(Device::cpu(), s), x.to(d).to(s)));  // device -> host with conversion
      EXPECT_TRUE(equal(x.to(device()).to(d).cpu(), x.to(d)));    // conversion on the device
      EXPECT_TRUE(equal(x.t().to(device(), d).cpu(), x.t().to(d).contiguous()));  // strided host source
      EXPECT_TRUE(equal(x.to(device()).t().to(Device::cpu(), d), x.t().to(d).contiguous()));  // strided device source
    }
  }
}

TEST_P(DeviceCopyTest, StridedBroadcastAndAsyncCopies) {
  Tensor host = arange(0, 12, 1, TensorOptions(kFloat32)).view({3, 4});
  // Into a transposed device view, from the host and from the device.
  Tensor dst = zeros({4, 3}, opts());
  dst.t().copy_(host);
  EXPECT_TRUE(equal(dst.cpu(), host.t().contiguous()));
  Tensor dst2 = zeros({4, 3}, opts(kFloat64));
  dst2.t().copy_(host.to(device()));
  EXPECT_TRUE(equal(dst2.cpu(), host.t().contiguous().to(kFloat64)));
  // Broadcast sources.
  Tensor row = tensor({1.f, 2.f, 3.f, 4.f});
  Tensor b = empty({3, 4}, opts());
  b.copy_(row);
  EXPECT_TRUE(values_are(b, {3, 4}, {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}));
  b.copy_(row.to(device()) * 2);
  EXPECT_TRUE(values_are(b, {3, 4}, {2, 4, 6, 8, 2, 4, 6, 8, 2, 4, 6, 8}));
  // Into a non-contiguous host view from the device.
  Tensor hdst = zeros({4, 3});
  hdst.t().copy_(host.to(device()));
  EXPECT_TRUE(equal(hdst, host.t().contiguous()));
  // Non-blocking from and to pinned memory.
  Tensor pinned = host.pin_memory();
  ASSERT_TRUE(pinned.is_pinned());
  Tensor g = pinned.to(device(), /*non_blocking=*/true);
  Tensor back = empty({3, 4}, TensorOptions().pinned_memory(true));
  back.copy_(g * 3, /*non_blocking=*/true);
  cuda::synchronize();
  EXPECT_TRUE(equal(back, host * 3));
  Tensor nb = (g + 1).to(Device::cpu(), /*non_blocking=*/true);
  cuda::synchronize();
  EXPECT_TRUE(equal(nb, host + 1));
  // Empty and 0-d tensors.
  EXPECT_EQ(zeros({0, 3}).to(device()).cpu().sizes(), IntArrayRef({0, 3}));
  EXPECT_EQ(full({}, 2.5).to(device()).item<float>(), 2.5f);
}

TEST_P(DeviceCopyTest, Fill) {
  for (DType dt : {kFloat32, kFloat64, kInt64, kBool, kFloat16, kBFloat16, kUInt8, kInt32}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor t = empty({5, 7}, opts(dt));
    t.fill_(1);
    EXPECT_TRUE(equal(t.cpu(), ones({5, 7}, TensorOptions(dt))));
    t.zero_();
    EXPECT_TRUE(equal(t.cpu(), zeros({5, 7}, TensorOptions(dt))));
    t.t().slice(0, 0, 7, 2).fill_(3);  // strided view
    Tensor expect = zeros({5, 7}, TensorOptions(dt));
    expect.t().slice(0, 0, 7, 2).fill_(3);
    EXPECT_TRUE(equal(t.cpu(), expect));
  }
  Tensor f = empty({1025}, opts());
  f.fill_(-0.0);
  EXPECT_TRUE(std::signbit(f.cpu().to_vector<float>()[1000]));
  f.fill_(2.5);
  EXPECT_TRUE(equal(f.cpu(), full({1025}, 2.5)));
}

TEST_P(DeviceCopyTest, PeerCopies_MultiGPU) {
  if (cuda::device_count() < 2) GTEST_SKIP() << "needs two GPUs";
  Tensor host = randn({33, 17});
  Tensor g0 = host.to(Device::cuda(0));
  EXPECT_TRUE(equal(g0.to(Device::cuda(1)).cpu(), host));
  EXPECT_TRUE(equal(g0.to(Device::cuda(1), kFloat64).cpu(), host.to(kFloat64)));
  EXPECT_TRUE(equal(g0.t().to(Device::cuda(1)).cpu(), host.t().contiguous()));
  Tensor d1 = zeros({17, 33}, TensorOptions().device(Device::cuda(1)));
  d1.t().copy_(g0 * 2);
  EXPECT_TRUE(equal(d1.cpu(), (host * 2).t().contiguous()));
  Tensor r = (g0.to(Device::cuda(1)) + 1).to(Device::cuda(0));  // and back
  EXPECT_TRUE(equal(r.cpu(), host + 1));
}

EMBER_INSTANTIATE_CUDA_TESTS(DeviceCopyTest);

}  // namespace
}  // namespace ember
