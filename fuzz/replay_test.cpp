// Replays the committed fuzz inputs through the fuzz targets' bodies in the normal build: every file of
// fuzz/corpus/<target>/ (the seeds and what fuzzing added) and fuzz/regressions/<target>/ (reproducers of
// fixed findings). A finding makes the body throw ember_fuzz::Failure here (instead of aborting as in the
// libFuzzer executables); any other exception that escapes is a finding too.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_targets.h"

namespace {

namespace fs = std::filesystem;

struct Target {
  const char* name;
  int (*body)(const uint8_t*, size_t);
};

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Runs every file of dir through the target; returns how many there were.
size_t replay(const Target& target, const fs::path& dir) {
  ember_fuzz::abort_on_failure = false;
  const std::vector<fs::path> files = files_in(dir);
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.string());
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      ADD_FAILURE() << "cannot read " << f;
      continue;
    }
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      target.body(bytes.data(), bytes.size());
    } catch (const ember_fuzz::Failure& e) {
      ADD_FAILURE() << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "exception escaped the fuzz body: " << e.what();
    }
  }
  return files.size();
}

void replay_corpus(const Target& target) {
  const size_t n = replay(target, fs::path(EMBER_FUZZ_DIR) / "corpus" / target.name);
  EXPECT_GT(n, 0u) << "no corpus files for " << target.name << " (run fuzz/make_corpus.py)";
}

void replay_regressions(const Target& target) {
  replay(target, fs::path(EMBER_FUZZ_DIR) / "regressions" / target.name);
}

// One test per target and folder (plain TESTs: their names are what ctest lists).
#define EMBER_FUZZ_REPLAY_TESTS(Name, name)                                                    \
  TEST(FuzzReplay, Name##Corpus) { replay_corpus({#name, ember_fuzz_##name}); }               \
  TEST(FuzzReplay, Name##Regressions) { replay_regressions({#name, ember_fuzz_##name}); }

EMBER_FUZZ_REPLAY_TESTS(Safetensors, safetensors)
EMBER_FUZZ_REPLAY_TESTS(Idx, idx)
EMBER_FUZZ_REPLAY_TESTS(Device, device)
EMBER_FUZZ_REPLAY_TESTS(Shapes, shapes)

}  // namespace
