// The IDX reader: header validation, gzip through zlib, big-endian to host conversion.
#include "data/idx.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "runtime/error.h"

namespace ember::data {
namespace {

constexpr int kMaxDims = 8;
// Data is read (and memory grown) this much at a time, so that a header claiming gigabytes in a
// small or truncated file fails after reading what is there instead of allocating the claim.
constexpr size_t kReadChunk = size_t{64} << 20;

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  EMBER_THROW("read_idx: '", path, "': ", problem);
}

std::string hex_byte(unsigned v) {
  static const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[(v >> 4) & 0xf] + digits[v & 0xf];
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<gzFile_s, GzCloser>;

// zlib reads both kinds of file: it inflates when the file starts with the gzip magic 1f 8b and
// copies the bytes through otherwise ("transparent" mode), so one code path serves both.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT) fail(path, detail::str_cat("file not found (", std::strerror(err), ")"));
      fail(path, detail::str_cat("cannot open: ", std::strerror(err)));
    }
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      ::close(fd);
      fail(path, "is a directory, not an IDX file");
    }
    gz_.reset(gzdopen(fd, "rb"));  // on success the gzFile owns fd
    if (!gz_) {
      ::close(fd);
      fail(path, "zlib could not allocate its stream state (out of memory)");
    }
    gzbuffer(gz_.get(), 1u << 17);  // zlib's 8 KiB default makes many small read() calls
  }

  // Reads up to n bytes; fewer only at the end of the (decompressed) stream. Any zlib or I/O error,
  // including a gzip stream that ends early, throws.
  size_t read(void* dst, size_t n) {
    auto* p = static_cast<char*>(dst);
    size_t got = 0;
    while (got < n) {
      unsigned want = static_cast<unsigned>(std::min<size_t>(n - got, INT_MAX));
      int r = gzread(gz_.get(), p + got, want);
      if (r < 0) throw_stream_error();
      got += static_cast<size_t>(r);
      if (static_cast<unsigned>(r) < want) break;
    }
    // zlib reports a gzip stream cut short (Z_BUF_ERROR) as a short read, not as -1.
    int errnum = Z_OK;
    gzerror(gz_.get(), &errnum);
    if (errnum != Z_OK) throw_stream_error();
    return got;
  }

 private:
  [[noreturn]] void throw_stream_error() {
    int errnum = Z_OK;
    const char* msg = gzerror(gz_.get(), &errnum);
    if (errnum == Z_ERRNO) fail(path_, detail::str_cat("read error: ", std::strerror(errno)));
    fail(path_, detail::str_cat("corrupt gzip stream: ", msg ? msg : "unknown zlib error"));
  }

  const std::string& path_;
  GzPtr gz_;
};

template <class T, T (*Swap)(T)>
void byteswap_all(uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, data + i * sizeof(T), sizeof(T));
    v = Swap(v);
    std::memcpy(data + i * sizeof(T), &v, sizeof(T));
  }
}

uint16_t bswap16(uint16_t v) { return __builtin_bswap16(v); }
uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }
uint64_t bswap64(uint64_t v) { return __builtin_bswap64(v); }

}  // namespace

size_t idx_element_size(uint8_t type_code) {
  switch (type_code) {
    case kIdxUInt8:
    case kIdxInt8:
      return 1;
    case kIdxInt16:
      return 2;
    case kIdxInt32:
    case kIdxFloat32:
      return 4;
    case kIdxFloat64:
      return 8;
    default:
      return 0;
  }
}

int64_t IdxArray::numel() const {
  int64_t n = 1;
  for (int64_t d : dims)
    if (d == 0) return 0;  // before the product of the other dims can overflow
  for (int64_t d : dims) n *= d;
  return n;
}

size_t IdxArray::element_size() const {
  size_t s = idx_element_size(type_code);
  EMBER_CHECK(s != 0, "IdxArray::element_size: unknown IDX type code ", hex_byte(type_code),
              " (expected 0x08, 0x09, 0x0b, 0x0c, 0x0d or 0x0e)");
  return s;
}

