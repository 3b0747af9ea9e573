// Checks of every collective with values computed from rank numbers, on a given device (CPU: MPI, CUDA: NCCL).
#pragma once

#include <string>
#include <vector>

#include "tests/distributed/dist_testing.h"

namespace ember::distributed::testing {

inline const std::vector<std::vector<int64_t>>& test_shapes() {
  static const std::vector<std::vector<int64_t>> shapes = {{7}, {2, 3}, {}, {0}};
  return shapes;
}

inline std::string shape_text(IntArrayRef sizes) {
  std::ostringstream os;
  os << sizes;
  return os.str();
}

inline int64_t numel_of(IntArrayRef sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  return n;
}

// Exact, except NCCL's Avg in 16-bit floats (it may scale by 1/n in the dtype).
inline ::testing::AssertionResult matches(const Tensor& t, const std::vector<double>& expected, ReduceOp op) {
  if (t.is_cuda() && op == ReduceOp::Avg && is_reduced_float(t.dtype()))
    return ember::testing::all_close(t.cpu().to(kFloat64), tensor(expected).reshape(t.sizes()), 1e-2, 1e-2);
  return equals(t, expected);
}

inline void check_all_reduce(ProcessGroup& pg, Device device, DType dt, ReduceOp op, IntArrayRef sizes) {
  SCOPED_TRACE(::testing::Message() << "all_reduce " << dt << " " << shape_text(sizes) << " op " << static_cast<int>(op)
                                    << " on " << device);
  const int n = pg.size();
  auto in = [&](int r, int64_t i) { return op == ReduceOp::Avg ? avg_value(r, i) : value(dt, r, i); };
  Tensor t = make_tensor(sizes, dt, device, [&](int64_t i) { return in(pg.rank(), i); });
  pg.all_reduce(t, op);
  EXPECT_EQ(t.sizes(), IntArrayRef(sizes));
  EXPECT_TRUE(matches(
      t,
      values(numel_of(sizes), [&](int64_t i) { return reduce_over_ranks(op, dt, n, [&](int r) { return in(r, i); }); }),
      op));
}

inline void check_broadcast(ProcessGroup& pg, Device device, DType dt, IntArrayRef sizes) {
  for (int root = 0; root < pg.size(); ++root) {
    SCOPED_TRACE(::testing::Message() << "broadcast " << dt << " " << shape_text(sizes) << " root " << root << " on "
                                      << device);
    Tensor t = make_tensor(sizes, dt, device, [&](int64_t i) { return value(dt, pg.rank(), i); });
    pg.broadcast(t, root);
    EXPECT_TRUE(equals(t, values(numel_of(sizes), [&](int64_t i) { return value(dt, root, i); })));
  }
}

// How the outputs of all_gather are given.
enum class OutputKind { Allocated, Separate, ChunksOfOne, InPlace };

inline void check_all_gather(ProcessGroup& pg, Device device, DType dt, IntArrayRef sizes, OutputKind kind) {
  SCOPED_TRACE(::testing::Message() << "all_gather " << dt << " " << shape_text(sizes) << " kind "
                                    << static_cast<int>(kind) << " on " << device);
  const int n = pg.size();
  const int64_t numel = numel_of(sizes);
  Tensor input = make_tensor(sizes, dt, device, [&](int64_t i) { return value(dt, pg.rank(), i); });
  std::vector<Tensor> outputs;
  std::vector<int64_t> big_shape{n};
  big_shape.insert(big_shape.end(), sizes.begin(), sizes.end());
  Tensor big;
  if (kind == OutputKind::Separate) {
    for (int j = 0; j < n; ++j) outputs.push_back(zeros(sizes, TensorOptions().dtype(dt).device(device)));
  } else if (kind == OutputKind::ChunksOfOne || kind == OutputKind::InPlace) {
    big = zeros(big_shape, TensorOptions().dtype(dt).device(device));
    for (int j = 0; j < n; ++j) outputs.push_back(big.select(0, j));
    if (kind == OutputKind::InPlace) {
      outputs[static_cast<size_t>(pg.rank())].copy_(input);
      input = outputs[static_cast<size_t>(pg.rank())];
    }
  }
  pg.all_gather(outputs, input);
  ASSERT_EQ(outputs.size(), static_cast<size_t>(n));
  for (int j = 0; j < n; ++j) {
    EXPECT_EQ(outputs[static_cast<size_t>(j)].sizes(), IntArrayRef(sizes));
    EXPECT_TRUE(equals(outputs[static_cast<size_t>(j)], values(numel, [&](int64_t i) { return value(dt, j, i); })))
        << "output of rank " << j;
  }
}

// How the inputs of reduce_scatter are given.
enum class InputKind { Separate, ChunksOfOne, InPlace };

inline void check_reduce_scatter(ProcessGroup& pg, Device device, DType dt, ReduceOp op, IntArrayRef sizes,
                                 InputKind kind) {
  SCOPED_TRACE(::testing::Message() << "reduce_scatter " << dt << " " << shape_text(sizes) << " op "
                                    << static_cast<int>(op) << " kind " << static_cast<int>(kind) << " on " << device);
  const int n = pg.size();
  const int rank = pg.rank();
  const int64_t numel = numel_of(sizes);
  // Rank r's input for rank j, element i.
  auto in = [&](int r, int j, int64_t i) {
    return op == ReduceOp::Avg ? avg_value(r, i + j) : value(dt, r, i + 5 * j);
  };
  std::vector<Tensor> inputs;
  Tensor output;
  if (kind == InputKind::Separate) {
    for (int j = 0; j < n; ++j)
      inputs.push_back(make_tensor(sizes, dt, device, [&](int64_t i) { return in(rank, j, i); }));
    output = zeros(sizes, TensorOptions().dtype(dt).device(device));
  } else {
    std::vector<int64_t> big_shape{n};
    big_shape.insert(big_shape.end(), sizes.begin(), sizes.end());
    Tensor big = zeros(big_shape, TensorOptions().dtype(dt).device(device));
    for (int j = 0; j < n; ++j) {
      inputs.push_back(big.select(0, j));
      inputs.back().copy_(make_tensor(sizes, dt, device, [&](int64_t i) { return in(rank, j, i); }));
    }
    output = kind == InputKind::InPlace ? inputs[static_cast<size_t>(rank)]
                                        : zeros(sizes, TensorOptions().dtype(dt).device(device));
  }
  pg.reduce_scatter(output, inputs, op);
  EXPECT_TRUE(matches(
      output,
      values(numel, [&](int64_t i) { return reduce_over_ranks(op, dt, n, [&](int r) { return in(r, rank, i); }); }),
      op));
}

inline std::vector<ReduceOp> ops_for(DType dt) {
  std::vector<ReduceOp> ops{ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min};
  if (is_floating_point(dt)) ops.push_back(ReduceOp::Avg);
  return ops;
}

// Several collectives in flight at once, waited for out of order.
inline void check_async_out_of_order(ProcessGroup& pg, Device device) {
  const int n = pg.size();
  const int rank = pg.rank();
  const uint64_t first = pg.sequence_number() + 1;
  std::vector<std::shared_ptr<Work>> works;
  std::vector<Tensor> reduced;
  for (int k = 0; k < 4; ++k) {
    reduced.push_back(make_tensor({5}, kFloat32, device, [&](int64_t i) { return value(kFloat32, rank, i) + k; }));
    works.push_back(pg.all_reduce_async(reduced.back(), k % 2 ? ReduceOp::Max : ReduceOp::Sum));
  }
  Tensor b = make_tensor({4}, kInt64, device, [&](int64_t i) { return value(kInt64, rank, i); });
  works.push_back(pg.broadcast_async(b, n - 1));
  std::vector<Tensor> gathered;
  Tensor g = make_tensor({3}, kFloat64, device, [&](int64_t i) { return value(kFloat64, rank, i); });
  works.push_back(pg.all_gather_async(gathered, g));
  EXPECT_EQ(gathered.size(), static_cast<size_t>(n)) << "all_gather_async allocates its outputs at the call";
  std::vector<Tensor> ins;
  for (int j = 0; j < n; ++j)
    ins.push_back(make_tensor({2}, kInt32, device, [&](int64_t i) { return value(kInt32, rank, i + 5 * j); }));
  Tensor rs = zeros({2}, TensorOptions().dtype(kInt32).device(device));
  works.push_back(pg.reduce_scatter_async(rs, ins));
  if (device.is_cpu()) works.push_back(pg.barrier_async());

  for (size_t w = 0; w < works.size(); ++w) EXPECT_EQ(works[w]->sequence_number(), first + w);
  EXPECT_EQ(pg.sequence_number(), first + works.size() - 1);
  // Waited for in the order 3, 6, 0, 5, 1, 4, 2, (7).
  std::vector<size_t> order{3, 6, 0, 5, 1, 4, 2};
  if (works.size() > 7) order.push_back(7);
  for (size_t w : order) {
    works[w]->wait();
    EXPECT_TRUE(works[w]->is_completed());
    EXPECT_TRUE(works[w]->is_success());
  }
  for (int k = 0; k < 4; ++k) {
    const ReduceOp op = k % 2 ? ReduceOp::Max : ReduceOp::Sum;
    EXPECT_TRUE(equals(reduced[static_cast<size_t>(k)], values(5,
                                                               [&](int64_t i) {
                                                                 return reduce_over_ranks(op, kFloat32, n, [&](int r) {
                                                                   return value(kFloat32, r, i) + k;
                                                                 });
                                                               })))
        << "all_reduce " << k;
  }
  EXPECT_TRUE(equals(b, values(4, [&](int64_t i) { return value(kInt64, n - 1, i); })));
  for (int j = 0; j < n; ++j)
    EXPECT_TRUE(equals(gathered[static_cast<size_t>(j)], values(3, [&](int64_t i) { return value(kFloat64, j, i); })));
  EXPECT_TRUE(equals(rs, values(2, [&](int64_t i) {
                       return reduce_over_ranks(ReduceOp::Sum, kInt32, n,
                                                [&](int r) { return value(kInt32, r, i + 5 * rank); });
                     })));
  // Waiting again returns at once.
  for (auto& w : works) w->wait();
  EXPECT_EQ(works[0]->collective(), "all_reduce");
  EXPECT_THAT(works[0]->description(), ::testing::HasSubstr("sequence number " + std::to_string(first)));
}

}  // namespace ember::distributed::testing
