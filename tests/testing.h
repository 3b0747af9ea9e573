// Test helpers: the device-parameterised fixture, value assertions, and gradcheck (float64 finite differences).
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ember.h"

namespace ember::testing {

// Every device-parameterised test runs on cpu:0 and cuda:0; the CUDA instance skips without a GPU.
inline std::vector<Device> test_devices() { return {Device::cpu(), Device::cuda(0)}; }

inline std::string device_param_name(const ::testing::TestParamInfo<Device>& info) {
  return info.param.is_cuda() ? "CUDA" : "CPU";
}

inline std::string cuda_skip_reason() {
  return cuda::is_compiled() ? "no CUDA device is available on this machine"
                             : "ember was built without CUDA (EMBER_CUDA=OFF)";
}

class DeviceTest : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (device().is_cuda() && !cuda::is_available()) GTEST_SKIP() << cuda_skip_reason();
  }
  Device device() const { return GetParam(); }
  TensorOptions opts(DType dtype = kFloat32) const { return TensorOptions().dtype(dtype).device(device()); }
};

// Instantiates a DeviceTest-derived suite on every test device: names end in /CPU and /CUDA.
#define EMBER_INSTANTIATE_DEVICE_TESTS(Suite)                                            \
  INSTANTIATE_TEST_SUITE_P(Devices, Suite, ::testing::ValuesIn(::ember::testing::test_devices()), \
                           ::ember::testing::device_param_name)

// Instantiates a DeviceTest-derived suite on cuda:0 only (tests that compare the CUDA backend with the
// CPU): names end in /CUDA, so they carry the `cuda` label, and they skip without a GPU.
#define EMBER_INSTANTIATE_CUDA_TESTS(Suite)                                                     \
  INSTANTIATE_TEST_SUITE_P(CudaOnly, Suite, ::testing::Values(::ember::Device::cuda(0)), \
                           ::ember::testing::device_param_name)

// Skips a non-parameterised test when there is no GPU (name such tests *_CUDA).
#define EMBER_REQUIRE_CUDA()                                                               \
  do {                                                                                     \
    if (!::ember::cuda::is_available()) GTEST_SKIP() << ::ember::testing::cuda_skip_reason(); \
  } while (0)

// Expects `stmt` to throw ember::Error whose message contains every one of the given words.
#define EXPECT_EMBER_ERROR(stmt, ...)                                                          \
  do {                                                                                         \
    try {                                                                                      \
      stmt;                                                                                    \
      ADD_FAILURE() << "expected ember::Error from: " #stmt;                                   \
    } catch (const ::ember::Error& e__) {                                                      \
      for (const std::string& w__ : std::vector<std::string>{__VA_ARGS__})                     \
        EXPECT_THAT(std::string(e__.what()), ::testing::HasSubstr(w__)) << "from: " #stmt;     \
    } catch (const std::exception& e__) {                                                      \
      ADD_FAILURE() << "expected ember::Error, got another exception: " << e__.what();         \
    }                                                                                          \
  } while (0)

// |a - b| <= atol + rtol * |b| elementwise (after moving both to the CPU as float64); shapes must match.
inline ::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8) {
  if (a.sizes() != b.sizes())
    return ::testing::AssertionFailure() << "shapes differ: " << a.sizes() << " vs " << b.sizes();
  const std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  int bad = 0;
  std::ostringstream msg;
  for (size_t i = 0; i < va.size(); ++i) {
    const bool both_nan = std::isnan(va[i]) && std::isnan(vb[i]);
    const bool same_inf = std::isinf(va[i]) && va[i] == vb[i];
    if (both_nan || same_inf) continue;
    if (!(std::fabs(va[i] - vb[i]) <= atol + rtol * std::fabs(vb[i]))) {
      if (bad < 8) msg << "\n  at flat index " << i << ": " << va[i] << " vs " << vb[i];
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << va.size() << " elements differ (rtol=" << rtol
                                       << ", atol=" << atol << "):" << msg.str();
}

// Compares with expected values (row-major) and shape.
inline ::testing::AssertionResult values_are(const Tensor& t, IntArrayRef shape, const std::vector<double>& expected,
                                             double rtol = 1e-6, double atol = 1e-6) {
  if (t.sizes() != shape) return ::testing::AssertionFailure() << "shape " << t.sizes() << ", expected " << shape;
  Tensor e = tensor(expected).view(shape);
  return all_close(t, e, rtol, atol);
}

// Note [gradcheck]
// f maps the inputs to one tensor. For every input that requires grad (float64), the analytic
// gradient of sum(f(inputs) * w) for a random w is compared with central differences
// (f(x + eps) - f(x - eps)) / 2eps, element by element. Inputs are perturbed through a host copy,
// so it works for tensors on any device and for non-contiguous inputs (the perturbed input keeps
// the original's strides by writing through the same view).
inline ::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                            const std::vector<Tensor>& inputs, double eps = 1e-6,
                                            double atol = 1e-5, double rtol = 1e-3) {
  for (const Tensor& in : inputs)
    if (in.requires_grad() && in.dtype() != kFloat64)
      return ::testing::AssertionFailure() << "gradcheck needs float64 inputs, got " << in.dtype();
  Tensor out = f(inputs);
  if (!out.requires_grad()) return ::testing::AssertionFailure() << "the output does not require grad";
  Tensor w = randn(out.sizes(), TensorOptions(kFloat64).device(out.device()));
  for (const Tensor& in : inputs)
    if (in.requires_grad()) in.set_grad(Tensor());
  (out * w).sum().backward();

  std::ostringstream msg;
  int bad = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& in = inputs[k];
    if (!in.requires_grad()) continue;
    const Tensor analytic_t = in.grad();
    std::vector<double> analytic =
        analytic_t.defined() ? analytic_t.to_vector<double>() : std::vector<double>(static_cast<size_t>(in.numel()), 0.0);
    // Perturb element i of input k in place (under no_grad on the leaf's data) and re-evaluate.
    Tensor data = in.detach();
    std::vector<double> host = data.to_vector<double>();
    auto eval = [&](size_t i, double value) {
      NoGradGuard no_grad;
      std::vector<double> h = host;
      h[i] = value;
      Tensor replaced = tensor(h).view(data.sizes()).to(data.device());
      data.copy_(replaced);
      const double r = (f(inputs) * w).sum().item<double>();
      data.copy_(tensor(host).view(data.sizes()).to(data.device()));
      return r;
    };
    for (size_t i = 0; i < host.size(); ++i) {
      const double plus = eval(i, host[i] + eps);
      const double minus = eval(i, host[i] - eps);
      const double numeric = (plus - minus) / (2 * eps);
      if (!(std::fabs(numeric - analytic[i]) <= atol + rtol * std::fabs(numeric))) {
        if (bad < 8)
          msg << "\n  input " << k << " element " << i << ": analytic " << analytic[i] << " vs numeric " << numeric;
        ++bad;
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " gradient elements differ:" << msg.str();
}

// A float64 leaf of the given shape with values in [-1, 1) (odd sizes welcome), requiring grad.
inline Tensor rand_leaf(IntArrayRef shape, Device device = Device::cpu()) {
  Tensor t = rand(shape, TensorOptions(kFloat64).device(device)) * 2 - 1;
  return t.detach().requires_grad_(true);
}

}  // namespace ember::testing
