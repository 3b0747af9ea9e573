// The dropout op: zero elements with probability p, scale the rest by 1 / (1 - p), backward through the mask.
#pragma once

#include "kernels/ops.h"

namespace ember {

// training and 0 < p < 1: out = x * mask / (1 - p) with mask ~ Bernoulli(1 - p) drawn on x's device
// (the device generator, so manual_seed reproduces it); the backward multiplies by the same scaled mask.
// p == 0 or !training: returns x itself. p == 1: zeros (gradient zero). p outside [0, 1]: ember::Error.
Tensor dropout(const Tensor& x, double p, bool training = true);
// In place on x (through mul_, so autograd records it as an in-place multiply); returns x.
Tensor& dropout_(Tensor& x, double p, bool training = true);

}  // namespace ember
