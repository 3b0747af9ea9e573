// nn::Flatten: flattens dims start_dim..end_dim into one (a view when the layout allows).
#pragma once

#include <cstdint>
#include <iosfwd>

#include "nn/cloneable.h"
#include "nn/holder.h"
#include "nn/options.h"

namespace ember::nn {

struct FlattenOptions {
  EMBER_ARG(int64_t, start_dim) = 1;
  EMBER_ARG(int64_t, end_dim) = -1;
};

class FlattenImpl : public Cloneable<FlattenImpl> {
 public:
  explicit FlattenImpl(const FlattenOptions& options = {});
  FlattenImpl(int64_t start_dim, int64_t end_dim = -1);
  void reset() override {}
  Tensor forward(const Tensor& input);
  // Flatten(start_dim=1, end_dim=-1)
  void pretty_print(std::ostream& os) const override;
  FlattenOptions options;
};
EMBER_MODULE(Flatten);

}  // namespace ember::nn
