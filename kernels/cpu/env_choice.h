// A process-wide choice between two CPU implementations, read once from an environment variable unless
// set first (blas.cpp: EMBER_CPU_GEMM, conv.cpp: EMBER_CPU_CONV).
#pragma once

#include <atomic>
#include <cstdlib>
#include <string>

#include "runtime/error.h"

namespace ember::cpu {

// `slot` holds the chosen enum's value, -1 until read. Unset or empty: `first`; otherwise the variable
// must name one of the two, or an ember::Error names `op`, the variable and what it was.
template <class E>
E choice_from_env(std::atomic<int>& slot, const char* var, const char* op, const char* first_name, E first,
                  const char* second_name, E second) {
  int v = slot.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* env = std::getenv(var);
    const std::string s = env ? env : "";
    EMBER_CHECK(s.empty() || s == first_name || s == second_name, op, ": ", var, " must be '", first_name, "' or '",
                second_name, "', got '", s, "'");
    v = static_cast<int>(s == second_name ? second : first);
    int expected = -1;
    slot.compare_exchange_strong(expected, v);
    v = slot.load();
  }
  return static_cast<E>(v);
}

}  // namespace ember::cpu
