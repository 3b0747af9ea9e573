// nn::Flatten: forward through Tensor::flatten and PyTorch's repr.
#include "nn/layers/flatten.h"

#include <ostream>

#include "kernels/ops.h"

namespace ember::nn {

FlattenImpl::FlattenImpl(const FlattenOptions& options_) : options(options_) {}
FlattenImpl::FlattenImpl(int64_t start_dim, int64_t end_dim)
    : FlattenImpl(FlattenOptions().start_dim(start_dim).end_dim(end_dim)) {}

Tensor FlattenImpl::forward(const Tensor& input) {
  EMBER_CHECK(input.defined(), "Flatten: got an undefined input");
  return input.flatten(options.start_dim(), options.end_dim());
}

void FlattenImpl::pretty_print(std::ostream& os) const {
  os << "Flatten(start_dim=" << options.start_dim() << ", end_dim=" << options.end_dim() << ")";
}

}  // namespace ember::nn
