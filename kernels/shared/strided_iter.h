// StridedIter: the loop nest of an element-wise op over broadcast, strided operands (CPU and CUDA).
#pragma once

#include <cstdint>

#include "runtime/macros.h"

namespace ember {

// Dims are stored innermost first and coalesced: a contiguous op of any rank has ndim == 1.
// Operand 0 is the output; strides are in elements of each operand's own dtype.
struct StridedIter {
  static constexpr int kMaxDims = 16;
  static constexpr int kMaxOperands = 4;

  int ndim = 0;
  int noperands = 0;
  int64_t numel = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxOperands][kMaxDims] = {};
  char* data[kMaxOperands] = {};
  int elem_size[kMaxOperands] = {};

  // Every operand walks memory with stride 1 in a single dim.
  EMBER_HD bool is_contiguous() const {
    if (ndim > 1) return false;
    if (ndim == 0) return true;
    for (int k = 0; k < noperands; ++k)
      if (strides[k][0] != 1) return false;
    return true;
  }
};

}  // namespace ember
