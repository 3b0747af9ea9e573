// Element-wise math as EMBER_HD functors (run by the CPU loops and the CUDA kernels) and the op enums.
//
// Note [Element-wise functors]
// Each functor computes in the "compute type" C of the tensor's dtype (float for Half/BFloat16, the
// dtype's own type otherwise). `Computed<Out, C, F>` adapts one to storage types: it widens every
// input with `load<C>` and narrows the result with `store<Out>`; on the device the 16-bit
// conversions use the hardware intrinsics, on the host the bit-exact software routines of
// runtime/half.h, and both round to nearest even, so the CPU and the GPU store the same bits.
// Functors that only make sense for floating point set kFloatOnly; the visitors below refuse to
// instantiate them for integer compute types (the op layer has already rejected such calls with a
// message naming the op and dtype, so reaching that branch is an internal error).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include "kernels/shared/cast.h"
#include "runtime/half.h"
#include "runtime/macros.h"

namespace ember {

// out = a (op) b. The *Backward entries are fused gradient kernels: a is the incoming gradient and
// b the saved forward output (relu, sigmoid, tanh) or input (gelu).
enum class BinaryOp : uint8_t {
  Add,
  Sub,
  Mul,
  Div,
  AddAlpha,  // a + alpha * b
  Maximum,
  Minimum,
  Pow,
  ReluBackward,
  SigmoidBackward,
  TanhBackward,
  GeluBackward,
  GeluTanhBackward,
};

// out = op(a; p0, p1).
enum class UnaryOp : uint8_t {
  Neg,
  Exp,
  Log,
  Log1p,
  Sqrt,
  Rsqrt,
  Square,
  Reciprocal,
  Abs,
  Sign,
  Sin,
  Cos,
  Relu,
  Sigmoid,
  Tanh,
  Gelu,
  GeluTanh,
  Pow,       // a ** p0 (floating point)
  IntPow,    // a ** p0 for integers, p0 >= 0
  Clamp,     // min(max(a, p0), p1)
  ClampMin,  // max(a, p0)
  ClampMax,  // min(a, p0)
};

// Boolean-valued: out (kBool) = a (op) b.
enum class CompareOp : uint8_t { Eq, Ne, Gt, Lt, Ge, Le, LogicalAnd, LogicalOr };

// Names for error messages (static strings: no allocation on the success path).
inline const char* op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::AddAlpha: return "add";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
    case BinaryOp::Pow: return "pow";
    case BinaryOp::ReluBackward: return "relu_backward";
    case BinaryOp::SigmoidBackward: return "sigmoid_backward";
    case BinaryOp::TanhBackward: return "tanh_backward";
    case BinaryOp::GeluBackward: return "gelu_backward";
    case BinaryOp::GeluTanhBackward: return "gelu_backward";
  }
  return "binary";
}

inline const char* op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Log1p: return "log1p";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Square: return "square";
    case UnaryOp::Reciprocal: return "reciprocal";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Sign: return "sign";
    case UnaryOp::Sin: return "sin";
    case UnaryOp::Cos: return "cos";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Gelu: return "gelu";
    case UnaryOp::GeluTanh: return "gelu";
    case UnaryOp::Pow: return "pow";
    case UnaryOp::IntPow: return "pow";
    case UnaryOp::Clamp: return "clamp";
    case UnaryOp::ClampMin: return "clamp_min";
    case UnaryOp::ClampMax: return "clamp_max";
  }
  return "unary";
}

inline const char* op_name(CompareOp op) {
  switch (op) {
    case CompareOp::Eq: return "eq";
    case CompareOp::Ne: return "ne";
    case CompareOp::Gt: return "gt";
    case CompareOp::Lt: return "lt";
    case CompareOp::Ge: return "ge";
    case CompareOp::Le: return "le";
    case CompareOp::LogicalAnd: return "logical_and";
    case CompareOp::LogicalOr: return "logical_or";
  }
  return "compare";
}

