// LRScheduler's step protocol and the StepLR / CosineAnnealingLR rules, as torch.optim.lr_scheduler computes them.
#include "nn/optim/lr_scheduler.h"

#include <cmath>
#include <numbers>
#include <utility>

#include "runtime/error.h"

namespace ember::optim {

LRScheduler::LRScheduler(Optimizer& optimizer, int64_t last_epoch) : optimizer_(optimizer), last_epoch_(last_epoch) {
  EMBER_CHECK(last_epoch >= -1, "LRScheduler: last_epoch must be -1 (a fresh start) or an epoch >= 0, got ",
              last_epoch);
  auto& groups = optimizer_.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    if (last_epoch == -1) {
      // setdefault, as PyTorch: a second scheduler on the same optimizer keeps the first's base lrs.
      if (!groups[i].initial_lr()) groups[i].initial_lr() = groups[i].options().lr();
    } else {
      EMBER_CHECK(groups[i].initial_lr().has_value(), "LRScheduler: param group ", i,
                  " has no initial_lr, which resuming with last_epoch = ", last_epoch,
                  " needs (it is set when a scheduler is created with last_epoch = -1)");
    }
    base_lrs_.push_back(*groups[i].initial_lr());
  }
}

void LRScheduler::initial_step() { step(); }

std::vector<double> LRScheduler::current_lrs() const {
  std::vector<double> out;
  for (const OptimizerParamGroup& g : optimizer_.param_groups()) out.push_back(g.options().lr());
  return out;
}

void LRScheduler::apply(const std::vector<double>& lrs) {
  auto& groups = optimizer_.param_groups();
  EMBER_CHECK(lrs.size() == groups.size() && base_lrs_.size() == groups.size(), "LRScheduler: the optimizer has ",
              groups.size(), " param groups but the scheduler was created for ", base_lrs_.size(),
              "; create the scheduler after adding every param group");
  for (size_t i = 0; i < groups.size(); ++i) groups[i].options().lr(lrs[i]);
  last_lr_ = lrs;
}

void LRScheduler::step() {
  ++step_count_;
  ++last_epoch_;
  apply(get_lr());
}

void LRScheduler::step(int64_t epoch) {
  EMBER_CHECK(epoch >= 0, "LRScheduler::step: epoch must be >= 0, got ", epoch);
  ++step_count_;
  last_epoch_ = epoch;
  apply(closed_form_lr());
}

void LRScheduler::save_settings(StateValueMap&) const {}
void LRScheduler::load_settings(StateReader&) {}

SchedulerStateDict LRScheduler::state_dict() const {
  SchedulerStateDict out;
  out["base_lrs"] = base_lrs_;
  out["last_epoch"] = last_epoch_;
  out["_step_count"] = step_count_;
  out["_last_lr"] = last_lr_;
  save_settings(out);
  return out;
}

void LRScheduler::load_state_dict(const SchedulerStateDict& state) {
  const size_t groups = optimizer_.param_groups().size();
  StateReader r(state, "LRScheduler::load_state_dict");
  std::vector<double> base_lrs = r.numbers("base_lrs");
  const int64_t last_epoch = r.integer("last_epoch");
  const int64_t step_count = r.integer("_step_count");
  std::vector<double> last_lr = r.numbers("_last_lr");
  // Written by PyTorch; nothing here depends on them.
  r.skip("verbose");
  r.skip("_get_lr_called_within_step");
  EMBER_CHECK(base_lrs.size() == groups, "LRScheduler::load_state_dict: base_lrs holds ", base_lrs.size(),
              " learning rate(s) but the optimizer has ", groups, " param group(s)");
  EMBER_CHECK(last_lr.size() == groups || last_lr.empty(), "LRScheduler::load_state_dict: _last_lr holds ",
              last_lr.size(), " learning rate(s) but the optimizer has ", groups, " param group(s)");
  EMBER_CHECK(last_epoch >= -1, "LRScheduler::load_state_dict: last_epoch must be >= -1, got ", last_epoch);
  EMBER_CHECK(step_count >= 0, "LRScheduler::load_state_dict: _step_count must be >= 0, got ", step_count);
  std::string expected = "base_lrs, last_epoch, _step_count, _last_lr";
  for (const std::string& name : settings_names()) {
    r.skip(name);  // read below; marked here so that finish() checks for unknown keys first
    expected += ", " + name;
  }
  r.finish(expected);
  StateReader settings(state, "LRScheduler::load_state_dict");
  load_settings(settings);
  base_lrs_ = std::move(base_lrs);
  last_epoch_ = last_epoch;
  step_count_ = step_count;
  last_lr_ = std::move(last_lr);
}

