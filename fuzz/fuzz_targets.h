// The fuzz targets' bodies, shared by the libFuzzer executables (libfuzzer_main.cpp) and the corpus replay
// test of the normal build (replay_test.cpp). See fuzz/README.md.
//
// Each body takes one input and returns 0. ember::Error is the expected reaction to bad input and is
// swallowed; anything else is a finding:
//  - an exception of another type escaping ember (std::bad_alloc, std::out_of_range, nlohmann's, ...),
//  - an "ember internal error" (EMBER_ASSERT fired),
//  - disagreement with the small independent reference each body carries (EMBER_FUZZ_EXPECT),
//  - whatever the sanitizers of the fuzz build catch.
// The first two reach fail() too: bodies catch them at the top and report them the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

int ember_fuzz_safetensors(const uint8_t* data, size_t size);
int ember_fuzz_idx(const uint8_t* data, size_t size);
int ember_fuzz_device(const uint8_t* data, size_t size);
int ember_fuzz_shapes(const uint8_t* data, size_t size);

namespace ember_fuzz {

// What fail() throws when abort_on_failure is false (the replay test); never derived from ember::Error.
struct Failure : std::logic_error {
  using std::logic_error::logic_error;
};

// true (the default, the libFuzzer executables): fail() prints and aborts, so libFuzzer saves the input.
// The replay test sets false, and fail() throws Failure instead, so one bad file fails one test.
extern bool abort_on_failure;

[[noreturn]] void fail(const char* file, int line, const std::string& what);

// Runs body(); an exception other than ember::Error, or an ember internal error, becomes fail(). Returns
// whether body completed (false: it threw ember::Error).
template <class F>
bool expect_only_ember_errors(const char* file, int line, F&& body);

// The input as a file that ember's path-based readers can open: an in-memory file (memfd) reachable as
// /proc/self/fd/N, rewritten for each input; a temporary file where memfd is unavailable.
std::string input_as_file(const uint8_t* data, size_t size);

}  // namespace ember_fuzz

#define EMBER_FUZZ_EXPECT(cond, what)                                                        \
  do {                                                                                       \
    if (!(cond)) ::ember_fuzz::fail(__FILE__, __LINE__, std::string("expected ") + #cond + ": " + (what)); \
  } while (0)

// ---- implementation ----------------------------------------------------------------------------
#include <exception>

#include "runtime/error.h"

namespace ember_fuzz {

bool is_internal_error(const ember::Error& e);

template <class F>
bool expect_only_ember_errors(const char* file, int line, F&& body) {
  try {
    body();
    return true;
  } catch (const Failure&) {
    throw;
  } catch (const ember::Error& e) {
    if (is_internal_error(e)) fail(file, line, std::string("ember internal error: ") + e.what());
    return false;
  } catch (const std::exception& e) {
    fail(file, line, std::string("an exception other than ember::Error escaped: ") + e.what());
  } catch (...) {
    fail(file, line, "an exception of unknown type escaped");
  }
}

}  // namespace ember_fuzz
