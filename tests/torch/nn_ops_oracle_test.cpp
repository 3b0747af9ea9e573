// LibTorch oracle: conv2d, pooling, batch_norm, layer_norm, embedding and the losses (values and gradients).
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "tests/torch/oracle.h"

namespace ember {
namespace {

using namespace oracle;


// ---- conv2d ----------------------------------------------------------------------------------------

struct ConvCase {
  std::string what;
  Dims input, weight;
  bool bias;
  Dims stride, padding, dilation;
  int64_t groups;
  int input_view = 0;   // 1: the input is a channels-last leaf permuted to NCHW (non-contiguous)
  bool weight_t = false;  // the weight is the transpose (dims 0, 1) of a leaf
};

int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

TEST(ConvOracle, Conv2dForwardAndBackward) {
  manual_seed(41);
  const std::vector<ConvCase> cases = {
      {"3x3 pad 1 with bias", {2, 3, 13, 11}, {4, 3, 3, 3}, true, {1, 1}, {1, 1}, {1, 1}, 1},
      {"groups 2, stride 2, 3x5, asymmetric padding", {2, 4, 13, 11}, {6, 2, 3, 5}, true, {2, 2}, {1, 2}, {1, 1}, 2},
      {"depthwise dilated", {1, 6, 17, 15}, {6, 1, 3, 3}, false, {1, 1}, {2, 2}, {2, 2}, 6},
      {"1x1 stride 2", {3, 5, 9, 9}, {7, 5, 1, 1}, true, {2, 2}, {0, 0}, {1, 1}, 1},
      {"mixed stride/padding/dilation per dim", {2, 3, 7, 13}, {4, 3, 5, 3}, false, {1, 2}, {2, 0}, {1, 2}, 1},
      {"unbatched", {3, 13, 11}, {4, 3, 3, 3}, true, {1, 1}, {1, 1}, {1, 1}, 1},
      {"channels-last input, transposed weight", {2, 3, 13, 11}, {4, 3, 3, 3}, true, {1, 1}, {1, 1}, {1, 1}, 1, 1, true},
      {"16->32 channels 3x3 (the CNN's shape)", {2, 16, 14, 14}, {32, 16, 3, 3}, false, {1, 1}, {1, 1}, {1, 1}, 1},
      {"kernel covers the padded input", {1, 2, 3, 3}, {3, 2, 5, 5}, true, {1, 1}, {1, 1}, {1, 1}, 1},
  };
  for (DType dtype : float_dtypes()) {
    for (const ConvCase& c : cases) {
      Dims in_leaf = c.input;
      if (c.input_view == 1) in_leaf = {c.input[0], c.input[2], c.input[3], c.input[1]};
      Dims w_leaf = c.weight;
      if (c.weight_t) std::swap(w_leaf[0], w_leaf[1]);
      std::vector<Tensor> in = {randn_t(in_leaf, dtype), randn_t(w_leaf, dtype),
                                c.bias ? randn_t({c.weight[0]}, dtype) : Tensor()};
      auto prep = [&](const auto& x) {
        auto input = c.input_view == 1 ? x[0].permute({0, 3, 1, 2}) : x[0];
        auto weight = c.weight_t ? x[1].transpose(0, 1) : x[1];
        return std::make_pair(input, weight);
      };
      auto fe = [&](const std::vector<Tensor>& x) {
        auto [input, weight] = prep(x);
        return conv2d(input, weight, x[2], c.stride, c.padding, c.dilation, c.groups);
      };
      auto ft = [&](const std::vector<at::Tensor>& x) {
        auto [input, weight] = prep(x);
        return at::conv2d(input, weight, x[2], c.stride, c.padding, c.dilation, c.groups);
      };
      // Forward: dot products of C_in/groups*kH*kW terms; input gradient: C_out/groups*kH*kW terms;
      // weight/bias gradient: N*H_out*W_out terms. The tolerance follows the longest of these sums.
      const int64_t n = c.input.size() == 4 ? c.input[0] : 1;
      const int64_t h = c.input[c.input.size() - 2], w = c.input[c.input.size() - 1];
      const int64_t ho = conv_out(h, c.weight[2], c.stride[0], c.padding[0], c.dilation[0]);
      const int64_t wo = conv_out(w, c.weight[3], c.stride[1], c.padding[1], c.dilation[1]);
      const int64_t taps = c.weight[1] * c.weight[2] * c.weight[3];
      const int64_t longest = std::max({taps, c.weight[0] / c.groups * c.weight[2] * c.weight[3], n * ho * wo});
      EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, longest, 2.0))) << "conv2d " << c.what << " " << describe(in);
    }
  }
}

