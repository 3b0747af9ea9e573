// Helpers for the LibTorch oracle tests: copying tensors between ember and LibTorch, comparing them.
#pragma once

#include <gtest/gtest.h>
#include <torch/types.h>  // ATen and the torch:: factories; half the compile time of <torch/torch.h>

#include <cstring>
#include <string>
#include <vector>

#include "ember.h"

namespace ember::oracle {

inline at::ScalarType to_torch_dtype(DType dtype) {
  switch (dtype) {
    case kFloat32: return at::kFloat;
    case kFloat64: return at::kDouble;
    case kInt64: return at::kLong;
    case kInt32: return at::kInt;
    case kBool: return at::kBool;
    case kUInt8: return at::kByte;
    case kFloat16: return at::kHalf;
    case kBFloat16: return at::kBFloat16;
  }
  EMBER_THROW("oracle: no LibTorch dtype for ", dtype_name(dtype));
}

inline DType from_torch_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return kFloat32;
    case at::kDouble: return kFloat64;
    case at::kLong: return kInt64;
    case at::kInt: return kInt32;
    case at::kBool: return kBool;
    case at::kByte: return kUInt8;
    case at::kHalf: return kFloat16;
    case at::kBFloat16: return kBFloat16;
    default: EMBER_THROW("oracle: no ember dtype for LibTorch's ", c10::toString(dtype));
  }
}

// A CPU LibTorch tensor with the same sizes, dtype and values (copied; autograd state not carried).
inline at::Tensor to_torch(const Tensor& t) {
  Tensor host = t.detach().cpu().contiguous();
  std::vector<int64_t> sizes(host.sizes().begin(), host.sizes().end());
  at::Tensor out = torch::empty(sizes, torch::TensorOptions().dtype(to_torch_dtype(host.dtype())));
  if (host.nbytes() > 0) std::memcpy(out.data_ptr(), host.data_ptr(), host.nbytes());
  return out;
}

// An ember tensor on `device` with the same sizes, dtype and values as the LibTorch tensor `t`.
inline Tensor from_torch(const at::Tensor& t, Device device = Device::cpu()) {
  at::Tensor host = t.detach().cpu().contiguous();
  std::vector<int64_t> sizes(host.sizes().begin(), host.sizes().end());
  Tensor out = empty(sizes, TensorOptions().dtype(from_torch_dtype(host.scalar_type())));
  if (out.nbytes() > 0) std::memcpy(out.data_ptr(), host.data_ptr(), out.nbytes());
  return out.to(device);
}

// gtest assertion: same sizes and |a - b| <= atol + rtol * |b| elementwise (b is the oracle).
inline ::testing::AssertionResult all_close(const Tensor& actual, const at::Tensor& expected, double rtol = 1e-5,
                                            double atol = 1e-6) {
  at::Tensor a = to_torch(actual).to(at::kDouble);
  at::Tensor b = expected.detach().cpu().to(at::kDouble);
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "sizes differ: ember " << a.sizes() << " vs LibTorch " << b.sizes();
  }
  at::Tensor err = (a - b).abs() - (atol + rtol * b.abs());
  if (a.numel() == 0 || err.max().item<double>() <= 0) return ::testing::AssertionSuccess();
  int64_t worst = err.flatten().argmax().item<int64_t>();
  return ::testing::AssertionFailure() << "values differ: worst at flat index " << worst << ": ember "
                                       << a.flatten()[worst].item<double>() << " vs LibTorch "
                                       << b.flatten()[worst].item<double>() << " (rtol " << rtol << ", atol " << atol
                                       << ")";
}

}  // namespace ember::oracle
