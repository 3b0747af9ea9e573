// optim::SGD: stochastic gradient descent with momentum, dampening, Nesterov and weight decay (PyTorch's rule).
#pragma once

#include <memory>
#include <vector>

#include "nn/optim/optimizer.h"
#include "nn/options.h"

namespace ember::optim {

// PyTorch's defaults; lr has none (as torch.optim.SGD, where it is required).
class SGDOptions : public OptimizerOptions {
 public:
  SGDOptions(double lr);  // NOLINT: `SGD opt(params, 0.1)`
  double lr() const override { return lr_; }
  SGDOptions& lr(double lr) override {
    lr_ = lr;
    return *this;
  }
  std::unique_ptr<OptimizerOptions> clone() const override { return std::make_unique<SGDOptions>(*this); }
  // lr, momentum, dampening and weight_decay must be >= 0; nesterov needs momentum > 0 and dampening 0.
  void validate() const override;
  // {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"}.
  StateValueMap state_dict() const override;
  void load_state_dict(const StateValueMap& state) override;

  EMBER_ARG(double, momentum) = 0.0;
  EMBER_ARG(double, dampening) = 0.0;
  EMBER_ARG(double, weight_decay) = 0.0;
  EMBER_ARG(bool, nesterov) = false;
  EMBER_ARG(bool, maximize) = false;

 private:
  double lr_;
};

struct SGDParamState : OptimizerParamState {
  Tensor momentum_buffer;  // undefined until the first step with momentum
  std::unique_ptr<OptimizerParamState> clone() const override;
  // {"momentum_buffer"} once it exists.
  std::map<std::string, Tensor> state_dict() const override;
  void load_state_dict(const std::map<std::string, Tensor>& state, const Tensor& param) override;
};

// The update (torch.optim.SGD, PyTorch 1.13), per parameter p with gradient g:
//   g = -g if maximize;  g = g + weight_decay * p if weight_decay != 0
//   if momentum != 0:  buf = g on the first step, else buf = momentum * buf + (1 - dampening) * g
//                      g = g + momentum * buf if nesterov, else buf
//   p = p - lr * g
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& defaults);
  SGD(std::vector<OptimizerParamGroup> param_groups, const SGDOptions& defaults);

  Tensor step(LossClosure closure = nullptr) override;

 protected:
  std::unique_ptr<OptimizerParamState> make_param_state() const override;
};

}  // namespace ember::optim
