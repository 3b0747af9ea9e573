// Tests of view ops: shapes, strides, storage sharing, and their errors.
#include <limits>

#include "tests/testing.h"

namespace ember {
namespace {

using testing::values_are;

class ViewsTest : public testing::DeviceTest {
 protected:
  Tensor iota(IntArrayRef shape) { return arange(0, product(shape), 1, opts()).view(shape); }
};

TEST_P(ViewsTest, ViewAndReshape) {
  Tensor a = iota({2, 3, 4});
  Tensor v = a.view({6, 4});
  EXPECT_TRUE(v.is_alias_of(a));
  EXPECT_EQ(v.strides(), IntArrayRef({4, 1}));
  EXPECT_EQ(a.view({-1}).sizes(), IntArrayRef({24}));
  EXPECT_EQ(a.view({4, -1}).sizes(), IntArrayRef({4, 6}));
  // A transposed tensor can still be viewed when the merged dims stay contiguous with each other.
  Tensor p = a.permute({1, 2, 0});  // [3, 4, 2], strides [4, 1, 12]
  EXPECT_EQ(p.view({12, 2}).strides(), IntArrayRef({1, 12}));
  EXPECT_EMBER_ERROR(a.transpose(0, 1).view({24}), "view", "reshape()");
  Tensor r = a.transpose(0, 1).reshape({24});  // copies
  EXPECT_FALSE(r.is_alias_of(a));
  EXPECT_EQ(r.to_vector<float>()[1], 1.0f);
  EXPECT_EQ(r.to_vector<float>()[4], 12.0f);
  EXPECT_TRUE(a.reshape({4, 6}).is_alias_of(a));  // viewable: no copy
  EXPECT_EMBER_ERROR(a.view({5, 5}), "view", "[5, 5]", "invalid for input of size 24");
  EXPECT_EMBER_ERROR(a.view({-1, -1}), "only one dimension can be -1");
  EXPECT_EMBER_ERROR(a.view({7, -1}), "view", "invalid for input of size 24");
  Tensor s = scalar_tensor(1.0, opts());
  EXPECT_EQ(s.view({1, 1}).sizes(), IntArrayRef({1, 1}));
  EXPECT_EQ(s.reshape({}).dim(), 0);
  Tensor e = zeros({0, 4}, opts());
  EXPECT_EQ(e.view({2, 0, 2}).sizes(), IntArrayRef({2, 0, 2}));
}

TEST_P(ViewsTest, FlattenUnflatten) {
  Tensor a = iota({2, 3, 4});
  EXPECT_EQ(a.flatten().sizes(), IntArrayRef({24}));
  EXPECT_EQ(a.flatten(1).sizes(), IntArrayRef({2, 12}));
  EXPECT_EQ(a.flatten(0, 1).sizes(), IntArrayRef({6, 4}));
  EXPECT_EQ(a.flatten(1).unflatten(1, {3, 4}).sizes(), IntArrayRef({2, 3, 4}));
  EXPECT_EQ(scalar_tensor(1.0, opts()).flatten().sizes(), IntArrayRef({1}));
  EXPECT_EMBER_ERROR(a.flatten(2, 1), "flatten", "start_dim");
}

TEST_P(ViewsTest, TransposePermuteT) {
  Tensor a = iota({2, 3});
  Tensor t = a.t();
  EXPECT_EQ(t.sizes(), IntArrayRef({3, 2}));
  EXPECT_EQ(t.strides(), IntArrayRef({1, 3}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_TRUE(values_are(t, {3, 2}, {0, 3, 1, 4, 2, 5}));
  EXPECT_TRUE(values_are(a.transpose(-1, -2), {3, 2}, {0, 3, 1, 4, 2, 5}));
  Tensor b = iota({2, 3, 4});
  Tensor p = b.permute({2, 0, 1});
  EXPECT_EQ(p.sizes(), IntArrayRef({4, 2, 3}));
  EXPECT_EQ(p.strides(), IntArrayRef({1, 12, 4}));
  EXPECT_EQ(b.movedim(0, 2).sizes(), IntArrayRef({3, 4, 2}));
  EXPECT_EMBER_ERROR(b.permute({0, 1}), "permute", "2 dims");
  EXPECT_EMBER_ERROR(b.permute({0, 1, 1}), "permute", "twice");
  EXPECT_EMBER_ERROR(b.t(), "t:", "2 dims");
  EXPECT_EMBER_ERROR(b.transpose(0, 3), "transpose", "dim 3", "out of range");
}

TEST_P(ViewsTest, NarrowSliceSelect) {
  Tensor a = iota({4, 5});
  Tensor n = a.narrow(1, 1, 3);
  EXPECT_TRUE(values_are(n, {4, 3}, {1, 2, 3, 6, 7, 8, 11, 12, 13, 16, 17, 18}));
  EXPECT_EQ(n.storage_offset(), 1);
  Tensor s = a.slice(0, 0, 4, 2);
  EXPECT_TRUE(values_are(s, {2, 5}, {0, 1, 2, 3, 4, 10, 11, 12, 13, 14}));
  EXPECT_EQ(a.slice(1, -2, 100).sizes(), IntArrayRef({4, 2}));  // Python-style clamping
  EXPECT_EQ(a.slice(1, 3, 1).sizes(), IntArrayRef({4, 0}));
  Tensor r = a.select(0, 2);
  EXPECT_TRUE(values_are(r, {5}, {10, 11, 12, 13, 14}));
  EXPECT_TRUE(values_are(a.select(1, -1), {4}, {4, 9, 14, 19}));
  EXPECT_TRUE(values_are(a[1], {5}, {5, 6, 7, 8, 9}));
  EXPECT_EQ(a[1][2].dim(), 0);
  EXPECT_EQ(a[1][2].item<float>(), 7.0f);
  // Writes through a view reach the base.
  a.select(1, 0).fill_(-1);
  EXPECT_EQ(a.to_vector<float>()[5], -1.0f);
  EXPECT_EMBER_ERROR(a.narrow(1, 3, 3), "narrow", "exceed");
  EXPECT_EMBER_ERROR(a.select(0, 4), "select", "index 4", "size 4");
  EXPECT_EMBER_ERROR(a.slice(0, 0, 2, 0), "slice", "step");
  EXPECT_EMBER_ERROR(scalar_tensor(1, opts()).select(0, 0), "select", "0-d");
}

// Shapes at the edge of int64 (found by fuzz/fuzz_shapes.cpp; its reproducers are in fuzz/regressions/shapes):
// the checks themselves must not overflow, and a numel past int64 is an error, as in PyTorch.
TEST_P(ViewsTest, SizesNearTheInt64LimitAreCheckedWithoutOverflow) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  Tensor a = iota({3});
  EXPECT_EMBER_ERROR(a.narrow(0, 1, kMax), "narrow", "exceed");
  EXPECT_EMBER_ERROR(a.narrow(0, 4, 0), "narrow", "exceed");
  EXPECT_EQ(a.narrow(0, 3, 0).sizes(), IntArrayRef({0}));
  // A step past the end leaves one element (start), whatever its size.
  EXPECT_TRUE(values_are(a.slice(0, 1, 3, kMax), {1}, {1}));
  EXPECT_TRUE(values_are(a.slice(0, 0, kMax, int64_t{1} << 62), {1}, {0}));
  EXPECT_EQ(a.slice(0, 2, 2, kMax).sizes(), IntArrayRef({0}));
  EXPECT_EMBER_ERROR(a.view({int64_t{1} << 40, int64_t{1} << 40, -1}), "view", "invalid for input of size 3");
  EXPECT_EMBER_ERROR(a.reshape({int64_t{1} << 40, int64_t{1} << 40, 3}), "reshape", "invalid for input of size 3");
  EXPECT_EQ(empty({0}, opts()).view({int64_t{1} << 40, int64_t{1} << 40, 0}).numel(), 0);
  EXPECT_EMBER_ERROR(iota({1, 1}).expand({int64_t{1} << 40, int64_t{1} << 40}), "numel", "int64");
  EXPECT_EQ(iota({1, 1}).expand({int64_t{1} << 40, 0}).numel(), 0);
  // An empty view at an offset into an empty storage reads as empty.
  Tensor e = empty({0}, opts());
  Tensor v = e.as_strided({0}, {1}, 5);
  EXPECT_EQ(v.to_vector<float>().size(), 0u);
  EXPECT_EQ(v.contiguous().numel(), 0);
}

// An empty tensor whose other sizes multiply past int64 gets saturated strides (contiguous_strides); ops
// on it compute nothing and must not do arithmetic that overflows on them (under UBSan, the ASan build).
TEST_P(ViewsTest, EmptyTensorsWithHugeSizesComputeAsEmpty) {
  constexpr int64_t kBig = int64_t{1} << 40;
  const std::vector<int64_t> shape = {kBig, kBig, kBig, 0};
  Tensor e = empty({0}, opts()).view(shape);
  EXPECT_EQ(e.numel(), 0);
  auto empty_of = [&](const Tensor& t, IntArrayRef s) { return t.numel() == 0 && t.sizes() == s; };
  EXPECT_TRUE(empty_of(e + e, shape));
  EXPECT_TRUE(empty_of(e * 2, shape));
  EXPECT_TRUE(empty_of(e.neg().relu().exp(), shape));
  EXPECT_TRUE(empty_of(e.clone(), shape));
  EXPECT_TRUE(empty_of(e.to(kFloat64), shape));
  EXPECT_TRUE(empty_of(e.transpose(0, 3).contiguous(), IntArrayRef({0, kBig, kBig, kBig})));
  EXPECT_TRUE(empty_of(e.add_(1), shape));
  EXPECT_TRUE(empty_of(e.copy_(e + 1), shape));
  EXPECT_TRUE(empty_of(e.sum(0), IntArrayRef({kBig, kBig, 0})));
  EXPECT_EQ(e.sum().item<float>(), 0.0f);
  // Reducing the zero dim away leaves 2^120 elements: refused, as PyTorch refuses such a numel.
  EXPECT_EMBER_ERROR(e.sum(3), "int64");
}

TEST_P(ViewsTest, SqueezeUnsqueezeExpand) {
  Tensor a = iota({3});
  EXPECT_EQ(a.unsqueeze(0).sizes(), IntArrayRef({1, 3}));
  EXPECT_EQ(a.unsqueeze(-1).sizes(), IntArrayRef({3, 1}));
  EXPECT_EQ(a.unsqueeze(1).strides(), IntArrayRef({1, 1}));
  Tensor b = zeros({1, 3, 1}, opts());
  EXPECT_EQ(b.squeeze().sizes(), IntArrayRef({3}));
  EXPECT_EQ(b.squeeze(0).sizes(), IntArrayRef({3, 1}));
  EXPECT_EQ(b.squeeze(1).sizes(), IntArrayRef({1, 3, 1}));  // not size 1: unchanged
  Tensor e = a.unsqueeze(0).expand({2, 3});
  EXPECT_EQ(e.strides(), IntArrayRef({0, 1}));
  EXPECT_TRUE(values_are(e, {2, 3}, {0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(a.expand({4, 2, -1}).sizes(), IntArrayRef({4, 2, 3}));
  EXPECT_EMBER_ERROR(a.expand({2, 4}), "expand", "must match the existing size 3");
  EXPECT_EMBER_ERROR(a.expand({}), "expand", "fewer dims");
  EXPECT_EMBER_ERROR(a.unsqueeze(3), "unsqueeze", "out of range");
}

TEST_P(ViewsTest, ChunkSplitUnbindAsStrided) {
  Tensor a = iota({7, 2});
  auto chunks = a.chunk(3);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].size(0), 3);
  EXPECT_EQ(chunks[2].size(0), 1);
  EXPECT_TRUE(chunks[1].is_alias_of(a));
  auto parts = a.split(4);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].size(0), 3);
  auto sized = a.split({2, 5});
  EXPECT_EQ(sized[1].size(0), 5);
  EXPECT_EMBER_ERROR(a.split({2, 4}), "split", "add up to 6", "size 7");
  auto rows = a.unbind(1);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(values_are(rows[1], {7}, {1, 3, 5, 7, 9, 11, 13}));
  Tensor w = iota({6}).as_strided({2, 3}, {1, 2}, 0);
  EXPECT_TRUE(values_are(w, {2, 3}, {0, 2, 4, 1, 3, 5}));
  EXPECT_EMBER_ERROR(iota({6}).as_strided({2, 3}, {3, 2}, 0), "as_strided", "storage holds 6");
  EXPECT_EQ(a.chunk(10).size(), 7u);  // ceil(7/10) = 1 row each: fewer chunks, as PyTorch
}

EMBER_INSTANTIATE_DEVICE_TESTS(ViewsTest);

}  // namespace
}  // namespace ember
