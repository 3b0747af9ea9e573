// Reductions: values (sum/mean/var/max/min/argmax/argmin/any/all), dtype rules, accuracy, every memory layout
// against a naive reference, errors, and gradcheck of the differentiable ones.
#include <cmath>
#include <limits>
#include <numeric>

#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class ReduceTest : public testing::DeviceTest {
 protected:
  Tensor t(std::vector<double> v, IntArrayRef shape, DType dtype = kFloat32) const {
    return tensor(v).view(shape).to(device(), dtype);
  }
  Tensor leaf(IntArrayRef shape) const { return rand_leaf(shape, device()); }
};

// ---- a naive reference -------------------------------------------------------------------------------

enum class Kind { Sum, Mean, Var, Max, Min, ArgMax, ArgMin };

// Reduces host values `x` (row-major, `shape`) over the dims in `dims` with double arithmetic, one element
// at a time. Arg kinds report the position along their single reduced dim, the first one on ties.
std::vector<double> naive_reduce(const std::vector<double>& x, const std::vector<int64_t>& shape,
                                 const std::vector<int64_t>& dims, Kind kind, bool unbiased = true) {
  const size_t nd = shape.size();
  std::vector<bool> red(nd, false);
  for (int64_t d : dims) red[static_cast<size_t>(d < 0 ? d + static_cast<int64_t>(nd) : d)] = true;
  int64_t M = 1, R = 1;
  for (size_t d = 0; d < nd; ++d) (red[d] ? R : M) *= shape[d];
  std::vector<std::vector<double>> groups(static_cast<size_t>(M));
  std::vector<int64_t> idx(nd, 0);
  for (size_t i = 0; i < x.size(); ++i) {
    int64_t rem = static_cast<int64_t>(i);
    for (size_t d = nd; d-- > 0;) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    int64_t o = 0;
    for (size_t d = 0; d < nd; ++d)
      if (!red[d]) o = o * shape[d] + idx[d];
    groups[static_cast<size_t>(o)].push_back(x[i]);  // in row-major order of the reduced dims
  }
  std::vector<double> out;
  for (const auto& g : groups) {
    double r = 0;
    switch (kind) {
      case Kind::Sum: r = std::accumulate(g.begin(), g.end(), 0.0); break;
      case Kind::Mean: r = std::accumulate(g.begin(), g.end(), 0.0) / static_cast<double>(R); break;
      case Kind::Var: {
        const double m = std::accumulate(g.begin(), g.end(), 0.0) / static_cast<double>(R);
        double ss = 0;
        for (double v : g) ss += (v - m) * (v - m);
        r = ss / (static_cast<double>(R) - (unbiased ? 1 : 0));
        break;
      }
      case Kind::Max: r = *std::max_element(g.begin(), g.end()); break;
      case Kind::Min: r = *std::min_element(g.begin(), g.end()); break;
      case Kind::ArgMax: r = static_cast<double>(std::max_element(g.begin(), g.end()) - g.begin()); break;
      case Kind::ArgMin: r = static_cast<double>(std::min_element(g.begin(), g.end()) - g.begin()); break;
    }
    out.push_back(r);
  }
  return out;
}

// ---- values -------------------------------------------------------------------------------------------

