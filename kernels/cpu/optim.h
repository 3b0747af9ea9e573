// CPU fused optimizer updates (kernels/cpu/optim.cpp); the checks are done by kernels/optim.cpp.
#pragma once

#include <vector>

#include "kernels/optim.h"

namespace ember::cpu {

// Every entry's tensors are contiguous host tensors of one dtype per entry (Note [Fused optimizer steps]).
void fused_sgd_(const std::vector<SGDParamRef>& params, const std::vector<SGDHyper>& groups);
void fused_adam_(const std::vector<AdamParamRef>& params, const std::vector<AdamHyper>& groups);

}  // namespace ember::cpu
