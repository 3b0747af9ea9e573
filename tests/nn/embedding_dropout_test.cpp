// Tests of embedding (lookup, padding_idx, gradient accumulation) and dropout (scaling, keep rate, eval, gradcheck).
#include <sstream>

#include "kernels/dropout.h"
#include "kernels/embedding.h"
#include "nn/functional/dropout.h"
#include "nn/functional/embedding.h"
#include "nn/layers/dropout.h"
#include "nn/layers/embedding.h"
#include "tests/testing.h"

namespace ember {
namespace {

namespace F = nn::functional;
using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class EmbeddingTest : public testing::DeviceTest {};
class DropoutTest : public testing::DeviceTest {};

template <class M>
std::string repr(const M& m) {
  std::ostringstream os;
  m->pretty_print(os);
  return os.str();
}

TEST_P(EmbeddingTest, LookupValues) {
  const Tensor w = arange(0, 12, 1, opts(kFloat64)).view({4, 3});
  const Tensor idx = tensor({3, 0, 3, 1, 2, 0}).view({2, 3}).to(device());
  EXPECT_TRUE(values_are(F::embedding(idx, w), {2, 3, 3},
                         {9, 10, 11, 0, 1, 2, 9, 10, 11, 3, 4, 5, 6, 7, 8, 0, 1, 2}));
  // 0-d indices give one row.
  EXPECT_TRUE(values_are(embedding(w, tensor({2}).to(device()).reshape({})), {3}, {6, 7, 8}));
}

TEST_P(EmbeddingTest, GradientAccumulatesRepeatedRowsAndSkipsPadding) {
  const Tensor w = zeros({4, 2}, opts(kFloat64)).requires_grad_();
  const Tensor idx = tensor({3, 0, 3, 1, 3}).to(device());
  F::embedding(idx, w).sum().backward();
  EXPECT_TRUE(values_are(w.grad(), {4, 2}, {1, 1, 1, 1, 0, 0, 3, 3}));
  w.set_grad(Tensor());
  F::embedding(idx, w, F::EmbeddingFuncOptions().padding_idx(3)).sum().backward();
  EXPECT_TRUE(values_are(w.grad(), {4, 2}, {1, 1, 1, 1, 0, 0, 0, 0}));
  w.set_grad(Tensor());
  F::embedding(idx, w, F::EmbeddingFuncOptions().padding_idx(-4)).sum().backward();  // -4 is row 0
  EXPECT_TRUE(values_are(w.grad(), {4, 2}, {0, 0, 1, 1, 0, 0, 3, 3}));
}

TEST_P(EmbeddingTest, Gradcheck) {
  const Tensor w = rand_leaf({7, 3}, device());
  const Tensor idx = tensor({6, 0, 2, 6, 2, 2}).view({3, 2}).to(device());
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return F::embedding(idx, in[0]); }, {w}));
  // padding_idx deliberately cuts its row's gradient (checked by value above); the other rows are exact.
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return F::embedding(idx, in[0], F::EmbeddingFuncOptions().padding_idx(3)); },
      {w}));
  nn::Embedding emb(7, 3);
  emb->to(device(), kFloat64);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return emb->forward(idx); }, {emb->weight}));
}

