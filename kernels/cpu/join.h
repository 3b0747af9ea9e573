// CPU kernel of cat/stack: copies each input into its slice of the output.
#pragma once

#include <vector>

#include "runtime/tensor.h"

namespace ember::cpu {

// out (contiguous) <- the inputs laid side by side along `dim`; inputs have out's dtype and shape except
// along `dim` (same rank), and their sizes along `dim` add up to out's.
void cat(const Tensor& out, const std::vector<Tensor>& inputs, int64_t dim);

}  // namespace ember::cpu
