// LibTorch oracle: SGD (momentum, dampening, Nesterov, weight decay), Adam (amsgrad), AdamW, StepLR and CosineAnnealingLR.
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/schedulers/step_lr.h>
#include <torch/optim/sgd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/torch/oracle.h"

namespace ember {
namespace {

using namespace oracle;

// The parameters of every run: odd shapes, a 0-d one and a non-contiguous leaf (a transposed tensor).
struct Params {
  std::vector<Tensor> ours;
  std::vector<at::Tensor> theirs;
};
Params make_params(DType dtype) {
  Params p;
  const TensorOptions o = TensorOptions().dtype(dtype);
  for (Tensor t : {randn({7, 13}, o), randn({33}, o), randn({}, o), randn({13, 5}, o).t()}) {
    p.theirs.push_back(to_torch(t).requires_grad_());
    p.ours.push_back(t.detach().requires_grad_());
  }
  EXPECT_FALSE(p.ours[3].is_contiguous());
  return p;
}

// Note [Optimizer oracle tolerance]
// Both libraries run the same per-element formulas with the hyper-parameter arithmetic (bias
// corrections, lr / (1 - beta1^t)) in double, but ember fuses them into one pass while LibTorch
// chains tensor ops, each rounding to the parameter dtype: each step may differ by a few ulps of
// the update and of the parameter, and five steps add up. Parameters are O(1): rtol 1e-5 / 1e-10
// (float32 / float64) with atol 1e-6 / 1e-12 leaves ~80 ulps of room in float32.
Tol optim_tol(DType dtype) { return tol(dtype); }

// Runs `steps` optimizer steps on identical parameters with identical gradients (a fresh random set
// per step; `grad_scale(step)` varies their size so that amsgrad's running max matters), calling the
// schedulers after each step as PyTorch's examples do, and compares parameters and lrs after every step.
void run_and_compare(const std::string& name, DType dtype, const std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>& make_ours,
                     const std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<at::Tensor>)>& make_theirs,
                     int steps = 5, std::function<double(int)> grad_scale = nullptr,
                     std::function<void(optim::Optimizer&, torch::optim::Optimizer&)> after_step = nullptr) {
  SCOPED_TRACE(name + " " + dtype_name(dtype));
  Params p = make_params(dtype);
  auto ours = make_ours(p.ours);
  auto theirs = make_theirs(p.theirs);
  for (int step = 1; step <= steps; ++step) {
    const double scale = grad_scale ? grad_scale(step) : 1.0;
    for (size_t i = 0; i < p.ours.size(); ++i) {
      Tensor g = randn(p.ours[i].sizes(), TensorOptions().dtype(dtype)).mul(scale);
      p.theirs[i].mutable_grad() = to_torch(g);
      p.ours[i].set_grad(g);
    }
    ours->step();
    theirs->step();
    if (after_step) after_step(*ours, *theirs);
    for (size_t i = 0; i < p.ours.size(); ++i) {
      EXPECT_TRUE(oracle::all_close(p.ours[i], p.theirs[i], optim_tol(dtype))) << "parameter " << i << " after step " << step;
    }
  }
}

TEST(OptimOracle, SGD) {
  manual_seed(71);
  struct Case {
    std::string what;
    double momentum, dampening, weight_decay;
    bool nesterov;
  };
  const std::vector<Case> cases = {
      {"plain", 0, 0, 0, false},
      {"momentum 0.9", 0.9, 0, 0, false},
      {"momentum 0.9 dampening 0.1", 0.9, 0.1, 0, false},
      {"nesterov", 0.9, 0, 0, true},
      {"weight decay", 0, 0, 1e-2, false},
      {"momentum + weight decay", 0.8, 0, 5e-2, false},
      {"nesterov + weight decay", 0.9, 0, 5e-4, true},
  };
  for (DType dtype : oracle::float_dtypes()) {
    for (const Case& c : cases) {
      run_and_compare(
          "SGD " + c.what, dtype,
          [&](std::vector<Tensor> ps) {
            return std::make_unique<optim::SGD>(ps, optim::SGDOptions(0.05)
                                                         .momentum(c.momentum)
                                                         .dampening(c.dampening)
                                                         .weight_decay(c.weight_decay)
                                                         .nesterov(c.nesterov));
          },
          [&](std::vector<at::Tensor> ps) {
            return std::make_unique<torch::optim::SGD>(ps, torch::optim::SGDOptions(0.05)
                                                               .momentum(c.momentum)
                                                               .dampening(c.dampening)
                                                               .weight_decay(c.weight_decay)
                                                               .nesterov(c.nesterov));
          });
    }
  }
}

// Gradients shrink after the second step, so amsgrad's max_exp_avg_sq departs from exp_avg_sq.
double shrinking(int step) { return step <= 2 ? 3.0 : 0.2; }

TEST(OptimOracle, AdamAndAdamW) {
  manual_seed(72);
  struct Case {
    std::string what;
    double lr, beta1, beta2, eps, weight_decay;
    bool amsgrad;
  };
  const std::vector<Case> cases = {
      {"defaults", 1e-3, 0.9, 0.999, 1e-8, 0, false},
      {"lr 0.05 betas (0.8, 0.99)", 0.05, 0.8, 0.99, 1e-8, 0, false},
      {"amsgrad", 0.02, 0.9, 0.999, 1e-8, 0, true},
      {"weight decay", 0.02, 0.9, 0.999, 1e-8, 0.1, false},
      {"amsgrad + weight decay + eps 1e-3", 0.02, 0.9, 0.95, 1e-3, 0.05, true},
  };
  for (DType dtype : oracle::float_dtypes()) {
    for (const Case& c : cases) {
      run_and_compare(
          "Adam " + c.what, dtype,
          [&](std::vector<Tensor> ps) {
            return std::make_unique<optim::Adam>(ps, optim::AdamOptions(c.lr)
                                                         .betas({c.beta1, c.beta2})
                                                         .eps(c.eps)
                                                         .weight_decay(c.weight_decay)
                                                         .amsgrad(c.amsgrad));
          },
          [&](std::vector<at::Tensor> ps) {
            return std::make_unique<torch::optim::Adam>(ps, torch::optim::AdamOptions(c.lr)
                                                                .betas(std::make_tuple(c.beta1, c.beta2))
                                                                .eps(c.eps)
                                                                .weight_decay(c.weight_decay)
                                                                .amsgrad(c.amsgrad));
          },
          5, shrinking);
      // AdamW's default weight decay is 1e-2 in both; use a visible one when the case has none.
      const double wd = c.weight_decay == 0 ? 1e-2 : c.weight_decay;
      run_and_compare(
          "AdamW " + c.what, dtype,
          [&](std::vector<Tensor> ps) {
            return std::make_unique<optim::AdamW>(
                ps, optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(wd).amsgrad(c.amsgrad));
          },
          [&](std::vector<at::Tensor> ps) {
            return std::make_unique<torch::optim::AdamW>(ps, torch::optim::AdamWOptions(c.lr)
                                                                 .betas(std::make_tuple(c.beta1, c.beta2))
                                                                 .eps(c.eps)
                                                                 .weight_decay(wd)
                                                                 .amsgrad(c.amsgrad));
          },
          5, shrinking);
    }
  }
}

// Defaults must agree too (AdamW's weight decay 1e-2, betas, eps).
TEST(OptimOracle, DefaultOptionsAgree) {
  manual_seed(73);
  run_and_compare(
      "AdamW defaults", kFloat32,
      [](std::vector<Tensor> ps) { return std::make_unique<optim::AdamW>(ps); },
      [](std::vector<at::Tensor> ps) { return std::make_unique<torch::optim::AdamW>(ps); });
  run_and_compare(
      "Adam defaults", kFloat32, [](std::vector<Tensor> ps) { return std::make_unique<optim::Adam>(ps); },
      [](std::vector<at::Tensor> ps) { return std::make_unique<torch::optim::Adam>(ps); });
}

double torch_lr(torch::optim::Optimizer& opt) { return opt.param_groups()[0].options().get_lr(); }

// Note [LibTorch's StepLR is one step behind]
// torch.optim.lr_scheduler (Python) takes one step to epoch 0 in its constructor, and ember follows
// it (Note [LR scheduler protocol]); LibTorch 1.13's C++ LRScheduler does not, so its StepLR decays
// one call later. Calling LibTorch's step() once right after construction reproduces Python's
// sequence, which these tests also check against the lrs Python printed:
//   python3 -c "import torch; p=[torch.nn.Parameter(torch.zeros(2))]; o=torch.optim.SGD(p, lr=0.1);
//               s=torch.optim.lr_scheduler.StepLR(o, 2, 0.5); ..." (lr after each of 5 steps)
TEST(OptimOracle, SGDWithStepLR) {
  manual_seed(74);
  const std::vector<double> python_lrs = {0.1, 0.05, 0.05, 0.025, 0.025};  // after steps 1..5
  for (DType dtype : oracle::float_dtypes()) {
    std::unique_ptr<optim::StepLR> ours_sched;
    std::unique_ptr<torch::optim::StepLR> theirs_sched;
    int step = 0;
    run_and_compare(
        "SGD momentum + StepLR(2, 0.5)", dtype,
        [&](std::vector<Tensor> ps) {
          auto opt = std::make_unique<optim::SGD>(ps, optim::SGDOptions(0.1).momentum(0.9));
          ours_sched = std::make_unique<optim::StepLR>(*opt, 2, 0.5);
          return opt;
        },
        [&](std::vector<at::Tensor> ps) {
          auto opt = std::make_unique<torch::optim::SGD>(ps, torch::optim::SGDOptions(0.1).momentum(0.9));
          theirs_sched = std::make_unique<torch::optim::StepLR>(*opt, 2, 0.5);
          theirs_sched->step();  // Python's constructor step (see the Note)
          return opt;
        },
        5, nullptr,
        [&](optim::Optimizer& o, torch::optim::Optimizer& t) {
          ours_sched->step();
          theirs_sched->step();
          const double lr = o.param_groups()[0].options().lr();
          EXPECT_EQ(lr, torch_lr(t)) << "lr after step " << step + 1;
          EXPECT_EQ(lr, python_lrs[static_cast<size_t>(step)]) << "lr after step " << step + 1;
          ++step;
        });
  }
}

// LibTorch 1.13 has no CosineAnnealingLR: the LibTorch optimizer is driven with the lrs Python's
// CosineAnnealingLR(T_max=3, eta_min=0.01) produces from base lr 0.1 (printed with repr by torch 1.13;
// the recursive form overshoots T_max and rises again), and ember's scheduler must produce them.
TEST(OptimOracle, AdamWithCosineAnnealingLR) {
  manual_seed(75);
  const std::vector<double> python_lrs = {0.0775, 0.032500000000000015, 0.01, 0.0325, 0.07750000000000005};
  for (DType dtype : oracle::float_dtypes()) {
    std::unique_ptr<optim::CosineAnnealingLR> ours_sched;
    int step = 0;
    run_and_compare(
        "Adam + CosineAnnealingLR(3, 0.01)", dtype,
        [&](std::vector<Tensor> ps) {
          auto opt = std::make_unique<optim::Adam>(ps, optim::AdamOptions(0.1));
          ours_sched = std::make_unique<optim::CosineAnnealingLR>(*opt, 3, 0.01);
          return opt;
        },
        [&](std::vector<at::Tensor> ps) {
          return std::make_unique<torch::optim::Adam>(ps, torch::optim::AdamOptions(0.1));
        },
        5, nullptr,
        [&](optim::Optimizer& o, torch::optim::Optimizer& t) {
          ours_sched->step();
          const double expected = python_lrs[static_cast<size_t>(step)];
          t.param_groups()[0].options().set_lr(expected);
          // The recursive form accumulates rounding: equal to Python's within a few ulps.
          EXPECT_NEAR(o.param_groups()[0].options().lr(), expected, 1e-15) << "lr after step " << step + 1;
          ++step;
        });
  }
}

}  // namespace
}  // namespace ember
