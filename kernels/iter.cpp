// Broadcasting and StridedIter construction (shared by the CPU and CUDA element-wise paths).
#include "kernels/iter.h"

#include <algorithm>

namespace ember {

DimVector broadcast_shapes(const char* op, IntArrayRef a, IntArrayRef b) {
  const size_t n = std::max(a.size(), b.size());
  DimVector out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    EMBER_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b,
                " cannot be broadcast together (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

DimVector broadcast_shapes(const char* op, std::initializer_list<IntArrayRef> shapes) {
  DimVector out;
  bool first = true;
  for (IntArrayRef s : shapes) {
    out = first ? DimVector(s) : broadcast_shapes(op, out, s);
    first = false;
  }
  return out;
}

StridedIter make_iter(const char* op, const Tensor& out, std::initializer_list<const Tensor*> inputs) {
  StridedIter it;
  const int64_t ndim = out.dim();
  EMBER_CHECK(ndim <= StridedIter::kMaxDims, op, ": tensors of more than ", StridedIter::kMaxDims,
              " dims are not supported (got ", ndim, ")");
  EMBER_ASSERT(static_cast<int>(inputs.size()) + 1 <= StridedIter::kMaxOperands, "too many operands");
  it.noperands = static_cast<int>(inputs.size()) + 1;
  it.numel = out.numel();

  const IntArrayRef shape = out.sizes();
  // Per-operand strides over the output's dims (outermost first for now), 0 where broadcast.
  int64_t st[StridedIter::kMaxOperands][StridedIter::kMaxDims];
  for (int64_t d = 0; d < ndim; ++d) {
    st[0][d] = shape[d] == 1 ? 0 : out.stride(d);
    EMBER_CHECK(shape[d] <= 1 || out.stride(d) != 0, op,
                ": the output has overlapping memory (an expanded tensor of shape ", shape,
                " with strides ", out.strides(), "); clone() it first");
  }
  it.data[0] = static_cast<char*>(out.raw_data());
  it.elem_size[0] = static_cast<int>(out.element_size());
  int k = 1;
  for (const Tensor* in : inputs) {
    const int64_t nd = in->dim();
    EMBER_CHECK(nd <= ndim, op, ": the input of shape ", in->sizes(), " does not broadcast to the output shape ",
                shape);
    for (int64_t d = 0; d < ndim; ++d) {
      const int64_t di = d - (ndim - nd);
      if (di < 0) {
        st[k][d] = 0;
        continue;
      }
      const int64_t s = in->size(di);
      EMBER_CHECK(s == shape[d] || s == 1, op, ": the input of shape ", in->sizes(),
                  " does not broadcast to the output shape ", shape);
      st[k][d] = s == 1 ? 0 : in->stride(di);
    }
    it.data[k] = static_cast<char*>(in->raw_data());
    it.elem_size[k] = static_cast<int>(in->element_size());
    ++k;
  }
  // Nothing to visit. The strides of an empty tensor whose other sizes multiply past int64 are saturated
  // (contiguous_strides), and the coalescing below would overflow on them.
  if (it.numel == 0) {
    it.ndim = 0;
    return it;
  }

  // Order dims innermost first. For a row-major output this is plain reversal; otherwise sort the
  // dims by the output's strides so that the output is written in memory order.
  int perm[StridedIter::kMaxDims];
  for (int64_t d = 0; d < ndim; ++d) perm[d] = static_cast<int>(ndim - 1 - d);
  if (!out.is_contiguous()) {
    std::stable_sort(perm, perm + ndim, [&](int x, int y) {
      // Broadcast (stride 0) output dims cannot occur except for size-1 dims, which go last.
      const int64_t sx = shape[x] == 1 ? INT64_MAX : st[0][x];
      const int64_t sy = shape[y] == 1 ? INT64_MAX : st[0][y];
      return sx < sy;
    });
  }

  // Drop size-1 dims and coalesce neighbours that are contiguous with each other in every operand.
  int nd = 0;
  for (int64_t p = 0; p < ndim; ++p) {
    const int d = perm[p];
    if (shape[d] == 1) continue;
    if (nd > 0) {
      bool mergeable = true;
      for (int op_i = 0; op_i < it.noperands; ++op_i)
        if (st[op_i][d] != it.strides[op_i][nd - 1] * it.shape[nd - 1]) mergeable = false;
      if (mergeable) {
        it.shape[nd - 1] *= shape[d];
        continue;
      }
    }
    it.shape[nd] = shape[d];
    for (int op_i = 0; op_i < it.noperands; ++op_i) it.strides[op_i][nd] = st[op_i][d];
    ++nd;
  }
  if (nd == 0 && it.numel == 1) {  // 0-d or all-ones shape: one element
    it.shape[0] = 1;
    for (int op_i = 0; op_i < it.noperands; ++op_i) it.strides[op_i][0] = 1;
    nd = 1;
  }
  it.ndim = it.numel == 0 ? 0 : nd;
  return it;
}

}  // namespace ember