// ---- pooling ---------------------------------------------------------------------------------------

TEST(PoolOracle, MaxPool2dValuesIndicesGradients) {
  manual_seed(42);
  struct Case {
    std::string what;
    Dims kernel, stride, padding, dilation;
    bool ceil_mode;
  };
  const std::vector<Case> cases = {
      {"k2 (stride defaults to k)", {2, 2}, {}, {0, 0}, {1, 1}, false},
      {"k3 s2 p1", {3, 3}, {2, 2}, {1, 1}, {1, 1}, false},
      {"k(3,2) s(2,1) p(1,0) d(2,1)", {3, 2}, {2, 1}, {1, 0}, {2, 1}, false},
      {"k3 s2 ceil_mode", {3, 3}, {2, 2}, {0, 0}, {1, 1}, true},
      {"k2 s2 p1 ceil_mode", {2, 2}, {2, 2}, {1, 1}, {1, 1}, true},
  };
  for (DType dtype : float_dtypes()) {
    for (const Dims& shape : std::vector<Dims>{{2, 3, 13, 11}, {3, 13, 11}}) {
      for (bool transposed : {false, true}) {
        Dims leaf = shape;
        if (transposed) std::swap(leaf[leaf.size() - 1], leaf[leaf.size() - 2]);
        std::vector<Tensor> in = {randn_t(leaf, dtype)};
        for (const Case& c : cases) {
          OpFns fns{[&](const std::vector<Tensor>& x) {
                      auto [v, i] = max_pool2d_with_indices(transposed ? x[0].transpose(-1, -2) : x[0], c.kernel,
                                                            c.stride, c.padding, c.dilation, c.ceil_mode);
                      return std::vector<Tensor>{v, i};
                    },
                    [&](const std::vector<at::Tensor>& x) {
                      auto [v, i] = at::max_pool2d_with_indices(transposed ? x[0].transpose(-1, -2) : x[0], c.kernel,
                                                                c.stride, c.padding, c.dilation, c.ceil_mode);
                      return std::vector<at::Tensor>{v, i};
                    }};
          // Windows overlap (stride < kernel): an input's gradient sums up to kH*kW window gradients.
          EXPECT_TRUE(compare_op_multi(in, fns, tol(dtype), accum_tol(dtype, 9)))
              << "max_pool2d_with_indices " << c.what << " " << describe(in) << (transposed ? " transposed" : "");
          auto fe = [&](const std::vector<Tensor>& x) {
            return max_pool2d(x[0], c.kernel, c.stride, c.padding, c.dilation, c.ceil_mode);
          };
          auto ft = [&](const std::vector<at::Tensor>& x) {
            return at::max_pool2d(x[0], c.kernel, c.stride, c.padding, c.dilation, c.ceil_mode);
          };
          EXPECT_TRUE(compare_op(in, fe, ft, tol(dtype), accum_tol(dtype, 9))) << "max_pool2d " << c.what;
        }
      }
    }
  }
}

