// Activation layers: forward through the element-wise ops (whose fused backward kernels they reuse), printing.
#include "nn/layers/activation.h"

#include <ostream>

#include "kernels/ops.h"

namespace ember::nn {

Tensor ReLUImpl::forward(const Tensor& input) {
  if (options.inplace()) {
    Tensor t = input;
    return relu_(t);
  }
  return relu(input);
}

void ReLUImpl::pretty_print(std::ostream& os) const { os << (options.inplace() ? "ReLU(inplace=True)" : "ReLU()"); }

GELUImpl::GELUImpl(const GELUOptions& options_) : options(options_) {
  EMBER_CHECK(options.approximate() == "none" || options.approximate() == "tanh",
              "GELU: approximate must be 'none' or 'tanh', got '", options.approximate(), "'");
}

Tensor GELUImpl::forward(const Tensor& input) { return gelu(input, options.approximate()); }

void GELUImpl::pretty_print(std::ostream& os) const { os << "GELU(approximate='" << options.approximate() << "')"; }

Tensor TanhImpl::forward(const Tensor& input) { return tanh(input); }
void TanhImpl::pretty_print(std::ostream& os) const { os << "Tanh()"; }

Tensor SigmoidImpl::forward(const Tensor& input) { return sigmoid(input); }
void SigmoidImpl::pretty_print(std::ostream& os) const { os << "Sigmoid()"; }

}  // namespace ember::nn
