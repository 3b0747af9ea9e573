// Tests of cross_entropy (label smoothing, ignore_index, reductions), nll_loss and mse_loss against PyTorch 1.13.
#include <cmath>

#include "kernels/loss.h"
#include "nn/functional/loss.h"
#include "tests/testing.h"

namespace ember {
namespace {

namespace F = nn::functional;
using nn::Reduction;
using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class LossTest : public testing::DeviceTest {
 protected:
  Tensor logits() const {
    return tensor({0.5, -1.25, 2.0, 0.0, 0.75, 1.5, 0.25, -0.5, -2.0, 1.0, -0.75, 0.5, 0.25, 1.75, -1.0, 2.5, -0.25, 0.0,
                   0.5, -1.5})
        .view({4, 5})
        .to(device());
  }
  Tensor target() const { return tensor({2, 0, -100, 1}).to(device()); }
};

struct CrossEntropyCase {
  Reduction reduction;
  double smoothing;
  std::vector<double> value;
  std::vector<double> grad;  // of sum(out * [1, 2, ...])
};

// Reference numbers: tests/nn/data/make_loss_reference.py (PyTorch 1.13).
const std::vector<CrossEntropyCase>& cross_entropy_cases() {
  static const std::vector<CrossEntropyCase> cases = {
      {Reduction::Mean, 0.0, {1.418378802813705},
       {0.044173401809534746, 0.00767618622806388, -0.13536188124388981, 0.02679252254128834, 0.056719770665002875,
        -0.17140848393362926, 0.04639224608387908, 0.021914145356554803, 0.004889706762924045, 0.09821238573027131,
        0.0, 0.0, 0.0, 0.0, 0.0, 0.2564765887618082, -0.3169373335641986, 0.02105288043557528, 0.03471033178363954,
        0.00469753258317566}},
      {Reduction::Mean, 0.1, {1.503378802813705},
       {0.03750673514286808, 0.0010095195613972132, -0.10869521457722313, 0.020125855874621672, 0.05005310399833621,
        -0.1447418172669626, 0.03972557941721241, 0.015247478689888133, -0.001776959903742623, 0.09154571906360463,
        0.0, 0.0, 0.0, 0.0, 0.0, 0.24980992209514147, -0.29027066689753195, 0.014386213768908609,
        0.028043665116972868, -0.0019691340834910084}},
      {Reduction::Sum, 0.0, {4.255136408441115},
       {0.13252020542860424, 0.023028558684191642, -0.40608564373166944, 0.08037756762386503, 0.17015931199500864,
        -0.5142254518008877, 0.13917673825163726, 0.06574243606966441, 0.014669120288772135, 0.29463715719081396, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.7694297662854246, -0.950812000692596, 0.06315864130672584, 0.10413099535091863,
        0.014092597749526979}},
      {Reduction::Sum, 0.1, {4.510136408441115},
       {0.11252020542860423, 0.0030285586841916415, -0.3260856437316695, 0.06037756762386502, 0.15015931199500865,
        -0.43422545180088784, 0.11917673825163726, 0.04574243606966441, -0.005330879711227865, 0.27463715719081394,
        0.0, 0.0, 0.0, 0.0, 0.0, 0.7494297662854246, -0.870812000692596, 0.04315864130672584, 0.08413099535091863,
        -0.005907402250473022}},
      {Reduction::None, 0.0, {0.5210201513810714, 0.7220106553075197, 0.0, 3.012105601752524},
       {0.13252020542860424, 0.023028558684191642, -0.40608564373166944, 0.08037756762386503, 0.17015931199500864,
        -1.0284509036017755, 0.2783534765032745, 0.13148487213932883, 0.02933824057754427, 0.5892743143816279, 0.0,
        0.0, 0.0, 0.0, 0.0, 3.0777190651416984, -3.803248002770384, 0.25263456522690336, 0.4165239814036745,
        0.056370390998107915}},
      {Reduction::None, 0.1, {0.6810201513810714, 0.8670106553075196, 0.0, 2.962105601752524},
       {0.11252020542860423, 0.0030285586841916415, -0.3260856437316695, 0.06037756762386502, 0.15015931199500865,
        -0.8684509036017757, 0.23835347650327451, 0.09148487213932882, -0.01066175942245573, 0.5492743143816279, 0.0,
        0.0, 0.0, 0.0, 0.0, 2.9977190651416983, -3.483248002770384, 0.17263456522690335, 0.3365239814036745,
        -0.023629609001892087}},
  };
  return cases;
}

TEST_P(LossTest, CrossEntropyMatchesPyTorch) {
  for (const CrossEntropyCase& c : cross_entropy_cases()) {
    const Tensor x = logits().detach().requires_grad_();
    const Tensor out = F::cross_entropy(
        x, target(), F::CrossEntropyFuncOptions().reduction(c.reduction).label_smoothing(c.smoothing).ignore_index(-100));
    EXPECT_EQ(out.device(), device());
    const DimVector shape = c.reduction == Reduction::None ? DimVector{4} : DimVector{};
    EXPECT_TRUE(values_are(out, shape, c.value, 1e-12, 1e-12)) << "smoothing " << c.smoothing;
    const Tensor weights = arange(1, out.numel() + 1, 1, opts(kFloat64)).view(out.sizes());
    (out * weights).sum().backward();
    EXPECT_TRUE(values_are(x.grad(), {4, 5}, c.grad, 1e-10, 1e-12)) << "smoothing " << c.smoothing;
  }
  // The simple overload: mean, no smoothing.
  EXPECT_TRUE(values_are(F::cross_entropy(logits(), target()), {}, {1.418378802813705}, 1e-12, 1e-12));
}

TEST_P(LossTest, CrossEntropySpatialAndUnbatched) {
  const Tensor x = tensor({0.1, -0.4, 1.2, 0.3, -0.7, 0.9, 0.6, 0.0, -1.1, 0.8, 0.25, -0.35}).view({2, 3, 2}).to(device());
  const Tensor t = tensor({2, 0, 1, -100}).view({2, 2}).to(device());
  EXPECT_TRUE(values_are(F::cross_entropy(x, t, F::CrossEntropyFuncOptions().label_smoothing(0.1)), {},
                         {2.090038467486976}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(F::cross_entropy(x, t, F::CrossEntropyFuncOptions().reduction(Reduction::None)), {2, 2},
                         {2.2936891784964635, 1.899574376664101, 2.335185180633698, 0.0}, 1e-12, 1e-12));
  // Unbatched: [C] logits and a 0-d target give the row's loss.
  const Tensor row = logits().select(0, 0);
  const Tensor loss = cross_entropy(row, tensor({2}).to(device()).reshape({}), LossReduction::None);
  EXPECT_TRUE(values_are(loss, {}, {0.5210201513810714}, 1e-12, 1e-12));
}

TEST_P(LossTest, NllAndMseMatchPyTorch) {
  const Tensor lp = log_softmax(logits(), 1);
  EXPECT_TRUE(values_are(F::nll_loss(lp, target()), {}, {1.418378802813705}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(F::nll_loss(lp, target(), Reduction::Sum), {}, {4.255136408441115}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(F::nll_loss(lp, target(), F::NLLLossFuncOptions().reduction(Reduction::None)), {4},
                         {0.5210201513810714, 0.7220106553075197, 0.0, 3.012105601752524}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(F::nll_loss(lp, tensor({2, 0, 3, 1}).to(device()), Reduction::Mean, 0), {},
                         {1.345772705162725}, 1e-12, 1e-12));
  const Tensor a = tensor({0.5, -1.0, 2.0, 1.5, 0.0, -0.25}).view({2, 3}).to(device());
  const Tensor b = tensor({1.0, -0.5, 1.0, 0.0, 0.5, 0.25}).view({2, 3}).to(device());
  EXPECT_TRUE(values_are(F::mse_loss(a, b), {}, {0.7083333333333334}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(F::mse_loss(a, b, Reduction::Sum), {}, {4.25}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(F::mse_loss(a, b, Reduction::None), {2, 3}, {0.25, 0.25, 1.0, 2.25, 0.25, 0.25}, 1e-12, 1e-12));
}

TEST_P(LossTest, AllIgnoredMeanIsNaN) {
  const Tensor t = full({4}, -100, opts(kInt64));
  EXPECT_TRUE(std::isnan(F::cross_entropy(logits(), t).item<double>()));
  EXPECT_EQ(F::cross_entropy(logits(), t, F::CrossEntropyFuncOptions().reduction(Reduction::Sum)).item<double>(), 0.0);
  // An empty batch: a mean of nothing.
  EXPECT_TRUE(std::isnan(F::cross_entropy(zeros({0, 5}, opts(kFloat64)), zeros({0}, opts(kInt64))).item<double>()));
}

TEST_P(LossTest, CrossEntropyIsStableForLargeLogits) {
  const Tensor x = tensor({1000.0, 0.0, -1000.0, 2000.0, 2000.0, 0.0}).view({2, 3}).to(device());
  const Tensor loss = cross_entropy(x, tensor({0, 1}).to(device()), LossReduction::None);
  EXPECT_TRUE(values_are(loss, {2}, {0.0, std::log(2.0)}, 1e-12, 1e-12));
  const Tensor x32 = x.to(kFloat32);
  EXPECT_TRUE(values_are(cross_entropy(x32, tensor({0, 1}).to(device()), LossReduction::None), {2},
                         {0.0, std::log(2.0)}, 1e-6, 1e-6));
}

TEST_P(LossTest, CrossEntropyGradcheck) {
  const Tensor t = tensor({3, -100, 0, 6, 2, 6, -100}).to(device());
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    for (double ls : {0.0, 0.1}) {
      const Tensor x = rand_leaf({7, 7}, device());
      EXPECT_TRUE(gradcheck(
          [&](const std::vector<Tensor>& in) {
            return F::cross_entropy(in[0] * 3.0, t,
                                    F::CrossEntropyFuncOptions().reduction(r).label_smoothing(ls).ignore_index(-100));
          },
          {x}))
          << "reduction " << static_cast<int>(r) << " smoothing " << ls;
    }
  }
  // [N, C, d1, d2] with a custom ignore_index, and a non-contiguous (transposed) input.
  const Tensor x4 = rand_leaf({2, 5, 3, 2}, device());
  const Tensor t4 = tensor({0, 4, 1, 1, 3, 2, 4, 4, 0, 2, 1, 3}).view({2, 3, 2}).to(device());
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return F::cross_entropy(in[0], t4, F::CrossEntropyFuncOptions().ignore_index(4).label_smoothing(0.2));
      },
      {x4}));
  const Tensor xt = rand_leaf({5, 13}, device());
  const Tensor t13 = randint(0, 5, {13}, opts(kInt64));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return F::cross_entropy(in[0].t(), t13); }, {xt}));
}

TEST_P(LossTest, NllAndMseGradcheck) {
  const Tensor t = tensor({3, -100, 0, 6, 2}).to(device());
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    const Tensor x = rand_leaf({5, 7}, device());
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return F::nll_loss(in[0], t, r); }, {x}));
    const Tensor a = rand_leaf({3, 7}, device()), b = rand_leaf({3, 7}, device());
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return F::mse_loss(in[0], in[1], r); }, {a, b}));
  }
  const Tensor x3 = rand_leaf({2, 4, 3}, device());
  const Tensor t3 = tensor({0, 3, 1, 2, 2, -100}).view({2, 3}).to(device());
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return F::nll_loss(in[0], t3); }, {x3}));
  const Tensor a0 = rand_leaf({}, device()), b0 = rand_leaf({}, device());
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return F::mse_loss(in[0], in[1]); }, {a0, b0}));
}