TEST_P(ReduceTest, SumValues) {
  Tensor a = t({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(values_are(a.sum(), {}, {21}));
  EXPECT_TRUE(values_are(sum(a), {}, {21}));
  EXPECT_TRUE(values_are(a.sum({0}), {3}, {5, 7, 9}));
  EXPECT_TRUE(values_are(a.sum({1}), {2}, {6, 15}));
  EXPECT_TRUE(values_are(a.sum({-1}, true), {2, 1}, {6, 15}));
  EXPECT_TRUE(values_are(a.sum({0}, true), {1, 3}, {5, 7, 9}));
  EXPECT_TRUE(values_are(a.sum({0, 1}), {}, {21}));
  EXPECT_TRUE(values_are(a.sum({1, 0}, true), {1, 1}, {21}));
  EXPECT_TRUE(values_are(a.sum({}, true), {1, 1}, {21}));  // an empty dims list means every dim
  EXPECT_EQ(a.sum().dtype(), kFloat32);
  EXPECT_EQ(a.sum().device(), device());
  Tensor b = t({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}, {2, 3, 4});
  EXPECT_TRUE(values_are(b.sum({0, 2}), {3}, {68, 100, 132}));
  EXPECT_TRUE(values_are(b.sum({-3, -1}, true), {1, 3, 1}, {68, 100, 132}));
  EXPECT_TRUE(values_are(b.sum({1}), {2, 4}, {15, 18, 21, 24, 51, 54, 57, 60}));
}

TEST_P(ReduceTest, IntegralSumsGiveInt64) {
  Tensor i = t({1, 2, 3, 4, 5, 6}, {2, 3}, kInt64);
  EXPECT_EQ(i.sum().dtype(), kInt64);
  EXPECT_EQ(i.sum().item<int64_t>(), 21);
  EXPECT_EQ(i.sum({0}).to_vector<int64_t>(), (std::vector<int64_t>{5, 7, 9}));
  // Beyond 2^53: exact in int64, unlike a float accumulator.
  Tensor big = tensor(std::vector<int64_t>{(int64_t{1} << 60) + 1, 1}).to(device());
  EXPECT_EQ(big.sum().item<int64_t>(), (int64_t{1} << 60) + 2);
  Tensor u8 = t({200, 100, 255}, {3}, kUInt8);
  EXPECT_EQ(u8.sum().dtype(), kInt64);
  EXPECT_EQ(u8.sum().item<int64_t>(), 555);  // no uint8 wrap-around
  Tensor i32 = t({2000000000, 2000000000}, {2}, kInt32);
  EXPECT_EQ(i32.sum().dtype(), kInt64);
  EXPECT_EQ(i32.sum().item<int64_t>(), 4000000000);
  Tensor mask = tensor(std::vector<bool>{true, false, true, true}).to(device());
  EXPECT_EQ(mask.sum().dtype(), kInt64);
  EXPECT_EQ(mask.sum().item<int64_t>(), 3);
}

TEST_P(ReduceTest, MeanValues) {
  Tensor a = t({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(values_are(a.mean(), {}, {3.5}));
  EXPECT_TRUE(values_are(a.mean({0, 1}), {}, {3.5}));
  EXPECT_TRUE(values_are(a.mean({-1}), {2}, {2, 5}));
  EXPECT_TRUE(values_are(a.mean({0}, true), {1, 3}, {2.5, 3.5, 4.5}));
  EXPECT_TRUE(values_are(mean(a.to(kFloat64), {1}), {2}, {2, 5}));
  EXPECT_EQ(mean(a.to(kFloat64)).dtype(), kFloat64);
}

TEST_P(ReduceTest, VarValues) {
  Tensor a = t({1, 2, 3, 4}, {4}, kFloat64);
  EXPECT_TRUE(values_are(a.var({0}), {}, {5.0 / 3.0}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(a.var({0}, /*unbiased=*/false), {}, {1.25}, 1e-12, 1e-12));
  Tensor b = t({1, 2, 3, 4, 6, 8}, {2, 3});
  EXPECT_TRUE(values_are(b.var({1}), {2}, {1, 4}));
  EXPECT_TRUE(values_are(b.var({1}, true, true), {2, 1}, {1, 4}));
  EXPECT_TRUE(values_are(b.var({0}, false), {3}, {2.25, 4, 6.25}));
  EXPECT_TRUE(values_are(b.var({}), {}, {b.to(kFloat64).var({0, 1}).item<double>()}));
  // One element, unbiased: 0 / 0, as PyTorch.
  EXPECT_TRUE(std::isnan(t({3}, {1}).var({0}).item<float>()));
  EXPECT_EQ(t({3}, {1}).var({0}, false).item<float>(), 0.0f);
}

TEST_P(ReduceTest, VarIsNumericallySound) {
  // A large offset with a small spread: sum-of-squares formulas cancel catastrophically in float32.
  Tensor noise = rand({1000}, opts(kFloat64));
  Tensor x = (noise + 1e4).to(kFloat32);
  const double expected = x.to(kFloat64).cpu().var({0}).item<double>();
  const std::vector<double> host = x.to(kFloat64).to_vector<double>();
  const auto ref = naive_reduce(host, {1000}, {0}, Kind::Var);
  EXPECT_NEAR(expected, ref[0], 1e-9 * ref[0]);
  EXPECT_NEAR(x.var({0}).item<float>(), ref[0], 1e-4 * ref[0]);
}

// The same over dims and through strided views: the block-reduce kernels on CUDA (warp shuffles and shared
// memory of the Welford accumulator, split reductions and their partials) rather than one full reduction.
TEST_P(ReduceTest, VarOverDimsIsNumericallySound) {
  manual_seed(21);
  auto check = [](const Tensor& x, const std::vector<int64_t>& dims) {
    const std::vector<double> ref = naive_reduce(x.contiguous().to_vector<double>(), x.sizes().vec(), dims, Kind::Var);
    const std::vector<double> got = x.var(dims).to_vector<double>();
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_NEAR(got[i], ref[i], 1e-4 * ref[i]) << "output " << i << " of var over " << dims.size()
                                                 << " dims of shape " << x.sizes() << ", strides " << x.strides();
  };
  const Tensor rows = (rand({3, 40000}, opts(kFloat64)) + 1e4).to(kFloat32);
  check(rows, {1});                           // few long contiguous rows: vector loads, split reductions
  check(rows.slice(1, 0, 40000, 3), {1});     // strided rows
  check(rows.slice(1, 0, 40000, 3), {0, 1});  // a full reduction of a strided view: many partials
  const Tensor cols = (rand({3000, 5}, opts(kFloat64)) + 1e4).to(kFloat32);
  check(cols, {0});      // down columns
  check(cols.t(), {1});  // the same through a transposed view
}

TEST_P(ReduceTest, MaxMinValues) {
  Tensor a = t({1, 7, 3, 9, 5, -6}, {2, 3});
  EXPECT_TRUE(values_are(a.max(), {}, {9}));
  EXPECT_TRUE(values_are(a.min(), {}, {-6}));
  EXPECT_TRUE(values_are(a.max(1), {2}, {7, 9}));
  EXPECT_TRUE(values_are(a.min(0), {3}, {1, 5, -6}));
  EXPECT_TRUE(values_are(a.max(-1, true), {2, 1}, {7, 9}));
  auto [values, indices] = max_with_indices(a, 1);
  EXPECT_TRUE(values_are(values, {2}, {7, 9}));
  EXPECT_EQ(indices.dtype(), kInt64);
  EXPECT_EQ(indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  auto [kv, ki] = max_with_indices(a, 0, true);
  EXPECT_TRUE(values_are(kv, {1, 3}, {9, 7, 3}));
  EXPECT_EQ(ki.sizes(), IntArrayRef({1, 3}));
  EXPECT_EQ(ki.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0}));
  // Integer dtypes keep their dtype.
  Tensor i = t({4, -2, 8}, {3}, kInt64);
  EXPECT_EQ(i.max().dtype(), kInt64);
  EXPECT_EQ(i.max().item<int64_t>(), 8);
  EXPECT_EQ(i.min().item<int64_t>(), -2);
}

TEST_P(ReduceTest, ArgMaxTiesPickTheFirstIndex) {
  Tensor a = t({1, 3, 3, 2, 2, 1, 5, 5, 5}, {3, 3});
  EXPECT_EQ(a.argmax(1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(a.argmin(1).to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 0}));
  EXPECT_EQ(a.argmax(0).to_vector<int64_t>(), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(a.argmin(0).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(a.argmax().item<int64_t>(), 6);  // flattened
  EXPECT_EQ(a.argmax().dim(), 0);
  EXPECT_EQ(a.argmax(1, true).sizes(), IntArrayRef({3, 1}));
  Tensor same = t({4, 4, 4, 4, 4, 4, 4}, {7});
  EXPECT_EQ(same.argmax().item<int64_t>(), 0);
  EXPECT_EQ(same.argmin(0).item<int64_t>(), 0);
  // A long row of equal values (vector lanes and block splits must still report the first).
  Tensor ones_row = ones({3, 5000}, opts());
  EXPECT_EQ(ones_row.argmax(1).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(ones({5000, 3}, opts()).argmin(0).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(ones({100003}, opts()).argmax().item<int64_t>(), 0);
  // -inf everywhere is still a value (index 0), not "no element".
  EXPECT_EQ(full({5}, -std::numeric_limits<double>::infinity(), opts()).argmax().item<int64_t>(), 0);
}

TEST_P(ReduceTest, ArgMaxOfNonContiguousInputUsesLogicalOrder) {
  Tensor a = t({1, 5, 7, 2}, {2, 2}).t();  // logical [[1, 7], [5, 2]]
  ASSERT_FALSE(a.is_contiguous());
  EXPECT_EQ(a.argmax().item<int64_t>(), 1);
  EXPECT_EQ(a.argmax(0).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(a.argmin(1).to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
}

TEST_P(ReduceTest, NaNPropagates) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor a = t({1, nan, 3, nan}, {4});
  EXPECT_TRUE(std::isnan(a.max().item<float>()));
  EXPECT_TRUE(std::isnan(a.min().item<float>()));
  EXPECT_TRUE(std::isnan(a.sum().item<float>()));
  EXPECT_EQ(a.argmax().item<int64_t>(), 1);
  EXPECT_EQ(a.argmin(0).item<int64_t>(), 1);
  auto [v, i] = max_with_indices(t({1, 2, nan, 4, 5, 6}, {2, 3}), 1);
  EXPECT_TRUE(std::isnan(v.to_vector<float>()[0]));
  EXPECT_EQ(v.to_vector<float>()[1], 6.0f);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{2, 2}));
}

TEST_P(ReduceTest, AnyAll) {
  Tensor m = tensor(std::vector<bool>{false, true, false}).to(device());
  EXPECT_EQ(any(m).dtype(), kBool);
  EXPECT_TRUE(any(m).item<bool>());
  EXPECT_FALSE(all(m).item<bool>());
  EXPECT_TRUE(all(t({1, 2, -3}, {3})).item<bool>());
  EXPECT_FALSE(all(t({1, 0, -3}, {3})).item<bool>());
  EXPECT_FALSE(any(zeros({4, 5}, opts(kInt64))).item<bool>());
  EXPECT_TRUE(any(t({0, 0, std::numeric_limits<double>::quiet_NaN()}, {3})).item<bool>());  // NaN is true
  EXPECT_FALSE(any(zeros({0}, opts())).item<bool>());
  EXPECT_TRUE(all(zeros({0}, opts())).item<bool>());
  Tensor big = zeros({100000}, opts());
  EXPECT_FALSE(any(big).item<bool>());
  big.select(0, 99999).fill_(1);
  EXPECT_TRUE(any(big).item<bool>());
  EXPECT_FALSE(all(big).item<bool>());
  EXPECT_TRUE(all(ones({100000}, opts(kUInt8))).item<bool>());
}

TEST_P(ReduceTest, EmptyAndZeroDimTensors) {
  Tensor e = zeros({2, 0}, opts());
  EXPECT_TRUE(values_are(e.sum(1), {2}, {0, 0}));
  EXPECT_TRUE(values_are(e.sum(), {}, {0}));
  EXPECT_EQ(e.sum(0).sizes(), IntArrayRef({0}));
  EXPECT_TRUE(std::isnan(e.mean().item<float>()));
  EXPECT_EQ(e.max(0).sizes(), IntArrayRef({0}));  // reducing a non-empty dim of an empty tensor is fine
  Tensor s = scalar_tensor(3.5, opts());
  EXPECT_TRUE(values_are(s.sum(), {}, {3.5}));
  EXPECT_TRUE(values_are(s.sum({0}), {}, {3.5}));
  EXPECT_TRUE(values_are(s.sum({-1}, true), {}, {3.5}));
  EXPECT_TRUE(values_are(s.mean({0}), {}, {3.5}));
  EXPECT_TRUE(values_are(s.max(), {}, {3.5}));
  EXPECT_TRUE(values_are(s.max(0), {}, {3.5}));
  EXPECT_EQ(s.argmax(0).item<int64_t>(), 0);
  EXPECT_EQ(s.argmax().item<int64_t>(), 0);
}

TEST_P(ReduceTest, Float32SumOf16MElementsIsAccurate) {
  const int64_t n = int64_t{1} << 24;
  Tensor x = rand({n}, opts());
  const std::vector<float> host = x.to_vector<float>();
  double ref = 0;
  for (float v : host) ref += v;
  const double got = x.sum().item<float>();
  EXPECT_NEAR(got, ref, 1e-5 * ref);
  EXPECT_NEAR(x.mean().item<float>(), ref / static_cast<double>(n), 1e-5 * ref / static_cast<double>(n));
  // The same elements as the columns of a tall matrix (vertical reduction) and as rows.
  const Tensor cols = x.view({n / 4, 4}).sum({0}).to(kFloat64);
  const Tensor rows = x.view({4, n / 4}).sum({1}).to(kFloat64);
  EXPECT_NEAR(cols.sum().item<double>(), ref, 1e-5 * ref);
  EXPECT_NEAR(rows.sum().item<double>(), ref, 1e-5 * ref);
  for (int c = 0; c < 4; ++c) {
    double col = 0, row = 0;
    for (int64_t i = 0; i < n / 4; ++i) {
      col += host[static_cast<size_t>(i * 4 + c)];
      row += host[static_cast<size_t>(c * (n / 4) + i)];
    }
    EXPECT_NEAR(cols.to_vector<double>()[static_cast<size_t>(c)], col, 1e-5 * col);
    EXPECT_NEAR(rows.to_vector<double>()[static_cast<size_t>(c)], row, 1e-5 * row);
  }
}

// Every layout the geometry can produce: contiguous, transposed, sliced with a step, expanded (stride 0),
// inner and outer reductions, several dims at once, and sizes large enough to split across threads/blocks.
TEST_P(ReduceTest, MatchesNaiveReferenceOnManyLayouts) {
  struct Case {
    std::vector<int64_t> shape;
    std::vector<std::vector<int64_t>> dims;
  };
  const std::vector<Case> cases = {
      {{7}, {{0}}},
      {{7, 13}, {{0}, {1}, {-1}, {0, 1}}},
      {{33, 7, 5}, {{0}, {1}, {2}, {0, 2}, {1, 2}, {0, 1}, {0, 1, 2}}},
      {{4, 1, 6}, {{1}, {0, 1}, {2}}},
      {{2, 3, 4, 5}, {{1, 3}, {0, 2}, {3}, {0}}},
      {{300, 257}, {{0}, {1}}},
      {{5, 40001}, {{1}, {0}}},
      {{40001, 5}, {{0}, {1}}},
      {{3, 70000}, {{0, 1}}},
  };
  for (const Case& c : cases) {
    Tensor base = randn(c.shape, opts(kFloat64));
    // Views of `base`'s values with other memory layouts.
    std::vector<std::string> names;
    std::vector<Tensor> layouts;
    names.reserve(3);
    layouts.reserve(3);
    names.push_back("contiguous");
    layouts.push_back(base);
    if (base.dim() >= 2) {
      names.push_back("transposed");
      layouts.push_back(base.transpose(0, -1).contiguous().transpose(0, -1));
      std::vector<int64_t> doubled = c.shape;
      doubled.back() *= 2;
      Tensor holder = zeros(doubled, opts(kFloat64));
      holder.slice(-1, 0, doubled.back(), 2).copy_(base);
      names.push_back("step-2 slice");
      layouts.push_back(holder.slice(-1, 0, doubled.back(), 2));
    }
    std::vector<int64_t> expanded = c.shape;
    expanded.insert(expanded.begin(), 3);
    const std::vector<double> host = base.to_vector<double>();
    for (size_t l = 0; l < layouts.size(); ++l) {
      const std::string& name = names[l];
      const Tensor& x = layouts[l];
      ASSERT_TRUE(all_close(x, base, 0, 0)) << name;
      for (const auto& dims : c.dims) {
        const std::string where =
            name + " shape " + ::testing::PrintToString(c.shape) + " dims " + ::testing::PrintToString(dims);
        const Tensor ref_sum = tensor(naive_reduce(host, c.shape, dims, Kind::Sum));
        EXPECT_TRUE(all_close(x.sum(dims).reshape({-1}), ref_sum, 1e-10, 1e-10)) << where;
        EXPECT_TRUE(all_close(x.to(kFloat32).sum(dims).reshape({-1}), ref_sum, 1e-4, 1e-4)) << where;
        EXPECT_TRUE(all_close(x.mean(dims, true).reshape({-1}), tensor(naive_reduce(host, c.shape, dims, Kind::Mean)),
                              1e-10, 1e-10))
            << where;
        EXPECT_TRUE(
            all_close(x.var(dims).reshape({-1}), tensor(naive_reduce(host, c.shape, dims, Kind::Var)), 1e-9, 1e-9))
            << where;
        EXPECT_TRUE(all_close(x.var(dims, false).reshape({-1}),
                              tensor(naive_reduce(host, c.shape, dims, Kind::Var, false)), 1e-9, 1e-9))
            << where;
        if (dims.size() != 1) continue;
        const int64_t d = dims[0];
        EXPECT_TRUE(all_close(x.max(d).reshape({-1}), tensor(naive_reduce(host, c.shape, dims, Kind::Max)), 0, 0))
            << where;
        EXPECT_TRUE(all_close(x.min(d).reshape({-1}), tensor(naive_reduce(host, c.shape, dims, Kind::Min)), 0, 0))
            << where;
        EXPECT_TRUE(all_close(x.argmax(d).reshape({-1}).to(kFloat64),
                              tensor(naive_reduce(host, c.shape, dims, Kind::ArgMax)), 0, 0))
            << where;
        EXPECT_TRUE(all_close(x.argmin(d).reshape({-1}).to(kFloat64),
                              tensor(naive_reduce(host, c.shape, dims, Kind::ArgMin)), 0, 0))
            << where;
        // Integer inputs: exact sums and extremes.
        Tensor xi = (x * 100).to(kInt64);
        const std::vector<double> hi = xi.to(kFloat64).contiguous().to_vector<double>();
        EXPECT_TRUE(all_close(xi.sum(dims).reshape({-1}).to(kFloat64),
                              tensor(naive_reduce(hi, c.shape, dims, Kind::Sum)), 0, 0))
            << where;
        EXPECT_TRUE(
            all_close(xi.max(d).reshape({-1}).to(kFloat64), tensor(naive_reduce(hi, c.shape, dims, Kind::Max)), 0, 0))
            << where;
      }
    }
    // Reducing over a broadcast (stride-0) dim.
    Tensor ex = base.expand(expanded);
    std::vector<double> ex_host;
    for (int k = 0; k < 3; ++k) ex_host.insert(ex_host.end(), host.begin(), host.end());
    EXPECT_TRUE(
        all_close(ex.sum({0}).reshape({-1}), tensor(naive_reduce(ex_host, expanded, {0}, Kind::Sum)), 1e-10, 1e-10));
    EXPECT_TRUE(
        all_close(ex.sum({-1}).reshape({-1}), tensor(naive_reduce(ex_host, expanded, {-1}, Kind::Sum)), 1e-10, 1e-10));
  }
}

TEST_P(ReduceTest, Float16AndBFloat16) {
  // Computed in float on both devices.
  for (DType dt : {kFloat16, kBFloat16}) {
    Tensor x = t({1, 2, 3, 4, 5, 6}, {2, 3}, dt);
    EXPECT_EQ(x.sum().dtype(), dt);
    EXPECT_TRUE(values_are(x.sum({1}), {2}, {6, 15}));
    EXPECT_TRUE(values_are(x.mean({0}), {3}, {2.5, 3.5, 4.5}));
    EXPECT_TRUE(values_are(x.var({1}), {2}, {1, 1}));
    EXPECT_TRUE(values_are(x.max(0), {3}, {4, 5, 6}));
    EXPECT_EQ(x.argmin(1).to_vector<int64_t>(), (std::vector<int64_t>{0, 0}));
    // 4096 ones sum exactly in the float accumulator (a float16 accumulator would stall at 2048).
    EXPECT_TRUE(values_are(ones({4096}, opts(dt)).sum(), {}, {4096}));
  }
}

// ---- errors -------------------------------------------------------------------------------------------

TEST_P(ReduceTest, BadInput) {
  Tensor a = zeros({2, 3}, opts());
  EXPECT_EMBER_ERROR(a.sum({2}), "sum", "dim 2", "[-2, 1]");
  EXPECT_EMBER_ERROR(a.sum({-3}), "sum", "[-2, 1]");
  EXPECT_EMBER_ERROR(a.mean({5}), "mean", "[-2, 1]");
  EXPECT_EMBER_ERROR(a.max(2), "max", "[-2, 1]");
  EXPECT_EMBER_ERROR(a.argmin(-3), "argmin", "[-2, 1]");
  EXPECT_EMBER_ERROR(a.var({7}), "var", "[-2, 1]");
  EXPECT_EMBER_ERROR(a.sum({1, -1}), "sum", "dim 1", "more than once");
  EXPECT_EMBER_ERROR(a.mean({0, 0}), "mean", "more than once");
  EXPECT_EMBER_ERROR(zeros({2}, opts(kInt64)).mean(), "mean", "int64", "floating-point");
  EXPECT_EMBER_ERROR(zeros({2}, opts(kInt32)).var({0}), "var", "int32");
  EXPECT_EMBER_ERROR(zeros({0, 3}, opts()).max(), "max", "non-empty", "[0, 3]");
  EXPECT_EMBER_ERROR(zeros({0}, opts()).min(), "min", "non-empty");
  EXPECT_EMBER_ERROR(zeros({0}, opts()).argmax(), "argmax", "non-empty");
  EXPECT_EMBER_ERROR(zeros({2, 0}, opts()).max(1), "max", "dim 1", "size 0");
  EXPECT_EMBER_ERROR(max_with_indices(zeros({2, 0}, opts()), -1), "max", "size 0");
  EXPECT_EMBER_ERROR(zeros({0, 2}, opts()).argmin(0), "argmin", "size 0");
  EXPECT_EMBER_ERROR(Tensor().sum(), "undefined");
}

// ---- autograd -----------------------------------------------------------------------------------------

TEST_P(ReduceTest, SumGradcheck) {
  Tensor x = leaf({3, 5, 7});
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].sum(); }, {x}));
  for (bool keepdim : {false, true}) {
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].sum({1}, keepdim); }, {x}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].sum({0, 2}, keepdim); }, {x}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].sum({-1, -3}, keepdim); }, {x}));
  }
  Tensor y = leaf({13, 7});
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].t().sum({0}); }, {y}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].slice(0, 0, 13, 2).sum({1}, true); }, {y}));
  // Through a broadcasting op, so that the gradient reaching sum is itself expanded.
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return (in[0].sum({1}) * 2).sum(); }, {y}));
  Tensor s = rand_leaf({}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].sum(); }, {s}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].sum({0}); }, {s}));
}

