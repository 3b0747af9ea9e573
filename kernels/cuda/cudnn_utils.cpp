// Per-(device, thread) cuDNN handles with a teardown that is safe at process exit, and RAII descriptors.
#include "kernels/cuda/cudnn_utils.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/cuda/check.h"
#include "runtime/cuda/guard.h"
#include "runtime/error.h"

namespace ember::cuda {

namespace {

// Handles live in a thread_local table, one per device the thread used, and are destroyed when the
// thread exits, except once the process is exiting: the same reasoning and atexit trick as
// Note [cuBLAS handle lifetime] (kernels/cuda/blas_handle.cpp): cudnnDestroy after the CUDA runtime
// has been torn down can crash, and the driver reclaims everything at exit anyway.
std::atomic<bool> g_process_exiting{false};
std::once_flag g_atexit_once;
void mark_process_exiting() { g_process_exiting.store(true, std::memory_order_release); }

class DeviceCudnn {
 public:
  explicit DeviceCudnn(int device) : device_(device) {
    DeviceGuard guard(device);
    EMBER_CUDNN_CHECK(cudnnCreate(&handle_));
    std::call_once(g_atexit_once, [] { std::atexit(mark_process_exiting); });
  }
  ~DeviceCudnn() {
    if (g_process_exiting.load(std::memory_order_acquire)) return;
    int previous = -1;
    if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
    EMBER_CUDA_WARN(cudaSetDevice(device_));
    if (cudnnDestroy(handle_) != CUDNN_STATUS_SUCCESS) ::ember::detail::log_warning("cudnnDestroy failed");
    if (previous >= 0) EMBER_CUDA_WARN(cudaSetDevice(previous));
  }
  DeviceCudnn(const DeviceCudnn&) = delete;
  DeviceCudnn& operator=(const DeviceCudnn&) = delete;

  cudnnHandle_t bind(const Stream& stream) {
    EMBER_CUDNN_CHECK(cudnnSetStream(handle_, static_cast<cudaStream_t>(stream.handle())));
    return handle_;
  }

 private:
  int device_;
  cudnnHandle_t handle_ = nullptr;
};

DeviceCudnn& device_cudnn(int device) {
  thread_local std::vector<std::unique_ptr<DeviceCudnn>> table;
  EMBER_ASSERT(device >= 0, "cuDNN handle for device ", device);
  if (static_cast<size_t>(device) >= table.size()) table.resize(static_cast<size_t>(device) + 1);
  auto& slot = table[static_cast<size_t>(device)];
  if (!slot) slot = std::make_unique<DeviceCudnn>(device);
  return *slot;
}

int to_int(int64_t v, const char* what) {
  EMBER_CHECK(v >= 0 && v <= INT_MAX, "cuDNN: the ", what, " ", v, " does not fit in a 32-bit int");
  return static_cast<int>(v);
}

}  // namespace

cudnnHandle_t cudnn_handle(const Stream& stream) { return device_cudnn(stream.device_index()).bind(stream); }

cudnnDataType_t cudnn_dtype(DType t, const char* op) {
  switch (t) {
    case DType::Float32: return CUDNN_DATA_FLOAT;
    case DType::Float64: return CUDNN_DATA_DOUBLE;
    case DType::Float16: return CUDNN_DATA_HALF;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    default: EMBER_THROW(op, ": cuDNN supports float32, float64, float16 and bfloat16 tensors, got ", t);
  }
}

TensorDescriptor::TensorDescriptor() { EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc_)); }
TensorDescriptor::~TensorDescriptor() {
  if (cudnnDestroyTensorDescriptor(desc_) != CUDNN_STATUS_SUCCESS)
    ::ember::detail::log_warning("cudnnDestroyTensorDescriptor failed");
}
void TensorDescriptor::set(cudnnDataType_t dtype, int64_t n, int64_t c, int64_t h, int64_t w) {
  EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, dtype, to_int(n, "batch size"),
                                               to_int(c, "channel count"), to_int(h, "height"), to_int(w, "width")));
}

FilterDescriptor::FilterDescriptor() { EMBER_CUDNN_CHECK(cudnnCreateFilterDescriptor(&desc_)); }
FilterDescriptor::~FilterDescriptor() {
  if (cudnnDestroyFilterDescriptor(desc_) != CUDNN_STATUS_SUCCESS)
    ::ember::detail::log_warning("cudnnDestroyFilterDescriptor failed");
}
void FilterDescriptor::set(cudnnDataType_t dtype, int64_t k, int64_t c, int64_t h, int64_t w) {
  EMBER_CUDNN_CHECK(cudnnSetFilter4dDescriptor(desc_, dtype, CUDNN_TENSOR_NCHW, to_int(k, "output channel count"),
                                               to_int(c, "input channel count"), to_int(h, "kernel height"),
                                               to_int(w, "kernel width")));
}

ConvolutionDescriptor::ConvolutionDescriptor() { EMBER_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&desc_)); }
ConvolutionDescriptor::~ConvolutionDescriptor() {
  if (cudnnDestroyConvolutionDescriptor(desc_) != CUDNN_STATUS_SUCCESS)
    ::ember::detail::log_warning("cudnnDestroyConvolutionDescriptor failed");
}
void ConvolutionDescriptor::set(cudnnDataType_t compute, const int64_t pad[2], const int64_t stride[2],
                                const int64_t dilation[2], int64_t groups, cudnnMathType_t math) {
  EMBER_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(desc_, to_int(pad[0], "padding"), to_int(pad[1], "padding"),
                                                    to_int(stride[0], "stride"), to_int(stride[1], "stride"),
                                                    to_int(dilation[0], "dilation"), to_int(dilation[1], "dilation"),
                                                    CUDNN_CROSS_CORRELATION, compute));
  EMBER_CUDNN_CHECK(cudnnSetConvolutionGroupCount(desc_, to_int(groups, "group count")));
  set_math(math);
}
void ConvolutionDescriptor::set_math(cudnnMathType_t math) {
  EMBER_CUDNN_CHECK(cudnnSetConvolutionMathType(desc_, math));
}

}  // namespace ember::cuda
