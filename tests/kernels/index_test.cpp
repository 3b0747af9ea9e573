// Tests of index_select, gather, scatter_add, index_add, index_fill_ and one_hot: values, repeated
// indices, gradients, errors, and the CUDA kernels against the CPU ones.
#include "kernels/cuda/index.h"

#include "kernels/ops.h"
#include "kernels/shared/index_bounds.h"
#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class IndexTest : public testing::DeviceTest {
 protected:
  Tensor idx(std::vector<int64_t> v, DType dt = kInt64) const { return tensor(v).to(device(), dt); }
  // 0, 1, 2, ... in row-major order.
  Tensor seq(IntArrayRef shape, DType dt = kFloat32) const {
    return arange(0, product(shape), 1, TensorOptions(kFloat64)).view(shape).to(device(), dt);
  }
  // CUDA: nothing is recorded (any index error was raised, which cleared it), Note [CUDA index errors].
  void expect_no_index_error() const { EXPECT_NO_THROW(cuda::check_index_errors(device(), /*wait=*/true)); }
};

TEST_P(IndexTest, IndexSelectValues) {
  Tensor t = seq({3, 4});
  EXPECT_TRUE(values_are(index_select(t, 0, idx({2, 0, 2})), {3, 4}, {8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}));
  EXPECT_TRUE(values_are(index_select(t, 1, idx({3, 1})), {3, 2}, {3, 1, 7, 5, 11, 9}));
  EXPECT_TRUE(values_are(t.index_select(-1, idx({3, 1}, kInt32)), {3, 2}, {3, 1, 7, 5, 11, 9}));
  EXPECT_TRUE(
      values_are(index_select(t, 0, tensor(std::vector<int64_t>{1}).reshape({}).to(device())), {1, 4}, {4, 5, 6, 7}));
  // Strided self and strided index.
  EXPECT_TRUE(values_are(index_select(t.t(), 1, idx({0, 2})), {4, 2}, {0, 8, 1, 9, 2, 10, 3, 11}));
  EXPECT_TRUE(values_are(index_select(t, 0, idx({2, 9, 1, 9}).slice(0, 0, 4, 2)), {2, 4}, {8, 9, 10, 11, 4, 5, 6, 7}));
  EXPECT_EQ(index_select(t, 0, idx({})).sizes(), IntArrayRef({0, 4}));
  // Other dtypes move by their bits.
  EXPECT_EQ(index_select(seq({4}, kInt64), 0, idx({3, 3, 0})).to_vector<int64_t>(), (std::vector<int64_t>{3, 3, 0}));
  Tensor s = full({}, 5.0, opts());
  EXPECT_TRUE(values_are(index_select(s, 0, idx({0})), {}, {5}));
}

TEST_P(IndexTest, GatherValues) {
  Tensor t = seq({3, 4});
  Tensor i1 = idx({0, 1, 3, 3, 2, 0}).view({3, 2});
  EXPECT_TRUE(values_are(gather(t, 1, i1), {3, 2}, {0, 1, 7, 7, 10, 8}));
  EXPECT_TRUE(values_are(t.gather(0, idx({2, 0, 1, 0}).view({1, 4})), {1, 4}, {8, 1, 6, 3}));
  // The index may be smaller than self outside dim and larger along it; int32 works too.
  EXPECT_TRUE(values_are(gather(t, -1, idx({3, 2, 1, 0, 0}, kInt32).view({1, 5})), {1, 5}, {3, 2, 1, 0, 0}));
  EXPECT_TRUE(values_are(gather(t.t(), 0, idx({1, 2, 0}).view({1, 3})), {1, 3}, {1, 6, 8}));
  EXPECT_EQ(gather(t, 1, empty({3, 0}, TensorOptions(kInt64).device(device()))).sizes(), IntArrayRef({3, 0}));
}

