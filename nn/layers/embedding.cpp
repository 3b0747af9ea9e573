// nn::Embedding: registration, N(0, 1) initialisation with a zero padding row, forward and printing.
#include "nn/layers/embedding.h"

#include <ostream>

#include "nn/functional/embedding.h"
#include "nn/init.h"

namespace ember::nn {

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim)
    : EmbeddingImpl(EmbeddingOptions(num_embeddings, embedding_dim)) {}

EmbeddingImpl::EmbeddingImpl(const EmbeddingOptions& options_) : options(options_) {
  const int64_t n = options.num_embeddings();
  EMBER_CHECK(n >= 0 && options.embedding_dim() >= 0,
              "Embedding: num_embeddings and embedding_dim must be non-negative, got ", n, " and ",
              options.embedding_dim());
  if (options.padding_idx()) {
    const int64_t p = *options.padding_idx();
    EMBER_CHECK(p >= -n && p < n, "Embedding: padding_idx must be within num_embeddings (", n, "), got ", p);
    if (p < 0) options.padding_idx(p + n);  // as PyTorch, stored non-negative
  }
  reset();
}

void EmbeddingImpl::reset() {
  {
    NoGradGuard no_grad;
    weight = register_parameter("weight", empty({options.num_embeddings(), options.embedding_dim()}));
  }
  reset_parameters();
}

void EmbeddingImpl::reset_parameters() {
  init::normal_(weight);
  if (options.padding_idx()) {
    NoGradGuard no_grad;
    weight.select(0, *options.padding_idx()).fill_(0);
  }
}

Tensor EmbeddingImpl::forward(const Tensor& indices) {
  return functional::embedding(indices, weight, functional::EmbeddingFuncOptions().padding_idx(options.padding_idx()));
}

void EmbeddingImpl::pretty_print(std::ostream& os) const {
  os << "Embedding(" << options.num_embeddings() << ", " << options.embedding_dim();
  if (options.padding_idx()) os << ", padding_idx=" << *options.padding_idx();
  os << ")";
}

}  // namespace ember::nn
