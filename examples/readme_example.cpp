// readme_example: the example shown in README.md, kept here so that every build compiles it and the tests run it.
#include <ember.h>

#include <iostream>

using namespace ember;

struct NetImpl : nn::Cloneable<NetImpl> {
  NetImpl() { reset(); }
  void reset() override {
    fc1 = register_module("fc1", nn::Linear(2, 32));
    fc2 = register_module("fc2", nn::Linear(32, 2));
  }
  Tensor forward(const Tensor& x) { return fc2->forward(relu(fc1->forward(x))); }
  nn::Linear fc1{nullptr}, fc2{nullptr};
};
EMBER_MODULE(Net);

int main() {
  manual_seed(0);
  Device device = cuda::is_available() ? Device::cuda(0) : Device::cpu();

  // 512 points in the plane, labelled by the side of the line y = x they fall on.
  Tensor x = randn({512, 2});
  Tensor y = x.select(1, 1).gt(x.select(1, 0)).to(kInt64);
  x = x.to(device);
  y = y.to(device);

  Net net;
  net->to(device);
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  for (int step = 0; step < 200; ++step) {
    opt.zero_grad();
    Tensor loss = nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
    if (step % 50 == 0) std::cout << "step " << step << "  loss " << loss.item<float>() << "\n";
  }

  NoGradGuard no_grad;
  float accuracy = net->forward(x).argmax(1).eq(y).to(kFloat32).mean().item<float>();
  std::cout << "accuracy " << accuracy << " on " << device << "\n";
  return accuracy > 0.95f ? 0 : 1;
}
