// IndexIter: the loop nest of gather/scatter-like ops (index_select, gather, scatter_add, index_add,
// index_fill_, one_hot), walked by the CPU loops and the CUDA kernels alike.
#pragma once

#include <cstdint>

#include "runtime/macros.h"

namespace ember {

// Which op launched an index kernel (reported by the deferred CUDA range check, Note [CUDA index errors]).
enum class IndexOpKind : int32_t { IndexSelect = 1, Gather, ScatterAdd, IndexAdd, IndexFill, OneHot };

inline const char* index_op_name(IndexOpKind k) {
  switch (k) {
    case IndexOpKind::IndexSelect: return "index_select";
    case IndexOpKind::Gather: return "gather";
    case IndexOpKind::ScatterAdd: return "scatter_add";
    case IndexOpKind::IndexAdd: return "index_add";
    case IndexOpKind::IndexFill: return "index_fill_";
    case IndexOpKind::OneHot: return "one_hot";
  }
  return "index op";
}

// Note [IndexIter]
// Every op of the family is "for each position p of an iteration shape: touch operand 0 at
// p (with the indexed dim replaced by index[p]) and operand 2 at p":
//   gather-like (index_select, gather):  dense[p] = self[p / dim := index[p]]
//   scatter-like (index_add, scatter_add): self[p / dim := index[p]] += alpha * dense[p]
//   fill-like (index_fill_, one_hot):      self[p / dim := index[p]] = value
// index_select and index_add see their 1-D index as a view over the iteration shape with stride 0
// outside the indexed dim. The indexed dim is kept apart from the other ("rest") dims: rest dims
// are coalesced like an element-wise loop, and the CPU scatter loops parallelise over rest positions
// only, so two threads never add into the same element (indices may repeat along the indexed dim).
struct IndexIter {
  static constexpr int kMaxDims = 16;
  static constexpr int kOperands = 3;  // 0: indexed tensor, 1: index, 2: dense side (absent for fills)

  int ndim = 0;  // rest dims, innermost first, coalesced
  int64_t shape[kMaxDims] = {};
  int64_t strides[kOperands][kMaxDims] = {};  // elements of each operand's own dtype
  int64_t rest_numel = 1;
  int64_t extent = 1;                   // iteration extent along the indexed dim
  int64_t dim_strides[kOperands] = {};  // strides along it (operand 0's is 0: it moves by index values)
  int64_t self_size = 1;                // valid index values are [0, self_size)
  int64_t self_stride = 0;              // operand 0's step per index value
  int64_t numel = 0;                    // rest_numel * extent
  char* data[kOperands] = {};
  // For CUDA: consecutive threads step along the indexed dim (it is the dense side's fastest dim).
  bool dim_innermost = false;

  // Element offsets of rest position r for every operand.
  EMBER_HD void rest_offsets(int64_t r, int64_t* off) const {
    off[0] = off[1] = off[2] = 0;
    for (int d = 0; d < ndim; ++d) {
      const int64_t i = r % shape[d];
      r /= shape[d];
      off[0] += i * strides[0][d];
      off[1] += i * strides[1][d];
      off[2] += i * strides[2][d];
    }
  }
};

}  // namespace ember
