// Tests of batch_norm / layer_norm and BatchNorm1d, BatchNorm2d, LayerNorm: PyTorch 1.13 values, gradcheck, printing, bad input.
#include "kernels/norm.h"

#include <sstream>
#include <vector>

#include "nn/functional/norm.h"
#include "nn/layers/norm.h"
#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class NormTest : public testing::DeviceTest {};

template <class M>
std::string repr(const M& m) {
  std::ostringstream os;
  m->pretty_print(os);
  return os.str();
}

// Reference numbers: tests/nn/data/make_norm_reference.py (PyTorch 1.13).
TEST_P(NormTest, BatchNorm1dTrainingStepAndEvalMatchPyTorch) {
  nn::BatchNorm1d bn(3);
  bn->to(device(), kFloat64);
  {
    NoGradGuard no_grad;
    bn->weight.copy_(tensor({1.0, 2.0, 0.5}));
    bn->bias.copy_(tensor({0.0, -1.0, 0.25}));
  }
  const Tensor x =
      tensor({1.0, -2.0, 0.5, 3.0, 0.0, 1.5, -1.0, 4.0, 2.5, 2.0, 1.0, -0.5}).view({4, 3}).to(device());
  const Tensor y = bn->forward(x);
  EXPECT_EQ(y.device(), device());
  EXPECT_TRUE(values_are(y, {4, 3},
                         {-0.16903046459079718, -3.540338474741426, 0.0263940966718455, 1.1832132521355805,
                          -1.6928195840203888, 0.4736059033281545, -1.5212741813171748, 2.0022181974216853,
                          0.9208177099844634, 0.5070913937723917, -0.7690601386598703, -0.4208177099844635},
                         1e-10, 1e-10));
  // Momentum 0.1 and the unbiased variance for the running statistics.
  EXPECT_TRUE(values_are(bn->running_mean, {3}, {0.125, 0.07500000000000001, 0.1}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(bn->running_var, {3}, {1.1916666666666667, 1.525, 1.0666666666666667}, 1e-12, 1e-12));
  EXPECT_EQ(bn->num_batches_tracked.dtype(), kInt64);
  EXPECT_EQ(bn->num_batches_tracked.dim(), 0);
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);

  bn->eval();
  const Tensor ye = bn->forward(x);
  EXPECT_TRUE(values_are(ye, {4, 3},
                         {0.8015467085991153, -4.36056075202859, 0.4436482595862815, 2.633653471111379,
                          -1.1214660512781418, 0.9277689085519852, -1.0305600539131483, 5.3567233502227545,
                          1.4118895575176889, 1.717600089855247, 0.4980812990970822, -0.04047238937942224},
                         1e-10, 1e-10));
  // Eval mode neither updates the statistics nor counts the batch.
  EXPECT_TRUE(values_are(bn->running_mean, {3}, {0.125, 0.07500000000000001, 0.1}, 1e-12, 1e-12));
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
}

TEST_P(NormTest, BatchNorm2dTwoStepsMatchPyTorch) {
  nn::BatchNorm2d bn(2);
  bn->to(device(), kFloat64);
  Tensor x = arange(0, 16, 1, TensorOptions(kFloat64)).view({2, 2, 2, 2}) * 0.5 - 3.0;
  {
    NoGradGuard no_grad;
    x.select(0, 1).select(0, 0).select(0, 1).select(0, 1).fill_(7.0);
  }
  x = x.to(device());
  EXPECT_TRUE(values_are(bn->forward(x), {2, 2, 2, 2},
                         {-1.067931601342894, -0.9067343784986837, -0.7455371556544732, -0.5843399328102628,
                          -1.324242848590324, -1.0834714215739014, -0.8426999945574789, -0.6019285675410564,
                          0.22164618141078934, 0.38284340425499974, 0.5440406270992102, 2.1560128555413143,
                          0.6019285675410564, 0.8426999945574789, 1.0834714215739014, 1.324242848590324},
                         1e-10, 1e-10));
  bn->forward(x * 2.0);
  EXPECT_TRUE(values_are(bn->running_mean, {2}, {0.090625, 0.5075000000000001}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(bn->running_var, {2}, {6.1978124999999995, 3.225}, 1e-12, 1e-12));
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 2);
}

