// optim::SGD: option checks and the step, which hands every parameter to one fused_sgd_ call.
#include "nn/optim/sgd.h"

#include <utility>

#include "kernels/optim.h"
#include "runtime/autograd/grad_mode.h"
#include "runtime/factory.h"

namespace ember::optim {

SGDOptions::SGDOptions(double lr) : lr_(lr) {}

void SGDOptions::validate() const {
  EMBER_CHECK(lr_ >= 0.0, "SGD: invalid learning rate: lr = ", lr_, " (must be >= 0)");
  EMBER_CHECK(momentum_ >= 0.0, "SGD: invalid momentum value: momentum = ", momentum_, " (must be >= 0)");
  EMBER_CHECK(dampening_ >= 0.0, "SGD: invalid dampening value: dampening = ", dampening_, " (must be >= 0)");
  EMBER_CHECK(weight_decay_ >= 0.0, "SGD: invalid weight_decay value: weight_decay = ", weight_decay_,
              " (must be >= 0)");
  EMBER_CHECK(!nesterov_ || (momentum_ > 0.0 && dampening_ == 0.0),
              "SGD: Nesterov momentum requires a momentum and zero dampening (nesterov = true with momentum = ",
              momentum_, ", dampening = ", dampening_, ")");
}

StateValueMap SGDOptions::state_dict() const {
  return {{"lr", lr_},
          {"momentum", momentum_},
          {"dampening", dampening_},
          {"weight_decay", weight_decay_},
          {"nesterov", nesterov_},
          {"maximize", maximize_}};
}

void SGDOptions::load_state_dict(const StateValueMap& state) {
  StateReader r(state, "SGD options");
  SGDOptions o(r.number("lr"));
  o.momentum(r.number("momentum"))
      .dampening(r.number("dampening"))
      .weight_decay(r.number("weight_decay"))
      .nesterov(r.boolean("nesterov"))
      .maximize(r.boolean("maximize"));
  r.finish("lr, momentum, dampening, weight_decay, nesterov, maximize and initial_lr");
  *this = o;
}

std::map<std::string, Tensor> SGDParamState::state_dict() const {
  if (!momentum_buffer.defined()) return {};
  return {{"momentum_buffer", momentum_buffer}};
}

void SGDParamState::load_state_dict(const std::map<std::string, Tensor>& state, const Tensor& param) {
  detail::ParamStateReader r(state, param);
  Tensor buf = r.like_param("momentum_buffer", false);
  r.finish("momentum_buffer");
  momentum_buffer = buf;
}

std::unique_ptr<OptimizerParamState> SGD::make_param_state() const { return std::make_unique<SGDParamState>(); }

std::unique_ptr<OptimizerParamState> SGDParamState::clone() const {
  auto copy = std::make_unique<SGDParamState>();
  if (momentum_buffer.defined()) copy->momentum_buffer = momentum_buffer.detach().clone();
  return copy;
}

SGD::SGD(std::vector<Tensor> params, const SGDOptions& defaults)
    : SGD(single_group("SGD", std::move(params)), defaults) {}

SGD::SGD(std::vector<OptimizerParamGroup> param_groups, const SGDOptions& defaults)
    : Optimizer("SGD", std::move(param_groups), defaults.clone()) {}

Tensor SGD::step(LossClosure closure) {
  Tensor loss;
  if (closure) {
    EnableGradGuard grad_on;
    loss = closure();
  }
  NoGradGuard no_grad;
  std::vector<SGDHyper> hypers;
  hypers.reserve(param_groups_.size());
  std::vector<SGDParamRef> refs;
  detail::ContiguousParams contiguous;
  std::vector<std::pair<SGDParamState*, Tensor>> new_buffers;
  for (size_t gi = 0; gi < param_groups_.size(); ++gi) {
    const SGDOptions& o = group_options<SGDOptions>(gi);
    o.validate();
    hypers.push_back({o.lr(), o.momentum(), o.dampening(), o.weight_decay(), o.nesterov(), o.maximize()});
    const std::vector<Tensor>& params = param_groups_[gi].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor& p = params[i];
      const Tensor g = p.grad();
      if (!g.defined()) continue;
      SGDParamRef r;
      r.grad = checked_grad(p, g, gi, i);
      r.param = contiguous(p);
      r.group = static_cast<int>(gi);
      if (o.momentum() != 0.0) {
        SGDParamState& st = param_state<SGDParamState>(p);
        r.first_step = !st.momentum_buffer.defined();
        if (r.first_step) {
          // Written, not read, by the first step; kept only once the step has run, so that a step
          // that throws half-way leaves no uninitialised buffer behind.
          r.momentum_buffer = empty(p.sizes(), p.options());
          new_buffers.emplace_back(&st, r.momentum_buffer);
        } else {
          match_state(st.momentum_buffer, p, "momentum_buffer");
          r.momentum_buffer = st.momentum_buffer;
        }
      }
      refs.push_back(std::move(r));
    }
  }
  fused_sgd_(refs, hypers);
  for (auto& [st, buf] : new_buffers) st->momentum_buffer = std::move(buf);
  contiguous.write_back();
  return loss;
}

}  // namespace ember::optim
