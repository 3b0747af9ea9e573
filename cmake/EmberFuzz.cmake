# EMBER_BUILD_FUZZERS: checks for the libFuzzer build (fuzz/CMakeLists.txt includes this file).
# libFuzzer ships with clang (Debian: clang, libclang-rt-14-dev); GCC has no -fsanitize=fuzzer.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "EMBER_BUILD_FUZZERS needs clang (libFuzzer), but the C++ compiler is "
                      "${CMAKE_CXX_COMPILER_ID} (${CMAKE_CXX_COMPILER}). Configure a fresh build directory with "
                      "CC=clang CXX=clang++, or use scripts/fuzz.sh.")
endif()
if(EMBER_WITH_CUDA)
  message(FATAL_ERROR "EMBER_BUILD_FUZZERS needs the CPU-only build: configure with -DEMBER_CUDA=OFF")
endif()
include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer")
check_cxx_source_compiles([=[
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }
]=] EMBER_HAVE_LIBFUZZER)
unset(CMAKE_REQUIRED_FLAGS)
if(NOT EMBER_HAVE_LIBFUZZER)
  message(FATAL_ERROR "EMBER_BUILD_FUZZERS: ${CMAKE_CXX_COMPILER} cannot link -fsanitize=fuzzer "
                      "(Debian: install libclang-rt-14-dev for clang 14's libFuzzer runtime)")
endif()
if(NOT EMBER_SANITIZE)
  message(WARNING "EMBER_BUILD_FUZZERS without EMBER_SANITIZE: memory errors go unseen; "
                  "scripts/fuzz.sh configures -DEMBER_SANITIZE=address;undefined")
endif()
message(STATUS "ember: libFuzzer targets on")