namespace ew {

// ---- storage <-> compute conversions ---------------------------------------------------------

template <class C, class S>
EMBER_HD EMBER_ALWAYS_INLINE C load(S v) {
  if constexpr (std::is_same_v<S, Half>) {
#if defined(__CUDA_ARCH__)
    return static_cast<C>(__half2float(__ushort_as_half(v.bits)));
#else
    return static_cast<C>(static_cast<float>(v));
#endif
  } else if constexpr (std::is_same_v<S, BFloat16>) {
#if defined(__CUDA_ARCH__)
    return static_cast<C>(__bfloat162float(__ushort_as_bfloat16(v.bits)));
#else
    return static_cast<C>(static_cast<float>(v));
#endif
  } else {
    return cast_value<C>(v);
  }
}

template <class D, class C>
EMBER_HD EMBER_ALWAYS_INLINE D store(C v) {
  if constexpr (std::is_same_v<D, Half>) {
#if defined(__CUDA_ARCH__)
    return Half::from_bits(__half_as_ushort(__float2half_rn(static_cast<float>(v))));
#else
    return Half(static_cast<float>(v));
#endif
  } else if constexpr (std::is_same_v<D, BFloat16>) {
#if defined(__CUDA_ARCH__)
    return BFloat16::from_bits(__bfloat16_as_ushort(__float2bfloat16_rn(static_cast<float>(v))));
#else
    return BFloat16(static_cast<float>(v));
#endif
  } else {
    return cast_value<D>(v);
  }
}

// Any dtype to any dtype, as cast_value (the copy kernels; 16-bit floats go through float).
template <class D>
struct Convert {
  template <class S>
  EMBER_HD EMBER_ALWAYS_INLINE D operator()(S v) const {
    if constexpr (is_half_like_v<S>) {
      return store<D>(load<float>(v));
    } else if constexpr (is_half_like_v<D>) {
      return store<D>(static_cast<float>(v));
    } else {
      return cast_value<D>(v);
    }
  }
};

// Adapts a compute-type functor to storage types (Note [Element-wise functors]).
template <class Out, class C, class F>
struct Computed {
  F f;
  template <class... S>
  EMBER_HD EMBER_ALWAYS_INLINE Out operator()(S... v) const {
    return store<Out>(f(load<C>(v)...));
  }
};

template <class T>
EMBER_HD EMBER_ALWAYS_INLINE bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return v != v;
  } else {
    (void)v;
    return false;
  }
}

// ---- binary --------------------------------------------------------------------------------------

struct Add {
  static constexpr bool kFloatOnly = false;
  template <class T>
  EMBER_HD T operator()(T a, T b) const { return a + b; }
};
struct Sub {
  static constexpr bool kFloatOnly = false;
  template <class T>
  EMBER_HD T operator()(T a, T b) const { return a - b; }
};
struct Mul {
  static constexpr bool kFloatOnly = false;
  template <class T>
  EMBER_HD T operator()(T a, T b) const { return a * b; }
};
// True division only (integer tensors are converted to float32 by the op).
struct Div {
  static constexpr bool kFloatOnly = true;
  template <class T>
  EMBER_HD T operator()(T a, T b) const { return a / b; }
};
template <class C>
struct AddAlpha {
  static constexpr bool kFloatOnly = false;
  C alpha;
  EMBER_HD C operator()(C a, C b) const { return a + alpha * b; }
};
// NaN-propagating, as PyTorch's maximum/minimum.
struct Maximum {
  static constexpr bool kFloatOnly = false;
  template <class T>
  EMBER_HD T operator()(T a, T b) const { return (is_nan(a) || a > b) ? a : b; }
};
struct Minimum {
  static constexpr bool kFloatOnly = false;
  template <class T>
  EMBER_HD T operator()(T a, T b) const { return (is_nan(a) || a < b) ? a : b; }
};
struct Pow {
  static constexpr bool kFloatOnly = true;
  template <class T>
  EMBER_HD T operator()(T a, T b) const { return std::pow(a, b); }
};

