// nn::Conv2d: registration, PyTorch's initialisation, forward through functional::conv2d, printing.
#include "nn/layers/conv.h"

#include <cmath>
#include <ostream>

#include "nn/functional/conv.h"
#include "nn/layers/repr.h"

namespace ember::nn {

Conv2dImpl::Conv2dImpl(int64_t in_channels, int64_t out_channels, ExpandingArray<2> kernel_size)
    : Conv2dImpl(Conv2dOptions(in_channels, out_channels, kernel_size)) {}

Conv2dImpl::Conv2dImpl(const Conv2dOptions& options_) : options(options_) {
  const int64_t in = options.in_channels(), out = options.out_channels(), g = options.groups();
  EMBER_CHECK(in > 0 && out > 0, "Conv2d: in_channels and out_channels must be positive, got ", in, " and ", out);
  EMBER_CHECK(g > 0, "Conv2d: groups must be positive, got ", g);
  EMBER_CHECK(in % g == 0, "Conv2d: in_channels (", in, ") must be divisible by groups (", g, ")");
  EMBER_CHECK(out % g == 0, "Conv2d: out_channels (", out, ") must be divisible by groups (", g, ")");
  const auto& k = options.kernel_size();
  const auto& s = options.stride();
  const auto& p = options.padding();
  const auto& d = options.dilation();
  EMBER_CHECK(k[0] > 0 && k[1] > 0, "Conv2d: kernel_size must be positive, got ", k.tuple_str());
  EMBER_CHECK(s[0] > 0 && s[1] > 0, "Conv2d: stride must be positive, got ", s.tuple_str());
  EMBER_CHECK(p[0] >= 0 && p[1] >= 0, "Conv2d: padding must be non-negative, got ", p.tuple_str());
  EMBER_CHECK(d[0] > 0 && d[1] > 0, "Conv2d: dilation must be positive, got ", d.tuple_str());
  reset();
}

void Conv2dImpl::reset() {
  {
    NoGradGuard no_grad;
    const auto& k = options.kernel_size();
    weight = register_parameter("weight",
                                empty({options.out_channels(), options.in_channels() / options.groups(), k[0], k[1]}));
    bias = options.bias() ? register_parameter("bias", empty({options.out_channels()})) : Tensor();
  }
  reset_parameters();
}

void Conv2dImpl::reset_parameters() {
  NoGradGuard no_grad;
  // kaiming_uniform_(a = sqrt(5), fan_in, leaky_relu): gain = sqrt(2 / (1 + a^2)) = sqrt(1/3) and
  // bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in), the same bound as the bias's.
  const int64_t fan_in = weight.size(1) * weight.size(2) * weight.size(3);
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  weight.uniform_(-bound, bound);
  if (bias.defined()) bias.uniform_(-bound, bound);
}

Tensor Conv2dImpl::forward(const Tensor& input) {
  EMBER_CHECK(input.defined() && (input.dim() == 3 || input.dim() == 4),
              "Conv2d: expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got ",
              input.defined() ? "shape " + input.shape_str() : std::string("an undefined tensor"));
  EMBER_CHECK(input.size(-3) == options.in_channels(), "Conv2d: expected input with ", options.in_channels(),
              " channels (in_channels) but got input of shape ", input.sizes());
  return functional::conv2d(input, weight, bias, options.stride(), options.padding(), options.dilation(),
                            options.groups());
}

void Conv2dImpl::pretty_print(std::ostream& os) const {
  os << "Conv2d(" << options.in_channels() << ", " << options.out_channels()
     << ", kernel_size=" << options.kernel_size().tuple_str() << ", stride=" << options.stride().tuple_str();
  if (options.padding() != ExpandingArray<2>(0)) os << ", padding=" << options.padding().tuple_str();
  if (options.dilation() != ExpandingArray<2>(1)) os << ", dilation=" << options.dilation().tuple_str();
  if (options.groups() != 1) os << ", groups=" << options.groups();
  if (!options.bias()) os << ", bias=" << detail::python_bool(false);
  os << ")";
}

}  // namespace ember::nn