TEST_P(ReduceTest, SumGradientValues) {
  Tensor x = ones({2, 3}, opts()).requires_grad_();
  x.sum({1}).sum().backward();
  EXPECT_TRUE(values_are(x.grad(), {2, 3}, {1, 1, 1, 1, 1, 1}));
  Tensor y = ones({2, 3}, opts()).requires_grad_();
  y.mean().backward();
  EXPECT_TRUE(values_are(y.grad(), {2, 3}, {1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6}));
  EXPECT_EQ(y.grad().device(), device());
  EXPECT_EQ(x.sum().grad_fn()->name(), "SumBackward");
  EXPECT_EQ(x.mean({0}).grad_fn()->name(), "MeanBackward");
}

TEST_P(ReduceTest, MeanGradcheck) {
  Tensor x = leaf({7, 13});
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].mean(); }, {x}));
  for (bool keepdim : {false, true}) {
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].mean({0}, keepdim); }, {x}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].t().mean({-1}, keepdim); }, {x}));
  }
  Tensor s = rand_leaf({}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].mean(); }, {s}));
}

TEST_P(ReduceTest, VarGradcheck) {
  Tensor x = leaf({5, 7});
  for (bool unbiased : {true, false})
    for (bool keepdim : {false, true}) {
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].var({1}, unbiased, keepdim); }, {x}));
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].var({0, 1}, unbiased, keepdim); }, {x}));
    }
  Tensor y = leaf({3, 4, 5});
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].var({-1, 0}); }, {y}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].transpose(0, 2).var({1}); }, {y}));
}

