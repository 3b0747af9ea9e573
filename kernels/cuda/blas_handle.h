// cuBLAS and cuBLASLt handles with their workspaces, one set per (device, thread) (CUDA builds only).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstddef>

#include "runtime/cuda/stream.h"

namespace ember::cuda {

// The calling thread's cuBLAS handle for `stream`'s device, bound to `stream` and to a workspace used
// by work on that stream only. Call it with that device current (under a DeviceGuard), right before
// the cuBLAS calls it serves; the handle stays the thread's own (never hand it to another thread).
cublasHandle_t blas_handle(const Stream& stream);

// The calling thread's cuBLASLt handle for `device` (cuBLASLt takes the stream per call).
cublasLtHandle_t blaslt_handle(int device);

// The workspace reserved for `stream` on the calling thread (the one blas_handle binds), for
// cublasLtMatmul's workspace arguments.
struct BlasWorkspace {
  void* data = nullptr;
  size_t bytes = 0;
};
BlasWorkspace blas_workspace(const Stream& stream);

}  // namespace ember::cuda
