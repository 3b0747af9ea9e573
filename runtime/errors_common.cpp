// Shared error helpers: unsupported dtype, and the "built without CUDA" error of the CUDA stubs.
#include "kernels/cuda/entry.h"
#include "kernels/dispatch.h"

namespace ember {

void throw_unsupported_dtype(const char* op, DType t, const char* expected) {
  EMBER_THROW(op, ": unsupported dtype ", dtype_name(t), " (expected ", expected, ")");
}

namespace detail {
void throw_no_cuda(const char* entry) {
  EMBER_THROW("cuda::", entry, ": ember was built without CUDA (configure with -DEMBER_CUDA=ON on a machine with "
              "the CUDA toolkit)");
}
}  // namespace detail

}  // namespace ember
