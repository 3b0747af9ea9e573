// CUDA entry points of the indexing ops (kernels/cuda/index.cu) and their deferred range check.
#pragma once

#include "kernels/cuda/entry.h"
#include "kernels/shared/index_ops.h"
#include "runtime/tensor.h"

namespace ember::cuda {

// The kernels of kernels/cpu/index.h on `device`'s current stream. Out-of-range indices are clamped
// and recorded, not trapped: see Note [CUDA index errors] in index.cu. Each entry first raises an
// error recorded by an earlier kernel on `device` that has finished by then.
EMBER_CUDA_ENTRY(void, index_gather,
                 (const IndexIter& it, DType dtype, DType index_dtype, Device device, IndexOpKind op))
EMBER_CUDA_ENTRY(void, index_scatter_add,
                 (const IndexIter& it, DType dtype, DType index_dtype, const Scalar& alpha, Device device,
                  IndexOpKind op))
EMBER_CUDA_ENTRY(void, index_scatter_fill,
                 (const IndexIter& it, DType dtype, DType index_dtype, const Scalar& value, Device device,
                  IndexOpKind op))

// Throws ember::Error if an index kernel on `device` met an out-of-range index (and clears the record).
// wait = true first waits for the device's work, so every launched kernel is accounted for.
EMBER_CUDA_ENTRY(void, check_index_errors, (Device device, bool wait))

}  // namespace ember::cuda