TEST_P(ReduceTest, MaxMinDimGradcheck) {
  Tensor x = leaf({7, 13});
  for (bool keepdim : {false, true}) {
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].max(1, keepdim); }, {x}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].min(0, keepdim); }, {x}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return in[0].t().max(-1, keepdim); }, {x}));
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return std::get<0>(max_with_indices(in[0], -2, keepdim)); }, {x}));
  }
  Tensor s = rand_leaf({}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].max(0); }, {s}));
  Tensor y = leaf({33});
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].max(); }, {y}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].min(); }, {y}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return in[0].max(); }, {s}));
}

TEST_P(ReduceTest, ExtremumGradientsWithTies) {
  // max(dim): the whole gradient goes to the selected (first) index, as PyTorch.
  Tensor x = t({3, 3, 1, 2, 5, 5}, {2, 3}).requires_grad_();
  x.max(1).sum().backward();
  EXPECT_TRUE(values_are(x.grad(), {2, 3}, {1, 0, 0, 0, 1, 0}));
  EXPECT_EQ(x.max(1).grad_fn()->name(), "MaxBackward");
  // max() of every element: ties share the gradient evenly, as PyTorch.
  Tensor y = t({1, 3, 3, 2}, {4}).requires_grad_();
  y.max().backward();
  EXPECT_TRUE(values_are(y.grad(), {4}, {0, 0.5, 0.5, 0}));
  Tensor z = t({-1, -4, -4}, {3}).requires_grad_();
  (z.min() * 3).backward();
  EXPECT_TRUE(values_are(z.grad(), {3}, {0, 1.5, 1.5}));
}

