// CPU reduction kernel (kernels/cpu/reduce.cpp); the contract of kernels/cuda/reduce.h.
#pragma once

#include "kernels/shared/reduce_ops.h"
#include "runtime/tensor.h"

namespace ember::cpu {

// Note [Reduction kernel contract]
// Reads `in` (any strides) through `geom` (Note [Reduction geometry]) and writes geom.num_outputs results
// into the contiguous `out` and/or `indices`. Dtypes, chosen by the op (kernels/reduce.cpp):
//  * Sum: out has in's dtype for floating inputs, int64 for integral and bool ones;
//  * Mean, Var: floating in, out of in's dtype; `correction` is Var's (1 unbiased, 0 biased);
//  * Max, Min: out of in's dtype; Any, All: out bool;
//  * ArgMax, ArgMin: `indices` int64 (the position along the single reduced dim), `out` (optional,
//    may be undefined) the selected values in in's dtype.
// Accumulation: float for float32/float16/bfloat16 (blocked pairwise on the CPU), double for float64 and
// for the CPU's Welford, int64 for integral sums.
void reduce(ReduceKind kind, const Tensor& in, const ReduceGeometry& geom, const Tensor& out, const Tensor& indices,
            double correction);

}  // namespace ember::cpu