// Compares the CUDA backend with the CPU: instantiated on cuda:0 only.
class LossTestCuda : public LossTest {};

TEST_P(LossTestCuda, CudaMatchesCpu) {
  for (DType dt : {kFloat32, kFloat64}) {
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{64, 10}, std::vector<int64_t>{33, 5000}, std::vector<int64_t>{4, 7, 3, 5}}) {
      DimVector tshape{shape[0]};
      for (size_t d = 2; d < shape.size(); ++d) tshape.push_back(shape[d]);
      Tensor t = randint(0, shape[1], tshape, TensorOptions(kInt64));
      t.view({-1}).narrow(0, 0, 2).fill_(-100);
      for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
        const Tensor xc = (randn(shape, TensorOptions(dt)) * 4.0).requires_grad_();
        const Tensor xg = xc.detach().to(device()).requires_grad_();
        const auto o = F::CrossEntropyFuncOptions().reduction(r).label_smoothing(0.1);
        const Tensor lc = F::cross_entropy(xc, t, o), lg = F::cross_entropy(xg, t.to(device()), o);
        const double tol = dt == kFloat32 ? 1e-4 : 1e-10;
        EXPECT_TRUE(all_close(lg.cpu(), lc, tol, tol));
        const Tensor g = randn(lc.sizes(), TensorOptions(dt));
        lc.backward(g);
        lg.backward(g.to(device()));
        EXPECT_TRUE(all_close(xg.grad().cpu(), xc.grad(), tol, tol));
        const Tensor lp = log_softmax(xc.detach(), 1);
        EXPECT_TRUE(all_close(F::nll_loss(lp.to(device()), t.to(device()), r).cpu(), F::nll_loss(lp, t, r), tol, tol));
      }
    }
  }
  // Half logits: computed in float.
  const Tensor x = randn({16, 9});
  const Tensor t = randint(0, 9, {16}, TensorOptions(kInt64));
  EXPECT_TRUE(all_close(F::cross_entropy(x.to(device(), kFloat16), t.to(device())).cpu().to(kFloat32),
                        F::cross_entropy(x.to(kFloat16).to(kFloat32), t), 1e-3, 1e-3));
  // A bad target cannot raise without a sync: it makes the loss NaN (Note [Bad targets on CUDA]).
  EXPECT_TRUE(std::isnan(F::cross_entropy(x.to(device()), tensor({1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 5, 6, 99}).to(device()))
                             .item<float>()));
}

