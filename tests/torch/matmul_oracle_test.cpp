// LibTorch oracle: matmul in every rank combination (with batch broadcasting), mm, bmm and addmm.
#include <algorithm>
#include <string>
#include <vector>

#include "tests/torch/oracle.h"

namespace ember {
namespace {

using namespace oracle;


// A GEMM output element is a dot product of k N(0,1) products; a gradient element is one of n or m
// terms, summed again over broadcast batch dims. accum_tol scales with the longest such sum.
Tol gemm_tol(DType dtype, int64_t longest_sum) { return accum_tol(dtype, longest_sum, 2.0); }

struct MatmulCase {
  Dims a, b;
  bool a_t = false, b_t = false;  // pass the operand as the transpose of a leaf (non-contiguous)
};

template <class T>
T maybe_t(const T& x, bool t) {
  return t ? x.transpose(-2, -1) : x;
}
Dims leaf_of(Dims s, bool t) {
  if (t) std::swap(s[s.size() - 1], s[s.size() - 2]);
  return s;
}

TEST(MatmulOracle, EveryRankCombination) {
  manual_seed(21);
  const std::vector<MatmulCase> cases = {
      {{33}, {33}},                      // 1-D . 1-D -> 0-d
      {{13}, {13, 7}},                   // 1-D x 2-D
      {{7, 13}, {13}},                   // 2-D x 1-D
      {{7, 13}, {13, 5}},                // 2-D x 2-D
      {{13}, {3, 13, 5}},                // 1-D x 3-D
      {{3, 7, 13}, {13}},                // 3-D x 1-D
      {{3, 7, 13}, {13, 5}},             // 3-D x 2-D (folded into one GEMM)
      {{7, 13}, {3, 13, 5}},             // 2-D x 3-D (broadcast a)
      {{3, 7, 13}, {3, 13, 5}},          // batched
      {{2, 1, 7, 13}, {3, 13, 5}},       // batch broadcast: [2, 1] with [3] -> [2, 3]
      {{1, 3, 7, 13}, {2, 1, 13, 5}},    // both sides broadcast
      {{2, 3, 7, 13}, {13}},             // 4-D x 1-D
      {{13}, {2, 3, 13, 5}},             // 1-D x 4-D
      {{1, 7, 13}, {4, 13, 5}},          // size-1 batch against 4
      {{64, 129}, {129, 65}},            // large enough for blocked GEMM paths
      {{7, 13}, {13, 5}, true, false},   // transposed operands
      {{7, 13}, {13, 5}, false, true},
      {{7, 13}, {13, 5}, true, true},
      {{3, 7, 13}, {3, 13, 5}, true, true},
      {{2, 1, 7, 13}, {3, 13, 5}, false, true},
      {{3, 7, 13}, {13, 5}, true, false},  // 3-D x 2-D with a transposed batch operand
  };
  for (DType dtype : float_dtypes()) {
    for (const MatmulCase& c : cases) {
      std::vector<Tensor> in = {randn_t(leaf_of(c.a, c.a_t && c.a.size() >= 2), dtype),
                                randn_t(leaf_of(c.b, c.b_t && c.b.size() >= 2), dtype)};
      auto f = [&](const auto& x) { return maybe_t(x[0], c.a_t).matmul(maybe_t(x[1], c.b_t)); };
      int64_t batch = 1;
      for (const Dims* s : {&c.a, &c.b})
        for (size_t i = 0; i + 2 < s->size(); ++i) batch = std::max(batch, (*s)[i]);
      int64_t longest = 0;
      for (int64_t v : c.a) longest = std::max(longest, v);
      for (int64_t v : c.b) longest = std::max(longest, v);
      EXPECT_TRUE(compare_op(in, f, f, gemm_tol(dtype, longest * batch * 2)))
          << "matmul " << describe(in) << (c.a_t ? " a transposed" : "") << (c.b_t ? " b transposed" : "");
    }
  }
}

TEST(MatmulOracle, MmBmmAddmm) {
  manual_seed(22);
  for (DType dtype : float_dtypes()) {
    const Tol t = gemm_tol(dtype, 2 * 33);
    std::vector<Tensor> in = {randn_t({13, 33}, dtype), randn_t({33, 7}, dtype), randn_t({7, 33}, dtype),
                              randn_t({5, 13, 33}, dtype), randn_t({5, 7, 33}, dtype), randn_t({7}, dtype),
                              randn_t({13, 7}, dtype), randn_t({1, 7}, dtype)};
    auto check = [&](const std::string& name, auto fe, auto ft) {
      EXPECT_TRUE(compare_op(in, fe, ft, t)) << name << " " << dtype_name(dtype);
    };
    auto same = [&](const std::string& name, auto f) { check(name, f, f); };
    same("mm", [](const auto& x) { return x[0].mm(x[1]); });
    same("mm transposed rhs", [](const auto& x) { return x[0].mm(x[2].t()); });
    same("mm transposed both", [](const auto& x) { return x[1].t().mm(x[0].t()); });
    same("bmm", [](const auto& x) { return x[3].bmm(x[4].transpose(1, 2)); });
    same("bmm transposed lhs", [](const auto& x) { return x[4].bmm(x[3].transpose(1, 2)); });
    same("bmm strided batch", [](const auto& x) {
      return x[3].slice(0, 0, 4, 2).bmm(x[4].slice(0, 1, 5, 2).transpose(1, 2));
    });
    check("addmm bias row", [](const std::vector<Tensor>& x) { return addmm(x[5], x[0], x[1]); },
          [](const std::vector<at::Tensor>& x) { return at::addmm(x[5], x[0], x[1]); });
    check("addmm full self", [](const std::vector<Tensor>& x) { return addmm(x[6], x[0], x[2].t()); },
          [](const std::vector<at::Tensor>& x) { return at::addmm(x[6], x[0], x[2].t()); });
    check("addmm [1, n] self, beta/alpha", [](const std::vector<Tensor>& x) { return addmm(x[7], x[0], x[1], 0.5, -2.0); },
          [](const std::vector<at::Tensor>& x) { return at::addmm(x[7], x[0], x[1], 0.5, -2.0); });
    check("addmm beta 0", [](const std::vector<Tensor>& x) { return addmm(x[6], x[0], x[1], 0.0, 1.5); },
          [](const std::vector<at::Tensor>& x) { return at::addmm(x[6], x[0], x[1], 0.0, 1.5); });
  }
}

// Linear's path: nn::functional::linear against at::linear, for 1-D, 2-D and 3-D inputs.
TEST(MatmulOracle, Linear) {
  manual_seed(23);
  for (DType dtype : float_dtypes()) {
    const Tol t = gemm_tol(dtype, 4 * 33);
    for (const Dims& shape : std::vector<Dims>{{33}, {13, 33}, {4, 7, 33}}) {
      std::vector<Tensor> in = {randn_t(shape, dtype), randn_t({7, 33}, dtype), randn_t({7}, dtype)};
      auto fe = [](const std::vector<Tensor>& x) { return nn::functional::linear(x[0], x[1], x[2]); };
      auto ft = [](const std::vector<at::Tensor>& x) { return at::linear(x[0], x[1], x[2]); };
      EXPECT_TRUE(compare_op(in, fe, ft, t)) << "linear " << describe(in);
      auto fe_nb = [](const std::vector<Tensor>& x) { return nn::functional::linear(x[0], x[1]); };
      auto ft_nb = [](const std::vector<at::Tensor>& x) { return at::linear(x[0], x[1]); };
      EXPECT_TRUE(compare_op(in, fe_nb, ft_nb, t)) << "linear without bias " << describe(in);
    }
  }
}

}  // namespace
}  // namespace ember