TEST_P(IndexTest, ScatterAddValues) {
  // Repeated indices accumulate.
  Tensor self = zeros({2, 5}, opts());
  Tensor index = idx({0, 1, 2, 0, 0, 2, 0, 0, 1, 2}).view({2, 5});
  Tensor src = seq({2, 5});
  EXPECT_TRUE(values_are(scatter_add(self, 1, index, src), {2, 5}, {7, 1, 2, 0, 0, 13, 8, 14, 0, 0}));
  EXPECT_TRUE(values_are(self, {2, 5}, std::vector<double>(10, 0.0)));  // out of place left self alone
  self.scatter_add_(1, index, src);
  EXPECT_TRUE(values_are(self, {2, 5}, {7, 1, 2, 0, 0, 13, 8, 14, 0, 0}));
  // Along dim 0, into a strided self, from a src larger than the index.
  Tensor base = zeros({4, 3}, opts());
  Tensor st = base.t();  // [3, 4] view
  st.scatter_add_(0, idx({2, 2, 0, 1}).view({1, 4}), seq({2, 5}));
  EXPECT_TRUE(values_are(base, {4, 3}, {0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 3, 0}));
  // Integer data.
  Tensor counts = zeros({3}, opts(kInt64));
  counts.scatter_add_(0, idx({2, 0, 2, 2}), ones({4}, opts(kInt64)));
  EXPECT_EQ(counts.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 3}));
}

TEST_P(IndexTest, IndexAddValues) {
  Tensor self = zeros({4, 3}, opts());
  Tensor src = seq({3, 3});
  EXPECT_TRUE(values_are(index_add(self, 0, idx({0, 2, 0}), src, 2), {4, 3}, {12, 16, 20, 0, 0, 0, 6, 8, 10, 0, 0, 0}));
  Tensor t = ones({2, 4}, opts());
  t.index_add_(1, idx({3, 3, 3}, kInt32), seq({2, 3}));
  EXPECT_TRUE(values_are(t, {2, 4}, {1, 1, 1, 4, 1, 1, 1, 13}));
  Tensor s = full({}, 1.0, opts());
  s.index_add_(0, idx({0}), full({}, 2.0, opts()), -1);
  EXPECT_TRUE(values_are(s, {}, {-1}));
}

TEST_P(IndexTest, IndexFillAndOneHot) {
  Tensor t = zeros({3, 4}, opts());
  t.index_fill_(1, idx({0, 3, 0}), -1.5);
  EXPECT_TRUE(values_are(t, {3, 4}, {-1.5, 0, 0, -1.5, -1.5, 0, 0, -1.5, -1.5, 0, 0, -1.5}));
  Tensor u = zeros({3, 2}, opts(kInt64));
  u.t().index_fill_(1, idx({1}), 7);
  EXPECT_EQ(u.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 7, 7, 0, 0}));

  Tensor oh = one_hot(idx({0, 2, 1}), 4);
  EXPECT_EQ(oh.dtype(), kInt64);
  EXPECT_EQ(oh.sizes(), IntArrayRef({3, 4}));
  EXPECT_EQ(oh.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0}));
  Tensor inferred = one_hot(idx({1, 0, 2, 2}).view({2, 2}));
  EXPECT_EQ(inferred.sizes(), IntArrayRef({2, 2, 3}));
  EXPECT_EQ(inferred.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1}));
  EXPECT_EQ(one_hot(idx({}), 3).sizes(), IntArrayRef({0, 3}));
  EXPECT_EQ(one_hot(idx({1}, kInt32).reshape({}), 2).to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
}

TEST_P(IndexTest, RepeatedIndexGradientsAccumulate) {
  Tensor x = rand_leaf({3, 2}, device());
  index_select(x, 0, idx({0, 0, 2, 0})).sum().backward();
  EXPECT_TRUE(values_are(x.grad(), {3, 2}, {3, 3, 0, 0, 1, 1}));
  Tensor y = rand_leaf({2, 3}, device());
  gather(y, 1, idx({2, 2, 2, 0, 1, 1}).view({2, 3})).sum().backward();
  EXPECT_TRUE(values_are(y.grad(), {2, 3}, {0, 0, 3, 1, 2, 0}));
}

