// CUDA kernel of cat/stack: one launch copies a group of contiguous inputs into their slices of the output.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/copy.h"
#include "kernels/cuda/join.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"

namespace ember::cuda {

namespace {

// One input of a fused launch. Units are "words" of the launch's vector width: the input is
// `outer` rows of `row` words, landing at word `offset` of each output row of `out_row` words.
struct CatPiece {
  const void* src;
  int64_t row;
  int64_t offset;
  int64_t numel;  // outer * row
};

// Inputs per launch: 64 pieces of 32 bytes keep the kernel parameters at about 2 KiB.
constexpr int kMaxPieces = 64;
struct CatGroup {
  CatPiece pieces[kMaxPieces];
};

// blockIdx.y picks the input; a grid-stride loop in x walks its words.
template <class W>
__global__ void cat_copy_kernel(const __grid_constant__ CatGroup group, W* __restrict__ out, int64_t out_row) {
  const CatPiece& p = group.pieces[blockIdx.y];
  const W* __restrict__ src = static_cast<const W*>(p.src);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
    const int64_t o = i / p.row;
    out[o * out_row + p.offset + (i - o * p.row)] = src[i];
  }
}

struct alignas(16) Word16 {
  uint4 v;
};

// The widest word (16, 8, 4, 2 or 1 bytes) that divides every byte count and address of the group.
int word_bytes(const CatPiece* pieces, int count, int64_t out_row_bytes, const void* out) {
  uint64_t bits = static_cast<uint64_t>(out_row_bytes) | reinterpret_cast<uintptr_t>(out);
  for (int i = 0; i < count; ++i)
    bits |= static_cast<uint64_t>(pieces[i].row) | static_cast<uint64_t>(pieces[i].offset) |
            reinterpret_cast<uintptr_t>(pieces[i].src);
  for (int w = 16; w > 1; w /= 2)
    if (bits % static_cast<uint64_t>(w) == 0) return w;
  return 1;
}

template <class W>
void launch_cat(const CatPiece* pieces, int count, int width, void* out, int64_t out_row_bytes, cudaStream_t stream) {
  CatGroup group{};
  int64_t most = 0;
  for (int i = 0; i < count; ++i) {
    group.pieces[i] = {pieces[i].src, pieces[i].row / width, pieces[i].offset / width, pieces[i].numel / width};
    most = std::max(most, group.pieces[i].numel);
  }
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((most + kThreads - 1) / kThreads, 4096);
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(blocks, 1)), static_cast<unsigned>(count));
  cat_copy_kernel<W><<<grid, kThreads, 0, stream>>>(group, static_cast<W*>(out), out_row_bytes / width);
  EMBER_CUDA_CHECK_LAUNCH();
}

}  // namespace

void cat(const Tensor& out, const std::vector<Tensor>& inputs, int64_t dim) {
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device());
  const cudaStream_t stream = static_cast<cudaStream_t>(current_stream(out.device().index()).handle());
  const int64_t esize = static_cast<int64_t>(out.element_size());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.size(d);
  for (int64_t d = dim + 1; d < out.dim(); ++d) inner *= out.size(d);
  const int64_t out_row = out.size(dim) * inner * esize;  // bytes

  // Pieces in bytes; strided inputs go through the copy kernels into a view of their slice.
  std::vector<CatPiece> pieces;
  int64_t offset = 0;
  for (const Tensor& t : inputs) {
    const int64_t row = t.size(dim) * inner * esize;
    if (row > 0) {
      if (t.is_contiguous()) {
        pieces.push_back({t.raw_data(), row, offset, outer * row});
      } else {
        const Tensor slice = make_tensor(out.storage(), t.sizes(), contiguous_strides(out.sizes()),
                                         out.storage_offset() + offset / esize, out.dtype());
        copy_(slice, t, /*non_blocking=*/false);
      }
    }
    offset += row;
  }
  for (size_t first = 0; first < pieces.size(); first += kMaxPieces) {
    const int count = static_cast<int>(std::min<size_t>(kMaxPieces, pieces.size() - first));
    const CatPiece* group = pieces.data() + first;
    switch (word_bytes(group, count, out_row, out.raw_data())) {
      case 16: launch_cat<Word16>(group, count, 16, out.raw_data(), out_row, stream); break;
      case 8: launch_cat<uint64_t>(group, count, 8, out.raw_data(), out_row, stream); break;
      case 4: launch_cat<uint32_t>(group, count, 4, out.raw_data(), out_row, stream); break;
      case 2: launch_cat<uint16_t>(group, count, 2, out.raw_data(), out_row, stream); break;
      default: launch_cat<uint8_t>(group, count, 1, out.raw_data(), out_row, stream); break;
    }
  }
}

}  // namespace ember::cuda