TEST_P(NormTest, BatchNormMomentumNoneIsACumulativeAverage) {
  nn::BatchNorm1d bn(nn::BatchNormOptions(2).momentum(std::nullopt));
  bn->to(device(), kFloat64);
  const Tensor x = tensor({1.0, 2.0, 0.0, -1.0, 3.0, -2.0, 0.5, 0.5}).view({2, 2, 2}).to(device());
  bn->forward(x);
  bn->forward(x + 1.0);
  EXPECT_TRUE(values_are(bn->running_mean, {2}, {1.5, 0.5}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(bn->running_var, {2}, {4.666666666666667, 0.5}, 1e-12, 1e-12));
}

TEST_P(NormTest, BatchNormWithoutTrackingUsesBatchStatisticsInEval) {
  nn::BatchNorm1d bn(nn::BatchNormOptions(3).track_running_stats(false).affine(false));
  bn->to(device());
  EXPECT_TRUE(bn->named_buffers().keys().empty());
  EXPECT_TRUE(bn->parameters().empty());
  bn->eval();
  const Tensor x = randn({16, 3}, opts());
  const Tensor y = bn->forward(x);
  // Batch statistics: every channel comes out with mean 0 and (biased) variance 1.
  EXPECT_TRUE(all_close(y.mean({0}), zeros({3}), 0, 1e-5));
  EXPECT_TRUE(all_close(y.var({0}, /*unbiased=*/false), ones({3}), 0, 1e-3));
}

TEST_P(NormTest, BatchNormStateDictAndDefaults) {
  nn::BatchNorm2d bn(4);
  EXPECT_EQ(bn->named_parameters().keys(), std::vector<std::string>({"weight", "bias"}));
  EXPECT_EQ(bn->named_buffers().keys(),
            std::vector<std::string>({"running_mean", "running_var", "num_batches_tracked"}));
  EXPECT_TRUE(values_are(bn->weight, {4}, {1, 1, 1, 1}));
  EXPECT_TRUE(values_are(bn->bias, {4}, {0, 0, 0, 0}));
  EXPECT_TRUE(values_are(bn->running_var, {4}, {1, 1, 1, 1}));
  EXPECT_EQ(bn->state_dict().size(), 5u);
  bn->to(device());
  bn->forward(randn({2, 4, 3, 3}, opts()));
  auto copy = std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(bn->clone());
  ASSERT_NE(copy, nullptr);
  EXPECT_TRUE(all_close(copy->running_mean, bn->running_mean));
  EXPECT_EQ(copy->num_batches_tracked.item<int64_t>(), 1);
  bn->reset_running_stats();
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 0);
  EXPECT_TRUE(all_close(bn->running_mean, zeros({4}, opts())));
}

TEST_P(NormTest, BatchNormGradcheckTraining) {
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{7, 3}, std::vector<int64_t>{4, 3, 5},
                                             std::vector<int64_t>{2, 3, 3, 2}}) {
    const Tensor x = rand_leaf(shape, device());
    const Tensor w = rand_leaf({3}, device()), b = rand_leaf({3}, device());
    Tensor rm = zeros({3}, opts(kFloat64)), rv = ones({3}, opts(kFloat64));
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return batch_norm(in[0], rm, rv, in[1], in[2], true, 0.1, 1e-5); },
        {x, w, b}))
        << "shape " << IntArrayRef(shape);
    // Without affine parameters, and without running statistics.
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return batch_norm(in[0], {}, {}, {}, {}, true, 0.1, 1e-5); }, {x}));
  }
  // A non-contiguous input (a transposed view).
  const Tensor xt = rand_leaf({3, 9}, device());
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return batch_norm(in[0].t(), {}, {}, {}, {}, true, 0.1, 1e-5); }, {xt}));
}

TEST_P(NormTest, BatchNormGradcheckEval) {
  const Tensor x = rand_leaf({5, 3, 4}, device());
  const Tensor w = rand_leaf({3}, device()), b = rand_leaf({3}, device());
  const Tensor rm = tensor({0.1, -0.2, 0.3}).to(device()), rv = tensor({0.5, 1.5, 2.0}).to(device());
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return batch_norm(in[0], rm, rv, in[1], in[2], false, 0.1, 1e-5); },
      {x, w, b}));
}

TEST_P(NormTest, BatchNormLayerGradcheck) {
  nn::BatchNorm1d bn(4);
  bn->to(device(), kFloat64);
  {
    NoGradGuard no_grad;
    bn->weight.copy_(tensor({0.5, -1.0, 2.0, 1.5}));
    bn->bias.copy_(tensor({0.1, 0.2, -0.3, 0.0}));
  }
  const Tensor x = rand_leaf({6, 4, 3}, device());
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return bn->forward(in[0]); }, {x, bn->weight, bn->bias}));
  bn->eval();
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return bn->forward(in[0]); }, {x, bn->weight, bn->bias}));
}