// grad * (out > 0): relu's backward from its output (works after relu_ too).
struct ReluBackward {
  static constexpr bool kFloatOnly = false;
  template <class T>
  EMBER_HD T operator()(T g, T out) const { return out > T(0) ? g : T(0); }
};
// grad * y * (1 - y) with y = sigmoid(x).
struct SigmoidBackward {
  static constexpr bool kFloatOnly = true;
  template <class T>
  EMBER_HD T operator()(T g, T y) const { return g * (T(1) - y) * y; }
};
// grad * (1 - y^2) with y = tanh(x).
struct TanhBackward {
  static constexpr bool kFloatOnly = true;
  template <class T>
  EMBER_HD T operator()(T g, T y) const { return g * (T(1) - y * y); }
};

// GELU constants: 1/sqrt(2), 1/sqrt(2*pi), sqrt(2/pi) and the tanh form's cubic coefficient.
inline constexpr double kSqrtHalf = 0.70710678118654752440;
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;
inline constexpr double kSqrt2OverPi = 0.79788456080286535588;
inline constexpr double kGeluKappa = 0.044715;

// d/dx [x * Phi(x)] = Phi(x) + x * phi(x).
struct GeluBackward {
  static constexpr bool kFloatOnly = true;
  template <class T>
  EMBER_HD T operator()(T g, T x) const {
    const T cdf = T(0.5) * (T(1) + std::erf(x * T(kSqrtHalf)));
    const T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x);
    return g * (cdf + x * pdf);
  }
};
// Derivative of 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + kappa x^3) (PyTorch's formula).
struct GeluTanhBackward {
  static constexpr bool kFloatOnly = true;
  template <class T>
  EMBER_HD T operator()(T g, T x) const {
    const T beta = T(kSqrt2OverPi), kappa = T(kGeluKappa);
    const T x_sq = x * x;
    const T inner = beta * (x + kappa * x_sq * x);
    const T t = std::tanh(inner);
    const T left = T(0.5) * x;
    const T right = T(1) + t;
    const T left_derivative = T(0.5) * right;
    const T right_derivative = left * (T(1) - t * t) * beta * (T(1) + T(3) * kappa * x_sq);
    return g * (left_derivative + right_derivative);
  }
};

// A binary functor with its second (BindRight) or first (BindLeft) operand fixed to a scalar.
template <class F, class C>
struct BindRight {
  static constexpr bool kFloatOnly = F::kFloatOnly;
  F f;
  C s;
  EMBER_HD C operator()(C a) const { return f(a, s); }
};
template <class F, class C>
struct BindLeft {
  static constexpr bool kFloatOnly = F::kFloatOnly;
  F f;
  C s;
  EMBER_HD C operator()(C a) const { return f(s, a); }
};

// ---- unary ---------------------------------------------------------------------------------------

#define EMBER_EW_UNARY(Name, float_only, expr)            \
  struct Name {                                           \
    static constexpr bool kFloatOnly = float_only;        \
    template <class T>                                    \
    EMBER_HD T operator()(T x) const { return expr; }     \
  };

EMBER_EW_UNARY(Neg, false, static_cast<T>(-x))
EMBER_EW_UNARY(Exp, true, std::exp(x))
EMBER_EW_UNARY(Log, true, std::log(x))
EMBER_EW_UNARY(Log1p, true, std::log1p(x))
EMBER_EW_UNARY(Sqrt, true, std::sqrt(x))
EMBER_EW_UNARY(Rsqrt, true, T(1) / std::sqrt(x))
EMBER_EW_UNARY(Square, false, static_cast<T>(x * x))
EMBER_EW_UNARY(Reciprocal, true, T(1) / x)
EMBER_EW_UNARY(Sin, true, std::sin(x))
EMBER_EW_UNARY(Cos, true, std::cos(x))
EMBER_EW_UNARY(Tanh, true, std::tanh(x))
#undef EMBER_EW_UNARY