TEST_P(LossTest, BadInput) {
  const Tensor x = logits();
  EXPECT_EMBER_ERROR(F::cross_entropy(x, tensor({2.0, 0.0, 1.0, 1.0}).to(device())), "cross_entropy", "int64",
                     "float64");
  EXPECT_EMBER_ERROR(F::cross_entropy(x, tensor({2, 0, 1}).to(device())), "cross_entropy", "batch size 4",
                     "target batch size 3", "[4, 5]", "[3]");
  EXPECT_EMBER_ERROR(F::cross_entropy(x, tensor({2, 0, 1, 1}).view({2, 2}).to(device())), "cross_entropy");
  EXPECT_EMBER_ERROR(F::nll_loss(x, tensor({2, 0}).to(device())), "nll_loss", "batch size");
  EXPECT_EMBER_ERROR(F::cross_entropy(x, target(), F::CrossEntropyFuncOptions().label_smoothing(1.5)),
                     "label_smoothing", "1.5");
  EXPECT_EMBER_ERROR(F::mse_loss(x, zeros({4, 4}, opts(kFloat64))), "mse_loss", "[4, 5]", "[4, 4]");
  if (device().is_cpu()) {
    EXPECT_EMBER_ERROR(F::cross_entropy(x, tensor({2, 7, 1, 1})), "cross_entropy", "target 7", "5 classes");
    EXPECT_EMBER_ERROR(F::cross_entropy(x, tensor({2, -1, 1, 1})), "target -1", "5 classes");
    EXPECT_EMBER_ERROR(F::nll_loss(x, tensor({2, 0, 5, 1})), "nll_loss", "target 5", "5 classes");
  }
}

EMBER_INSTANTIATE_DEVICE_TESTS(LossTest);
EMBER_INSTANTIATE_CUDA_TESTS(LossTestCuda);

}  // namespace
}  // namespace ember
