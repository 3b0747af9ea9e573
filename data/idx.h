// Reader of IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ember::data {

// IDX type codes: the third byte of the magic number.
inline constexpr uint8_t kIdxUInt8 = 0x08;
inline constexpr uint8_t kIdxInt8 = 0x09;
inline constexpr uint8_t kIdxInt16 = 0x0B;
inline constexpr uint8_t kIdxInt32 = 0x0C;
inline constexpr uint8_t kIdxFloat32 = 0x0D;
inline constexpr uint8_t kIdxFloat64 = 0x0E;

// The contents of one IDX file: dims as stored, element bytes in C order converted to the host's
// byte order (so bytes.data() can be reinterpreted as the element type).
struct IdxArray {
  uint8_t type_code = 0;
  std::vector<int64_t> dims;
  std::vector<uint8_t> bytes;

  int64_t numel() const;        // product of dims
  size_t element_size() const;  // bytes per element of type_code; throws ember::Error if unknown
};

// Bytes per element of an IDX type code, 0 if the code is not one of the six above.
size_t idx_element_size(uint8_t type_code);

// Reads path, gunzipping it when it starts with the gzip magic 1f 8b. Throws ember::Error naming
// the path for a missing file, a corrupt gzip stream, a bad magic number or type code, a dims
// count of 0 or over 8, data larger than max_bytes, fewer data bytes than the dims need, and
// bytes after the data. Memory grows with the data actually read, so a header that claims more
// than the file holds costs no large allocation.
IdxArray read_idx(const std::string& path, int64_t max_bytes = int64_t{1} << 32);

}  // namespace ember::data
