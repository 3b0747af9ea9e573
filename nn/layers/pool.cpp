// nn::MaxPool2d, nn::AvgPool2d, nn::AdaptiveAvgPool2d: forward through nn::functional and PyTorch's reprs.
#include "nn/layers/pool.h"

#include <ostream>
#include <string>

#include "nn/functional/conv.h"
#include "nn/layers/repr.h"

namespace ember::nn {

namespace {

// The layers name themselves in rank errors; the ops check everything else.
void check_rank(const char* layer, const Tensor& input) {
  EMBER_CHECK(input.defined() && (input.dim() == 3 || input.dim() == 4), layer,
              ": expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got ",
              input.defined() ? "shape " + input.shape_str() : std::string("an undefined tensor"));
}

}  // namespace

MaxPool2dImpl::MaxPool2dImpl(const MaxPool2dOptions& options_) : options(options_) {}

Tensor MaxPool2dImpl::forward(const Tensor& input) {
  check_rank("MaxPool2d", input);
  return ember::max_pool2d(input, options.kernel_size(), options.stride(), options.padding(), options.dilation(),
                           options.ceil_mode());
}

std::tuple<Tensor, Tensor> MaxPool2dImpl::forward_with_indices(const Tensor& input) {
  check_rank("MaxPool2d", input);
  return ember::max_pool2d_with_indices(input, options.kernel_size(), options.stride(), options.padding(),
                                        options.dilation(), options.ceil_mode());
}

void MaxPool2dImpl::pretty_print(std::ostream& os) const {
  os << "MaxPool2d(kernel_size=" << options.kernel_size().repr() << ", stride=" << options.stride().repr()
     << ", padding=" << options.padding().repr() << ", dilation=" << options.dilation().repr()
     << ", ceil_mode=" << detail::python_bool(options.ceil_mode()) << ")";
}

AvgPool2dImpl::AvgPool2dImpl(const AvgPool2dOptions& options_) : options(options_) {}

Tensor AvgPool2dImpl::forward(const Tensor& input) {
  check_rank("AvgPool2d", input);
  return ember::avg_pool2d(input, options.kernel_size(), options.stride(), options.padding(), options.ceil_mode(),
                           options.count_include_pad(), options.divisor_override());
}

void AvgPool2dImpl::pretty_print(std::ostream& os) const {
  os << "AvgPool2d(kernel_size=" << options.kernel_size().repr() << ", stride=" << options.stride().repr()
     << ", padding=" << options.padding().repr() << ")";
}

AdaptiveAvgPool2dImpl::AdaptiveAvgPool2dImpl(const AdaptiveAvgPool2dOptions& options_) : options(options_) {}

Tensor AdaptiveAvgPool2dImpl::forward(const Tensor& input) {
  check_rank("AdaptiveAvgPool2d", input);
  return ember::adaptive_avg_pool2d(input, options.output_size());
}

void AdaptiveAvgPool2dImpl::pretty_print(std::ostream& os) const {
  os << "AdaptiveAvgPool2d(output_size=" << options.output_size().repr() << ")";
}

}  // namespace ember::nn
