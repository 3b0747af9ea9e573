// optim::Adam and optim::AdamW: option checks and the step, one fused_adam_ call for all parameters.
#include "nn/optim/adam.h"

#include <utility>

#include "kernels/optim.h"
#include "runtime/autograd/grad_mode.h"
#include "runtime/factory.h"

namespace ember::optim {
namespace {

// PyTorch's checks, shared by Adam and AdamW (`name` prefixes the message).
template <class O>
void validate_adam_options(const char* name, const O& o) {
  const auto [beta1, beta2] = o.betas();
  EMBER_CHECK(o.lr() >= 0.0, name, ": invalid learning rate: lr = ", o.lr(), " (must be >= 0)");
  EMBER_CHECK(o.eps() >= 0.0, name, ": invalid epsilon value: eps = ", o.eps(), " (must be >= 0)");
  EMBER_CHECK(beta1 >= 0.0 && beta1 < 1.0, name, ": invalid beta parameter at index 0: betas[0] = ", beta1,
              " (must be in [0, 1))");
  EMBER_CHECK(beta2 >= 0.0 && beta2 < 1.0, name, ": invalid beta parameter at index 1: betas[1] = ", beta2,
              " (must be in [0, 1))");
  EMBER_CHECK(o.weight_decay() >= 0.0, name, ": invalid weight_decay value: weight_decay = ", o.weight_decay(),
              " (must be >= 0)");
}

template <class O>
StateValueMap adam_state_dict(const O& o) {
  const auto [beta1, beta2] = o.betas();
  return {{"lr", o.lr()},           {"betas", std::vector<double>{beta1, beta2}},
          {"eps", o.eps()},         {"weight_decay", o.weight_decay()},
          {"amsgrad", o.amsgrad()}, {"maximize", o.maximize()}};
}

template <class O>
O adam_options_from(const StateValueMap& state, const char* name) {
  StateReader r(state, ::ember::detail::str_cat(name, " options"));
  O o(r.number("lr"));
  const std::vector<double> betas = r.numbers("betas", 2);
  o.betas({betas[0], betas[1]})
      .eps(r.number("eps"))
      .weight_decay(r.number("weight_decay"))
      .amsgrad(r.boolean("amsgrad"))
      .maximize(r.boolean("maximize"));
  r.finish("lr, betas, eps, weight_decay, amsgrad, maximize and initial_lr");
  return o;
}

}  // namespace

StateValueMap AdamOptions::state_dict() const { return adam_state_dict(*this); }
void AdamOptions::load_state_dict(const StateValueMap& state) { *this = adam_options_from<AdamOptions>(state, "Adam"); }
StateValueMap AdamWOptions::state_dict() const { return adam_state_dict(*this); }
void AdamWOptions::load_state_dict(const StateValueMap& state) {
  *this = adam_options_from<AdamWOptions>(state, "AdamW");
}

std::map<std::string, Tensor> AdamParamState::state_dict() const {
  std::map<std::string, Tensor> out;
  out.emplace("step", full({}, static_cast<double>(step), kFloat64));
  if (exp_avg.defined()) out.emplace("exp_avg", exp_avg);
  if (exp_avg_sq.defined()) out.emplace("exp_avg_sq", exp_avg_sq);
  if (max_exp_avg_sq.defined()) out.emplace("max_exp_avg_sq", max_exp_avg_sq);
  return out;
}

void AdamParamState::load_state_dict(const std::map<std::string, Tensor>& state, const Tensor& param) {
  detail::ParamStateReader r(state, param);
  const int64_t s = r.step("step");
  Tensor m = r.like_param("exp_avg", true);
  Tensor v = r.like_param("exp_avg_sq", true);
  Tensor v_max = r.like_param("max_exp_avg_sq", false);
  r.finish("step, exp_avg, exp_avg_sq and max_exp_avg_sq");
  step = s;
  exp_avg = m;
  exp_avg_sq = v;
  max_exp_avg_sq = v_max;
}

AdamOptions::AdamOptions(double lr) : lr_(lr) {}
void AdamOptions::validate() const { validate_adam_options("Adam", *this); }

AdamWOptions::AdamWOptions(double lr) : lr_(lr) {}
void AdamWOptions::validate() const { validate_adam_options("AdamW", *this); }

std::unique_ptr<OptimizerParamState> AdamParamState::clone() const {
  auto copy = std::make_unique<AdamParamState>();
  copy->step = step;
  if (exp_avg.defined()) copy->exp_avg = exp_avg.detach().clone();
  if (exp_avg_sq.defined()) copy->exp_avg_sq = exp_avg_sq.detach().clone();
  if (max_exp_avg_sq.defined()) copy->max_exp_avg_sq = max_exp_avg_sq.detach().clone();
  return copy;
}

namespace detail {

std::unique_ptr<OptimizerParamState> AdamBase::make_param_state() const { return std::make_unique<AdamParamState>(); }

Tensor AdamBase::step(LossClosure closure) {
  Tensor loss;
  if (closure) {
    EnableGradGuard grad_on;
    loss = closure();
  }
  NoGradGuard no_grad;
  std::vector<AdamHyper> hypers;
  hypers.reserve(param_groups_.size());
  std::vector<AdamParamRef> refs;
  std::vector<AdamParamState*> stepped;
  detail::ContiguousParams contiguous;
  for (size_t gi = 0; gi < param_groups_.size(); ++gi) {
    const AdamHyper h = group_hyper(gi);
    hypers.push_back(h);
    const std::vector<Tensor>& params = param_groups_[gi].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor& p = params[i];
      const Tensor g = p.grad();
      if (!g.defined()) continue;
      AdamParamRef r;
      r.grad = checked_grad(p, g, gi, i);
      r.param = contiguous(p);
      r.group = static_cast<int>(gi);
      AdamParamState& st = param_state<AdamParamState>(p);
      match_state(st.exp_avg, p, "exp_avg");  // zeros on the first step
      match_state(st.exp_avg_sq, p, "exp_avg_sq");
      if (h.amsgrad) match_state(st.max_exp_avg_sq, p, "max_exp_avg_sq");
      r.exp_avg = st.exp_avg;
      r.exp_avg_sq = st.exp_avg_sq;
      r.max_exp_avg_sq = st.max_exp_avg_sq;
      r.step = st.step + 1;  // committed once the update has run
      stepped.push_back(&st);
      refs.push_back(std::move(r));
    }
  }
  fused_adam_(refs, hypers);
  for (AdamParamState* st : stepped) ++st->step;
  contiguous.write_back();
  return loss;
}

}  // namespace detail

namespace {
template <class O>
AdamHyper hyper_of(const O& o, bool decoupled) {
  o.validate();
  const auto [beta1, beta2] = o.betas();
  return {o.lr(), beta1, beta2, o.eps(), o.weight_decay(), o.amsgrad(), o.maximize(), decoupled};
}
}  // namespace

Adam::Adam(std::vector<Tensor> params, const AdamOptions& defaults)
    : Adam(single_group("Adam", std::move(params)), defaults) {}

Adam::Adam(std::vector<OptimizerParamGroup> param_groups, const AdamOptions& defaults)
    : AdamBase("Adam", std::move(param_groups), defaults.clone()) {}

AdamHyper Adam::group_hyper(size_t index) { return hyper_of(group_options<AdamOptions>(index), false); }

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& defaults)
    : AdamW(single_group("AdamW", std::move(params)), defaults) {}

AdamW::AdamW(std::vector<OptimizerParamGroup> param_groups, const AdamWOptions& defaults)
    : AdamBase("AdamW", std::move(param_groups), defaults.clone()) {}

AdamHyper AdamW::group_hyper(size_t index) { return hyper_of(group_options<AdamWOptions>(index), true); }

}  // namespace ember::optim
