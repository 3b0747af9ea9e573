// Portability macros shared by host code and CUDA code (EMBER_HD, EMBER_ALWAYS_INLINE).
#pragma once

#if defined(__CUDACC__)
#define EMBER_HD __host__ __device__
#define EMBER_DEVICE __device__
#else
#define EMBER_HD
#define EMBER_DEVICE
#endif

#if defined(__GNUC__)
#define EMBER_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define EMBER_ALWAYS_INLINE inline
#endif

#define EMBER_STRINGIFY_IMPL(x) #x
#define EMBER_STRINGIFY(x) EMBER_STRINGIFY_IMPL(x)
