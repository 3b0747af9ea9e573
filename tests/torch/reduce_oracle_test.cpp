// LibTorch oracle: reductions (sum, mean, var, max, min, argmax, argmin, any, all) and softmax/log_softmax.
#include <string>
#include <vector>

#include "tests/torch/oracle.h"

namespace ember {
namespace {

using namespace oracle;


// Reduction inputs: 2-D, 3-D with odd sizes, a transposed (non-contiguous) view, a strided view.
struct Input {
  std::string what;
  Dims leaf;
  int view;  // 0: the leaf, 1: transpose(0, -1), 2: every other element of the last dim
};
const std::vector<Input>& inputs() {
  static const std::vector<Input> cases = {
      {"[7, 13]", {7, 13}, 0},
      {"[3, 7, 33]", {3, 7, 33}, 0},
      {"[13, 7].t()", {13, 7}, 1},
      {"[33, 5, 7] transposed to [7, 5, 33]", {33, 5, 7}, 1},
      {"[5, 26] step 2", {5, 26}, 2},
  };
  return cases;
}
template <class T>
T view_of(const T& x, int view) {
  if (view == 1) return x.transpose(0, -1);
  if (view == 2) return x.slice(-1, 0, x.size(-1), 2);
  return x;
}

// The dim lists to reduce for a rank-r input: each dim (positive and negative), pairs, all.
std::vector<Dims> dim_lists(int64_t rank) {
  std::vector<Dims> out;
  for (int64_t d = 0; d < rank; ++d) out.push_back({d});
  out.push_back({-1});
  if (rank >= 2) out.push_back({0, rank - 1});
  if (rank >= 3) out.push_back({-1, 1});
  return out;
}

int64_t reduced_count(IntArrayRef sizes, const Dims& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= sizes[static_cast<size_t>(d < 0 ? d + static_cast<int64_t>(sizes.size()) : d)];
  return n;
}

TEST(ReduceOracle, SumMeanVarOverDims) {
  manual_seed(11);
  for (DType dtype : float_dtypes()) {
    for (const Input& c : inputs()) {
      std::vector<Tensor> in = {randn_t(c.leaf, dtype)};
      const Tensor viewed = view_of(in[0], c.view);
      for (const Dims& dims : dim_lists(viewed.dim())) {
        for (bool keepdim : {false, true}) {
          // A sum of n N(0,1) terms: rounding ~ n * u (Note [Oracle tolerances]); the gradient is a broadcast.
          const Tol t = accum_tol(dtype, reduced_count(viewed.sizes(), dims));
          auto sum = [&, v = c.view](const auto& x) { return view_of(x[0], v).sum(dims, keepdim); };
          auto mean = [&, v = c.view](const auto& x) { return view_of(x[0], v).mean(dims, keepdim); };
          auto var = [&, v = c.view](const auto& x) { return view_of(x[0], v).var(dims, true, keepdim); };
          auto var_biased = [&, v = c.view](const auto& x) { return view_of(x[0], v).var(dims, false, keepdim); };
          const std::string where = c.what + " dims " + ::testing::PrintToString(dims) + " keepdim " +
                                    std::to_string(keepdim) + " " + dtype_name(dtype);
          EXPECT_TRUE(compare_op(in, sum, sum, t)) << "sum " << where;
          EXPECT_TRUE(compare_op(in, mean, mean, t)) << "mean " << where;
          EXPECT_TRUE(compare_op(in, var, var, t)) << "var " << where;
          EXPECT_TRUE(compare_op(in, var_biased, var_biased, t)) << "var unbiased=false " << where;
        }
      }
      const int64_t n = viewed.numel();
      auto sum_all = [&, v = c.view](const auto& x) { return view_of(x[0], v).sum(); };
      auto mean_all = [&, v = c.view](const auto& x) { return view_of(x[0], v).mean(); };
      EXPECT_TRUE(compare_op(in, sum_all, sum_all, accum_tol(dtype, n))) << "sum() " << c.what;
      EXPECT_TRUE(compare_op(in, mean_all, mean_all, accum_tol(dtype, n))) << "mean() " << c.what;
    }
  }
}

TEST(ReduceOracle, ZeroDimAndSingletonReductions) {
  for (DType dtype : float_dtypes()) {
    std::vector<Tensor> in = {randn_t({}, dtype), randn_t({1, 7, 1}, dtype)};
    auto check = [&](const std::string& name, auto f) { EXPECT_TRUE(compare_op(in, f, f, tol(dtype))) << name; };
    check("sum 0-d", [](const auto& x) { return x[0].sum(); });
    check("mean 0-d", [](const auto& x) { return x[0].mean(); });
    check("sum over size-1 dims", [](const auto& x) { return x[1].sum(Dims{0, 2}, true); });
    check("mean over size-1 dim", [](const auto& x) { return x[1].mean(Dims{2}); });
    check("var over 7", [](const auto& x) { return x[1].var(Dims{1}, true, true); });
  }
}

TEST(ReduceOracle, MaxMinArgmaxArgmin) {
  manual_seed(12);
  for (DType dtype : float_dtypes()) {
    for (const Input& c : inputs()) {
      std::vector<Tensor> in = {randn_t(c.leaf, dtype)};
      const int64_t rank = view_of(in[0], c.view).dim();
      const std::string where = c.what + " " + dtype_name(dtype);
      auto max_all_e = [v = c.view](const std::vector<Tensor>& x) { return view_of(x[0], v).max(); };
      auto max_all_t = [v = c.view](const std::vector<at::Tensor>& x) { return view_of(x[0], v).max(); };
      auto min_all_e = [v = c.view](const std::vector<Tensor>& x) { return view_of(x[0], v).min(); };
      auto min_all_t = [v = c.view](const std::vector<at::Tensor>& x) { return view_of(x[0], v).min(); };
      EXPECT_TRUE(compare_op(in, max_all_e, max_all_t, tol(dtype))) << "max() " << where;
      EXPECT_TRUE(compare_op(in, min_all_e, min_all_t, tol(dtype))) << "min() " << where;
      auto argmax_all = [v = c.view](const auto& x) { return view_of(x[0], v).argmax(); };
      EXPECT_TRUE(compare_op(in, argmax_all, argmax_all, tol(dtype))) << "argmax() " << where;
      for (int64_t d = -1; d < rank; ++d) {
        for (bool keepdim : {false, true}) {
          const std::string at_dim = where + " dim " + std::to_string(d) + " keepdim " + std::to_string(keepdim);
          auto max_e = [&, v = c.view](const std::vector<Tensor>& x) { return view_of(x[0], v).max(d, keepdim); };
          auto max_t = [&, v = c.view](const std::vector<at::Tensor>& x) {
            return std::get<0>(view_of(x[0], v).max(d, keepdim));
          };
          auto min_e = [&, v = c.view](const std::vector<Tensor>& x) { return view_of(x[0], v).min(d, keepdim); };
          auto min_t = [&, v = c.view](const std::vector<at::Tensor>& x) {
            return std::get<0>(view_of(x[0], v).min(d, keepdim));
          };
          EXPECT_TRUE(compare_op(in, max_e, max_t, tol(dtype))) << "max(dim) " << at_dim;
          EXPECT_TRUE(compare_op(in, min_e, min_t, tol(dtype))) << "min(dim) " << at_dim;
          auto maxi_e = [&, v = c.view](const std::vector<Tensor>& x) {
            return std::get<1>(max_with_indices(view_of(x[0], v), d, keepdim));
          };
          auto maxi_t = [&, v = c.view](const std::vector<at::Tensor>& x) {
            return std::get<1>(view_of(x[0], v).max(d, keepdim));
          };
          EXPECT_TRUE(compare_op(in, maxi_e, maxi_t, tol(dtype))) << "max_with_indices(dim) " << at_dim;
          auto argmax = [&, v = c.view](const auto& x) { return view_of(x[0], v).argmax(d, keepdim); };
          auto argmin = [&, v = c.view](const auto& x) { return view_of(x[0], v).argmin(d, keepdim); };
          EXPECT_TRUE(compare_op(in, argmax, argmax, tol(dtype))) << "argmax(dim) " << at_dim;
          EXPECT_TRUE(compare_op(in, argmin, argmin, tol(dtype))) << "argmin(dim) " << at_dim;
        }
      }
    }
  }
}

// Ties: LibTorch returns the first extreme index along a dim, gives max(dim)'s gradient to that
// index, and splits max()'s (full reduction) gradient evenly between all tied elements.
TEST(ReduceOracle, TiesFollowLibTorch) {
  for (DType dtype : float_dtypes()) {
    Tensor x = tensor({3.0, 1.0, 3.0, 0.0, 2.0, 2.0, 2.0, -1.0, -5.0, 3.0, -5.0, 1.0}).view({3, 4}).to(dtype);
    x.requires_grad_();
    std::vector<Tensor> in = {x};
    auto argmax = [](const auto& v) { return v[0].argmax(1); };
    auto argmin = [](const auto& v) { return v[0].argmin(1); };
    auto argmax0 = [](const auto& v) { return v[0].argmax(0); };
    auto argmax_all = [](const auto& v) { return v[0].argmax(); };
    EXPECT_TRUE(compare_op(in, argmax, argmax, tol(dtype))) << "argmax(1)";
    EXPECT_TRUE(compare_op(in, argmin, argmin, tol(dtype))) << "argmin(1)";
    EXPECT_TRUE(compare_op(in, argmax0, argmax0, tol(dtype))) << "argmax(0)";
    EXPECT_TRUE(compare_op(in, argmax_all, argmax_all, tol(dtype))) << "argmax()";
    auto max_dim_e = [](const std::vector<Tensor>& v) { return v[0].max(1); };
    auto max_dim_t = [](const std::vector<at::Tensor>& v) { return std::get<0>(v[0].max(1)); };
    EXPECT_TRUE(compare_op(in, max_dim_e, max_dim_t, tol(dtype))) << "max(1) gradient with ties";
    auto min_dim_e = [](const std::vector<Tensor>& v) { return v[0].min(1); };
    auto min_dim_t = [](const std::vector<at::Tensor>& v) { return std::get<0>(v[0].min(1)); };
    EXPECT_TRUE(compare_op(in, min_dim_e, min_dim_t, tol(dtype))) << "min(1) gradient with ties";
    auto max_e = [](const std::vector<Tensor>& v) { return v[0].max(); };
    auto max_t = [](const std::vector<at::Tensor>& v) { return v[0].max(); };
    EXPECT_TRUE(compare_op(in, max_e, max_t, tol(dtype))) << "max() gradient with ties";
    auto min_e = [](const std::vector<Tensor>& v) { return v[0].min(); };
    auto min_t = [](const std::vector<at::Tensor>& v) { return v[0].min(); };
    EXPECT_TRUE(compare_op(in, min_e, min_t, tol(dtype))) << "min() gradient with ties";
  }
}

TEST(ReduceOracle, AnyAllAndIntegerSums) {
  manual_seed(13);
  std::vector<Tensor> in = {randn({7, 13}).gt(1.5), randn({7, 13}).gt(-2.5), randint(-50, 50, {7, 13})};
  auto check = [&](const std::string& name, auto f) { EXPECT_TRUE(compare_op(in, f, f, tol(kFloat64))) << name; };
  check("any", [](const auto& x) { return any(x[0]); });
  check("all", [](const auto& x) { return all(x[1]); });
  check("any none", [](const auto& x) { return any(logical_and(x[0], x[0].logical_not())); });
  check("sum of bool", [](const auto& x) { return x[0].sum(); });
  check("sum of int64 over dim", [](const auto& x) { return x[2].sum(Dims{1}); });
  check("max of int64", [](const auto& x) { return x[2].max(); });
  check("argmax of int64", [](const auto& x) { return x[2].argmax(0); });
}

// Softmax over every dim of 2-D/3-D/non-contiguous inputs, and of large logits (stability).
TEST(SoftmaxOracle, SoftmaxAndLogSoftmax) {
  manual_seed(14);
  for (DType dtype : float_dtypes()) {
    for (const Input& c : inputs()) {
      std::vector<Tensor> in = {randn_t(c.leaf, dtype)};
      const Tensor viewed = view_of(in[0], c.view);
      for (int64_t d = -1; d < viewed.dim(); ++d) {
        // The backward sums grad * y over the softmax dim.
        const Tol t = accum_tol(dtype, viewed.size(d));
        auto sm = [&, v = c.view](const auto& x) { return view_of(x[0], v).softmax(d); };
        auto lsm = [&, v = c.view](const auto& x) { return view_of(x[0], v).log_softmax(d); };
        auto big = [&, v = c.view](const auto& x) { return (view_of(x[0], v) * 40.0).log_softmax(d); };
        auto big_sm = [&, v = c.view](const auto& x) { return (view_of(x[0], v) * 40.0 + 500.0).softmax(d); };
        const std::string where = c.what + " dim " + std::to_string(d) + " " + dtype_name(dtype);
        EXPECT_TRUE(compare_op(in, sm, sm, t)) << "softmax " << where;
        EXPECT_TRUE(compare_op(in, lsm, lsm, t)) << "log_softmax " << where;
        // log_softmax of logits ~ N(0, 40^2): values up to ~150 in magnitude, relative error ~u each.
        EXPECT_TRUE(compare_op(in, big, big, accum_tol(dtype, viewed.size(d), 40.0))) << "log_softmax x40 " << where;
        EXPECT_TRUE(compare_op(in, big_sm, big_sm, accum_tol(dtype, viewed.size(d), 40.0))) << "softmax x40+500 " << where;
      }
    }
  }
}

}  // namespace
}  // namespace ember