TEST_P(IndexTest, LargeInputsMatchLoops) {
  // Sizes above the CPU parallel grain, with many repeated indices (accumulation across threads).
  const TensorOptions o = opts(kFloat64);
  const TensorOptions io = TensorOptions(kInt64).device(device());
  Tensor src = randn({4000, 33}, o);
  Tensor rows = randint(0, 50, {4000}, io);
  Tensor acc = zeros({50, 33}, o);
  acc.index_add_(0, rows, src);
  {
    const std::vector<double> vs = src.to_vector<double>();
    const std::vector<int64_t> vi = rows.to_vector<int64_t>();
    std::vector<double> ref(50 * 33, 0.0);
    for (int64_t i = 0; i < 4000; ++i)
      for (int64_t c = 0; c < 33; ++c) ref[vi[i] * 33 + c] += vs[i * 33 + c];
    EXPECT_TRUE(values_are(acc, {50, 33}, ref, 1e-12, 1e-12));
  }
  Tensor cols = randint(0, 7, {64, 3000}, io);
  Tensor vals = randn({64, 3000}, o);
  Tensor sc = zeros({64, 7}, o).scatter_add(1, cols, vals);
  {
    const std::vector<double> vv = vals.to_vector<double>();
    const std::vector<int64_t> vc = cols.to_vector<int64_t>();
    std::vector<double> ref(64 * 7, 0.0);
    for (int64_t r = 0; r < 64; ++r)
      for (int64_t j = 0; j < 3000; ++j) ref[r * 7 + vc[r * 3000 + j]] += vv[r * 3000 + j];
    EXPECT_TRUE(values_are(sc, {64, 7}, ref, 1e-12, 1e-12));
  }
  Tensor table = randn({1000, 70}, o);
  Tensor pick = randint(0, 1000, {3000}, io);
  Tensor sel = index_select(table, 0, pick);
  {
    const std::vector<double> vt = table.to_vector<double>();
    const std::vector<int64_t> vp = pick.to_vector<int64_t>();
    std::vector<double> ref;
    for (int64_t i = 0; i < 3000; ++i)
      for (int64_t c = 0; c < 70; ++c) ref.push_back(vt[vp[i] * 70 + c]);
    EXPECT_TRUE(values_are(sel, {3000, 70}, ref, 0, 0));
  }
  // Few rest positions, a long indexed dim: the gather splits along the indexed dim.
  Tensor tall = randn({5000, 2}, o);
  Tensor gi = randint(0, 5000, {60000, 2}, io);
  Tensor g = gather(tall, 0, gi);
  {
    const std::vector<double> vt = tall.to_vector<double>();
    const std::vector<int64_t> vg = gi.to_vector<int64_t>();
    std::vector<double> ref;
    for (int64_t i = 0; i < 60000; ++i)
      for (int64_t c = 0; c < 2; ++c) ref.push_back(vt[vg[i * 2 + c] * 2 + c]);
    EXPECT_TRUE(values_are(g, {60000, 2}, ref, 0, 0));
  }
}

TEST_P(IndexTest, Gradients) {
  const Device dev = device();
  auto leaf = [&](IntArrayRef s) { return rand_leaf(s, dev); };
  const Tensor i0 = idx({1, 1, 0, 4, 1});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return index_select(x[0], 0, i0); }, {leaf({5, 7})}));
  const Tensor i1 = idx({12, 0, 12, 3}, kInt32);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return index_select(x[0], 1, i1); }, {leaf({7, 13})}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return index_select(x[0].t(), -1, i0); }, {leaf({5, 3})}));
  const Tensor g = randint(0, 5, {7, 9}, TensorOptions(kInt64).device(dev));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return gather(x[0], 1, g); }, {leaf({7, 5})}));
  const Tensor g0 = randint(0, 7, {13, 3}, TensorOptions(kInt64).device(dev));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return gather(x[0].t(), 0, g0); }, {leaf({5, 7})}));
  // scatter_add: self and src (including a src larger than the index).
  const Tensor s = randint(0, 5, {4, 7}, TensorOptions(kInt64).device(dev));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return scatter_add(x[0], 0, s, x[1]); },
                        {leaf({5, 7}), leaf({4, 7})}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return scatter_add(x[0], 0, s, x[1]); },
                        {leaf({5, 8}), leaf({6, 8})}));
  // index_add with alpha and repeated indices.
  const Tensor ia = idx({2, 0, 2, 2, 6});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return index_add(x[0], 1, ia, x[1], 2.5); },
                        {leaf({3, 7}), leaf({3, 5})}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return index_add(x[0], 0, ia.slice(0, 0, 3), x[1]); },
                        {leaf({33, 2}), leaf({3, 2})}));
  // index_fill_ on a non-leaf: the filled positions get no gradient.
  const Tensor f = idx({1, 4});
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& x) {
        Tensor y = x[0] * 2;
        y.index_fill_(1, f, 3.0);
        return y;
      },
      {leaf({3, 5})}));
  // 0-d tensors.
  const Tensor zero = idx({0});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return index_select(x[0], 0, zero); }, {leaf({})}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return gather(x[0], 0, zero.reshape({})); }, {leaf({})}));
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& x) { return index_add(x[0], 0, zero, x[1], 3); }, {leaf({}), leaf({})}));
  EXPECT_EQ(index_select(leaf({3}), 0, i0.slice(0, 0, 2)).grad_fn()->name(), "IndexSelectBackward");
  EXPECT_EQ(gather(leaf({3}), 0, i0.slice(0, 0, 2)).grad_fn()->name(), "GatherBackward");
}