TEST_P(NormTest, LayerNormMatchesPyTorch) {
  const Tensor x = tensor({0.5, -1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 3.0, -2.0, 0.5, 0.25, 4.0,
                           0.0, 0.0, 1.0, -1.0, 3.5, -0.5, 2.0, 1.0, 0.1, 0.2, 0.3, 0.4})
                       .view({2, 3, 4})
                       .to(device());
  nn::LayerNorm ln({4});
  ln->to(device(), kFloat64);
  {
    NoGradGuard no_grad;
    ln->weight.copy_(tensor({1.0, 0.5, -1.0, 2.0}));
    ln->bias.copy_(tensor({0.0, 0.1, 0.2, -0.3}));
  }
  EXPECT_TRUE(values_are(ln->forward(x), {2, 3, 4},
                         {0.11546956116884854, -0.5350825864286669, -1.301104295195031, -0.9928173670130911,
                          -0.5773464202263208, -0.18867321011316038, 0.7773464202263207, 3.164078521357925,
                          -1.2523077882937992, 0.05631484459440236, 0.4038640585594557, 2.7870843153289, 0.0, 0.1,
                          -1.2141994204496, -3.1283988408992, 1.3719854529428028, -0.5859927264714014,
                          -0.1429963632357007, -0.9859927264714015, -1.3411044519645503, -0.12351740866075833,
                          -0.24703481732151666, 2.3822089039291012},
                         1e-10, 1e-10));
  nn::LayerNorm ln2(nn::LayerNormOptions({3, 4}).eps(1e-3).elementwise_affine(false));
  EXPECT_TRUE(ln2->parameters().empty());
  EXPECT_TRUE(values_are(nn::functional::layer_norm(x, nn::functional::LayerNormFuncOptions({3, 4}).eps(1e-3)),
                         {2, 3, 4},
                         {-0.2285370703853049, -1.1964587802524784, 0.7393846394818687, -0.5511776403410295,
                          0.09410349957041964, 0.09410349957041964, 0.09410349957041964, 1.384665779393318,
                          -1.8417399201639277, -0.2285370703853049, -0.3898573553631672, 2.029946919304767,
                          -0.5095202660725009, -0.5095202660725009, 0.36394304719464343, -1.3829835793396452,
                          2.5476013303625042, -0.9462519227060731, 1.2374063604617878, 0.36394304719464343,
                          -0.42217393474578646, -0.33482760341907203, -0.2474812720923576, -0.16013494076564314},
                         1e-10, 1e-10));
  ln2->to(device(), kFloat64);
  EXPECT_TRUE(all_close(ln2->forward(x), nn::functional::layer_norm(x, {3, 4}, {}, {}, 1e-3), 1e-12, 1e-12));
}

TEST_P(NormTest, LayerNormGradcheck) {
  const Tensor x = rand_leaf({3, 5, 7}, device());
  const Tensor w = rand_leaf({7}, device()), b = rand_leaf({7}, device());
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(in[0], {7}, in[1], in[2], 1e-5); },
                        {x, w, b}));
  const Tensor w2 = rand_leaf({5, 7}, device());
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(in[0], {5, 7}, in[1], {}, 1e-5); },
                        {x, w2}));
  // Non-contiguous input, no affine parameters.
  const Tensor xt = rand_leaf({13, 4}, device());
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(in[0].t(), {13}); }, {xt}));
  // The layer, in float64.
  nn::LayerNorm ln({7});
  ln->to(device(), kFloat64);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return ln->forward(in[0]); }, {x, ln->weight, ln->bias}));
}

TEST_P(NormTest, FloatKernelsAgreeWithDouble) {
  // float32 statistics and arithmetic vs the float64 path, on inputs with a large offset.
  const Tensor x64 = randn({33, 5, 7}, opts(kFloat64)) * 3.0 + 100.0;
  const Tensor x32 = x64.to(kFloat32);
  EXPECT_TRUE(all_close(batch_norm(x32, {}, {}, {}, {}, true, 0.1, 1e-5),
                        batch_norm(x64, {}, {}, {}, {}, true, 0.1, 1e-5).to(kFloat32), 1e-3, 1e-3));
  EXPECT_TRUE(all_close(layer_norm(x32, {7}), layer_norm(x64, {7}).to(kFloat32), 1e-3, 1e-3));
}

