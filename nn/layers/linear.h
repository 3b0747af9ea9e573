// nn::Linear: y = x @ W^T + b with PyTorch's initialisation.
#pragma once

#include <cstdint>
#include <iosfwd>

#include "nn/cloneable.h"
#include "nn/holder.h"
#include "nn/options.h"

namespace ember::nn {

struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features) : in_features_(in_features), out_features_(out_features) {}
  EMBER_ARG(int64_t, in_features);
  EMBER_ARG(int64_t, out_features);
  EMBER_ARG(bool, bias) = true;
};

class LinearImpl : public Cloneable<LinearImpl> {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  explicit LinearImpl(const LinearOptions& options);

  // Registers weight [out, in] (and bias [out]) and initialises them.
  void reset() override;
  // PyTorch's init: weight kaiming_uniform_(a = sqrt(5)) (= U(-1/sqrt(in), 1/sqrt(in))), bias U(-1/sqrt(in), 1/sqrt(in)).
  void reset_parameters();
  // [*, in_features] -> [*, out_features] (nn::functional::linear: one GEMM with the bias fused for 2-D input).
  Tensor forward(const Tensor& input);
  // Linear(in_features=784, out_features=10, bias=True)
  void pretty_print(std::ostream& os) const override;

  LinearOptions options;
  Tensor weight, bias;  // bias undefined when options.bias() is false
};
EMBER_MODULE(Linear);

}  // namespace ember::nn
