// CUDA entry points of the fused optimizer updates (kernels/cuda/optim.cu): multi-tensor launches.
#pragma once

#include <vector>

#include "kernels/cuda/entry.h"
#include "kernels/optim.h"

namespace ember::cuda {

// Every entry is a contiguous tensor set on the current device, all of one dtype (kernels/optim.cpp
// splits by device and dtype). Runs on the device's current stream, without host synchronisation.
EMBER_CUDA_ENTRY(void, fused_sgd_, (const std::vector<SGDParamRef>& params, const std::vector<SGDHyper>& groups))
EMBER_CUDA_ENTRY(void, fused_adam_, (const std::vector<AdamParamRef>& params, const std::vector<AdamHyper>& groups))

}  // namespace ember::cuda