TEST_P(NormTest, BatchNormFloatPlaneLoopsAgreeWithDouble) {
  // Plane sizes around the 8-lane blocks of Note [Batch norm plane loops] (tails of 0-7 elements), a mean
  // far from zero, training and eval, forward and every gradient.
  manual_seed(41);
  for (const auto& shape : std::vector<std::vector<int64_t>>{
           {5, 3, 1, 7}, {4, 6, 2, 4}, {3, 5, 3, 3}, {6, 4, 17}, {2, 3, 5, 7}, {9, 2, 14, 14}, {2, 4, 2, 3, 5}}) {
    for (bool training : {true, false}) {
      const int64_t c = shape[1];
      const Tensor x64 = randn(shape, opts(kFloat64)) * 2.0 + 50.0;
      const Tensor w64 = randn({c}, opts(kFloat64)), b64 = randn({c}, opts(kFloat64));
      const Tensor rm64 = randn({c}, opts(kFloat64)) + 50.0, rv64 = rand({c}, opts(kFloat64)) * 3.0 + 1.0;
      const Tensor g64 = randn(shape, opts(kFloat64));
      auto run = [&](DType dt) {
        const Tensor x = x64.to(dt).requires_grad_(), w = w64.to(dt).requires_grad_(), b = b64.to(dt).requires_grad_();
        const Tensor rm = rm64.to(dt), rv = rv64.to(dt);
        const Tensor y = batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5);
        y.backward(g64.to(dt));
        return std::vector<Tensor>{y, x.grad(), w.grad(), b.grad(), rm, rv};
      };
      const std::vector<Tensor> f32 = run(kFloat32), f64 = run(kFloat64);
      const char* names[] = {"output", "input grad", "weight grad", "bias grad", "running mean", "running var"};
      for (size_t i = 0; i < f32.size(); ++i)
        EXPECT_TRUE(all_close(f32[i], f64[i].to(kFloat32), 1e-3, 1e-3))
            << names[i] << " of shape " << IntArrayRef(shape) << (training ? " training" : " eval");
    }
  }
}

// Compares the CUDA backend with the CPU: instantiated on cuda:0 only.
class NormTestCuda : public NormTest {};

TEST_P(NormTestCuda, CudaMatchesCpu) {
  for (DType dt : {kFloat32, kFloat64}) {
    for (const std::vector<int64_t>& shape : {std::vector<int64_t>{64, 33}, std::vector<int64_t>{8, 5, 7, 9},
                                               std::vector<int64_t>{3, 7, 1000}}) {
      const int64_t c = shape[1];
      const Tensor xc = (randn(shape, TensorOptions(dt)) * 2.0 + 1.0).requires_grad_();
      const Tensor wc = randn({c}, TensorOptions(dt)).requires_grad_(), bc = randn({c}, TensorOptions(dt)).requires_grad_();
      const Tensor xg = xc.detach().to(device()).requires_grad_(), wg = wc.detach().to(device()).requires_grad_(),
                   bg = bc.detach().to(device()).requires_grad_();
      Tensor rmc = zeros({c}, TensorOptions(dt)), rvc = ones({c}, TensorOptions(dt));
      Tensor rmg = rmc.to(device()), rvg = rvc.to(device());
      const Tensor yc = batch_norm(xc, rmc, rvc, wc, bc, true, 0.1, 1e-5);
      const Tensor yg = batch_norm(xg, rmg, rvg, wg, bg, true, 0.1, 1e-5);
      const Tensor gout = randn(yc.sizes(), TensorOptions(dt));
      yc.backward(gout);
      yg.backward(gout.to(device()));
      const double tol = dt == kFloat32 ? 1e-4 : 1e-10;
      EXPECT_TRUE(all_close(yg.cpu(), yc, tol, tol));
      EXPECT_TRUE(all_close(rmg.cpu(), rmc, tol, tol));
      EXPECT_TRUE(all_close(rvg.cpu(), rvc, tol, tol));
      EXPECT_TRUE(all_close(xg.grad().cpu(), xc.grad(), 10 * tol, 10 * tol));
      EXPECT_TRUE(all_close(wg.grad().cpu(), wc.grad(), 10 * tol, 10 * tol));
      EXPECT_TRUE(all_close(bg.grad().cpu(), bc.grad(), 10 * tol, 10 * tol));
      // Eval mode with the updated running statistics.
      EXPECT_TRUE(all_close(batch_norm(xg, rmg, rvg, wg, bg, false, 0.1, 1e-5).cpu(),
                            batch_norm(xc, rmc, rvc, wc, bc, false, 0.1, 1e-5), tol, tol));

      const int64_t last = shape.back();
      const Tensor lwc = randn({last}, TensorOptions(dt)).requires_grad_();
      const Tensor lwg = lwc.detach().to(device()).requires_grad_();
      xc.set_grad(Tensor());
      xg.set_grad(Tensor());
      const Tensor lbc = randn({last}, TensorOptions(dt));
      const Tensor lc = layer_norm(xc, {last}, lwc, lbc);
      const Tensor lg = layer_norm(xg, {last}, lwg, lbc.to(device()));
      EXPECT_TRUE(all_close(lg.cpu(), lc, tol, tol));
      const Tensor lout = randn(lc.sizes(), TensorOptions(dt));
      lc.backward(lout);
      lg.backward(lout.to(device()));
      EXPECT_TRUE(all_close(xg.grad().cpu(), xc.grad(), 10 * tol, 10 * tol));
      EXPECT_TRUE(all_close(lwg.grad().cpu(), lwc.grad(), 10 * tol, 10 * tol));
    }
  }
}