TEST_P(ReduceTest, NonDifferentiableOutputs) {
  Tensor x = leaf({4, 5});
  EXPECT_FALSE(x.argmax(1).requires_grad());
  EXPECT_FALSE(x.argmax().requires_grad());
  EXPECT_FALSE(any(x).requires_grad());
  auto [v, i] = max_with_indices(x, 1);
  EXPECT_TRUE(v.requires_grad());
  EXPECT_FALSE(i.requires_grad());
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(x.max(1).requires_grad());
    EXPECT_FALSE(x.sum().requires_grad());
  }
}

TEST(ReduceLogicalCpuTest, ResultsStayOnTheInputsDevice) {
  const Device cpu1 = Device::cpu(1);
  Tensor x = tensor({1.0, 2.0, 4.0}).to(cpu1).requires_grad_();
  Tensor s = x.sum();
  EXPECT_EQ(s.device(), cpu1);
  EXPECT_EQ(x.max(0).device(), cpu1);
  EXPECT_EQ(x.argmax().device(), cpu1);
  EXPECT_EQ(any(x).device(), cpu1);
  EXPECT_EQ(x.softmax(0).device(), cpu1);
  (s + x.var({0}) + x.max()).backward();
  EXPECT_EQ(x.grad().device(), cpu1);
  // d/dx [sum + var + max]: 1 + 2 (x - mean) / (n - 1) + [x == max].
  const double m = 7.0 / 3;
  EXPECT_TRUE(values_are(x.grad(), {3}, {1 + (1 - m), 1 + (2 - m), 1 + (4 - m) + 1}, 1e-12, 1e-12));
}