// Note [CUDA index errors]: an index value out of range is thrown by the CPU op before anything is
// written, but a CUDA kernel only records it (checking on the host would wait for the device); then
// check_index_errors raises it, naming the op, the index and the size, and clears the record, so a
// second check (and the next index op) sees nothing. Words common to both messages only: the CUDA op
// names have no trailing underscore ("index_add" for index_add_).
#define EXPECT_INDEX_RANGE_ERROR(stmt, ...)                                               \
  do {                                                                                    \
    if (device().is_cpu()) {                                                              \
      EXPECT_EMBER_ERROR(stmt, __VA_ARGS__);                                              \
    } else {                                                                              \
      EXPECT_NO_THROW(stmt);                                                              \
      EXPECT_EMBER_ERROR(cuda::check_index_errors(device(), /*wait=*/true), __VA_ARGS__); \
      expect_no_index_error();                                                            \
    }                                                                                     \
  } while (0)

TEST_P(IndexTest, Errors) {
  Tensor t = seq({3, 4});
  if (device().is_cpu())
    EXPECT_EMBER_ERROR(index_select(t, 0, idx({0, 5})), "index_select: index 5 is out of range for dim 0 of size 3");
  EXPECT_INDEX_RANGE_ERROR(index_select(t, 0, idx({0, 5})), "index_select", "index 5", "size 3");
  EXPECT_INDEX_RANGE_ERROR(index_select(t, 1, idx({-1})), "index_select", "index -1", "size 4");
  EXPECT_EMBER_ERROR(index_select(t, 0, tensor({0.f, 1.f}).to(device())), "index_select", "int64", "float32");
  EXPECT_EMBER_ERROR(index_select(t, 0, idx({0, 1}).view({1, 2})), "index_select", "1-D", "[1, 2]");
  EXPECT_EMBER_ERROR(index_select(t, 2, idx({0})), "index_select", "dim 2");
  EXPECT_INDEX_RANGE_ERROR(gather(t, 1, idx({0, 7}).view({1, 2})), "gather", "index 7", "size 4");
  EXPECT_EMBER_ERROR(gather(t, 1, idx({0, 1})), "gather", "as many dims", "[2]", "[3, 4]");
  EXPECT_EMBER_ERROR(gather(t, 1, zeros({4, 1}, opts(kInt64))), "gather", "[4, 1]", "exceeds", "dim 0");
  EXPECT_INDEX_RANGE_ERROR(t.scatter_add_(0, idx({3}).view({1, 1}), ones({1, 1}, opts())), "scatter_add", "index 3",
                           "size 3");
  EXPECT_EMBER_ERROR(t.scatter_add_(0, idx({0}).view({1, 1}), ones({1, 1}, opts(kFloat64))), "scatter_add_", "float64",
                     "float32");
  EXPECT_EMBER_ERROR(t.scatter_add_(0, idx({0, 0}).view({2, 1}), ones({1, 1}, opts())), "scatter_add_", "exceeds src");
  EXPECT_EMBER_ERROR(t.index_add_(0, idx({0, 1}), ones({3, 4}, opts())), "index_add_", "[3, 4]", "2 entries");
  EXPECT_INDEX_RANGE_ERROR(t.index_add_(1, idx({4}), ones({3, 1}, opts())), "index_add", "index 4", "size 4");
  EXPECT_INDEX_RANGE_ERROR(t.index_fill_(0, idx({3}), 1.0), "index_fill_", "index 3", "size 3");
  EXPECT_EMBER_ERROR(zeros({3}, opts()).expand({2, 3}).index_fill_(0, idx({0}), 1.0), "index_fill_", "overlapping");
  // In place on a leaf that requires grad.
  Tensor leaf = rand_leaf({3, 2}, device());
  EXPECT_EMBER_ERROR(leaf.index_add_(0, idx({0}), ones({1, 2}, opts(kFloat64))), "index_add_", "leaf");
  // one_hot: the CPU names a class value and num_classes, the CUDA kernel an index and a size.
  if (device().is_cpu()) {
    EXPECT_EMBER_ERROR(one_hot(idx({0, -1}), 3), "one_hot", "value -1", "num_classes 3");
  } else {
    EXPECT_NO_THROW(one_hot(idx({0, -1}), 3));
    EXPECT_EMBER_ERROR(cuda::check_index_errors(device(), true), "one_hot", "index -1", "size 3");
    expect_no_index_error();
  }
  EXPECT_EMBER_ERROR(one_hot(idx({-2, 1})), "one_hot", "non-negative", "-2");
  EXPECT_EMBER_ERROR(one_hot(idx({})), "one_hot", "empty");
  EXPECT_EMBER_ERROR(one_hot(tensor({1.f}).to(device())), "one_hot", "int64", "float32");
  // Nothing is left recorded for later ops and tests (Note [CUDA index errors]).
  if (device().is_cuda()) expect_no_index_error();
}

