// Tests of Philox, generators, seeding and the random factories.
#include <cmath>
#include <set>

#include "kernels/shared/philox.h"
#include "tests/testing.h"

namespace ember {
namespace {

TEST(Philox, MatchesRandom123KnownAnswers) {
  // Known-answer tests of philox4x32-10 from Random123's kat_vectors.
  Philox4 r = philox4x32_10(0, 0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
  r = philox4x32_10(0xffffffffffffffffull, 0xffffffffffffffffull, 0xffffffffffffffffull);
  EXPECT_EQ(r.v[0], 0x408f276du);
  EXPECT_EQ(r.v[1], 0x41c83b0eu);
  EXPECT_EQ(r.v[2], 0xa20bc7c6u);
  EXPECT_EQ(r.v[3], 0x6d5451fdu);
  r = philox4x32_10(0x299f31d0a4093822ull, 0x85a308d3243f6a88ull, 0x0370734413198a2eull);
  EXPECT_EQ(r.v[0], 0xd16cfe09u);
  EXPECT_EQ(r.v[1], 0x94fdccebu);
  EXPECT_EQ(r.v[2], 0x5001e420u);
  EXPECT_EQ(r.v[3], 0x24126ea1u);
}

class RandomTest : public testing::DeviceTest {};

TEST_P(RandomTest, SeedingReproduces) {
  manual_seed(42);
  Tensor a = randn({1000}, opts());
  Tensor u = rand({37}, opts(kFloat64));
  manual_seed(42);
  Tensor b = randn({1000}, opts());
  Tensor v = rand({37}, opts(kFloat64));
  EXPECT_TRUE(testing::all_close(a, b, 0, 0));
  EXPECT_TRUE(testing::all_close(u, v, 0, 0));
  Tensor c = randn({1000}, opts());  // the stream moves on
  EXPECT_FALSE(testing::all_close(a, c, 0, 0.1));
}

TEST_P(RandomTest, DistributionsLookRight) {
  manual_seed(7);
  const int64_t n = 200000;
  for (DType dt : {kFloat32, kFloat64}) {
    const std::vector<double> u = rand({n}, opts(dt)).to_vector<double>();
    double mean = 0;
    for (double x : u) {
      ASSERT_GE(x, 0.0);
      ASSERT_LT(x, 1.0);
      mean += x;
    }
    EXPECT_NEAR(mean / n, 0.5, 0.005);
    const std::vector<double> g = randn({n}, opts(dt)).to_vector<double>();
    double m = 0, s = 0;
    for (double x : g) m += x;
    m /= n;
    for (double x : g) s += (x - m) * (x - m);
    s = std::sqrt(s / n);
    EXPECT_NEAR(m, 0.0, 0.01);
    EXPECT_NEAR(s, 1.0, 0.01);
  }
  Tensor t = empty({n}, opts());
  t.uniform_(-3, 5);
  for (float x : t.to_vector<float>()) {
    ASSERT_GE(x, -3.0f);
    ASSERT_LT(x, 5.0f);
  }
  t.normal_(10, 2);
  const std::vector<float> g = t.to_vector<float>();
  double m = 0;
  for (float x : g) m += x;
  EXPECT_NEAR(m / n, 10.0, 0.05);
  const std::vector<int64_t> k = randint(3, 9, {n}, TensorOptions(device())).to_vector<int64_t>();
  std::vector<int> counts(6, 0);
  for (int64_t x : k) {
    ASSERT_GE(x, 3);
    ASSERT_LT(x, 9);
    ++counts[static_cast<size_t>(x - 3)];
  }
  for (int c : counts) EXPECT_NEAR(c, n / 6.0, n / 6.0 * 0.05);
  Tensor bern = empty({n}, opts());
  bern.bernoulli_(0.25);
  double ones = 0;
  for (float x : bern.to_vector<float>()) ones += x;
  EXPECT_NEAR(ones / n, 0.25, 0.01);
}

TEST_P(RandomTest, RandpermIsAPermutation) {
  manual_seed(3);
  const std::vector<int64_t> p = randperm(1000, TensorOptions(device())).to_vector<int64_t>();
  std::set<int64_t> seen(p.begin(), p.end());
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 999);
  int fixed = 0;
  for (size_t i = 0; i < p.size(); ++i) fixed += p[i] == static_cast<int64_t>(i);
  EXPECT_LT(fixed, 10);  // a shuffle, not the identity
  manual_seed(3);
  EXPECT_EQ(randperm(1000, TensorOptions(device())).to_vector<int64_t>(), p);
}

TEST_P(RandomTest, NonContiguousFillsAndErrors) {
  Tensor a = zeros({4, 6}, opts());
  Tensor v = a.t();
  v.uniform_(1, 2);
  for (float x : a.to_vector<float>()) {
    EXPECT_GE(x, 1.0f);
    EXPECT_LT(x, 2.0f);
  }
  EXPECT_EMBER_ERROR(a.uniform_(2, 1), "uniform_", "from <= to");
  EXPECT_EMBER_ERROR(a.normal_(0, -1), "normal_", "std");
  EXPECT_EMBER_ERROR(randint(5, 5, {3}), "randint", "low < high");
  EXPECT_EMBER_ERROR(zeros({3}, opts(kInt64)).normal_(), "normal_", "int64");
}

EMBER_INSTANTIATE_DEVICE_TESTS(RandomTest);

// Note [Random streams]: the GPU draws exactly what the CPU draws for the same seed.
TEST(RandomCrossDevice, CudaMatchesCpu_CUDA) {
  EMBER_REQUIRE_CUDA();
  for (DType dt : {kFloat32, kFloat64}) {
    manual_seed(11);
    Tensor c = rand({1001}, TensorOptions(dt));
    Tensor cn = randn({1001}, TensorOptions(dt));
    manual_seed(11);
    Tensor g = rand({1001}, TensorOptions(dt).device(Device::cuda(0)));
    Tensor gn = randn({1001}, TensorOptions(dt).device(Device::cuda(0)));
    EXPECT_TRUE(testing::all_close(g, c, 0, 0));
    EXPECT_TRUE(testing::all_close(gn, cn, 1e-5, 1e-6));
  }
}

}  // namespace
}  // namespace ember
