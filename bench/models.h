// The Fashion-MNIST models of examples/fashion_mnist.cpp, shared by ember_bench and ember_scaling
// (bench/pytorch/bench_torch.py and bench/torch_compare.cpp build the same ones in PyTorch and LibTorch).
#pragma once

#include <string>

#include "ember.h"

namespace ember::bench {

// 784 -> 256 -> 128 -> 10 with ReLU: 235,146 parameters (0.94 MB of float32 gradients).
struct MlpImpl : nn::Cloneable<MlpImpl> {
  MlpImpl() { reset(); }
  void reset() override {
    fc1 = register_module("fc1", nn::Linear(784, 256));
    fc2 = register_module("fc2", nn::Linear(256, 128));
    fc3 = register_module("fc3", nn::Linear(128, 10));
  }
  Tensor forward(const Tensor& x) { return fc3->forward(fc2->forward(fc1->forward(x.flatten(1)).relu()).relu()); }
  nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};
EMBER_MODULE(Mlp);

// Two conv-BN-ReLU-pool blocks and a classifier: 421,642 parameters (1.69 MB of gradients), most of
// them in the first Linear; most of the compute in the convolutions.
struct CnnImpl : nn::Cloneable<CnnImpl> {
  CnnImpl() { reset(); }
  void reset() override {
    features = register_module(
        "features", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1).bias(false)), nn::BatchNorm2d(32),
                                   nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                                   nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1).bias(false)), nn::BatchNorm2d(64),
                                   nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2))));
    classifier = register_module("classifier", nn::Sequential(nn::Flatten(), nn::Linear(64 * 7 * 7, 128), nn::ReLU(),
                                                              nn::Dropout(0.25), nn::Linear(128, 10)));
  }
  Tensor forward(const Tensor& x) { return classifier->forward(features->forward(x)); }
  nn::Sequential features{nullptr}, classifier{nullptr};
};
EMBER_MODULE(Cnn);

}  // namespace ember::bench