// ---- CUDA against the CPU -----------------------------------------------------------------------------

// Compares the CUDA backend with the CPU: instantiated on cuda:0 only.
class ReduceTestCuda : public ReduceTest {};

TEST_P(ReduceTestCuda, DeviceMatchesCpu) {
  const std::vector<std::vector<int64_t>> shapes = {{1},       {7},          {13, 33},    {33, 13},    {5, 7, 9},
                                                    {1 << 20}, {1024, 1031}, {4, 300000}, {300000, 4}, {64, 3, 17, 19}};
  for (const auto& shape : shapes) {
    for (DType dt : {kFloat32, kFloat64}) {
      const Tensor c = randn(shape, TensorOptions(dt));
      const Tensor g = c.to(device());
      const std::string where = ::testing::PrintToString(shape) + " " + dtype_name(dt);
      const double rtol = dt == kFloat32 ? 1e-4 : 1e-10, atol = dt == kFloat32 ? 1e-3 : 1e-9;
      EXPECT_TRUE(all_close(g.sum().cpu(), c.sum(), rtol, atol)) << where;
      EXPECT_TRUE(all_close(g.mean().cpu(), c.mean(), rtol, atol)) << where;
      EXPECT_TRUE(all_close(g.max().cpu(), c.max(), 0, 0)) << where;
      EXPECT_TRUE(all_close(g.min().cpu(), c.min(), 0, 0)) << where;
      EXPECT_EQ(g.argmax().item<int64_t>(), c.argmax().item<int64_t>()) << where;
      EXPECT_EQ(any(g.gt(2)).item<bool>(), any(c.gt(2)).item<bool>()) << where;
      EXPECT_EQ(all(g.gt(-4)).item<bool>(), all(c.gt(-4)).item<bool>()) << where;
      for (int64_t d = 0; d < c.dim(); ++d) {
        EXPECT_TRUE(all_close(g.sum({d}).cpu(), c.sum({d}), rtol, atol)) << where << " dim " << d;
        EXPECT_TRUE(all_close(g.var({d}).cpu(), c.var({d}), 1e-3, 1e-4)) << where << " dim " << d;
        EXPECT_TRUE(all_close(g.max(d).cpu(), c.max(d), 0, 0)) << where << " dim " << d;
        EXPECT_TRUE(all_close(g.argmin(d).cpu(), c.argmin(d), 0, 0)) << where << " dim " << d;
        if (c.dim() >= 2) {
          EXPECT_TRUE(all_close(g.t().sum({0}).cpu(), c.t().sum({0}), rtol, atol)) << where;
        }
      }
      if (c.dim() >= 3) {
        EXPECT_TRUE(all_close(g.sum({0, 2}).cpu(), c.sum({0, 2}), rtol, atol)) << where;
        EXPECT_TRUE(all_close(g.mean({-1, 0}, true).cpu(), c.mean({-1, 0}, true), rtol, atol)) << where;
        EXPECT_TRUE(all_close(g.slice(-1, 0, c.size(-1), 2).sum({1, 2}).cpu(),
                              c.slice(-1, 0, c.size(-1), 2).sum({1, 2}), rtol, atol))
            << where;
      }
    }
    const Tensor ci = randint(-1000, 1000, shape);
    const Tensor gi = ci.to(device());
    EXPECT_EQ(gi.sum().item<int64_t>(), ci.sum().item<int64_t>());
    EXPECT_TRUE(all_close(gi.sum({0}).cpu(), ci.sum({0}), 0, 0));
    EXPECT_TRUE(all_close(gi.max(-1).cpu(), ci.max(-1), 0, 0));
    EXPECT_TRUE(all_close(gi.argmax(0).cpu(), ci.argmax(0), 0, 0));
  }
  // Misaligned row starts for the vectorised loads: a view starting one element in.
  const Tensor c = randn({37, 1001});
  const Tensor g = c.to(device());
  EXPECT_TRUE(all_close(g.narrow(1, 1, 1000).sum({1}).cpu(), c.narrow(1, 1, 1000).sum({1}), 1e-4, 1e-3));
  EXPECT_TRUE(all_close(g.reshape({-1}).narrow(0, 3, 30000).sum().cpu(), c.reshape({-1}).narrow(0, 3, 30000).sum(),
                        1e-4, 1e-3));
  EXPECT_TRUE(all_close(g.narrow(1, 1, 1000).argmax(1).cpu(), c.narrow(1, 1, 1000).argmax(1), 0, 0));
}

EMBER_INSTANTIATE_DEVICE_TESTS(ReduceTest);
EMBER_INSTANTIATE_CUDA_TESTS(ReduceTestCuda);

}  // namespace
}  // namespace ember
