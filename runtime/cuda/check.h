// EMBER_CUDA_CHECK and friends: CUDA, cuBLAS, cuDNN and NCCL status codes to ember::Error (CUDA builds only).
//
// Only the CUDA runtime header is included here. The cuBLAS/cuDNN/NCCL macros name the library's own
// error-string function in their expansion, so they compile wherever the library's header is already
// included (it must be, to make the call being checked) and this header stays cheap for everyone else.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "runtime/error.h"

namespace ember::cuda::detail {

// Throws ember::Error: "CUDA error: <string> (<name>) in `<expr>` at <file>:<line>". Clears the
// runtime's last-error slot first so that a later EMBER_CUDA_CHECK_LAUNCH() does not report it again.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
// Same message through log_warning; never throws (for destructors).
void warn_cuda_error(cudaError_t err, const char* expr, const char* file, int line) noexcept;
// For the other libraries: `library` ("cuBLAS", ...), the numeric status, the library's string for it
// and an optional extra detail (cuDNN's / NCCL's last-error text; may be null or empty).
[[noreturn]] void throw_library_error(const char* library, int status, const char* what, const char* detail,
                                      const char* expr, const char* file, int line);
// cuDNN 9 keeps a per-thread description of the last failure (cudnnGetLastErrorString); the macro
// passes that function in, so neither this header nor check.cpp depends on cudnn.h.
using LastErrorFn = void (*)(char* message, size_t max_size);
[[noreturn]] void throw_cudnn_error(int status, const char* what, LastErrorFn last_error, const char* expr,
                                    const char* file, int line);

}  // namespace ember::cuda::detail

#define EMBER_CUDA_CHECK(expr)                                                             \
  do {                                                                                     \
    const cudaError_t ember_cuda_err_ = (expr);                                            \
    if (ember_cuda_err_ != cudaSuccess) [[unlikely]]                                       \
      ::ember::cuda::detail::throw_cuda_error(ember_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors are reported by cudaGetLastError().
#define EMBER_CUDA_CHECK_LAUNCH()                                                                            \
  do {                                                                                                       \
    const cudaError_t ember_cuda_err_ = cudaGetLastError();                                                  \
    if (ember_cuda_err_ != cudaSuccess) [[unlikely]]                                                         \
      ::ember::cuda::detail::throw_cuda_error(ember_cuda_err_, "kernel launch (cudaGetLastError)", __FILE__, \
                                              __LINE__);                                                     \
  } while (0)

// For destructors and other no-throw paths: logs a warning instead of throwing.
#define EMBER_CUDA_WARN(expr)                                                             \
  do {                                                                                    \
    const cudaError_t ember_cuda_err_ = (expr);                                           \
    if (ember_cuda_err_ != cudaSuccess) [[unlikely]]                                      \
      ::ember::cuda::detail::warn_cuda_error(ember_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// Needs <cublas_v2.h> (or <cublasLt.h>) included by the caller.
#define EMBER_CUBLAS_CHECK(expr)                                                                              \
  do {                                                                                                        \
    const cublasStatus_t ember_cublas_status_ = (expr);                                                       \
    if (ember_cublas_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                           \
      ::ember::cuda::detail::throw_library_error("cuBLAS", static_cast<int>(ember_cublas_status_),            \
                                                 cublasGetStatusString(ember_cublas_status_), nullptr, #expr, \
                                                 __FILE__, __LINE__);                                         \
  } while (0)

// Needs <cudnn.h> included by the caller.
#define EMBER_CUDNN_CHECK(expr)                                                                                    \
  do {                                                                                                             \
    const cudnnStatus_t ember_cudnn_status_ = (expr);                                                              \
    if (ember_cudnn_status_ != CUDNN_STATUS_SUCCESS) [[unlikely]]                                                  \
      ::ember::cuda::detail::throw_cudnn_error(static_cast<int>(ember_cudnn_status_),                              \
                                               cudnnGetErrorString(ember_cudnn_status_), &cudnnGetLastErrorString, \
                                               #expr, __FILE__, __LINE__);                                         \
  } while (0)

// Needs <nccl.h> included by the caller. ncclGetLastError(nullptr) adds NCCL's description of the
// last failure (e.g. which peer or transport failed). Only ncclSuccess passes: code that uses
// non-blocking communicators handles ncclInProgress itself.
#define EMBER_NCCL_CHECK(expr)                                                                                      \
  do {                                                                                                              \
    const ncclResult_t ember_nccl_result_ = (expr);                                                                 \
    if (ember_nccl_result_ != ncclSuccess) [[unlikely]]                                                             \
      ::ember::cuda::detail::throw_library_error("NCCL", static_cast<int>(ember_nccl_result_),                      \
                                                 ncclGetErrorString(ember_nccl_result_), ncclGetLastError(nullptr), \
                                                 #expr, __FILE__, __LINE__);                                        \
  } while (0)
