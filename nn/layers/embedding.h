// nn::Embedding: a lookup table of num_embeddings rows of embedding_dim, initialised N(0, 1).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>

#include "nn/cloneable.h"
#include "nn/holder.h"
#include "nn/options.h"

namespace ember::nn {

struct EmbeddingOptions {
  EmbeddingOptions(int64_t num_embeddings, int64_t embedding_dim)
      : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
  EMBER_ARG(int64_t, num_embeddings);
  EMBER_ARG(int64_t, embedding_dim);
  // The row that stays zero and receives no gradient (negative counts from the end).
  EMBER_ARG(std::optional<int64_t>, padding_idx) = std::nullopt;
};

class EmbeddingImpl : public Cloneable<EmbeddingImpl> {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim);
  explicit EmbeddingImpl(const EmbeddingOptions& options);

  void reset() override;
  // weight ~ N(0, 1), the padding row zeroed.
  void reset_parameters();
  // int64 indices [*] -> [*, embedding_dim].
  Tensor forward(const Tensor& indices);
  // Embedding(10, 3) or Embedding(10, 3, padding_idx=0)
  void pretty_print(std::ostream& os) const override;

  EmbeddingOptions options;
  Tensor weight;  // [num_embeddings, embedding_dim]
};
EMBER_MODULE(Embedding);

}  // namespace ember::nn
