// optim::Adam and optim::AdamW (PyTorch 1.13's update rules, bias correction and weight-decay placement).
#pragma once

#include <cstdint>
#include <memory>
#include <tuple>
#include <vector>

#include "kernels/optim.h"
#include "nn/optim/optimizer.h"
#include "nn/options.h"

namespace ember::optim {

// (beta1, beta2) of Adam's moment estimates: `.betas({0.9, 0.999})`.
using Betas = std::tuple<double, double>;

// torch.optim.Adam's defaults.
class AdamOptions : public OptimizerOptions {
 public:
  AdamOptions(double lr = 1e-3);  // NOLINT: `Adam opt(params, 1e-3)`
  double lr() const override { return lr_; }
  AdamOptions& lr(double lr) override {
    lr_ = lr;
    return *this;
  }
  std::unique_ptr<OptimizerOptions> clone() const override { return std::make_unique<AdamOptions>(*this); }
  // lr, eps, weight_decay >= 0 and 0 <= beta < 1 for both betas.
  void validate() const override;
  // {"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"}.
  StateValueMap state_dict() const override;
  void load_state_dict(const StateValueMap& state) override;

  EMBER_ARG(Betas, betas) = Betas(0.9, 0.999);
  EMBER_ARG(double, eps) = 1e-8;
  EMBER_ARG(double, weight_decay) = 0.0;
  EMBER_ARG(bool, amsgrad) = false;
  EMBER_ARG(bool, maximize) = false;

 private:
  double lr_;
};

// torch.optim.AdamW's defaults (weight_decay 1e-2).
class AdamWOptions : public OptimizerOptions {
 public:
  AdamWOptions(double lr = 1e-3);  // NOLINT
  double lr() const override { return lr_; }
  AdamWOptions& lr(double lr) override {
    lr_ = lr;
    return *this;
  }
  std::unique_ptr<OptimizerOptions> clone() const override { return std::make_unique<AdamWOptions>(*this); }
  void validate() const override;
  StateValueMap state_dict() const override;  // as AdamOptions'
  void load_state_dict(const StateValueMap& state) override;

  EMBER_ARG(Betas, betas) = Betas(0.9, 0.999);
  EMBER_ARG(double, eps) = 1e-8;
  EMBER_ARG(double, weight_decay) = 1e-2;
  EMBER_ARG(bool, amsgrad) = false;
  EMBER_ARG(bool, maximize) = false;

 private:
  double lr_;
};

struct AdamParamState : OptimizerParamState {
  int64_t step = 0;            // steps this parameter has taken
  Tensor exp_avg, exp_avg_sq;  // first and second moment estimates
  Tensor max_exp_avg_sq;       // amsgrad only
  std::unique_ptr<OptimizerParamState> clone() const override;
  // {"step" (a 0-dim float64 tensor), "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (amsgrad)}.
  std::map<std::string, Tensor> state_dict() const override;
  void load_state_dict(const std::map<std::string, Tensor>& state, const Tensor& param) override;
};

namespace detail {
// What Adam and AdamW share: the state and the step; they differ in options type and decay placement.
class AdamBase : public Optimizer {
 public:
  Tensor step(LossClosure closure = nullptr) override;

 protected:
  using Optimizer::Optimizer;
  std::unique_ptr<OptimizerParamState> make_param_state() const override;
  // Group `index`'s options (validated) as the fused kernel's hyper-parameters.
  virtual AdamHyper group_hyper(size_t index) = 0;
};
}  // namespace detail

// The update (torch.optim.Adam / AdamW, PyTorch 1.13 single-tensor), per parameter p, gradient g,
// after step += 1:
//   g = -g if maximize
//   AdamW: p = p * (1 - lr * weight_decay)          Adam: g = g + weight_decay * p (when != 0)
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
//   v_hat = max(v_max, v) with amsgrad (kept in max_exp_avg_sq), else v
//   denom = sqrt(v_hat) / sqrt(1 - beta2^step) + eps
//   p = p - (lr / (1 - beta1^step)) * m / denom
class Adam : public detail::AdamBase {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& defaults = {});
  Adam(std::vector<OptimizerParamGroup> param_groups, const AdamOptions& defaults = {});

 protected:
  AdamHyper group_hyper(size_t index) override;
};

class AdamW : public detail::AdamBase {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& defaults = {});
  AdamW(std::vector<OptimizerParamGroup> param_groups, const AdamWOptions& defaults = {});

 protected:
  AdamHyper group_hyper(size_t index) override;
};

}  // namespace ember::optim
