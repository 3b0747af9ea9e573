// Fused optimizer updates: one pass over every parameter (CPU) or a few multi-tensor launches (CUDA).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/tensor.h"

namespace ember {

// Note [Fused optimizer steps]
// The optimizers in nn/optim gather, for one step, every parameter that has a gradient together
// with its state tensors, and hand the whole list to fused_sgd_ / fused_adam_. Each parameter
// names the hyper-parameter group it belongs to, so one call covers all param groups. On the CPU
// each parameter is updated in one vectorisable pass (OpenMP above a grain); on CUDA the
// parameters of one (device, dtype) are updated by one multi-tensor kernel launch (more only
// when there are more tensors or groups than one launch's table holds: kernels/cuda/optim.cu).
// The per-element arithmetic is kernels/shared/optim_math.h, so both backends compute the same
// thing. These are raw kernels: no autograd recording; they bump the versions of everything they
// write. Every tensor of one entry must be contiguous, of the parameter's shape, dtype (floating)
// and device; the optimizers make sure of that (copying non-contiguous parameters around the call).

// One SGD param group (PyTorch's names and defaults).
struct SGDHyper {
  double lr = 0.0;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};

// One parameter of an SGD step. momentum_buffer is needed when the group's momentum != 0; with
// first_step it is written (buf = d_p, PyTorch's first step) without being read.
struct SGDParamRef {
  Tensor param, grad, momentum_buffer;
  bool first_step = false;
  int group = 0;  // index into the hyper list
};

// One Adam/AdamW param group. decoupled_weight_decay: AdamW's param *= 1 - lr * weight_decay;
// otherwise Adam's L2 term grad += weight_decay * param.
struct AdamHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  bool maximize = false;
  bool decoupled_weight_decay = false;
};

// One parameter of an Adam step; `step` is the parameter's step count including this step (>= 1).
// max_exp_avg_sq is needed with amsgrad.
struct AdamParamRef {
  Tensor param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq;
  int64_t step = 1;
  int group = 0;
};

// In-place updates of every entry (see Note [Fused optimizer steps]).
void fused_sgd_(const std::vector<SGDParamRef>& params, const std::vector<SGDHyper>& groups);
void fused_adam_(const std::vector<AdamParamRef>& params, const std::vector<AdamHyper>& groups);

}  // namespace ember