// ---- StepLR -------------------------------------------------------------------------------------

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma, int64_t last_epoch)
    : LRScheduler(optimizer, last_epoch), step_size_(step_size), gamma_(gamma) {
  EMBER_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  initial_step();
}

std::vector<double> StepLR::get_lr() {
  std::vector<double> lrs = current_lrs();
  if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return lrs;
  for (double& lr : lrs) lr *= gamma_;
  return lrs;
}

void StepLR::save_settings(StateValueMap& state) const {
  state["step_size"] = step_size_;
  state["gamma"] = gamma_;
}

void StepLR::load_settings(StateReader& reader) {
  const int64_t step_size = reader.integer("step_size");
  const double gamma = reader.number("gamma");
  EMBER_CHECK(step_size > 0, "StepLR::load_state_dict: step_size must be positive, got ", step_size);
  step_size_ = step_size;
  gamma_ = gamma;
}

std::vector<double> StepLR::closed_form_lr() {
  std::vector<double> lrs;
  // Python's // on non-negative epochs.
  const double decays = static_cast<double>(last_epoch_ / step_size_);
  for (double base : base_lrs_) lrs.push_back(base * std::pow(gamma_, decays));
  return lrs;
}

// ---- CosineAnnealingLR --------------------------------------------------------------------------

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min, int64_t last_epoch)
    : LRScheduler(optimizer, last_epoch), T_max_(T_max), eta_min_(eta_min) {
  EMBER_CHECK(T_max > 0, "CosineAnnealingLR: T_max must be positive, got ", T_max);
  initial_step();
}

// PyTorch's get_lr, branch for branch and in its order of operations.
std::vector<double> CosineAnnealingLR::get_lr() {
  constexpr double pi = std::numbers::pi;
  const auto e = static_cast<double>(last_epoch_);
  const auto T = static_cast<double>(T_max_);
  std::vector<double> lrs = current_lrs();
  if (last_epoch_ == 0) return lrs;
  if (step_count_ == 1 && last_epoch_ > 0) return closed_form_lr();  // resuming
  if ((last_epoch_ - 1 - T_max_) % (2 * T_max_) == 0) {
    for (size_t i = 0; i < lrs.size(); ++i) lrs[i] = lrs[i] + (base_lrs_[i] - eta_min_) * (1 - std::cos(pi / T)) / 2;
    return lrs;
  }
  for (double& lr : lrs)
    lr = (1 + std::cos(pi * e / T)) / (1 + std::cos(pi * (e - 1) / T)) * (lr - eta_min_) + eta_min_;
  return lrs;
}

void CosineAnnealingLR::save_settings(StateValueMap& state) const {
  state["T_max"] = T_max_;
  state["eta_min"] = eta_min_;
}

void CosineAnnealingLR::load_settings(StateReader& reader) {
  const int64_t T_max = reader.integer("T_max");
  const double eta_min = reader.number("eta_min");
  EMBER_CHECK(T_max > 0, "CosineAnnealingLR::load_state_dict: T_max must be positive, got ", T_max);
  T_max_ = T_max;
  eta_min_ = eta_min;
}

std::vector<double> CosineAnnealingLR::closed_form_lr() {
  constexpr double pi = std::numbers::pi;
  const auto e = static_cast<double>(last_epoch_);
  const auto T = static_cast<double>(T_max_);
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(eta_min_ + (base - eta_min_) * (1 + std::cos(pi * e / T)) / 2);
  return lrs;
}

}  // namespace ember::optim
