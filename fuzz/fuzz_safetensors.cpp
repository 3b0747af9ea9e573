// Fuzz target: the safetensors reader safetensors::File::open (nn/safetensors.cpp). The input is the file's
// bytes. Bad files must throw ember::Error; for a file that opens, the entries must satisfy what
// Note [safetensors layout] promises, checked here against the raw input: the header length field, dtype
// sizes times shapes equal to the byte ranges, ranges sorted and tiling the data buffer exactly, find()
// agreeing with entries(), and read() returning exactly the input's bytes of each range.
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz_targets.h"
#include "nn/safetensors.h"

namespace {

namespace st = ember::safetensors;

// Bytes per element of a safetensors dtype name, 0 if the name is not a whole-byte dtype.
uint64_t reference_dtype_size(const std::string& d) {
  static const std::pair<const char*, uint64_t> kSizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"F8_E4M3FNUZ", 1},
      {"F8_E5M2FNUZ", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4},
      {"F32", 4}, {"C64", 8}, {"F64", 8}, {"I64", 8}, {"U64", 8}};
  for (const auto& [name, bytes] : kSizes)
    if (d == name) return bytes;
  return 0;
}

}  // namespace

int ember_fuzz_safetensors(const uint8_t* data, size_t size) {
  const std::string path = ember_fuzz::input_as_file(data, size);
  std::optional<st::File> file;
  if (!ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { file.emplace(st::File::open(path)); }))
    return 0;

  // It opened: check it against the raw bytes.
  EMBER_FUZZ_EXPECT(size >= 8, "a file under 8 bytes opened");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  EMBER_FUZZ_EXPECT(n <= size - 8, "header length beyond the file");
  const uint64_t data_start = 8 + n, data_size = size - data_start;
  // The header is a JSON object: after leading whitespace (nlohmann also skips a UTF-8 byte order mark at
  // the start) it starts with '{'.
  size_t first = 8;
  if (data_start - first >= 3 && data[first] == 0xEF && data[first + 1] == 0xBB && data[first + 2] == 0xBF) first += 3;
  while (first < data_start && std::strchr(" \t\r\n", data[first]) != nullptr) ++first;
  EMBER_FUZZ_EXPECT(first < data_start && data[first] == '{', "the header is not a JSON object");

  const std::vector<st::TensorEntry>& entries = file->entries();
  uint64_t covered = 0;
  std::set<std::string> names;
  std::vector<uint8_t> buf;
  for (const st::TensorEntry& e : entries) {
    const std::string what = "tensor \"" + e.name + "\"";
    EMBER_FUZZ_EXPECT(e.name != "__metadata__", what);
    EMBER_FUZZ_EXPECT(names.insert(e.name).second, what + " listed twice");
    EMBER_FUZZ_EXPECT(e.begin == covered && e.end >= e.begin && e.end <= data_size,
                      what + ": ranges do not tile the data buffer");
    covered = e.end;
    const uint64_t elem = reference_dtype_size(e.dtype);
    EMBER_FUZZ_EXPECT(elem != 0, what + ": accepted dtype " + e.dtype);
    uint64_t want = elem;
    for (int64_t d : e.shape) {
      EMBER_FUZZ_EXPECT(d >= 0, what + ": negative dim");
      EMBER_FUZZ_EXPECT(!__builtin_mul_overflow(want, static_cast<uint64_t>(d), &want), what + ": size overflows");
    }
    EMBER_FUZZ_EXPECT(want == e.end - e.begin, what + ": byte range does not match dtype and shape");
    size_t ds = 0;
    EMBER_FUZZ_EXPECT(ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { ds = st::dtype_size(e.dtype); }),
                      what + ": dtype_size throws for an accepted dtype");
    EMBER_FUZZ_EXPECT(ds == elem, what + ": dtype_size");
    const st::TensorEntry* found = file->find(e.name);
    EMBER_FUZZ_EXPECT(found == &e, what + ": find() disagrees with entries()");

    buf.assign(e.end - e.begin + 1, 0xA5);  // one guard byte past the range
    EMBER_FUZZ_EXPECT(ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { file->read(e, buf.data()); }),
                      what + ": read() of an accepted entry throws");
    EMBER_FUZZ_EXPECT(std::memcmp(buf.data(), data + data_start + e.begin, e.end - e.begin) == 0,
                      what + ": read() returned other bytes than the file's");
    EMBER_FUZZ_EXPECT(buf.back() == 0xA5, what + ": read() wrote past the range");
  }
  EMBER_FUZZ_EXPECT(covered == data_size, "bytes at the end of the data buffer belong to no tensor");
  EMBER_FUZZ_EXPECT(file->find("__metadata__") == nullptr, "__metadata__ found as a tensor");

  // A range outside the buffer must throw, not read.
  st::TensorEntry outside;
  outside.name = "outside";
  outside.begin = data_size;
  outside.end = data_size + 1;
  uint8_t one = 0;
  EMBER_FUZZ_EXPECT(!ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { file->read(outside, &one); }),
                    "read() of a range past the data buffer did not throw");
  return 0;
}
