// Tests of the module system: registration, holders, listings, moves, state_dict, clone and printing.
#include "nn/containers.h"
#include "tests/testing.h"

namespace ember {
namespace {

using namespace ember::nn;

// A tiny affine layer defined here so that the module system is tested on its own.
class AffineImpl : public Cloneable<AffineImpl> {
 public:
  AffineImpl(int64_t in, int64_t out) : in_(in), out_(out) { reset(); }
  void reset() override {
    NoGradGuard no_grad;
    weight = register_parameter("weight", arange(0, in_ * out_, 1, kFloat32).view({out_, in_}) * 0.1);
    bias = register_parameter("bias", zeros({out_}));
    steps = register_buffer("steps", zeros({}, kInt64));
  }
  Tensor forward(const Tensor& x) { return x.matmul(weight.t()) + bias; }
  void pretty_print(std::ostream& os) const override {
    os << "Affine(in=" << in_ << ", out=" << out_ << ")";
  }
  Tensor weight, bias, steps;

 private:
  int64_t in_, out_;
};
EMBER_MODULE(Affine);

class ReluImpl : public Cloneable<ReluImpl> {
 public:
  ReluImpl() { reset(); }
  void reset() override {}
  Tensor forward(const Tensor& x) { return x.relu(); }
};
EMBER_MODULE(Relu);

struct NetImpl : Cloneable<NetImpl> {
  NetImpl() { reset(); }
  void reset() override {
    fc1 = register_module("fc1", Affine(4, 3));
    fc2 = register_module("fc2", Affine(3, 2));
    scale = register_parameter("scale", ones({1}));
  }
  Tensor forward(const Tensor& x) { return fc2->forward(fc1->forward(x).relu()) * scale; }
  Affine fc1{nullptr}, fc2{nullptr};
  Tensor scale;
};
EMBER_MODULE(Net);

// Not Cloneable: cannot be cloned or replicated.
struct PlainImpl : Module {
  PlainImpl() { w = register_parameter("w", ones({2})); }
  Tensor w;
};
EMBER_MODULE(Plain);

class ModuleTest : public testing::DeviceTest {};

TEST(Module, RegistrationOrderAndNames) {
  Net net;
  const auto params = net->named_parameters();
  ASSERT_EQ(params.size(), 5u);
  EXPECT_EQ(params.keys(), std::vector<std::string>({"scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(net->parameters().size(), 5u);
  EXPECT_TRUE(params.at("fc1.weight").is_same(net->fc1->weight));
  EXPECT_TRUE(net->fc1->weight.requires_grad());
  EXPECT_EQ(net->named_buffers().keys(), std::vector<std::string>({"fc1.steps", "fc2.steps"}));
  EXPECT_EQ(net->children().size(), 2u);
  EXPECT_EQ(net->named_children().keys(), std::vector<std::string>({"fc1", "fc2"}));
  EXPECT_EQ(net->named_modules().keys(), std::vector<std::string>({"", "fc1", "fc2"}));
  EXPECT_EQ(net->name(), "Net");
  for (const auto& p : net->named_parameters()) EXPECT_FALSE(p.first.empty());
  EXPECT_EMBER_ERROR(net->register_parameter("scale", ones({1})), "already has", "scale");
  EXPECT_EMBER_ERROR(net->register_buffer("a.b", ones({1})), "must not contain '.'");
  EXPECT_EMBER_ERROR(net->register_parameter("x", ones({1}) * ones({1}).requires_grad_()), "leaf");
  Affine empty{nullptr};
  EXPECT_TRUE(empty.is_empty());
  EXPECT_EMBER_ERROR(empty->forward(ones({4})), "empty module holder");
}

TEST(Module, AsAndHolders) {
  Net net;
  std::shared_ptr<Module> base = net.ptr();
  EXPECT_NE(base->as<NetImpl>(), nullptr);
  EXPECT_EQ(base->as<AffineImpl>(), nullptr);
  auto direct = std::make_shared<NetImpl>();
  EXPECT_EQ(direct->forward(ones({2, 4})).sizes(), IntArrayRef({2, 2}));
  EXPECT_EQ(net(ones({2, 4})).sizes(), IntArrayRef({2, 2}));  // holder's operator()
}

TEST(Module, TrainEvalAndZeroGrad) {
  Net net;
  EXPECT_TRUE(net->is_training());
  net->eval();
  EXPECT_FALSE(net->is_training());
  EXPECT_FALSE(net->fc1->is_training());
  net->train();
  EXPECT_TRUE(net->fc2->is_training());
  net->forward(ones({3, 4})).sum().backward();
  EXPECT_TRUE(net->fc1->weight.grad().defined());
  net->zero_grad(/*set_to_none=*/false);
  EXPECT_EQ(net->fc1->weight.grad().abs().sum().item<float>(), 0.0f);
  net->zero_grad();
  EXPECT_FALSE(net->fc1->weight.grad().defined());
}

TEST_P(ModuleTest, ToMovesEveryHandleAndGradientsFollow) {
  Net net;
  net->forward(ones({2, 4})).sum().backward();
  Tensor member = net->fc1->weight;  // another handle to the same parameter
  net->to(device());
  EXPECT_EQ(member.device(), device());
  EXPECT_EQ(net->fc1->weight.device(), device());
  EXPECT_EQ(net->named_parameters().at("fc2.bias").device(), device());
  EXPECT_EQ(net->fc1->weight.grad().device(), device());
  EXPECT_EQ(net->named_buffers().at("fc1.steps").device(), device());
  EXPECT_TRUE(net->fc1->weight.requires_grad());
  Tensor out = net->forward(ones({2, 4}, opts()));
  EXPECT_EQ(out.device(), device());
  net->to(kFloat64);
  EXPECT_EQ(net->fc1->weight.dtype(), kFloat64);
  EXPECT_EQ(net->fc1->steps.dtype(), kInt64);  // integer buffers keep their dtype
  net->to(Device::cpu(1));
  EXPECT_EQ(net->scale.device(), Device::cpu(1));
  net->cpu();
  EXPECT_EQ(net->scale.device(), Device::cpu(0));
  // Backward still reaches the moved parameters.
  net->zero_grad();
  net->forward(ones({2, 4}, kFloat64)).sum().backward();
  EXPECT_TRUE(net->fc2->weight.grad().defined());
}

TEST(Module, StateDictRoundTripAndStrictness) {
  Net a, b;
  {
    NoGradGuard no_grad;
    a->fc1->weight.fill_(0.5);
    a->fc1->steps.fill_(7);
  }
  StateDict sd = a->state_dict();
  EXPECT_EQ(sd.keys(), std::vector<std::string>({"scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                                 "fc1.steps", "fc2.steps"}));
  EXPECT_EQ(sd.size(), 7u);
  EXPECT_TRUE(sd.contains("fc1.bias"));
  b->load_state_dict(sd);
  EXPECT_TRUE(testing::all_close(b->fc1->weight, a->fc1->weight));
  EXPECT_EQ(b->fc1->steps.item<int64_t>(), 7);
  EXPECT_FALSE(b->fc1->weight.is_alias_of(a->fc1->weight));  // values copied, not shared

  StateDict missing = a->state_dict();
  missing.erase("fc2.bias");
  EXPECT_EMBER_ERROR(b->load_state_dict(missing), "missing keys", "fc2.bias");
  StateDict extra = a->state_dict();
  extra.insert_or_assign("fc3.weight", ones({1}));
  EXPECT_EMBER_ERROR(b->load_state_dict(extra), "unexpected keys", "fc3.weight");
  b->load_state_dict(extra, /*strict=*/false);
  StateDict wrong = a->state_dict();
  wrong.insert_or_assign("fc1.weight", ones({4, 3}));
  EXPECT_EMBER_ERROR(b->load_state_dict(wrong), "shape mismatches", "fc1.weight", "[4, 3]", "[3, 4]");
  EXPECT_EMBER_ERROR(sd.at("nope"), "no entry named 'nope'");
}

TEST_P(ModuleTest, CloneIsDeepAndIndependent) {
  Net net;
  net->to(device());
  auto copy = std::dynamic_pointer_cast<NetImpl>(net->clone());
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(copy->named_parameters().keys(), net->named_parameters().keys());
  EXPECT_FALSE(copy->fc1->weight.is_alias_of(net->fc1->weight));
  EXPECT_TRUE(testing::all_close(copy->fc1->weight, net->fc1->weight));
  EXPECT_TRUE(copy->fc1->weight.requires_grad());
  // The clone's holders point at the clone's own children.
  EXPECT_TRUE(copy->fc1->weight.is_same(copy->named_parameters().at("fc1.weight")));
  {
    NoGradGuard no_grad;
    copy->fc1->weight.fill_(3);
  }
  EXPECT_FALSE(testing::all_close(copy->fc1->weight, net->fc1->weight));
  // Clone onto another device.
  auto moved = std::dynamic_pointer_cast<NetImpl>(net->clone(Device::cpu(2)));
  EXPECT_EQ(moved->fc2->bias.device(), Device::cpu(2));
  EXPECT_EQ(net->fc2->bias.device(), device());
  Plain plain;
  EXPECT_EMBER_ERROR(plain->clone(), "not cloneable", "nn::Cloneable");
}

TEST(Module, SequentialAndModuleList) {
  Sequential seq(Affine(4, 3), Relu(), Affine(3, 2));
  EXPECT_EQ(seq->size(), 3u);
  EXPECT_EQ(seq->forward(ones({5, 4})).sizes(), IntArrayRef({5, 2}));
  EXPECT_EQ(seq->named_parameters().keys(), std::vector<std::string>({"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_NE(seq->at<AffineImpl>(0), nullptr);
  EXPECT_EQ(seq->at<AffineImpl>(1), nullptr);
  auto seq2 = std::dynamic_pointer_cast<SequentialImpl>(seq->clone());
  ASSERT_NE(seq2, nullptr);
  EXPECT_TRUE(testing::all_close(seq2->forward(ones({5, 4})), seq->forward(ones({5, 4}))));
  EXPECT_FALSE(seq2->named_parameters().at("0.weight").is_alias_of(seq->named_parameters().at("0.weight")));
  ModuleList list(Affine(2, 2), Relu());
  list->push_back(Affine(2, 1));
  EXPECT_EQ(list->size(), 3u);
  EXPECT_EQ(list->named_parameters().size(), 4u);
  EXPECT_EMBER_ERROR((*list)[5], "ModuleList", "out of range");

  // A Cloneable holding a Sequential clones it too.
  struct WrapImpl : Cloneable<WrapImpl> {
    WrapImpl() { reset(); }
    void reset() override { body = register_module("body", Sequential(Affine(2, 2), Relu())); }
    Tensor forward(const Tensor& x) { return body->forward(x); }
    Sequential body{nullptr};
  };
  auto wrap = std::make_shared<WrapImpl>();
  auto wrap2 = std::dynamic_pointer_cast<WrapImpl>(wrap->clone());
  EXPECT_EQ(wrap2->body->size(), 2u);
  EXPECT_FALSE(wrap2->body->named_parameters().at("0.weight").is_alias_of(wrap->body->named_parameters().at("0.weight")));
  EXPECT_TRUE(wrap2->named_parameters().at("body.0.weight").is_same(wrap2->body->named_parameters().at("0.weight")));
}

TEST(Module, PrintsTheTreeLikePyTorch) {
  Net net;
  std::ostringstream os;
  os << *net;
  EXPECT_EQ(os.str(), "Net(\n  (fc1): Affine(in=4, out=3)\n  (fc2): Affine(in=3, out=2)\n)");
  std::ostringstream os2;
  os2 << Sequential(Affine(1, 1), Relu());
  EXPECT_EQ(os2.str(), "Sequential(\n  (0): Affine(in=1, out=1)\n  (1): Relu()\n)");
}

EMBER_INSTANTIATE_DEVICE_TESTS(ModuleTest);

}  // namespace
}  // namespace ember