// A dim of size 0 has no valid index: a negative one must not wrap (or clamp) to position 0. Self is an
// empty view into a larger buffer, so a stray access would land in `base` rather than fault.
TEST_P(IndexTest, NegativeIndexIntoEmptyDim) {
  Tensor base = ones({2, 4}, opts());
  Tensor empty_cols = base.narrow(1, 1, 0);  // [2, 0], data at base[0, 1]
  Tensor empty_rows = base.narrow(0, 1, 0);  // [0, 4], data at base[1, 0]
  EXPECT_INDEX_RANGE_ERROR(index_select(empty_rows, 0, idx({-1})), "index_select", "index -1", "size 0");
  EXPECT_INDEX_RANGE_ERROR(gather(empty_cols, 1, idx({-1, -2}).view({2, 1})), "gather", "index -", "size 0");
  EXPECT_INDEX_RANGE_ERROR(empty_cols.index_fill_(1, idx({-1}), 5.0), "index_fill_", "index -1", "size 0");
  EXPECT_INDEX_RANGE_ERROR(empty_cols.index_add_(1, idx({-1}, kInt32), ones({2, 1}, opts())), "index_add", "index -1",
                           "size 0");
  EXPECT_INDEX_RANGE_ERROR(empty_rows.scatter_add_(0, idx({-3}).view({1, 1}), ones({1, 1}, opts())), "scatter_add",
                           "index -3", "size 0");
  if (device().is_cpu()) {
    EXPECT_EMBER_ERROR(one_hot(idx({-1}), 0), "one_hot", "value -1", "num_classes 0");
  } else {
    EXPECT_NO_THROW(one_hot(idx({-1}), 0));
    EXPECT_EMBER_ERROR(cuda::check_index_errors(device(), true), "one_hot", "index -1", "size 0");
    expect_no_index_error();
  }
  // Nothing was written around the empty views.
  EXPECT_TRUE(values_are(base, {2, 4}, std::vector<double>(8, 1.0)));
  // Positive indices into the empty dim are out of range too.
  EXPECT_INDEX_RANGE_ERROR(empty_cols.index_fill_(1, idx({0}), 5.0), "index_fill_", "index 0", "size 0");
  EXPECT_TRUE(values_are(base, {2, 4}, std::vector<double>(8, 1.0)));
}

