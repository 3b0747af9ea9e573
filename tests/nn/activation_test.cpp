// Tests of the activation layers (ReLU, GELU, Tanh, Sigmoid): PyTorch 1.13 values, gradcheck, printing.
#include <sstream>

#include "nn/containers.h"
#include "nn/layers/activation.h"
#include "nn/layers/dropout.h"
#include "nn/layers/linear.h"
#include "nn/layers/norm.h"
#include "tests/testing.h"

namespace ember {
namespace {

using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class ActivationTest : public testing::DeviceTest {
 protected:
  Tensor x() const { return tensor({-2.0, -0.5, 0.0, 0.75, 3.0}).to(device()); }
};

template <class M>
std::string repr(const M& m) {
  std::ostringstream os;
  m->pretty_print(os);
  return os.str();
}

// Reference values: torch.nn.{ReLU, GELU, GELU('tanh'), Tanh, Sigmoid} on [-2, -0.5, 0, 0.75, 3] (PyTorch 1.13).
TEST_P(ActivationTest, ValuesMatchPyTorch) {
  EXPECT_TRUE(values_are(nn::ReLU()->forward(x()), {5}, {0.0, 0.0, 0.0, 0.75, 3.0}, 1e-12, 1e-12));
  EXPECT_TRUE(values_are(nn::GELU()->forward(x()), {5},
                         {-0.04550026389635842, -0.15426876936299344, 0.0, 0.5800294857173489, 2.99595030590511},
                         1e-12, 1e-12));
  EXPECT_TRUE(values_are(nn::GELU(nn::GELUOptions().approximate("tanh"))->forward(x()), {5},
                         {-0.04540230591222494, -0.15428599017485606, 0.0, 0.5799605551656203, 2.996362607918227},
                         1e-12, 1e-12));
  EXPECT_TRUE(values_are(nn::Tanh()->forward(x()), {5},
                         {-0.9640275800758169, -0.46211715726000974, 0.0, 0.6351489523872873, 0.9950547536867305},
                         1e-12, 1e-12));
  EXPECT_TRUE(values_are(nn::Sigmoid()->forward(x()), {5},
                         {0.11920292202211755, 0.3775406687981454, 0.5, 0.679178699175393, 0.9525741268224334}, 1e-12,
                         1e-12));
  Tensor y = x().clone();
  nn::ReLU inplace(nn::ReLUOptions(true));
  EXPECT_TRUE(inplace->forward(y).is_alias_of(y));
  EXPECT_TRUE(values_are(y, {5}, {0.0, 0.0, 0.0, 0.75, 3.0}));
}

TEST_P(ActivationTest, Gradcheck) {
  // Away from relu's kink at 0 (central differences straddle it).
  const Tensor a = (rand_leaf({7, 13}, device()).detach() + 1.5).requires_grad_();
  const Tensor b = (rand_leaf({7, 13}, device()).detach() - 1.5).requires_grad_();
  nn::ReLU relu;
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return relu->forward(in[0]) + relu->forward(in[1]); },
                        {a, b}));
  const Tensor v = rand_leaf({7, 13}, device());
  for (const char* approx : {"none", "tanh"}) {
    nn::GELU gelu(nn::GELUOptions().approximate(approx));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return gelu->forward(in[0]); }, {v})) << approx;
  }
  nn::Tanh tanh_layer;
  nn::Sigmoid sigmoid_layer;
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return tanh_layer->forward(in[0].t()); }, {v}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return sigmoid_layer->forward(in[0]); }, {v}));
}

TEST_P(ActivationTest, PrintingAlsoInsideSequential) {
  EXPECT_EQ(repr(nn::ReLU()), "ReLU()");
  EXPECT_EQ(repr(nn::ReLU(nn::ReLUOptions(true))), "ReLU(inplace=True)");
  EXPECT_EQ(repr(nn::GELU()), "GELU(approximate='none')");
  EXPECT_EQ(repr(nn::GELU(nn::GELUOptions().approximate("tanh"))), "GELU(approximate='tanh')");
  EXPECT_EQ(repr(nn::Tanh()), "Tanh()");
  EXPECT_EQ(repr(nn::Sigmoid()), "Sigmoid()");
  EXPECT_EMBER_ERROR(nn::GELU(nn::GELUOptions().approximate("fast")), "GELU", "'none' or 'tanh'", "fast");

  nn::Sequential seq(nn::Linear(4, 3), nn::ReLU(), nn::Dropout(0.2), nn::LayerNorm({3}));
  std::ostringstream os;
  os << *seq;
  EXPECT_EQ(os.str(),
            "Sequential(\n"
            "  (0): Linear(in_features=4, out_features=3, bias=True)\n"
            "  (1): ReLU()\n"
            "  (2): Dropout(p=0.2, inplace=False)\n"
            "  (3): LayerNorm((3,), eps=1e-05, elementwise_affine=True)\n"
            ")");
  seq->to(device());
  seq->eval();
  EXPECT_EQ(seq->forward(randn({5, 4}, opts())).sizes(), IntArrayRef({5, 3}));
}

EMBER_INSTANTIATE_DEVICE_TESTS(ActivationTest);

}  // namespace
}  // namespace ember