struct Abs {
  static constexpr bool kFloatOnly = false;
  template <class T>
  EMBER_HD T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>) {
      return x;
    } else {
      return x < T(0) ? static_cast<T>(-x) : x;  // keeps NaN, maps -0 to -0 as fabs would not matter
    }
  }
};
struct Sign {
  static constexpr bool kFloatOnly = false;
  template <class T>
  EMBER_HD T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>) {
      return x > T(0) ? T(1) : T(0);
    } else {
      return static_cast<T>((T(0) < x) - (x < T(0)));
    }
  }
};
// NaN stays NaN (as clamp_min(x, 0)).
struct Relu {
  static constexpr bool kFloatOnly = false;
  template <class T>
  EMBER_HD T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>) {
      return x;
    } else {
      return x < T(0) ? T(0) : x;
    }
  }
};
// Never overflows: exp is only taken of a non-positive number.
struct Sigmoid {
  static constexpr bool kFloatOnly = true;
  template <class T>
  EMBER_HD T operator()(T x) const {
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    const T e = std::exp(x);
    return e / (T(1) + e);
  }
};
struct Gelu {
  static constexpr bool kFloatOnly = true;
  template <class T>
  EMBER_HD T operator()(T x) const { return T(0.5) * x * (T(1) + std::erf(x * T(kSqrtHalf))); }
};
struct GeluTanh {
  static constexpr bool kFloatOnly = true;
  template <class T>
  EMBER_HD T operator()(T x) const {
    const T inner = T(kSqrt2OverPi) * (x + T(kGeluKappa) * x * x * x);
    return T(0.5) * x * (T(1) + std::tanh(inner));
  }
};
template <class C>
struct PowScalar {
  static constexpr bool kFloatOnly = true;
  C p;
  EMBER_HD C operator()(C x) const { return std::pow(x, p); }
};
// Exponentiation by squaring for integer tensors (p >= 0; wraps on overflow like PyTorch).
template <class C>
struct IntPow {
  static constexpr bool kFloatOnly = false;
  int64_t p;
  EMBER_HD C operator()(C x) const {
    C result = C(1);
    C base = x;
    for (int64_t e = p; e > 0; e >>= 1) {
      if (e & 1) result = static_cast<C>(result * base);
      base = static_cast<C>(base * base);
    }
    return result;
  }
};
// min(max(x, lo), hi) as PyTorch (lo > hi gives hi); NaN inputs stay NaN (no comparison is true).
template <class C>
struct Clamp {
  static constexpr bool kFloatOnly = false;
  C lo, hi;
  EMBER_HD C operator()(C x) const {
    const C t = x < lo ? lo : x;
    return t > hi ? hi : t;
  }
};
template <class C>
struct ClampMin {
  static constexpr bool kFloatOnly = false;
  C lo;
  EMBER_HD C operator()(C x) const { return x < lo ? lo : x; }
};
template <class C>
struct ClampMax {
  static constexpr bool kFloatOnly = false;
  C hi;
  EMBER_HD C operator()(C x) const { return x > hi ? hi : x; }
};

// ---- comparisons and selection --------------------------------------------------------------------

struct Eq {
  template <class T>
  EMBER_HD bool operator()(T a, T b) const { return a == b; }
};
struct Ne {
  template <class T>
  EMBER_HD bool operator()(T a, T b) const { return a != b; }
};
struct Gt {
  template <class T>
  EMBER_HD bool operator()(T a, T b) const { return a > b; }
};
struct Lt {
  template <class T>
  EMBER_HD bool operator()(T a, T b) const { return a < b; }
};
struct Ge {
  template <class T>
  EMBER_HD bool operator()(T a, T b) const { return a >= b; }
};
struct Le {
  template <class T>
  EMBER_HD bool operator()(T a, T b) const { return a <= b; }
};
struct LogicalAnd {
  template <class T>
  EMBER_HD bool operator()(T a, T b) const { return a != T(0) && b != T(0); }
};
struct LogicalOr {
  template <class T>
  EMBER_HD bool operator()(T a, T b) const { return a != T(0) || b != T(0); }
};

