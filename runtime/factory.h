// Tensor creation: empty, zeros, ones, full, arange, eye, tensor({...}), random tensors, *_like.
#pragma once

#include <initializer_list>
#include <vector>

#include "runtime/tensor.h"

namespace ember {

Tensor empty(IntArrayRef sizes, const TensorOptions& options = {});
Tensor empty_strided(IntArrayRef sizes, IntArrayRef strides, const TensorOptions& options = {});
Tensor zeros(IntArrayRef sizes, const TensorOptions& options = {});
Tensor ones(IntArrayRef sizes, const TensorOptions& options = {});
Tensor full(IntArrayRef sizes, const Scalar& value, const TensorOptions& options = {});
Tensor scalar_tensor(const Scalar& value, const TensorOptions& options = {});
Tensor empty_like(const Tensor& t, const TensorOptions& options);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor zeros_like(const Tensor& t, const TensorOptions& options);
Tensor ones_like(const Tensor& t);
Tensor ones_like(const Tensor& t, const TensorOptions& options);
Tensor full_like(const Tensor& t, const Scalar& value);
Tensor rand_like(const Tensor& t);
Tensor randn_like(const Tensor& t);

// Integral arguments give kInt64 (as PyTorch), floating ones kFloat32, unless options say.
Tensor arange(const Scalar& end, const TensorOptions& options = {});
Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step = 1, const TensorOptions& options = {});
Tensor linspace(double start, double end, int64_t steps, const TensorOptions& options = {});
Tensor eye(int64_t n, const TensorOptions& options = {});
Tensor eye(int64_t n, int64_t m, const TensorOptions& options = {});

// Random tensors from the device's generator (Philox; see runtime/random.h).
Tensor rand(IntArrayRef sizes, const TensorOptions& options = {});
Tensor randn(IntArrayRef sizes, const TensorOptions& options = {});
Tensor randint(int64_t low, int64_t high, IntArrayRef sizes, const TensorOptions& options = {});
Tensor randint(int64_t high, IntArrayRef sizes, const TensorOptions& options = {});
Tensor randperm(int64_t n, const TensorOptions& options = {});

// From host values; the C++ element type picks the dtype unless options say.
Tensor from_host(const void* data, DType src_dtype, IntArrayRef sizes, const TensorOptions& options);

template <class T>
Tensor tensor(const std::vector<T>& values, const TensorOptions& options = {}) {
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> bytes(values.begin(), values.end());
    return from_host(bytes.data(), kBool, {static_cast<int64_t>(values.size())}, options);
  } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, int64_t> && !std::is_same_v<T, int32_t> &&
                       !std::is_same_v<T, uint8_t>) {
    std::vector<int64_t> wide(values.begin(), values.end());
    return from_host(wide.data(), kInt64, {static_cast<int64_t>(values.size())}, options);
  } else {
    return from_host(values.data(), dtype_v<T>, {static_cast<int64_t>(values.size())}, options);
  }
}
template <class T>
Tensor tensor(std::initializer_list<T> values, const TensorOptions& options = {}) {
  return tensor(std::vector<T>(values), options);
}
// tensor({1, 2, 3}) gives kInt64, as in PyTorch.
inline Tensor tensor(std::initializer_list<int> values, const TensorOptions& options = {}) {
  return tensor(std::vector<int64_t>(values.begin(), values.end()), options);
}

}  // namespace ember