TEST(PoolOracle, AvgPool2d) {
  manual_seed(43);
  struct Case {
    std::string what;
    Dims kernel, stride, padding;
    bool ceil_mode, count_include_pad;
    std::optional<int64_t> divisor;
  };
  const std::vector<Case> cases = {
      {"k2", {2, 2}, {}, {0, 0}, false, true, std::nullopt},
      {"k3 s2 p1 count_include_pad", {3, 3}, {2, 2}, {1, 1}, false, true, std::nullopt},
      {"k3 s2 p1 exclude pad", {3, 3}, {2, 2}, {1, 1}, false, false, std::nullopt},
      {"k3 s2 p1 ceil_mode", {3, 3}, {2, 2}, {1, 1}, true, true, std::nullopt},
      {"k3 s2 p1 ceil_mode exclude pad", {3, 3}, {2, 2}, {1, 1}, true, false, std::nullopt},
      {"k(3,2) s(1,2) p(1,1) divisor 5", {3, 2}, {1, 2}, {1, 1}, false, true, 5},
  };
  for (DType dtype : float_dtypes()) {
    for (const Dims& shape : std::vector<Dims>{{2, 3, 13, 11}, {3, 13, 11}}) {
      std::vector<Tensor> in = {randn_t(shape, dtype)};
      for (const Case& c : cases) {
        auto fe = [&](const std::vector<Tensor>& x) {
          return avg_pool2d(x[0], c.kernel, c.stride, c.padding, c.ceil_mode, c.count_include_pad, c.divisor);
        };
        auto ft = [&](const std::vector<at::Tensor>& x) {
          return at::avg_pool2d(x[0], c.kernel, c.stride, c.padding, c.ceil_mode, c.count_include_pad,
                                c.divisor ? c10::optional<int64_t>(*c.divisor) : c10::nullopt);
        };
        EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, 9))) << "avg_pool2d " << c.what << " " << describe(in);
      }
      // Non-contiguous input.
      auto fe = [](const std::vector<Tensor>& x) { return avg_pool2d(x[0].transpose(-1, -2), {3, 3}, {2, 2}, {1, 1}); };
      auto ft = [](const std::vector<at::Tensor>& x) {
        return at::avg_pool2d(x[0].transpose(-1, -2), {3, 3}, {2, 2}, {1, 1});
      };
      EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, 9))) << "avg_pool2d of a transposed view";
    }
  }
}

TEST(PoolOracle, AdaptiveAvgPool2d) {
  manual_seed(44);
  for (DType dtype : float_dtypes()) {
    for (const Dims& shape : std::vector<Dims>{{2, 3, 13, 11}, {3, 13, 11}}) {
      std::vector<Tensor> in = {randn_t(shape, dtype)};
      // Sizes that do not divide the input (overlapping cells), 1x1, identity, larger than the input.
      for (const Dims& out : std::vector<Dims>{{5, 3}, {1, 1}, {13, 11}, {7, 4}, {17, 15}, {4, 4}}) {
        auto fe = [&](const std::vector<Tensor>& x) { return adaptive_avg_pool2d(x[0], out); };
        auto ft = [&](const std::vector<at::Tensor>& x) { return at::adaptive_avg_pool2d(x[0], out); };
        EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, 13 * 11)))
            << "adaptive_avg_pool2d to " << ::testing::PrintToString(out) << " " << describe(in);
      }
      auto fe = [](const std::vector<Tensor>& x) { return adaptive_avg_pool2d(x[0].transpose(-1, -2), {3, 5}); };
      auto ft = [](const std::vector<at::Tensor>& x) { return at::adaptive_avg_pool2d(x[0].transpose(-1, -2), {3, 5}); };
      EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, 13 * 11))) << "adaptive_avg_pool2d of a transposed view";
    }
  }
}

// ---- normalisation ---------------------------------------------------------------------------------

