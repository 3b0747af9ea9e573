// nn::Linear: registration, PyTorch's initialisation, forward through functional::linear, printing.
#include "nn/layers/linear.h"

#include <cmath>
#include <ostream>

#include "nn/functional/linear.h"
#include "nn/init.h"
#include "nn/layers/repr.h"

namespace ember::nn {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool bias)
    : LinearImpl(LinearOptions(in_features, out_features).bias(bias)) {}

LinearImpl::LinearImpl(const LinearOptions& options_) : options(options_) {
  EMBER_CHECK(options.in_features() >= 0 && options.out_features() >= 0,
              "Linear: in_features and out_features must be non-negative, got ", options.in_features(), " and ",
              options.out_features());
  reset();
}

void LinearImpl::reset() {
  {
    NoGradGuard no_grad;
    weight = register_parameter("weight", empty({options.out_features(), options.in_features()}));
    bias = options.bias() ? register_parameter("bias", empty({options.out_features()})) : Tensor();
  }
  reset_parameters();
}

void LinearImpl::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const auto [fan_in, fan_out] = init::_calculate_fan_in_and_fan_out(weight);
    (void)fan_out;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

Tensor LinearImpl::forward(const Tensor& input) {
  EMBER_CHECK(input.defined() && input.dim() >= 1 && input.size(-1) == options.in_features(),
              "Linear: expected an input of shape [*, ", options.in_features(), "] (last dim = in_features), got shape ",
              input.defined() ? input.shape_str() : std::string("undefined"));
  return functional::linear(input, weight, bias);
}

void LinearImpl::pretty_print(std::ostream& os) const {
  os << "Linear(in_features=" << options.in_features() << ", out_features=" << options.out_features()
     << ", bias=" << detail::python_bool(options.bias()) << ")";
}

}  // namespace ember::nn
