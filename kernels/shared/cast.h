// cast_value<D>(s): element conversion between any two dtypes' C++ types (16-bit floats via float).
#pragma once

#include <type_traits>

#include "runtime/half.h"
#include "runtime/macros.h"

namespace ember {

template <class T>
inline constexpr bool is_half_like_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

template <class D, class S>
EMBER_HD inline D cast_value(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (is_half_like_v<S>) {
    return cast_value<D>(static_cast<float>(v));
  } else if constexpr (is_half_like_v<D>) {
    return D(static_cast<float>(v));
  } else if constexpr (std::is_same_v<D, bool>) {
    return v != S(0);
  } else {
    return static_cast<D>(v);
  }
}

}  // namespace ember
