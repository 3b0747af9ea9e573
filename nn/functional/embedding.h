// nn::functional embedding lookups.
#pragma once

#include <optional>

#include "kernels/embedding.h"
#include "nn/options.h"

namespace ember::nn::functional {

struct EmbeddingFuncOptions {
  EMBER_ARG(std::optional<int64_t>, padding_idx) = std::nullopt;
};

// Rows of weight ([num_embeddings, dim]) picked by int64 indices: [*input.shape, dim]. The row
// padding_idx receives no gradient.
inline Tensor embedding(const Tensor& input, const Tensor& weight, const EmbeddingFuncOptions& options = {}) {
  return ::ember::embedding(weight, input, options.padding_idx());
}

}  // namespace ember::nn::functional
