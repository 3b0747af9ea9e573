// The out-of-line halves of EMBER_CUDA_CHECK & co.: message formatting, throwing and warning.
#include "runtime/cuda/check.h"

#include <string>

namespace ember::cuda::detail {

namespace {

// Errors raised by a kernel that already ran (reported by whatever CUDA call comes next) leave the
// context unusable; the call named in the message is then rarely the culprit.
bool is_asynchronous_kernel_error(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorAssert:
    case cudaErrorMisalignedAddress:
    case cudaErrorIllegalInstruction:
    case cudaErrorHardwareStackError:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchTimeout:
      return true;
    default:
      return false;
  }
}

std::string cuda_message(cudaError_t err, const char* expr, const char* file, int line) {
  std::string msg = ember::detail::str_cat("CUDA error: ", cudaGetErrorString(err), " (", cudaGetErrorName(err),
                                           ") in `", expr, "` at ", file, ":", line);
  if (is_asynchronous_kernel_error(err)) {
    msg +=
        "; kernel errors are reported asynchronously, so the failing kernel may have been launched "
        "earlier: run with CUDA_LAUNCH_BLOCKING=1 to find it";
  }
  return msg;
}

}  // namespace

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  // Resets the last-error slot (a no-op for sticky errors, which no call can clear).
  (void)cudaGetLastError();
  throw Error(cuda_message(err, expr, file, line));
}

void warn_cuda_error(cudaError_t err, const char* expr, const char* file, int line) noexcept {
  (void)cudaGetLastError();
  // At process exit the runtime may unload before our last destructors run; the resources are gone
  // with it, so there is nothing worth reporting.
  if (err == cudaErrorCudartUnloading) return;
  try {
    ember::detail::log_warning(cuda_message(err, expr, file, line));
  } catch (...) {  // allocation failure while formatting: drop the warning rather than terminate
  }
}

void throw_library_error(const char* library, int status, const char* what, const char* detail, const char* expr,
                         const char* file, int line) {
  std::string msg = ember::detail::str_cat(library, " error: ", what != nullptr ? what : "unknown status", " (status ",
                                           status, ") in `", expr, "` at ", file, ":", line);
  if (detail != nullptr && detail[0] != '\0') msg += ember::detail::str_cat(": ", detail);
  throw Error(std::move(msg));
}

void throw_cudnn_error(int status, const char* what, LastErrorFn last_error, const char* expr, const char* file,
                       int line) {
  char detail[512] = {};
  if (last_error != nullptr) last_error(detail, sizeof(detail));
  detail[sizeof(detail) - 1] = '\0';
  throw_library_error("cuDNN", status, what, detail, expr, file, line);
}

}  // namespace ember::cuda::detail
