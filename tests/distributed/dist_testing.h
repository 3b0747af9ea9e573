// Helpers of the multi-process tests: the world group made by main.cpp, and per-rank input values.
#pragma once

#include <cmath>
#include <memory>
#include <vector>

#include "parallel/distributed.h"
#include "tests/testing.h"

namespace ember::distributed::testing {

// The group over the whole job (timeout 60 s), made in main() before the tests run.
std::shared_ptr<ProcessGroup>& world_slot();
inline ProcessGroup& world() { return *world_slot(); }

inline std::vector<DType> all_dtypes() {
  return {kFloat32, kFloat64, kInt64, kInt32, kBool, kUInt8, kFloat16, kBFloat16};
}
inline std::vector<DType> float_dtypes() { return {kFloat32, kFloat64, kFloat16, kBFloat16}; }

// Rank `rank`'s element i: small values every dtype holds exactly, different per rank and not monotonic
// in the rank (so Max and Min pick different ranks for different elements).
inline double value(DType dt, int rank, int64_t i) {
  if (dt == kBool) return (rank + i) % 3 == 0 ? 1.0 : 0.0;
  const double v = static_cast<double>((rank * 7 + i * 3) % 11);
  return dt == kUInt8 ? v : v - 5.0;
}
// For Avg: (rank + 1) * k, whose mean over n ranks, (n + 1) / 2 * k, is exact in every float dtype.
inline double avg_value(int rank, int64_t i) { return (rank + 1.0) * static_cast<double>(i % 8 + 1); }

// The reduction over ranks 0..n-1 of f(rank), as the dtype defines it (bool: sum = max = or, min = and).
template <class F>
double reduce_over_ranks(ReduceOp op, DType dt, int n, F&& f) {
  double acc = f(0);
  for (int r = 1; r < n; ++r) {
    const double v = f(r);
    if (op == ReduceOp::Max)
      acc = std::max(acc, v);
    else if (op == ReduceOp::Min)
      acc = std::min(acc, v);
    else
      acc += v;
  }
  if (dt == kBool && op == ReduceOp::Sum) acc = acc > 0 ? 1.0 : 0.0;
  if (op == ReduceOp::Avg) acc /= n;
  return acc;
}

// A tensor of `sizes` whose flat element i is f(i), in dtype dt on device.
template <class F>
Tensor make_tensor(IntArrayRef sizes, DType dt, Device device, F&& f) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = f(i);
  return tensor(v).to(dt).reshape(sizes).contiguous().to(device);
}

// Exact comparison after rounding the expectation to the tensor's dtype.
inline ::testing::AssertionResult equals(const Tensor& t, const std::vector<double>& expected) {
  Tensor want = tensor(expected).to(t.dtype());
  const std::vector<double> got = t.to_vector<double>();
  const std::vector<double> exp = want.to_vector<double>();
  if (got.size() != exp.size())
    return ::testing::AssertionFailure() << "sizes differ: " << got.size() << " vs " << exp.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (!(got[i] == exp[i]))
      return ::testing::AssertionFailure()
             << t.dtype() << " element " << i << ": got " << got[i] << ", expected " << exp[i];
  return ::testing::AssertionSuccess();
}

template <class F>
std::vector<double> values(int64_t n, F&& f) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = f(i);
  return v;
}

}  // namespace ember::distributed::testing