// The bounds math the CUDA kernels run (kernels/shared/index_bounds.h), checked on the host.
TEST(IndexBounds, InRangeAndClamp) {
  EXPECT_FALSE(index_in_range(0, 0));
  EXPECT_FALSE(index_in_range(-1, 0));
  EXPECT_FALSE(index_in_range(1, 0));
  EXPECT_TRUE(index_in_range(0, 1));
  EXPECT_TRUE(index_in_range(4, 5));
  EXPECT_FALSE(index_in_range(5, 5));
  EXPECT_FALSE(index_in_range(-1, 5));
  EXPECT_FALSE(index_in_range(-5, 5));  // negative indices do not wrap
  EXPECT_FALSE(index_in_range(INT64_MIN, 5));
  EXPECT_FALSE(index_in_range(INT64_MAX, 5));
  // A dim of size 0: nothing to touch, for any value.
  for (int64_t v : {int64_t{-1}, int64_t{-7}, int64_t{0}, int64_t{1}, INT64_MIN, INT64_MAX})
    EXPECT_EQ(clamp_index(v, 0), -1) << "v = " << v;
  // In range: unchanged; out of range: the nearest end.
  EXPECT_EQ(clamp_index(0, 1), 0);
  EXPECT_EQ(clamp_index(-1, 1), 0);
  EXPECT_EQ(clamp_index(1, 1), 0);
  EXPECT_EQ(clamp_index(0, 5), 0);
  EXPECT_EQ(clamp_index(3, 5), 3);
  EXPECT_EQ(clamp_index(4, 5), 4);
  EXPECT_EQ(clamp_index(5, 5), 4);
  EXPECT_EQ(clamp_index(-1, 5), 0);
  EXPECT_EQ(clamp_index(-6, 5), 0);
  EXPECT_EQ(clamp_index(INT64_MIN, 5), 0);
  EXPECT_EQ(clamp_index(INT64_MAX, 5), 4);
  for (int64_t size : {1, 2, 7})
    for (int64_t v = -10; v < 10; ++v) {
      const int64_t c = clamp_index(v, size);
      EXPECT_TRUE(index_in_range(c, size)) << "v = " << v << ", size = " << size;
      EXPECT_EQ(c == v, index_in_range(v, size)) << "v = " << v << ", size = " << size;
    }
}

TEST(IndexDevices, CpuErrorsOnly) {
  Tensor t = randn({3, 4});
  EXPECT_EMBER_ERROR(one_hot(tensor(std::vector<int64_t>{0, 5}), 3),
                     "one_hot: class value 5 is out of range for num_classes 3");
  // Nothing was written before the range check failed.
  Tensor z = zeros({3});
  EXPECT_EMBER_ERROR(z.index_add_(0, tensor(std::vector<int64_t>{0, 1, 3}), ones({3})), "index 3");
  EXPECT_TRUE(values_are(z, {3}, {0, 0, 0}));
  // Index and self on different logical CPU devices.
  Tensor i = tensor(std::vector<int64_t>{0}).to(Device::cpu(1));
  EXPECT_EMBER_ERROR(index_select(t, 0, i), "index_select", "cpu:1", "cpu:0");
  EXPECT_EMBER_ERROR(gather(t, 0, i.view({1, 1})), "gather", "cpu:1", "cpu:0");
  EXPECT_EMBER_ERROR(zeros({3}).index_add_(0, tensor(std::vector<int64_t>{0}), ones({1}).to(Device::cpu(1))),
                     "index_add_", "source", "cpu:1", "cpu:0");
  Tensor t1 = t.to(Device::cpu(1));
  EXPECT_EQ(index_select(t1, 0, i).device(), Device::cpu(1));
}

