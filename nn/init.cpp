// nn::init: PyTorch's initialisation formulas on top of the in-place random ops.
#include "nn/init.h"

#include <cmath>
#include <utility>

#include "kernels/ops.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::nn::init {

namespace {

int64_t fan_of(const Tensor& t, FanMode mode) {
  const auto [fan_in, fan_out] = _calculate_fan_in_and_fan_out(t);
  return mode == FanMode::FanIn ? fan_in : fan_out;
}

void check_defined(const char* op, const Tensor& t) { EMBER_CHECK(t.defined(), "nn::init::", op, ": got an undefined tensor"); }

}  // namespace

double calculate_gain(Nonlinearity nonlinearity, std::optional<double> param) {
  switch (nonlinearity) {
    case Nonlinearity::Linear:
    case Nonlinearity::Conv1D:
    case Nonlinearity::Conv2D:
    case Nonlinearity::Conv3D:
    case Nonlinearity::ConvTranspose1D:
    case Nonlinearity::ConvTranspose2D:
    case Nonlinearity::ConvTranspose3D:
    case Nonlinearity::Sigmoid: return 1.0;
    case Nonlinearity::Tanh: return 5.0 / 3.0;
    case Nonlinearity::ReLU: return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU: {
      const double slope = param.value_or(0.01);
      return std::sqrt(2.0 / (1.0 + slope * slope));
    }
    case Nonlinearity::SELU: return 3.0 / 4.0;
  }
  EMBER_THROW("nn::init::calculate_gain: unknown nonlinearity ", static_cast<int>(nonlinearity));
}

std::tuple<int64_t, int64_t> _calculate_fan_in_and_fan_out(const Tensor& tensor) {
  check_defined("_calculate_fan_in_and_fan_out", tensor);
  EMBER_CHECK(tensor.dim() >= 2,
              "nn::init: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions (shape ",
              tensor.sizes(), ")");
  int64_t receptive = 1;
  for (int64_t d = 2; d < tensor.dim(); ++d) receptive *= tensor.size(d);
  return {tensor.size(1) * receptive, tensor.size(0) * receptive};
}

Tensor uniform_(Tensor tensor, double a, double b) {
  check_defined("uniform_", tensor);
  NoGradGuard no_grad;
  ember::uniform_(tensor, a, b);
  return tensor;
}

Tensor normal_(Tensor tensor, double mean, double std) {
  check_defined("normal_", tensor);
  NoGradGuard no_grad;
  ember::normal_(tensor, mean, std);
  return tensor;
}

Tensor constant_(Tensor tensor, double value) {
  check_defined("constant_", tensor);
  NoGradGuard no_grad;
  tensor.fill_(value);
  return tensor;
}

Tensor zeros_(Tensor tensor) { return constant_(std::move(tensor), 0.0); }
Tensor ones_(Tensor tensor) { return constant_(std::move(tensor), 1.0); }

Tensor kaiming_uniform_(Tensor tensor, double a, FanMode mode, Nonlinearity nonlinearity) {
  check_defined("kaiming_uniform_", tensor);
  if (tensor.numel() == 0) return tensor;
  const double gain = calculate_gain(nonlinearity, a);
  const double bound = std::sqrt(3.0) * gain / std::sqrt(static_cast<double>(fan_of(tensor, mode)));
  return uniform_(std::move(tensor), -bound, bound);
}

Tensor kaiming_normal_(Tensor tensor, double a, FanMode mode, Nonlinearity nonlinearity) {
  check_defined("kaiming_normal_", tensor);
  if (tensor.numel() == 0) return tensor;
  const double sd = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan_of(tensor, mode)));
  return normal_(std::move(tensor), 0.0, sd);
}

Tensor xavier_uniform_(Tensor tensor, double gain) {
  check_defined("xavier_uniform_", tensor);
  const auto [fan_in, fan_out] = _calculate_fan_in_and_fan_out(tensor);
  const double sd = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  const double bound = std::sqrt(3.0) * sd;
  return uniform_(std::move(tensor), -bound, bound);
}

Tensor xavier_normal_(Tensor tensor, double gain) {
  check_defined("xavier_normal_", tensor);
  const auto [fan_in, fan_out] = _calculate_fan_in_and_fan_out(tensor);
  const double sd = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return normal_(std::move(tensor), 0.0, sd);
}

}  // namespace ember::nn::init
