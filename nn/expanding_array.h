// ExpandingArray<D>: an option that takes one int for every spatial dim or D of them (LibTorch's spelling).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "runtime/array_ref.h"
#include "runtime/error.h"

namespace ember::nn {

// `Conv2dOptions(1, 32, 3)` and `Conv2dOptions(1, 32, {3, 5})` both work. It remembers whether it was
// given as one value, because PyTorch's pooling reprs print what the user passed (`kernel_size=2` vs
// `kernel_size=(2, 2)`).
template <size_t D>
class ExpandingArray {
 public:
  ExpandingArray(int64_t value) : single_(true) { values_.fill(value); }  // NOLINT: implicit, as LibTorch
  ExpandingArray(std::initializer_list<int64_t> list) { assign(list.begin(), list.size()); }  // NOLINT
  ExpandingArray(const std::vector<int64_t>& v) { assign(v.data(), v.size()); }               // NOLINT
  ExpandingArray(const std::array<int64_t, D>& a) : values_(a) {}                             // NOLINT
  ExpandingArray(IntArrayRef r) { assign(r.data(), r.size()); }                               // NOLINT

  int64_t operator[](size_t i) const { return values_[i]; }
  int64_t* data() { return values_.data(); }
  const int64_t* data() const { return values_.data(); }
  static constexpr size_t size() { return D; }
  // Whether it was given as a single value (expanded to every dim).
  bool single() const { return single_; }
  IntArrayRef ref() const { return IntArrayRef(values_.data(), D); }
  operator IntArrayRef() const { return ref(); }  // NOLINT
  std::vector<int64_t> vec() const { return std::vector<int64_t>(values_.begin(), values_.end()); }

  friend bool operator==(const ExpandingArray& a, const ExpandingArray& b) { return a.values_ == b.values_; }
  friend bool operator!=(const ExpandingArray& a, const ExpandingArray& b) { return !(a == b); }

  // Python's repr of a tuple of the values: "(3, 3)".
  std::string tuple_str() const {
    std::string out = "(";
    for (size_t i = 0; i < D; ++i) out += (i ? ", " : "") + std::to_string(values_[i]);
    return out + (D == 1 ? ",)" : ")");
  }
  // What PyTorch prints for a value the user passed as given: "3" for a single value, "(3, 5)" otherwise.
  std::string repr() const { return single_ ? std::to_string(values_[0]) : tuple_str(); }

 private:
  void assign(const int64_t* p, size_t n) {
    EMBER_CHECK(n == D || n == 1, "expected ", D, " values (one per spatial dim) or one for all, got ", n);
    for (size_t i = 0; i < D; ++i) values_[i] = p[n == 1 ? 0 : i];
    single_ = false;
  }
  std::array<int64_t, D> values_{};
  bool single_ = false;
};

}  // namespace ember::nn
