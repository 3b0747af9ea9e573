// Activation layers: ReLU, GELU (exact or tanh approximation), Tanh, Sigmoid.
#pragma once

#include <iosfwd>
#include <string>

#include "nn/cloneable.h"
#include "nn/holder.h"
#include "nn/options.h"

namespace ember::nn {

struct ReLUOptions {
  ReLUOptions(bool inplace = false) : inplace_(inplace) {}  // NOLINT
  EMBER_ARG(bool, inplace);
};

class ReLUImpl : public Cloneable<ReLUImpl> {
 public:
  explicit ReLUImpl(const ReLUOptions& options = {}) : options(options) {}
  void reset() override {}
  Tensor forward(const Tensor& input);
  // ReLU() or ReLU(inplace=True)
  void pretty_print(std::ostream& os) const override;
  ReLUOptions options;
};
EMBER_MODULE(ReLU);

struct GELUOptions {
  // "none" (the exact erf form) or "tanh" (the tanh approximation), as PyTorch.
  EMBER_ARG(std::string, approximate) = "none";
};

class GELUImpl : public Cloneable<GELUImpl> {
 public:
  explicit GELUImpl(const GELUOptions& options = {});
  void reset() override {}
  Tensor forward(const Tensor& input);
  // GELU(approximate='none')
  void pretty_print(std::ostream& os) const override;
  GELUOptions options;
};
EMBER_MODULE(GELU);

class TanhImpl : public Cloneable<TanhImpl> {
 public:
  void reset() override {}
  Tensor forward(const Tensor& input);
  void pretty_print(std::ostream& os) const override;  // Tanh()
};
EMBER_MODULE(Tanh);

class SigmoidImpl : public Cloneable<SigmoidImpl> {
 public:
  void reset() override {}
  Tensor forward(const Tensor& input);
  void pretty_print(std::ostream& os) const override;  // Sigmoid()
};
EMBER_MODULE(Sigmoid);

}  // namespace ember::nn