// Batch statistics are sums over N*H*W; the input gradient subtracts two such means from the output
// gradient, so the tolerance follows N*H*W.
TEST(NormOracle, BatchNormTrainingUpdatesRunningStats) {
  manual_seed(45);
  for (DType dtype : float_dtypes()) {
    for (const Dims& shape : std::vector<Dims>{{8, 5}, {4, 3, 7, 5}, {6, 4, 9}}) {
      for (bool affine : {true, false}) {
        for (double momentum : {0.1, 0.3}) {
          const int64_t c = shape[1];
          std::vector<Tensor> in = {randn_t(shape, dtype, false).mul(2.0).add(0.5).detach().requires_grad_(),
                                    affine ? randn_t({c}, dtype) : Tensor(), affine ? randn_t({c}, dtype) : Tensor()};
          Tensor rm = randn({c}, TensorOptions().dtype(dtype));
          Tensor rv = rand({c}, TensorOptions().dtype(dtype)).add(0.5);
          at::Tensor trm = to_torch(rm), trv = to_torch(rv);
          auto fe = [&](const std::vector<Tensor>& x) { return batch_norm(x[0], rm, rv, x[1], x[2], true, momentum, 1e-5); };
          auto ft = [&](const std::vector<at::Tensor>& x) {
            return at::batch_norm(x[0], x[1], x[2], trm, trv, true, momentum, 1e-5, false);
          };
          int64_t per_channel = 1;
          for (size_t i = 0; i < shape.size(); ++i)
            if (i != 1) per_channel *= shape[i];
          const Tol t = accum_tol(dtype, per_channel, 4.0);
          const std::string where = describe(in) + " momentum " + std::to_string(momentum);
          EXPECT_TRUE(compare_op(in, fe, ft, t)) << "batch_norm training " << where;
          EXPECT_TRUE(oracle::all_close(rm, trm, t)) << "running_mean after the step " << where;
          EXPECT_TRUE(oracle::all_close(rv, trv, t)) << "running_var after the step " << where;
        }
      }
    }
  }
}

TEST(NormOracle, BatchNormEval) {
  manual_seed(46);
  for (DType dtype : float_dtypes()) {
    for (const Dims& shape : std::vector<Dims>{{8, 5}, {4, 3, 7, 5}}) {
      const int64_t c = shape[1];
      std::vector<Tensor> in = {randn_t(shape, dtype), randn_t({c}, dtype), randn_t({c}, dtype)};
      Tensor rm = randn({c}, TensorOptions().dtype(dtype));
      Tensor rv = rand({c}, TensorOptions().dtype(dtype)).add(0.5);
      at::Tensor trm = to_torch(rm), trv = to_torch(rv);
      auto fe = [&](const std::vector<Tensor>& x) { return batch_norm(x[0], rm, rv, x[1], x[2], false, 0.1, 1e-3); };
      auto ft = [&](const std::vector<at::Tensor>& x) {
        return at::batch_norm(x[0], x[1], x[2], trm, trv, false, 0.1, 1e-3, false);
      };
      // Weight and bias gradients sum over N*H*W.
      EXPECT_TRUE(compare_op(in, fe, ft, tol(dtype), accum_tol(dtype, 4 * 7 * 5, 2.0))) << "batch_norm eval " << describe(in);
      EXPECT_TRUE(oracle::equal(rm, trm)) << "eval must not touch running_mean";
      EXPECT_TRUE(oracle::equal(rv, trv)) << "eval must not touch running_var";
    }
  }
}

TEST(NormOracle, LayerNorm) {
  manual_seed(47);
  for (DType dtype : float_dtypes()) {
    for (const Dims& norm : std::vector<Dims>{{13}, {7, 13}}) {
      for (bool affine : {true, false}) {
        for (bool transposed : {false, true}) {
          std::vector<Tensor> in = {randn_t(transposed ? Dims{4, 13, 7} : Dims{4, 7, 13}, dtype),
                                    affine ? randn_t(norm, dtype) : Tensor(), affine ? randn_t(norm, dtype) : Tensor()};
          auto x0 = [transposed](const auto& x) { return transposed ? x.transpose(1, 2) : x; };
          auto fe = [&](const std::vector<Tensor>& x) { return layer_norm(x0(x[0]), norm, x[1], x[2], 1e-5); };
          auto ft = [&](const std::vector<at::Tensor>& x) {
            return at::layer_norm(x0(x[0]), norm, x[1], x[2], 1e-5, false);
          };
          // Row statistics over up to 91 elements; weight/bias gradients sum over the 4*7 rows.
          EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, 91, 4.0)))
              << "layer_norm over " << ::testing::PrintToString(norm) << " " << describe(in)
              << (transposed ? " transposed" : "");
        }
      }
    }
  }
}

// ---- embedding -------------------------------------------------------------------------------------

