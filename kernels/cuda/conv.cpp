// conv2d on cuDNN (legacy convolution API): cached algorithm choice, workspaces from the caching allocator.
#include "kernels/cuda/conv.h"

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/cudnn_utils.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"
#include "runtime/factory.h"

namespace ember::cuda {

namespace {

// Note [cuDNN convolution algorithms]
// For each (direction, shape, hyper-parameters, dtype, device, TF32 setting) the algorithm is chosen
// once with cuDNN's heuristics (cudnnGet*Algorithm_v7: no trial runs, so no extra memory and no
// synchronisation on the first call) and cached in a process-wide map behind a mutex; later calls with
// the same key only build descriptors. The first candidate that cuDNN reports as supported and whose
// math type respects the TF32 setting wins. Its workspace is an ordinary uint8 tensor from the caching
// allocator, freed (back to the cache) when the call returns, so steady-state training does no cudaMalloc.
//
// Math types (as PyTorch): float32 uses CUDNN_FMA_MATH unless cuda::allow_tf32() -- CUDNN_DEFAULT_MATH
// lets cuDNN 8+ pick TF32 kernels on Ampere and later, so it is what TF32-on means here --
// float16/bfloat16 use CUDNN_TENSOR_OP_MATH, float64 CUDNN_DEFAULT_MATH.
//
// cuDNN's legacy API describes tensors with int dims and indexes them with 32 bits, so the batch is
// split into chunks whose input and output each hold fewer than 2^31 elements (the weight gradient
// accumulates over chunks with beta = 1).
//
// Note [conv2d bias on CUDA]
// The bias is added, and its gradient summed, by ember's own kernels (in kernels/conv.cpp, the op layer:
// out += bias.view({1, K, 1, 1}), grad_output.sum({0, 2, 3})) rather than cudnnAddTensor and
// cudnnConvolutionBackwardBias: cuDNN 9 may answer CUDNN_STATUS_NOT_SUPPORTED for those with bfloat16.
// Ember's kernels run on every dtype, on the device's current stream (the one the cuDNN handle is bound
// to), accumulate 16-bit floats in float, need no 2^31 chunking, and are one path for all dtypes; this
// file only takes an undefined bias.

enum class Direction : int64_t { Forward = 0, BackwardData = 1, BackwardFilter = 2 };

constexpr size_t kKeyLen = 19;
struct AlgoKey {
  std::array<int64_t, kKeyLen> v{};
  bool operator==(const AlgoKey& o) const { return v == o.v; }
};
struct AlgoKeyHash {
  size_t operator()(const AlgoKey& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the words
    for (int64_t x : k.v) {
      h ^= static_cast<uint64_t>(x);
      h *= 1099511628211ull;
    }
    return static_cast<size_t>(h);
  }
};
struct AlgoChoice {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

class AlgoCache {
 public:
  std::optional<AlgoChoice> find(const AlgoKey& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  void insert(const AlgoKey& key, const AlgoChoice& choice) {
    std::lock_guard<std::mutex> lock(mutex_);
    map_.emplace(key, choice);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<AlgoKey, AlgoChoice, AlgoKeyHash> map_;
};

// Holds no CUDA resources (plain numbers), so a function-local static is safe at exit.
AlgoCache& algo_cache() {
  static AlgoCache cache;
  return cache;
}

cudnnMathType_t base_math(DType t) {
  if (t == kFloat32) return allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  if (is_reduced_float(t)) return CUDNN_TENSOR_OP_MATH;
  return CUDNN_DEFAULT_MATH;
}

// Whether a candidate's math type is allowed under `base` (FMA: no tensor-core math at all).
bool math_allowed(cudnnMathType_t base, cudnnMathType_t candidate) {
  if (base == CUDNN_FMA_MATH) return candidate == CUDNN_FMA_MATH || candidate == CUDNN_DEFAULT_MATH;
  return true;
}

// Everything one chunk of the batch needs: descriptors, the cache key prefix, the handle.
struct ConvSetup {
  cudnnHandle_t handle = nullptr;
  DType dtype = kFloat32;
  cudnnDataType_t data_type = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  int device = 0;
  int64_t c = 0, h = 0, w = 0, k = 0, kc = 0, kh = 0, kw = 0, ho = 0, wo = 0;
  Conv2dParams p;
  TensorDescriptor x, y;
  FilterDescriptor filter;
  ConvolutionDescriptor conv;
  int64_t batch = -1;  // the batch size the x/y descriptors describe

  void describe_batch(int64_t n) {
    if (n == batch) return;
    x.set(data_type, n, c, h, w);
    y.set(data_type, n, k, ho, wo);
    batch = n;
  }

  AlgoKey key(Direction d) const {
    AlgoKey key;
    key.v = {static_cast<int64_t>(d),
             static_cast<int64_t>(dtype),
             device,
             allow_tf32() ? 1 : 0,
             batch,
             c,
             h,
             w,
             k,
             kh,
             kw,
             p.padding[0],
             p.padding[1],
             p.stride[0],
             p.stride[1],
             p.dilation[0],
             p.dilation[1],
             p.groups,
             kc};
    return key;
  }
};

std::string describe(const ConvSetup& s) {
  return ::ember::detail::str_cat("input [", s.batch, ", ", s.c, ", ", s.h, ", ", s.w, "], weight [", s.k, ", ", s.kc,
                                  ", ", s.kh, ", ", s.kw, "], stride [", s.p.stride[0], ", ", s.p.stride[1],
                                  "], padding [", s.p.padding[0], ", ", s.p.padding[1], "], dilation [",
                                  s.p.dilation[0], ", ", s.p.dilation[1], "], groups ", s.p.groups, ", ", s.dtype);
}

// Picks the first supported candidate of a _v7 heuristic list whose math type is allowed.
template <class Perf>
std::optional<AlgoChoice> pick(const std::vector<Perf>& perf, int returned, cudnnMathType_t base) {
  for (int i = 0; i < returned; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || !math_allowed(base, perf[i].mathType)) continue;
    AlgoChoice c;
    c.algo = static_cast<int>(perf[i].algo);
    c.math = base == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : perf[i].mathType;
    return c;
  }
  return std::nullopt;
}

AlgoChoice choose(ConvSetup& s, Direction d) {
  const AlgoKey key = s.key(d);
  if (auto hit = algo_cache().find(key)) return *hit;
  s.conv.set_math(s.math);
  std::optional<AlgoChoice> choice;
  int count = 0, returned = 0;
  if (d == Direction::Forward) {
    EMBER_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(s.handle, &count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
    EMBER_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(s.handle, s.x.get(), s.filter.get(), s.conv.get(),
                                                             s.y.get(), count, &returned, perf.data()));
    choice = pick(perf, returned, s.math);
    if (choice) {
      s.conv.set_math(choice->math);
      EMBER_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(
          s.handle, s.x.get(), s.filter.get(), s.conv.get(), s.y.get(),
          static_cast<cudnnConvolutionFwdAlgo_t>(choice->algo), &choice->workspace));
    }
  } else if (d == Direction::BackwardData) {
    EMBER_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(s.handle, &count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
    EMBER_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(s.handle, s.filter.get(), s.y.get(), s.conv.get(),
                                                                  s.x.get(), count, &returned, perf.data()));
    choice = pick(perf, returned, s.math);
    if (choice) {
      s.conv.set_math(choice->math);
      EMBER_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
          s.handle, s.filter.get(), s.y.get(), s.conv.get(), s.x.get(),
          static_cast<cudnnConvolutionBwdDataAlgo_t>(choice->algo), &choice->workspace));
    }
  } else {
    EMBER_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(s.handle, &count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
    EMBER_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(s.handle, s.x.get(), s.y.get(), s.conv.get(),
                                                                    s.filter.get(), count, &returned, perf.data()));
    choice = pick(perf, returned, s.math);
    if (choice) {
      s.conv.set_math(choice->math);
      EMBER_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
          s.handle, s.x.get(), s.y.get(), s.conv.get(), s.filter.get(),
          static_cast<cudnnConvolutionBwdFilterAlgo_t>(choice->algo), &choice->workspace));
    }
  }
  static const char* const kNames[] = {"forward", "backward-data", "backward-filter"};
  EMBER_CHECK(choice.has_value(), "conv2d: cuDNN offers no ", kNames[static_cast<int>(d)],
              " algorithm for this convolution (", describe(s), ") under the current math settings");
  algo_cache().insert(key, *choice);
  return *choice;
}

