// optim::LRScheduler and the schedules StepLR and CosineAnnealingLR (PyTorch 1.13's formulas and step protocol).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/optim/optimizer.h"
#include "nn/optim/state_dict.h"

namespace ember::optim {

// Note [LR scheduler protocol]
// As torch.optim.lr_scheduler: constructing a scheduler with last_epoch = -1 records each group's
// current lr as its initial_lr (the base lr) and takes one step to epoch 0, which keeps the lr.
// Every step() then advances last_epoch by one and writes the new lrs into the optimizer's
// param groups (call it after optimizer.step(), once per epoch or iteration). The lrs come from
// PyTorch's "chainable" get_lr(), which derives the new lr from the group's current one, so
// several schedulers can act on one optimizer and manual lr changes carry on, with the same
// floating-point results as PyTorch. step(epoch) jumps to an epoch with the closed form.
// Resuming (last_epoch >= 0) needs initial_lr in every group, as in PyTorch.
class LRScheduler {
 public:
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;
  virtual ~LRScheduler() = default;

  // Advances one epoch and sets the optimizer's learning rates.
  void step();
  // Jumps to `epoch` (PyTorch's deprecated step(epoch)): the closed-form lrs.
  void step(int64_t epoch);
  // The lrs the last step set, one per param group.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  int64_t last_epoch() const { return last_epoch_; }
  Optimizer& optimizer() { return optimizer_; }

  // PyTorch's scheduler.state_dict(): {"base_lrs", "last_epoch", "_step_count", "_last_lr"} and the
  // schedule's own settings ("step_size" and "gamma"; "T_max" and "eta_min"). load_state_dict restores
  // them all (PyTorch's __dict__.update: the saved settings replace the constructor's), not the
  // optimizer's lrs, which the optimizer's own state_dict holds. Throws ember::Error, changing nothing,
  // on a missing, mistyped or unknown entry or base_lrs of another number of param groups.
  SchedulerStateDict state_dict() const;
  void load_state_dict(const SchedulerStateDict& state);

 protected:
  // Derived constructors call initial_step() once their own members are set (a base constructor
  // cannot reach the derived get_lr()).
  LRScheduler(Optimizer& optimizer, int64_t last_epoch);
  void initial_step();

  // The chainable rule: the lrs of epoch last_epoch_ from the groups' current lrs.
  virtual std::vector<double> get_lr() = 0;
  // The lrs of epoch last_epoch_ from the base lrs alone.
  virtual std::vector<double> closed_form_lr() = 0;
  // The groups' current lrs.
  std::vector<double> current_lrs() const;
  // A schedule's own settings in state_dict() and back. load_settings reads and checks every value
  // before it assigns any; settings_names() lists what it reads (every other key is unexpected). The
  // defaults save and load nothing (a schedule of one's own whose settings are all constructor
  // arguments needs no more).
  virtual void save_settings(StateValueMap& state) const;
  virtual void load_settings(StateReader& reader);
  virtual std::vector<std::string> settings_names() const { return {}; }

  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_;
  int64_t step_count_ = 0;

 private:
  void apply(const std::vector<double>& lrs);
  std::vector<double> last_lr_;
};

// lr = base_lr * gamma^(epoch / step_size): decays by gamma every step_size epochs.
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  std::vector<double> closed_form_lr() override;
  void save_settings(StateValueMap& state) const override;
  void load_settings(StateReader& reader) override;
  std::vector<std::string> settings_names() const override { return {"step_size", "gamma"}; }

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2, continued past T_max
// as PyTorch's recursive form does (it rises again towards base_lr over the next T_max epochs).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0, int64_t last_epoch = -1);

 protected:
  std::vector<double> get_lr() override;
  std::vector<double> closed_form_lr() override;
  void save_settings(StateValueMap& state) const override;
  void load_settings(StateReader& reader) override;
  std::vector<std::string> settings_names() const override { return {"T_max", "eta_min"}; }

 private:
  int64_t T_max_;
  double eta_min_;
};

}  // namespace ember::optim