TEST(EmbeddingOracle, LookupAndGradientWithPaddingIdx) {
  manual_seed(48);
  for (DType dtype : float_dtypes()) {
    Tensor idx = randint(0, 10, {3, 7});
    Tensor idx1 = tensor(std::vector<int64_t>{2, 2, 9, 0, 2});
    std::vector<Tensor> in = {randn_t({10, 5}, dtype), idx, idx1};
    auto check = [&](const std::string& name, auto fe, auto ft) {
      EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, 21))) << name << " " << dtype_name(dtype);
    };
    check("embedding", [](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); },
          [](const std::vector<at::Tensor>& x) { return at::embedding(x[0], x[1]); });
    check("embedding 1-D repeated", [](const std::vector<Tensor>& x) { return embedding(x[0], x[2]); },
          [](const std::vector<at::Tensor>& x) { return at::embedding(x[0], x[2]); });
    check("embedding padding_idx 2", [](const std::vector<Tensor>& x) { return embedding(x[0], x[1], 2); },
          [](const std::vector<at::Tensor>& x) { return at::embedding(x[0], x[1], 2); });
    // A negative padding_idx counts from the end (torch.nn.functional.embedding normalises -1 to 9).
    check("embedding padding_idx -1", [](const std::vector<Tensor>& x) { return embedding(x[0], x[2], -1); },
          [](const std::vector<at::Tensor>& x) { return at::embedding(x[0], x[2], 9); });
    check("embedding of a transposed table", [](const std::vector<Tensor>& x) { return embedding(x[0].t().t(), x[1]); },
          [](const std::vector<at::Tensor>& x) { return at::embedding(x[0].t().t(), x[1]); });
  }
}

// ---- losses ----------------------------------------------------------------------------------------

at::Reduction::Reduction to_torch_reduction(LossReduction r) {
  switch (r) {
    case LossReduction::None: return at::Reduction::None;
    case LossReduction::Mean: return at::Reduction::Mean;
    case LossReduction::Sum: return at::Reduction::Sum;
  }
  return at::Reduction::Mean;
}
const char* reduction_name(LossReduction r) {
  return r == LossReduction::None ? "none" : r == LossReduction::Mean ? "mean" : "sum";
}

struct LossInput {
  std::string what;
  Dims logits;
  Dims target;
};
const std::vector<LossInput>& loss_inputs() {
  static const std::vector<LossInput> cases = {
      {"[13, 7]", {13, 7}, {13}},
      {"[4, 7, 5, 3] spatial", {4, 7, 5, 3}, {4, 5, 3}},
      {"[2, 7, 9] 1-D spatial", {2, 7, 9}, {2, 9}},
      {"[7] unbatched", {7}, {}},
  };
  return cases;
}

TEST(LossOracle, CrossEntropy) {
  manual_seed(49);
  for (DType dtype : float_dtypes()) {
    for (const LossInput& c : loss_inputs()) {
      const int64_t classes = 7;
      Tensor target = randint(0, classes, c.target);
      // Some positions ignored: -100 (the default ignore_index) at a few flat positions.
      Tensor target_ignored = target.clone();
      if (target.numel() > 4) {
        Tensor flat = target_ignored.view({-1});
        flat.index_fill_(0, tensor(std::vector<int64_t>{1, 4}), -100);
      }
      std::vector<Tensor> in = {randn_t(c.logits, dtype, false).mul(3.0).detach().requires_grad_(), target,
                                target_ignored};
      for (LossReduction r : {LossReduction::Mean, LossReduction::Sum, LossReduction::None}) {
        for (double smoothing : {0.0, 0.1, 0.35}) {
          for (int which_target : {1, 2}) {
            for (int64_t ignore : {int64_t{-100}, int64_t{3}}) {
              if (which_target == 2 && ignore != -100) continue;  // -100 would be an invalid class there
              auto fe = [&](const std::vector<Tensor>& x) {
                return cross_entropy(x[0], x[which_target], r, ignore, smoothing);
              };
              auto ft = [&](const std::vector<at::Tensor>& x) {
                return at::cross_entropy_loss(x[0], x[which_target], {}, to_torch_reduction(r), ignore, smoothing);
              };
              // Reduced over all positions and classes.
              EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, 4 * 7 * 5 * 3, 4.0)))
                  << "cross_entropy " << c.what << " " << dtype_name(dtype) << " reduction " << reduction_name(r)
                  << " label_smoothing " << smoothing << " ignore_index " << ignore
                  << (which_target == 2 ? " with ignored targets" : "");
            }
          }
        }
      }
    }
  }
}

