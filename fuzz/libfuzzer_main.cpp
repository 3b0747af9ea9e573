// The libFuzzer entry point of one fuzz executable: EMBER_FUZZ_ENTRY names its body (fuzz/CMakeLists.txt).
#include <cstdlib>

#include "fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // One OpenMP thread: inputs are tiny, and a team per input only slows the fuzzer down.
  setenv("OMP_NUM_THREADS", "1", 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return EMBER_FUZZ_ENTRY(data, size); }
