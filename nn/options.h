// EMBER_ARG: builder-style option fields (`Conv2dOptions(1, 32, 3).stride(2).padding(1)`), like TORCH_ARG.
#pragma once

#define EMBER_ARG(T, name)                                   \
 public:                                                     \
  inline auto name(const T& new_##name)->decltype(*this) {   \
    this->name##_ = new_##name;                              \
    return *this;                                            \
  }                                                          \
  inline const T& name() const noexcept { return this->name##_; } \
                                                             \
 private:                                                    \
  T name##_
