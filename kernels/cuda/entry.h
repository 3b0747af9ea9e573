// EMBER_CUDA_ENTRY: declares a CUDA backend entry point, or (in kernels/cuda_stub.cpp of a CPU-only
// build) defines it to throw "built without CUDA", so that op files need no #ifdef.
#pragma once

#include "runtime/error.h"

namespace ember::detail {
[[noreturn]] void throw_no_cuda(const char* entry);
}

#if defined(EMBER_DEFINE_CUDA_STUBS)
#define EMBER_CUDA_ENTRY(ret, name, params) \
  ret name params { ::ember::detail::throw_no_cuda(#name); }
#else
#define EMBER_CUDA_ENTRY(ret, name, params) ret name params;
#endif