TEST(IndexDevices, CudaMatchesCpu_CUDA) {
  EMBER_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor t = randn({33, 13}).to(dt);
    Tensor i = randint(0, 33, {50}), j = randint(0, 13, {33, 20});
    EXPECT_TRUE(all_close(index_select(t.cuda(), 0, i.cuda()).cpu(), index_select(t, 0, i), 0, 0));
    EXPECT_TRUE(all_close(index_select(t.cuda().t(), 1, i.to(kInt32).cuda()).cpu(), index_select(t.t(), 1, i), 0, 0));
    EXPECT_TRUE(all_close(gather(t.cuda(), 1, j.cuda()).cpu(), gather(t, 1, j), 0, 0));
    Tensor src = randn({33, 20}).to(dt);
    EXPECT_TRUE(all_close(scatter_add(t.cuda(), 1, j.cuda(), src.cuda()).cpu(), scatter_add(t, 1, j, src), 1e-5, 1e-5));
    Tensor rows = randn({50, 13}).to(dt);
    EXPECT_TRUE(all_close(index_add(t.cuda(), 0, i.cuda(), rows.cuda(), -0.5).cpu(), index_add(t, 0, i, rows, -0.5),
                          1e-5, 1e-5));
    Tensor fi = randint(0, 13, {5});
    Tensor filled = t.clone(), gfilled = t.cuda();
    filled.index_fill_(1, fi, 2.0);
    gfilled.index_fill_(1, fi.cuda(), 2.0);
    EXPECT_TRUE(all_close(gfilled.cpu(), filled, 0, 0));
  }
  // Integer and half-precision accumulation, one_hot, gradients on the device.
  Tensor bins = randint(0, 7, {1000});
  Tensor counts = zeros({7}, TensorOptions(kInt64).device(gpu));
  counts.scatter_add_(0, bins.cuda(), ones({1000}, TensorOptions(kInt64).device(gpu)));
  Tensor cpu_counts = zeros({7}, TensorOptions(kInt64));
  cpu_counts.scatter_add_(0, bins, ones({1000}, TensorOptions(kInt64)));
  EXPECT_EQ(counts.cpu().to_vector<int64_t>(), cpu_counts.to_vector<int64_t>());
  Tensor h = zeros({7}, TensorOptions(kFloat16).device(gpu));
  h.index_add_(0, bins.slice(0, 0, 20).cuda(), ones({20}, TensorOptions(kFloat16).device(gpu)));
  EXPECT_TRUE(all_close(h.cpu().to(kFloat32), zeros({7}).index_add(0, bins.slice(0, 0, 20), ones({20}))));
  Tensor labels = randint(0, 10, {4, 5});
  EXPECT_EQ(one_hot(labels.cuda(), 10).cpu().to_vector<int64_t>(), one_hot(labels, 10).to_vector<int64_t>());
  EXPECT_EQ(one_hot(labels.cuda()).size(-1), one_hot(labels).size(-1));
  Tensor x = randn({6, 4}, TensorOptions(kFloat64));
  Tensor xg = x.cuda().requires_grad_(), xc = x.clone().requires_grad_();
  Tensor sel = tensor(std::vector<int64_t>{5, 0, 5, 5});
  (index_select(xg, 0, sel.cuda()) * 2).sum().backward();
  (index_select(xc, 0, sel) * 2).sum().backward();
  EXPECT_TRUE(all_close(xg.grad().cpu(), xc.grad(), 1e-12, 1e-12));
}

TEST(IndexDevices, CudaOutOfRangeIsReportedNotTrapped_CUDA) {
  EMBER_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  Tensor t = randn({3, 4}).cuda();
  // Note [CUDA index errors]: the kernel clamps and records; the check raises it later.
  Tensor out = index_select(t, 0, tensor(std::vector<int64_t>{0, 7}).cuda());
  EXPECT_EMBER_ERROR(cuda::check_index_errors(gpu, /*wait=*/true), "index_select", "index 7", "size 3");
  cuda::check_index_errors(gpu, true);  // cleared: nothing more to report
  // The context survives: later work runs and is right.
  EXPECT_TRUE(
      all_close(index_select(t, 0, tensor(std::vector<int64_t>{2}).cuda()).cpu(), t.cpu().narrow(0, 2, 1), 0, 0));
  Tensor z = zeros({3}).cuda();
  z.index_add_(0, tensor(std::vector<int64_t>{-4}).cuda(), ones({1}).cuda());
  EXPECT_EMBER_ERROR(cuda::check_index_errors(gpu, true), "index_add", "index -4");
  Tensor oh = one_hot(tensor(std::vector<int64_t>{1, 3}).cuda(), 3);
  EXPECT_EMBER_ERROR(cuda::check_index_errors(gpu, true), "one_hot", "index 3", "size 3");
}

EMBER_INSTANTIATE_DEVICE_TESTS(IndexTest);

}  // namespace
}  // namespace ember
