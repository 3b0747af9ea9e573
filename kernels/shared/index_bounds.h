// Index bounds of the indexing ops: which index values are valid, and where a CUDA kernel goes for an
// invalid one. Host and device compile it, so CPU tests check the arithmetic the kernels run.
#pragma once

#include <cstdint>

#include "runtime/macros.h"

namespace ember {

// Valid index values along a dim of size `size` are [0, size): negative indices do not wrap, and a dim
// of size 0 has no valid index at all.
EMBER_HD inline bool index_in_range(int64_t v, int64_t size) { return v >= 0 && v < size; }

// Note [Clamped indices]
// The position along the indexed dim that an index kernel touches for index value v (Note [CUDA index
// errors]): v when in range, otherwise v clamped into [0, size) so that the access stays in bounds (the
// offence is recorded and the op's result is wrong). A dim of size 0 has no position to clamp to, for a
// negative v as for any other: the result is -1, and callers touch nothing for it.
EMBER_HD inline int64_t clamp_index(int64_t v, int64_t size) {
  if (size <= 0) return -1;
  if (v < 0) return 0;
  return v < size ? v : size - 1;
}

}  // namespace ember
