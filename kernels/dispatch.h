// Runtime dtype -> C++ type dispatch: dispatch_floating / dispatch_numeric / dispatch_all.
#pragma once

#include "runtime/dtype.h"
#include "runtime/error.h"

namespace ember {

[[noreturn]] void throw_unsupported_dtype(const char* op, DType t, const char* expected);

// f(type_tag<T>{}) for T = float, double.
template <class F>
decltype(auto) dispatch_floating(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    default: throw_unsupported_dtype(op, t, "float32 or float64");
  }
}

// Floating point including the 16-bit storage types (computed in float).
template <class F>
decltype(auto) dispatch_floating_and_half(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    case DType::Float16: return f(type_tag<Half>{});
    case DType::BFloat16: return f(type_tag<BFloat16>{});
    default: throw_unsupported_dtype(op, t, "a floating-point dtype");
  }
}

// Arithmetic types: float32, float64, int64, int32, uint8.
template <class F>
decltype(auto) dispatch_numeric(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    case DType::Int64: return f(type_tag<int64_t>{});
    case DType::Int32: return f(type_tag<int32_t>{});
    case DType::UInt8: return f(type_tag<uint8_t>{});
    default: throw_unsupported_dtype(op, t, "float32, float64, int64, int32 or uint8");
  }
}

// Every dtype.
template <class F>
decltype(auto) dispatch_all(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    case DType::Int64: return f(type_tag<int64_t>{});
    case DType::Int32: return f(type_tag<int32_t>{});
    case DType::Bool: return f(type_tag<bool>{});
    case DType::UInt8: return f(type_tag<uint8_t>{});
    case DType::Float16: return f(type_tag<Half>{});
    case DType::BFloat16: return f(type_tag<BFloat16>{});
  }
  throw_unsupported_dtype(op, t, "a valid dtype");
}

// The type arithmetic is done in: float for the 16-bit floats, T otherwise.
template <class T>
struct compute_type {
  using type = T;
};
template <>
struct compute_type<Half> {
  using type = float;
};
template <>
struct compute_type<BFloat16> {
  using type = float;
};
template <class T>
using compute_t = typename compute_type<T>::type;

}  // namespace ember
