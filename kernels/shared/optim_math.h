// The per-element update rules of SGD and Adam/AdamW, shared by the CPU loops and the CUDA kernel.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/shared/elementwise_ops.h"
#include "runtime/macros.h"

namespace ember::optim_math {

// Note [Optimizer update arithmetic]
// The updates follow PyTorch 1.13's single-tensor implementations (torch/optim/sgd.py,
// adam.py, adamw.py) operation by operation, in the same order, so that float32 results agree
// with PyTorch to float32 rounding (bit for bit where neither side contracts a multiply-add).
// Every tensor op PyTorch runs becomes one rounded operation in the compute type C (float for
// float32, Half and BFloat16, double for float64), and every Python float hyper-parameter (lr,
// 1 - beta1, lr / bias_correction1, ...) is computed in double on the host and rounded to C once,
// as PyTorch does when it passes a Python scalar to a float tensor op. Derived scalars therefore
// live in the Hyper structs below instead of being recomputed per element.
//
// For Half/BFloat16 parameters the intermediates that PyTorch would round to the 16-bit type
// (d_p, denom) stay in float, as PyTorch's fused kernels do; state is stored in the parameter's
// dtype either way.

// Scalars of one SGD parameter group, rounded to the compute type.
template <class C>
struct SGDScalars {
  C neg_lr;               // -lr: param.add_(d_p, alpha=-lr)
  C momentum;             // buf.mul_(momentum); nesterov: d_p.add(buf, alpha=momentum)
  C one_minus_dampening;  // buf.add_(d_p, alpha=1 - dampening)
  C weight_decay;         // d_p.add(param, alpha=weight_decay)
};

// Which parts of the SGD rule run (each is a branch PyTorch takes on the hyper-parameters, not
// arithmetic with zeros: 0 * inf is NaN, so weight_decay = 0 must skip the term entirely).
struct SGDFlags {
  bool weight_decay;  // weight_decay != 0
  bool momentum;      // momentum != 0
  bool nesterov;
  bool maximize;
  bool first_step;  // no momentum buffer yet: buf = d_p
};

// One element of SGD. `buf` is read only when momentum is on and this is not the first step.
template <class C, class T>
EMBER_HD EMBER_ALWAYS_INLINE void sgd_element(T& param, T grad, T& buf, const SGDScalars<C>& s, bool weight_decay,
                                              bool momentum, bool nesterov, bool maximize, bool first_step) {
  const C p = ew::load<C>(param);
  C d_p = ew::load<C>(grad);
  if (maximize) d_p = -d_p;
  if (weight_decay) d_p = d_p + s.weight_decay * p;
  if (momentum) {
    C b;
    if (first_step) {
      b = d_p;  // torch.clone(d_p).detach()
    } else {
      b = ew::load<C>(buf) * s.momentum;
      b = b + s.one_minus_dampening * d_p;
    }
    buf = ew::store<T>(b);
    b = ew::load<C>(buf);  // later uses see the stored (possibly 16-bit) value, as PyTorch's tensor
    d_p = nesterov ? d_p + s.momentum * b : b;
  }
  param = ew::store<T>(p + s.neg_lr * d_p);
}

// Scalars of one Adam/AdamW parameter group, rounded to the compute type.
template <class C>
struct AdamScalars {
  C beta1, one_minus_beta1;  // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
  C beta2, one_minus_beta2;  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
  C eps;
  C weight_decay;  // Adam: grad = grad.add(param, alpha=weight_decay)
  C decay_factor;  // AdamW: param.mul_(1 - lr * weight_decay)
};

// Per-parameter scalars (each parameter has its own step count).
template <class C>
struct AdamStepScalars {
  C neg_step_size;          // -(lr / bias_correction1)
  C bias_correction2_sqrt;  // sqrt(1 - beta2 ** step)
};

// ---- host-side scalar preparation (double arithmetic, rounded to C once) -------------------------

template <class C>
SGDScalars<C> sgd_scalars(double lr, double momentum, double dampening, double weight_decay) {
  return {static_cast<C>(-lr), static_cast<C>(momentum), static_cast<C>(1.0 - dampening), static_cast<C>(weight_decay)};
}

template <class C>
AdamScalars<C> adam_scalars(double lr, double beta1, double beta2, double eps, double weight_decay) {
  return {static_cast<C>(beta1),
          static_cast<C>(1.0 - beta1),
          static_cast<C>(beta2),
          static_cast<C>(1.0 - beta2),
          static_cast<C>(eps),
          static_cast<C>(weight_decay),
          static_cast<C>(1.0 - lr * weight_decay)};
}

// PyTorch 1.13: bias_correction1 = 1 - beta1 ** step; step_size = lr / bias_correction1;
// bias_correction2_sqrt = sqrt(1 - beta2 ** step).
template <class C>
AdamStepScalars<C> adam_step_scalars(double lr, double beta1, double beta2, int64_t step) {
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  return {static_cast<C>(-(lr / bias_correction1)), static_cast<C>(std::sqrt(bias_correction2))};
}

// torch.maximum: NaN wins.
template <class C>
EMBER_HD EMBER_ALWAYS_INLINE C nan_maximum(C a, C b) {
  if (a != a) return a;
  if (b != b) return b;
  return a > b ? a : b;
}

// One element of Adam (coupled L2 weight decay) or AdamW (decoupled decay before the update).
// `max_exp_avg_sq` is touched only with amsgrad.
template <class C, class T>
EMBER_HD EMBER_ALWAYS_INLINE void adam_element(T& param, T grad, T& exp_avg, T& exp_avg_sq, T& max_exp_avg_sq,
                                               const AdamScalars<C>& s, const AdamStepScalars<C>& t,
                                               bool l2_weight_decay, bool decoupled_weight_decay, bool amsgrad,
                                               bool maximize) {
  C p = ew::load<C>(param);
  C g = ew::load<C>(grad);
  if (maximize) g = -g;
  if (decoupled_weight_decay) p = ew::load<C>(ew::store<T>(p * s.decay_factor));  // param.mul_ rounds
  if (l2_weight_decay) g = g + s.weight_decay * p;

  C m = ew::load<C>(exp_avg) * s.beta1;
  m = m + s.one_minus_beta1 * g;
  const T m_stored = ew::store<T>(m);
  exp_avg = m_stored;
  m = ew::load<C>(m_stored);

  C v = ew::load<C>(exp_avg_sq) * s.beta2;
  v = v + s.one_minus_beta2 * g * g;  // addcmul: self + value * t1 * t2, left to right
  const T v_stored = ew::store<T>(v);
  exp_avg_sq = v_stored;
  v = ew::load<C>(v_stored);

  if (amsgrad) {
    const T vmax = ew::store<T>(nan_maximum(ew::load<C>(max_exp_avg_sq), v));
    max_exp_avg_sq = vmax;
    v = ew::load<C>(vmax);
  }
  using std::sqrt;
  const C denom = sqrt(v) / t.bias_correction2_sqrt + s.eps;
  param = ew::store<T>(p + t.neg_step_size * m / denom);  // addcdiv: self + value * t1 / t2
}

}  // namespace ember::optim_math