// The chosen algorithm with its math type applied to the descriptor, and a workspace for it.
struct Prepared {
  AlgoChoice choice;
  Tensor workspace;
  void* data() const { return workspace.defined() ? workspace.raw_data() : nullptr; }
};
Prepared prepare(ConvSetup& s, Direction d) {
  Prepared r;
  r.choice = choose(s, d);
  s.conv.set_math(r.choice.math);
  if (r.choice.workspace > 0)
    r.workspace =
        empty({static_cast<int64_t>(r.choice.workspace)}, TensorOptions().dtype(kUInt8).device(Device::cuda(s.device)));
  return r;
}

// Images per chunk so that a chunk's input and output each hold fewer than 2^31 elements.
int64_t chunk_images(int64_t n, int64_t per_image_in, int64_t per_image_out, const char* op) {
  const int64_t per_image = std::max<int64_t>({per_image_in, per_image_out, 1});
  EMBER_CHECK(per_image <= INT_MAX, op, ": one image of ", per_image,
              " elements is more than cuDNN's 32-bit indexing supports");
  return std::clamp<int64_t>(INT_MAX / per_image, 1, std::max<int64_t>(n, 1));
}

// Scaling factors: double for double data, float otherwise (cuDNN's rule).
struct Scale {
  double d;
  float f;
  explicit Scale(double v) : d(v), f(static_cast<float>(v)) {}
  const void* get(DType t) const { return t == kFloat64 ? static_cast<const void*>(&d) : static_cast<const void*>(&f); }
};

