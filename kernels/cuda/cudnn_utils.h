// cuDNN handles per (device, thread), RAII descriptors and the dtype mapping (CUDA builds only).
#pragma once

#include <cudnn.h>

#include <cstdint>

#include "runtime/cuda/stream.h"
#include "runtime/dtype.h"

namespace ember::cuda {

// The calling thread's cuDNN handle for `stream`'s device, bound to `stream` (cudnnSetStream). Call it
// with that device current (under a DeviceGuard) right before the cuDNN calls it serves; the handle
// stays the thread's own (never hand it to another thread).
cudnnHandle_t cudnn_handle(const Stream& stream);

// float32/float64/float16/bfloat16 -> cuDNN's data type; other dtypes throw, naming `op`.
cudnnDataType_t cudnn_dtype(DType t, const char* op);

// Owns one cudnnTensorDescriptor_t.
class TensorDescriptor {
 public:
  TensorDescriptor();
  ~TensorDescriptor();
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
  // A contiguous NCHW tensor (dims must fit in int).
  void set(cudnnDataType_t dtype, int64_t n, int64_t c, int64_t h, int64_t w);
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

// Owns one cudnnFilterDescriptor_t (NCHW filters: [out, in / groups, kH, kW]).
class FilterDescriptor {
 public:
  FilterDescriptor();
  ~FilterDescriptor();
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;
  void set(cudnnDataType_t dtype, int64_t k, int64_t c, int64_t h, int64_t w);
  cudnnFilterDescriptor_t get() const { return desc_; }

 private:
  cudnnFilterDescriptor_t desc_ = nullptr;
};

// Owns one cudnnConvolutionDescriptor_t.
class ConvolutionDescriptor {
 public:
  ConvolutionDescriptor();
  ~ConvolutionDescriptor();
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;
  // Cross-correlation (PyTorch's convolution) with `compute` accumulation, groups and a math type.
  void set(cudnnDataType_t compute, const int64_t pad[2], const int64_t stride[2], const int64_t dilation[2],
           int64_t groups, cudnnMathType_t math);
  void set_math(cudnnMathType_t math);
  cudnnConvolutionDescriptor_t get() const { return desc_; }

 private:
  cudnnConvolutionDescriptor_t desc_ = nullptr;
};

}  // namespace ember::cuda