// A comparison with its right operand fixed (scalar comparisons; C is the comparison type).
template <class F, class C>
struct CompareRight {
  F f;
  C s;
  EMBER_HD bool operator()(C a) const { return f(a, s); }
};

// PyTorch's isclose without equal_nan: equal, or a finite difference within atol + rtol * |b|.
struct IsClose {
  double rtol, atol;
  EMBER_HD bool operator()(double a, double b) const {
    if (a == b) return true;
    const double diff = a > b ? a - b : b - a;
    const double bound = atol + rtol * (b < 0 ? -b : b);
    return diff <= bound && diff < INFINITY;  // NaN compares false; inf - finite is never close
  }
};

// Selection on storage types (no arithmetic, so no widening).
template <class T>
struct Where {
  EMBER_HD T operator()(bool m, T a, T b) const { return m ? a : b; }
};
template <class T>
struct WhereScalar {
  T s;
  bool scalar_if_true;
  EMBER_HD T operator()(bool m, T x) const { return m == scalar_if_true ? s : x; }
};
template <class T>
struct FillValue {
  T v;
  EMBER_HD T operator()() const { return v; }
};

}  // namespace ew

// ---- visitors: enum -> functor (host code; shared by the CPU and CUDA dispatchers) ----------------

namespace ew {

[[noreturn]] void throw_float_only(const char* op, const char* type);

// Calls v(f) when F can run in compute type C; otherwise an internal error (the op checks dtypes).
template <class C, class F, class V>
EMBER_ALWAYS_INLINE void call_supported(const char* op, F f, V& v) {
  if constexpr (F::kFloatOnly && !std::is_floating_point_v<C>) {
    (void)f;
    (void)v;
    throw_float_only(op, "an integer compute type");
  } else {
    v(f);
  }
}

template <class C, class V>
void visit_binary(BinaryOp op, C alpha, V&& v) {
  const char* name = op_name(op);
  switch (op) {
    case BinaryOp::Add: return call_supported<C>(name, Add{}, v);
    case BinaryOp::Sub: return call_supported<C>(name, Sub{}, v);
    case BinaryOp::Mul: return call_supported<C>(name, Mul{}, v);
    case BinaryOp::Div: return call_supported<C>(name, Div{}, v);
    case BinaryOp::AddAlpha: return call_supported<C>(name, AddAlpha<C>{alpha}, v);
    case BinaryOp::Maximum: return call_supported<C>(name, Maximum{}, v);
    case BinaryOp::Minimum: return call_supported<C>(name, Minimum{}, v);
    case BinaryOp::Pow: return call_supported<C>(name, Pow{}, v);
    case BinaryOp::ReluBackward: return call_supported<C>(name, ReluBackward{}, v);
    case BinaryOp::SigmoidBackward: return call_supported<C>(name, SigmoidBackward{}, v);
    case BinaryOp::TanhBackward: return call_supported<C>(name, TanhBackward{}, v);
    case BinaryOp::GeluBackward: return call_supported<C>(name, GeluBackward{}, v);
    case BinaryOp::GeluTanhBackward: return call_supported<C>(name, GeluTanhBackward{}, v);
  }
}

// v(unary functor) for `a (op) s` (scalar_first: `s (op) a`). Only Sub and Div have a reversed
// form (rsub, rdiv); other ops are symmetric or have no scalar-first use.
template <class C, class V>
void visit_binary_scalar(BinaryOp op, C s, bool scalar_first, V&& v) {
  const char* name = op_name(op);
  if (scalar_first) {
    switch (op) {
      case BinaryOp::Sub: return call_supported<C>(name, BindLeft<Sub, C>{Sub{}, s}, v);
      case BinaryOp::Div: return call_supported<C>(name, BindLeft<Div, C>{Div{}, s}, v);
      default: break;
    }
  }
  switch (op) {
    case BinaryOp::Add: return call_supported<C>(name, BindRight<Add, C>{Add{}, s}, v);
    case BinaryOp::Sub: return call_supported<C>(name, BindRight<Sub, C>{Sub{}, s}, v);
    case BinaryOp::Mul: return call_supported<C>(name, BindRight<Mul, C>{Mul{}, s}, v);
    case BinaryOp::Div: return call_supported<C>(name, BindRight<Div, C>{Div{}, s}, v);
    case BinaryOp::Maximum: return call_supported<C>(name, BindRight<Maximum, C>{Maximum{}, s}, v);
    case BinaryOp::Minimum: return call_supported<C>(name, BindRight<Minimum, C>{Minimum{}, s}, v);
    default: throw_float_only(name, "a scalar operand");
  }
}

template <class C, class V>
void visit_unary(UnaryOp op, C p0, C p1, int64_t int_p0, V&& v) {
  const char* name = op_name(op);
  switch (op) {
    case UnaryOp::Neg: return call_supported<C>(name, Neg{}, v);
    case UnaryOp::Exp: return call_supported<C>(name, Exp{}, v);
    case UnaryOp::Log: return call_supported<C>(name, Log{}, v);
    case UnaryOp::Log1p: return call_supported<C>(name, Log1p{}, v);
    case UnaryOp::Sqrt: return call_supported<C>(name, Sqrt{}, v);
    case UnaryOp::Rsqrt: return call_supported<C>(name, Rsqrt{}, v);
    case UnaryOp::Square: return call_supported<C>(name, Square{}, v);
    case UnaryOp::Reciprocal: return call_supported<C>(name, Reciprocal{}, v);
    case UnaryOp::Abs: return call_supported<C>(name, Abs{}, v);
    case UnaryOp::Sign: return call_supported<C>(name, Sign{}, v);
    case UnaryOp::Sin: return call_supported<C>(name, Sin{}, v);
    case UnaryOp::Cos: return call_supported<C>(name, Cos{}, v);
    case UnaryOp::Relu: return call_supported<C>(name, Relu{}, v);
    case UnaryOp::Sigmoid: return call_supported<C>(name, Sigmoid{}, v);
    case UnaryOp::Tanh: return call_supported<C>(name, Tanh{}, v);
    case UnaryOp::Gelu: return call_supported<C>(name, Gelu{}, v);
    case UnaryOp::GeluTanh: return call_supported<C>(name, GeluTanh{}, v);
    case UnaryOp::Pow: return call_supported<C>(name, PowScalar<C>{p0}, v);
    case UnaryOp::IntPow: return call_supported<C>(name, IntPow<C>{int_p0}, v);
    case UnaryOp::Clamp: return call_supported<C>(name, Clamp<C>{p0, p1}, v);
    case UnaryOp::ClampMin: return call_supported<C>(name, ClampMin<C>{p0}, v);
    case UnaryOp::ClampMax: return call_supported<C>(name, ClampMax<C>{p0}, v);
  }
}

template <class V>
void visit_compare(CompareOp op, V&& v) {
  switch (op) {
    case CompareOp::Eq: return v(Eq{});
    case CompareOp::Ne: return v(Ne{});
    case CompareOp::Gt: return v(Gt{});
    case CompareOp::Lt: return v(Lt{});
    case CompareOp::Ge: return v(Ge{});
    case CompareOp::Le: return v(Le{});
    case CompareOp::LogicalAnd: return v(LogicalAnd{});
    case CompareOp::LogicalOr: return v(LogicalOr{});
  }
}

}  // namespace ew
}  // namespace ember
