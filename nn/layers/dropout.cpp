// nn::Dropout: the probability check, forward through functional::dropout, printing.
#include "nn/layers/dropout.h"

#include <ostream>

#include "nn/functional/dropout.h"
#include "nn/layers/repr.h"

namespace ember::nn {

DropoutImpl::DropoutImpl(const DropoutOptions& options_) : options(options_) {
  EMBER_CHECK(options.p() >= 0.0 && options.p() <= 1.0, "Dropout: dropout probability has to be between 0 and 1, but got ",
              options.p());
}

Tensor DropoutImpl::forward(const Tensor& input) {
  return functional::dropout(
      input, functional::DropoutFuncOptions().p(options.p()).training(is_training()).inplace(options.inplace()));
}

void DropoutImpl::pretty_print(std::ostream& os) const {
  os << "Dropout(p=" << detail::python_float(options.p()) << ", inplace=" << detail::python_bool(options.inplace())
     << ")";
}

}  // namespace ember::nn