TEST_P(NormTest, Printing) {
  EXPECT_EQ(repr(nn::BatchNorm1d(5)), "BatchNorm1d(5, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  EXPECT_EQ(repr(nn::BatchNorm2d(nn::BatchNormOptions(5).eps(1e-3).momentum(std::nullopt).affine(false).track_running_stats(false))),
            "BatchNorm2d(5, eps=0.001, momentum=None, affine=False, track_running_stats=False)");
  EXPECT_EQ(repr(nn::BatchNorm1d(nn::BatchNormOptions(5).momentum(0.3))),
            "BatchNorm1d(5, eps=1e-05, momentum=0.3, affine=True, track_running_stats=True)");
  EXPECT_EQ(repr(nn::LayerNorm({4})), "LayerNorm((4,), eps=1e-05, elementwise_affine=True)");
  EXPECT_EQ(repr(nn::LayerNorm(nn::LayerNormOptions({4, 5}).eps(1e-6).elementwise_affine(false))),
            "LayerNorm((4, 5), eps=1e-06, elementwise_affine=False)");
}

TEST_P(NormTest, BadInput) {
  nn::BatchNorm1d bn1(32);
  bn1->to(device());
  EXPECT_EMBER_ERROR(bn1->forward(zeros({2, 32, 3, 3}, opts())), "BatchNorm1d", "2D or 3D", "4D", "[2, 32, 3, 3]");
  EXPECT_EMBER_ERROR(bn1->forward(zeros({8, 16}, opts())), "BatchNorm1d", "32 channels", "[8, 16]");
  nn::BatchNorm2d bn2(3);
  bn2->to(device());
  EXPECT_EMBER_ERROR(bn2->forward(zeros({2, 3, 4}, opts())), "BatchNorm2d", "4D", "[N, C, H, W]", "[2, 3, 4]");
  EXPECT_EMBER_ERROR(bn2->forward(zeros({2, 4, 5, 5}, opts())), "BatchNorm2d", "3 channels", "[2, 4, 5, 5]");
  EXPECT_EMBER_ERROR(bn1->forward(zeros({1, 32}, opts())), "more than 1 value per channel", "[1, 32]");
  EXPECT_EMBER_ERROR(batch_norm(zeros({4, 3}, opts()), {}, {}, {}, {}, false, 0.1, 1e-5), "running_mean",
                     "evaluation mode");
  EXPECT_EMBER_ERROR(batch_norm(zeros({4, 3}, opts()), {}, {}, ones({4}, opts()), {}, true, 0.1, 1e-5), "weight",
                     "[3]", "[4]");
  EXPECT_EMBER_ERROR(batch_norm(zeros({4, 3}, opts()), {}, {}, ones({3}, opts(kFloat64)), {}, true, 0.1, 1e-5),
                     "weight", "float32", "float64");
  EXPECT_EMBER_ERROR(batch_norm(zeros({4, 3}, opts(kInt64)), {}, {}, {}, {}, true, 0.1, 1e-5), "batch_norm",
                     "floating-point", "int64");
  nn::LayerNorm ln({8});
  ln->to(device());
  EXPECT_EMBER_ERROR(ln->forward(zeros({4, 7}, opts())), "LayerNorm", "trailing dims", "[8]", "[4, 7]");
  EXPECT_EMBER_ERROR(layer_norm(zeros({4, 7}, opts()), {8}), "layer_norm", "[8]", "[4, 7]");
  EXPECT_EMBER_ERROR(layer_norm(zeros({4, 7}, opts()), {7}, ones({6}, opts())), "weight", "[7]", "[6]");
  if (cuda::is_available() && device().is_cpu())
    EXPECT_EMBER_ERROR(batch_norm(zeros({4, 3}), {}, {}, ones({3}).cuda(), {}, true, 0.1, 1e-5), "weight", "cuda:0");
}

EMBER_INSTANTIATE_DEVICE_TESTS(NormTest);
EMBER_INSTANTIATE_CUDA_TESTS(NormTestCuda);

}  // namespace
}  // namespace ember