void init_setup(ConvSetup& s, const Tensor& input, const Tensor& weight, int64_t ho, int64_t wo,
                const Conv2dParams& p) {
  s.device = input.device().index();
  s.dtype = input.dtype();
  s.data_type = cudnn_dtype(s.dtype, "conv2d");
  s.math = base_math(s.dtype);
  s.c = input.size(1);
  s.h = input.size(2);
  s.w = input.size(3);
  s.k = weight.size(0);
  s.kc = weight.size(1);
  s.kh = weight.size(2);
  s.kw = weight.size(3);
  s.ho = ho;
  s.wo = wo;
  s.p = p;
  s.handle = cudnn_handle(current_stream(s.device));
  s.filter.set(s.data_type, s.k, s.kc, s.kh, s.kw);
  s.conv.set(s.dtype == kFloat64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT, p.padding, p.stride, p.dilation, p.groups,
             s.math);
}

}  // namespace

void conv2d_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& out,
                    const Conv2dParams& p) {
  EMBER_CHECK(!bias.defined(), "conv2d (CUDA): the bias is added by the caller (Note [conv2d bias on CUDA])");
  DeviceGuard guard(input.device());
  ConvSetup s;
  init_setup(s, input, weight, out.size(2), out.size(3), p);
  const int64_t n = input.size(0), in_image = s.c * s.h * s.w, out_image = s.k * s.ho * s.wo;
  const int64_t chunk = chunk_images(n, in_image, out_image, "conv2d");
  const Scale one(1.0), zero(0.0);
  const size_t esize = element_size(s.dtype);
  const char* x = static_cast<const char*>(input.raw_data());
  char* y = static_cast<char*>(out.raw_data());
  for (int64_t n0 = 0; n0 < n; n0 += chunk) {
    s.describe_batch(std::min(chunk, n - n0));
    const Prepared fwd = prepare(s, Direction::Forward);
    const void* xi = x + static_cast<size_t>(n0 * in_image) * esize;
    void* yi = y + static_cast<size_t>(n0 * out_image) * esize;
    EMBER_CUDNN_CHECK(cudnnConvolutionForward(s.handle, one.get(s.dtype), s.x.get(), xi, s.filter.get(),
                                              weight.raw_data(), s.conv.get(),
                                              static_cast<cudnnConvolutionFwdAlgo_t>(fwd.choice.algo), fwd.data(),
                                              fwd.choice.workspace, zero.get(s.dtype), s.y.get(), yi));
  }
}

void conv2d_backward(const Tensor& grad_output, const Tensor& input, const Tensor& weight, const Conv2dParams& p,
                     const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias) {
  EMBER_CHECK(!grad_bias.defined(),
              "conv2d_backward (CUDA): the bias gradient is summed by the caller (Note [conv2d bias on CUDA])");
  DeviceGuard guard(input.device());
  ConvSetup s;
  init_setup(s, input, weight, grad_output.size(2), grad_output.size(3), p);
  const int64_t n = input.size(0), in_image = s.c * s.h * s.w, out_image = s.k * s.ho * s.wo;
  const int64_t chunk = chunk_images(n, in_image, out_image, "conv2d_backward");
  const Scale one(1.0), zero(0.0);
  const size_t esize = element_size(s.dtype);
  const char* x = static_cast<const char*>(input.raw_data());
  const char* dy = static_cast<const char*>(grad_output.raw_data());
  char* dx = grad_input.defined() ? static_cast<char*>(grad_input.raw_data()) : nullptr;
  for (int64_t n0 = 0; n0 < n; n0 += chunk) {
    s.describe_batch(std::min(chunk, n - n0));
    const void* xi = x + static_cast<size_t>(n0 * in_image) * esize;
    const void* dyi = dy + static_cast<size_t>(n0 * out_image) * esize;
    // Later chunks add to the weight gradient of the earlier ones.
    const Scale& accumulate = n0 == 0 ? zero : one;
    if (dx) {
      const Prepared bwd = prepare(s, Direction::BackwardData);
      EMBER_CUDNN_CHECK(cudnnConvolutionBackwardData(
          s.handle, one.get(s.dtype), s.filter.get(), weight.raw_data(), s.y.get(), dyi, s.conv.get(),
          static_cast<cudnnConvolutionBwdDataAlgo_t>(bwd.choice.algo), bwd.data(), bwd.choice.workspace,
          zero.get(s.dtype), s.x.get(), dx + static_cast<size_t>(n0 * in_image) * esize));
    }
    if (grad_weight.defined()) {
      const Prepared bwf = prepare(s, Direction::BackwardFilter);
      EMBER_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
          s.handle, one.get(s.dtype), s.x.get(), xi, s.y.get(), dyi, s.conv.get(),
          static_cast<cudnnConvolutionBwdFilterAlgo_t>(bwf.choice.algo), bwf.data(), bwf.choice.workspace,
          accumulate.get(s.dtype), s.filter.get(), grad_weight.raw_data()));
    }
  }
}

}  // namespace ember::cuda