TEST_P(EmbeddingTest, LayerInitPrintingAndBadInput) {
  manual_seed(1);
  nn::Embedding emb(1000, 64);
  EXPECT_EQ(emb->weight.sizes(), IntArrayRef({1000, 64}));
  EXPECT_NEAR(emb->weight.detach().mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(emb->weight.detach().pow(2).mean().item<double>(), 1.0, 0.02);  // N(0, 1)
  nn::Embedding padded(nn::EmbeddingOptions(10, 3).padding_idx(-1));
  EXPECT_EQ(*padded->options.padding_idx(), 9);
  EXPECT_TRUE(values_are(padded->weight.select(0, 9), {3}, {0, 0, 0}));
  EXPECT_EQ(repr(nn::Embedding(10, 3)), "Embedding(10, 3)");
  EXPECT_EQ(repr(padded), "Embedding(10, 3, padding_idx=9)");
  EXPECT_EQ(repr(nn::Embedding(nn::EmbeddingOptions(10, 3).padding_idx(0))), "Embedding(10, 3, padding_idx=0)");

  emb->to(device());
  EXPECT_EMBER_ERROR(emb->forward(tensor({1.0f, 2.0f}).to(device())), "embedding", "int64", "float32");
  if (device().is_cpu()) EXPECT_EMBER_ERROR(emb->forward(tensor({3, 1000})), "embedding", "index 1000", "1000 embeddings");
  EXPECT_EMBER_ERROR(nn::Embedding(nn::EmbeddingOptions(10, 3).padding_idx(10)), "padding_idx", "10");
  EXPECT_EMBER_ERROR(embedding(zeros({4}, opts()), tensor({0}).to(device())), "embedding", "[4]");
}

TEST_P(DropoutTest, KeptValuesAreScaledAndTheKeepRateIsOneMinusP) {
  manual_seed(123);
  const int64_t n = 100000;
  const Tensor x = full({n}, 2.0, opts());
  for (double p : {0.2, 0.5, 0.9}) {
    const Tensor y = F::dropout(x, p, true);
    const std::vector<float> v = y.to_vector<float>();
    int64_t kept = 0;
    bool only_two_values = true;
    const float scaled = static_cast<float>(2.0 / (1.0 - p));
    for (float e : v) {
      if (e != 0.0f) ++kept;
      only_two_values = only_two_values && (e == 0.0f || std::fabs(e - scaled) <= 1e-6f * scaled);
    }
    EXPECT_TRUE(only_two_values) << "p = " << p << ": kept values must equal x / (1 - p) = " << scaled;
    // Binomial(n, 1 - p): the standard deviation of the fraction is below 0.0016; allow 5 sigma.
    EXPECT_NEAR(static_cast<double>(kept) / n, 1.0 - p, 0.008) << "p = " << p;
  }
}

TEST_P(DropoutTest, EvalZeroAndOne) {
  const Tensor x = randn({7, 13}, opts()).requires_grad_();
  EXPECT_TRUE(F::dropout(x, 0.5, false).is_same(x));  // eval: identity, the very same tensor
  EXPECT_TRUE(F::dropout(x, 0.0, true).is_same(x));
  const Tensor z = F::dropout(x, 1.0, true);
  EXPECT_TRUE(all_close(z, zeros({7, 13}, opts())));
  z.sum().backward();
  EXPECT_TRUE(all_close(x.grad(), zeros({7, 13}, opts())));

  nn::Dropout drop(0.3);
  drop->eval();
  EXPECT_TRUE(drop->forward(x).is_same(x));
  drop->train();
  manual_seed(5);
  const Tensor a = drop->forward(x);
  manual_seed(5);
  const Tensor b = F::dropout(x, 0.3, true);
  EXPECT_TRUE(all_close(a, b));  // the layer is functional::dropout with training = is_training()
}

TEST_P(DropoutTest, GradientIsTheScaledMask) {
  const Tensor x = rand_leaf({5, 7}, device());
  // Reseeding inside f draws the same mask on every evaluation.
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        manual_seed(7);
        return F::dropout(in[0], 0.4, true);
      },
      {x}));
  x.set_grad(Tensor());
  manual_seed(9);
  const Tensor y = F::dropout(x, 0.25, true);
  y.sum().backward();
  // d(sum y)/dx = mask / (1 - p) = y / x where kept.
  const Tensor expected = where(y.detach().ne(0.0), full({5, 7}, 1.0 / 0.75, opts(kFloat64)), zeros({5, 7}, opts(kFloat64)));
  EXPECT_TRUE(all_close(x.grad(), expected, 1e-12, 1e-12));
}

TEST_P(DropoutTest, InPlace) {
  manual_seed(3);
  Tensor x = full({1000}, 1.0, opts());
  const Tensor expected = [&] {
    manual_seed(3);
    return F::dropout(x, 0.5, true);
  }();
  manual_seed(3);
  Tensor y = F::dropout(x, F::DropoutFuncOptions().p(0.5).inplace(true));
  EXPECT_TRUE(y.is_alias_of(x));
  EXPECT_TRUE(all_close(x, expected));
}

TEST_P(DropoutTest, PrintingAndBadInput) {
  EXPECT_EQ(repr(nn::Dropout()), "Dropout(p=0.5, inplace=False)");
  EXPECT_EQ(repr(nn::Dropout(0.25)), "Dropout(p=0.25, inplace=False)");
  EXPECT_EQ(repr(nn::Dropout(nn::DropoutOptions(0.1).inplace(true))), "Dropout(p=0.1, inplace=True)");
  EXPECT_EMBER_ERROR(nn::Dropout(1.5), "Dropout", "between 0 and 1", "1.5");
  EXPECT_EMBER_ERROR(F::dropout(ones({3}, opts()), -0.1, true), "dropout", "between 0 and 1", "-0.1");
  EXPECT_EMBER_ERROR(F::dropout(ones({3}, opts()), 1.5, false), "dropout", "1.5");
  EXPECT_EMBER_ERROR(F::dropout(ones({3}, opts(kInt64)), 0.5, true), "dropout", "floating-point", "int64");
}

EMBER_INSTANTIATE_DEVICE_TESTS(EmbeddingTest);
EMBER_INSTANTIATE_DEVICE_TESTS(DropoutTest);

}  // namespace
}  // namespace ember