// Every target ignored: mean divides 0 by 0 (NaN in both), sum is 0, none is zeros.
TEST(LossOracle, CrossEntropyAllIgnored) {
  for (DType dtype : float_dtypes()) {
    std::vector<Tensor> in = {randn_t({4, 5}, dtype), full({4}, -100, TensorOptions().dtype(kInt64))};
    for (LossReduction r : {LossReduction::Mean, LossReduction::Sum, LossReduction::None}) {
      for (double smoothing : {0.0, 0.2}) {
        auto fe = [&](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], r, -100, smoothing); };
        auto ft = [&](const std::vector<at::Tensor>& x) {
          return at::cross_entropy_loss(x[0], x[1], {}, to_torch_reduction(r), -100, smoothing);
        };
        EXPECT_TRUE(compare_op(in, fe, ft, tol(dtype)))
            << "cross_entropy all ignored, reduction " << reduction_name(r) << " smoothing " << smoothing;
      }
    }
  }
}

TEST(LossOracle, NllLoss) {
  manual_seed(50);
  for (DType dtype : float_dtypes()) {
    for (const LossInput& c : loss_inputs()) {
      Tensor target = randint(0, 7, c.target);
      std::vector<Tensor> in = {randn_t(c.logits, dtype), target};
      for (LossReduction r : {LossReduction::Mean, LossReduction::Sum, LossReduction::None}) {
        for (int64_t ignore : {int64_t{-100}, int64_t{2}}) {
          auto fe = [&](const std::vector<Tensor>& x) { return nll_loss(x[0].log_softmax(c.logits.size() == 1 ? 0 : 1), x[1], r, ignore); };
          auto ft = [&](const std::vector<at::Tensor>& x) {
            return at::nll_loss_nd(x[0].log_softmax(c.logits.size() == 1 ? 0 : 1), x[1], {}, to_torch_reduction(r), ignore);
          };
          EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, 4 * 7 * 5 * 3, 4.0)))
              << "nll_loss " << c.what << " " << dtype_name(dtype) << " reduction " << reduction_name(r)
              << " ignore_index " << ignore;
          auto fe_raw = [&](const std::vector<Tensor>& x) { return nll_loss(x[0], x[1], r, ignore); };
          auto ft_raw = [&](const std::vector<at::Tensor>& x) {
            return at::nll_loss_nd(x[0], x[1], {}, to_torch_reduction(r), ignore);
          };
          EXPECT_TRUE(compare_op(in, fe_raw, ft_raw, accum_tol(dtype, 4 * 5 * 3, 4.0)))
              << "nll_loss of raw scores " << c.what << " " << dtype_name(dtype) << " reduction " << reduction_name(r);
        }
      }
    }
  }
}

TEST(LossOracle, MseLoss) {
  manual_seed(51);
  for (DType dtype : float_dtypes()) {
    std::vector<Tensor> in = {randn_t({7, 13}, dtype), randn_t({13, 7}, dtype), randn_t({}, dtype), randn_t({}, dtype)};
    for (LossReduction r : {LossReduction::Mean, LossReduction::Sum, LossReduction::None}) {
      auto check = [&](const std::string& name, auto fe, auto ft) {
        EXPECT_TRUE(compare_op(in, fe, ft, accum_tol(dtype, 91, 4.0)))
            << name << " " << dtype_name(dtype) << " reduction " << reduction_name(r);
      };
      check("mse_loss", [&](const std::vector<Tensor>& x) { return mse_loss(x[0], x[1].t(), r); },
            [&](const std::vector<at::Tensor>& x) { return at::mse_loss(x[0], x[1].t(), to_torch_reduction(r)); });
      check("mse_loss 0-d", [&](const std::vector<Tensor>& x) { return mse_loss(x[2], x[3], r); },
            [&](const std::vector<at::Tensor>& x) { return at::mse_loss(x[2], x[3], to_torch_reduction(r)); });
    }
  }
}

}  // namespace
}  // namespace ember
