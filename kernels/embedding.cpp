// embedding: index_select of rows forward, index_add of the gradient rows backward (padding_idx excluded).
#include "kernels/embedding.h"

#include <string>

#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

struct EmbeddingBackward final : Node {
  SavedVariable indices;  // flattened, int64
  int64_t num_weights = 0;
  std::optional<int64_t> padding_idx;
  std::string name() const override { return "EmbeddingBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor& g = grads[0];
    const Tensor idx = indices.unpack(this);
    const int64_t dim = g.size(-1);
    Tensor gw = zeros({num_weights, dim}, g.options());
    gw.index_add_(0, idx, g.reshape({idx.numel(), dim}));
    if (padding_idx) gw.select(0, *padding_idx).zero_();
    return {gw};
  }
  void release_variables() override { indices.reset(); }
};

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& indices, std::optional<int64_t> padding_idx) {
  EMBER_CHECK(weight.defined() && indices.defined(), "embedding: got an undefined tensor");
  EMBER_CHECK(weight.dim() == 2, "embedding: expected a weight of shape [num_embeddings, embedding_dim], got shape ",
              weight.sizes());
  EMBER_CHECK(indices.dtype() == kInt64, "embedding: expected indices of dtype int64, got ", indices.dtype(),
              " (shape ", indices.sizes(), ")");
  EMBER_CHECK(weight.device() == indices.device(), "embedding: expected weight and indices on the same device, got ",
              weight.device(), " and ", indices.device());
  const int64_t num = weight.size(0), dim = weight.size(1);
  if (padding_idx) {
    EMBER_CHECK(*padding_idx >= -num && *padding_idx < num, "embedding: padding_idx ", *padding_idx,
                " is out of range for ", num, " embeddings");
    if (*padding_idx < 0) padding_idx = *padding_idx + num;
  }
  Tensor flat;
  Tensor rows;
  {
    NoGradGuard no_grad;
    flat = indices.reshape({indices.numel()}).contiguous();
    if (flat.is_cpu()) {
      // The message names the embedding and the bad index (index_select would name itself).
      const int64_t* p = flat.data_ptr<int64_t>();
      for (int64_t i = 0; i < flat.numel(); ++i)
        EMBER_CHECK(p[i] >= 0 && p[i] < num, "embedding: index ", p[i], " is out of range for a table of ", num,
                    " embeddings (shape ", weight.sizes(), ")");
    }
    rows = index_select(weight, 0, flat);
  }
  DimVector shape(indices.sizes());
  shape.push_back(dim);
  Tensor out = rows.view(shape);
  if (autograd::needs_grad(weight)) {
    auto node = std::make_shared<EmbeddingBackward>();
    node->indices = SavedVariable(flat);
    node->num_weights = num;
    node->padding_idx = padding_idx;
    autograd::record(node, {&out}, {&weight});
  }
  return out;
}

}  // namespace ember