IdxArray read_idx(const std::string& path, int64_t max_bytes) {
  EMBER_CHECK(max_bytes >= 0, "read_idx: '", path, "': max_bytes must be >= 0, got ", max_bytes);
  Reader in(path);

  uint8_t magic[4];
  size_t got = in.read(magic, 4);
  if (got < 4)
    fail(path,
         detail::str_cat("truncated: the file holds ", got, " bytes, fewer than the 4-byte magic number"));
  if (magic[0] != 0 || magic[1] != 0)
    fail(path, detail::str_cat("bad magic number: the first two bytes are ", hex_byte(magic[0]), " ",
                               hex_byte(magic[1]), ", expected 0x00 0x00 (not an IDX file?)"));
  IdxArray out;
  out.type_code = magic[2];
  const size_t elem = idx_element_size(out.type_code);
  if (elem == 0)
    fail(path, detail::str_cat("unknown type code ", hex_byte(out.type_code),
                               " (expected 0x08, 0x09, 0x0b, 0x0c, 0x0d or 0x0e)"));
  const int ndims = magic[3];
  if (ndims == 0 || ndims > kMaxDims)
    fail(path, detail::str_cat("the header declares ", ndims, " dimensions, expected 1 to ", kMaxDims));

  uint8_t dim_bytes[4 * kMaxDims];
  got = in.read(dim_bytes, 4 * static_cast<size_t>(ndims));
  if (got < 4 * static_cast<size_t>(ndims))
    fail(path, detail::str_cat("truncated: expected ", 4 * ndims, " bytes of dimensions, got ", got));
  int64_t numel = 1;
  bool overflow = false;
  for (int i = 0; i < ndims; ++i) {
    const uint8_t* b = dim_bytes + 4 * i;
    int64_t d = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | int64_t{b[3]};
    out.dims.push_back(d);
    overflow = overflow || __builtin_mul_overflow(numel, d, &numel);
  }
  // A zero dim makes the product 0 even when the dims before it overflowed on the way.
  for (int64_t d : out.dims)
    if (d == 0) numel = 0, overflow = false;
  int64_t nbytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, static_cast<int64_t>(elem), &nbytes);
  std::string dims_str;
  for (size_t i = 0; i < out.dims.size(); ++i) dims_str += (i ? ", " : "") + std::to_string(out.dims[i]);
  if (overflow) fail(path, detail::str_cat("dims {", dims_str, "} describe more bytes than fit in 64 bits"));
  if (nbytes > max_bytes)
    fail(path, detail::str_cat("dims {", dims_str, "} describe ", nbytes,
                               " bytes of data, more than max_bytes = ", max_bytes));

  const auto total = static_cast<size_t>(nbytes);
  size_t have = 0;
  while (have < total) {
    const size_t want = std::min(kReadChunk, total - have);
    out.bytes.resize(have + want);
    const size_t r = in.read(out.bytes.data() + have, want);
    have += r;
    if (r < want) fail(path, detail::str_cat("truncated: expected ", total, " bytes of data, got ", have));
  }
  uint8_t extra;
  if (in.read(&extra, 1) != 0)
    fail(path, detail::str_cat("trailing garbage: more bytes follow the ", total,
                               " bytes of data that dims {", dims_str, "} describe"));

  if constexpr (std::endian::native == std::endian::little) {
    const size_t n = static_cast<size_t>(numel);
    switch (elem) {
      case 2:
        byteswap_all<uint16_t, bswap16>(out.bytes.data(), n);
        break;
      case 4:
        byteswap_all<uint32_t, bswap32>(out.bytes.data(), n);
        break;
      case 8:
        byteswap_all<uint64_t, bswap64>(out.bytes.data(), n);
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace ember::data
