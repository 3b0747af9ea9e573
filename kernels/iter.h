// Building a StridedIter from tensors: broadcasting, dim ordering and coalescing.
#pragma once

#include <initializer_list>

#include "kernels/shared/strided_iter.h"
#include "runtime/tensor.h"

namespace ember {

// The broadcast shape of a and b, or an ember::Error naming `op` and both shapes.
DimVector broadcast_shapes(const char* op, IntArrayRef a, IntArrayRef b);
DimVector broadcast_shapes(const char* op, std::initializer_list<IntArrayRef> shapes);

// `out` (operand 0) must already have the broadcast shape; every input must broadcast to it.
// Memory of `out` must not overlap itself (an expanded output is an error naming `op`).
StridedIter make_iter(const char* op, const Tensor& out, std::initializer_list<const Tensor*> inputs);

}  // namespace ember
