// CPU kernels of the indexing ops over an IndexIter (kernels/shared/index_ops.h).
#pragma once

#include <optional>

#include "kernels/shared/index_ops.h"
#include "runtime/tensor.h"

namespace ember::cpu {

// The first (row-major) element of `index` outside [0, size), if any. index: a CPU int64 or int32
// tensor of any strides (`op` names the caller in a dtype error).
std::optional<int64_t> first_index_out_of_range(const char* op, const Tensor& index, int64_t size);

// Indices are in range (first_index_out_of_range found none). dtype: the element type of operands 0 and 2.
void index_gather(const IndexIter& it, DType dtype, DType index_dtype);
void index_scatter_add(const IndexIter& it, DType dtype, DType index_dtype, const Scalar& alpha);
void index_scatter_fill(const IndexIter& it, DType dtype, DType index_dtype, const Scalar& value);

}  // namespace ember::cpu
