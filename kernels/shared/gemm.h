// How BLAS (OpenBLAS, cuBLAS) reads a strided matrix without a copy: blas_layout(), shared by the CPU and CUDA GEMMs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>

namespace ember {

// A [rows, cols] matrix as BLAS sees it in row-major terms: stored row by row with leading dimension
// `ld` (transposed == false), or stored column by column, i.e. as the row-major [cols, rows] matrix
// whose transpose it is (transposed == true: pass CblasTrans / CUBLAS_OP_T instead of copying).
struct MatrixLayout {
  bool transposed = false;
  int64_t ld = 1;
};

// Note [BLAS layouts]
// BLAS needs one of the two matrix strides to be 1 and the other (the leading dimension) to be at
// least the extent of the unit-stride dim (and at least 1). A dim of extent <= 1 is never stepped
// along, so its stride is free: it is normalised so that row vectors, column vectors and 1x1
// matrices are always readable. Anything else (stride-0 expanded rows, every-other-column slices,
// leading dimensions beyond 32-bit BLAS ints) has no layout and is copied to contiguous by the caller.
inline std::optional<MatrixLayout> blas_layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  constexpr int64_t kMaxLd = std::numeric_limits<int32_t>::max();
  const int64_t min_ld_rows = std::max<int64_t>(1, cols), min_ld_cols = std::max<int64_t>(1, rows);
  if (col_stride == 1 || cols <= 1) {
    const int64_t ld = rows <= 1 ? min_ld_rows : row_stride;
    if (ld >= min_ld_rows && ld <= kMaxLd) return MatrixLayout{false, ld};
  }
  if (row_stride == 1 || rows <= 1) {
    const int64_t ld = cols <= 1 ? min_ld_cols : col_stride;
    if (ld >= min_ld_cols && ld <= kMaxLd) return MatrixLayout{true, ld};
  }
  return std::nullopt;
}

}  // namespace ember
