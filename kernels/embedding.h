// The embedding lookup op: rows of a table gathered by int64 indices, with a scatter-add backward.
#pragma once

#include <optional>

#include "kernels/ops.h"

namespace ember {

// weight [num_embeddings, dim], indices int64 of any shape -> [*indices.shape, dim] (rows of weight).
// The gradient of weight accumulates the output gradient's rows into the indexed rows (repeated
// indices add up); the row `padding_idx` (negative counts from the end) never receives a gradient.
// Out-of-range indices are an ember::Error on the CPU naming the index and the table size.
Tensor embedding(const Tensor& weight, const Tensor& indices, std::optional<int64_t> padding_idx = std::nullopt);

}  // namespace ember
