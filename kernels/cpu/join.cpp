// CPU kernel of cat/stack: one memcpy per outer slice for contiguous inputs, a strided copy otherwise.
#include "kernels/cpu/join.h"

#include <cstring>

#include "kernels/cpu/copy.h"
#include "kernels/cpu/loops.h"

namespace ember::cpu {

namespace {
// Bytes below which one thread copies everything (a fork/join costs a few microseconds).
constexpr int64_t kParallelBytes = int64_t{1} << 18;
}  // namespace

void cat(const Tensor& out, const std::vector<Tensor>& inputs, int64_t dim) {
  if (out.numel() == 0) return;
  const int64_t esize = static_cast<int64_t>(out.element_size());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.size(d);
  for (int64_t d = dim + 1; d < out.dim(); ++d) inner *= out.size(d);
  const int64_t out_row = out.size(dim) * inner * esize;  // bytes of one outer slice of out
  char* dst = static_cast<char*>(out.raw_data());

  // Contiguous inputs: (source, byte offset in an out row, bytes per outer slice).
  struct Piece {
    const char* src;
    int64_t offset;
    int64_t row;
  };
  std::vector<Piece> pieces;
  pieces.reserve(inputs.size());
  int64_t offset = 0;
  for (const Tensor& t : inputs) {
    const int64_t row = t.size(dim) * inner * esize;
    if (row > 0 && outer > 0) {
      if (t.is_contiguous()) {
        pieces.push_back({static_cast<const char*>(t.raw_data()), offset, row});
      } else {
        // A strided input: the element-wise copy loop writes its slice of out.
        DimVector strides = contiguous_strides(out.sizes());
        const Tensor slice =
            make_tensor(out.storage(), t.sizes(), strides, out.storage_offset() + offset / esize, out.dtype());
        copy(slice, t);
      }
    }
    offset += row;
  }
  if (pieces.empty()) return;
  const int64_t total = outer * out_row;
  if (outer == 1) {  // cat along the outermost non-trivial dim: one block per input
    for (const Piece& p : pieces) {
      parallel_for(p.row, kParallelBytes, [&](int64_t b, int64_t e) {
        std::memcpy(dst + p.offset + b, p.src + b, static_cast<size_t>(e - b));
      });
    }
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kParallelBytes / std::max<int64_t>(out_row, 1));
  parallel_for(outer, total <= kParallelBytes ? outer : grain, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      char* row = dst + o * out_row;
      for (const Piece& p : pieces) std::memcpy(row + p.offset, p.src + o * p.row, static_cast<size_t>(p.row));
    }
  });
}

}  // namespace ember::cpu
