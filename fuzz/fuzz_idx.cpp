// Fuzz target: the IDX reader read_idx (data/idx.cpp). The input is the file's bytes, plain or gzip.
// For a plain input (not starting with the gzip magic 1f 8b) a reference decoder decides whether it is a
// valid IDX file under max_bytes and what it holds; read_idx must agree exactly (accept/reject, type code,
// dims, host-order bytes). A gzip input must either throw ember::Error or give a self-consistent array.
#include <bit>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "data/idx.h"
#include "fuzz/fuzz_targets.h"

namespace {

using ember::data::IdxArray;

// Small, so that a header claiming gigabytes costs no large allocation (read_idx grows its buffer as data
// arrives, but in chunks of 64 MiB).
constexpr int64_t kMaxBytes = int64_t{1} << 16;

std::optional<IdxArray> reference_decode(const uint8_t* p, size_t n, int64_t max_bytes) {
  if (n < 4 || p[0] != 0 || p[1] != 0) return std::nullopt;
  IdxArray out;
  out.type_code = p[2];
  const size_t elem = ember::data::idx_element_size(p[2]);
  const size_t ndims = p[3];
  if (elem == 0 || ndims < 1 || ndims > 8 || n < 4 + 4 * ndims) return std::nullopt;
  unsigned __int128 nbytes = elem;
  for (size_t i = 0; i < ndims; ++i) {
    const uint8_t* b = p + 4 + 4 * i;
    const uint32_t d = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    out.dims.push_back(d);
    nbytes *= d;
    if (nbytes > static_cast<unsigned __int128>(max_bytes)) nbytes = static_cast<unsigned __int128>(max_bytes) + 1;
  }
  if (nbytes > static_cast<unsigned __int128>(max_bytes)) return std::nullopt;
  const size_t header = 4 + 4 * ndims;
  if (n - header != static_cast<size_t>(nbytes)) return std::nullopt;
  out.bytes.assign(p + header, p + n);
  // Big-endian elements to host order, one element at a time.
  if (std::endian::native == std::endian::little && elem > 1)
    for (size_t i = 0; i < out.bytes.size(); i += elem)
      for (size_t a = 0, b = elem - 1; a < b; ++a, --b) std::swap(out.bytes[i + a], out.bytes[i + b]);
  return out;
}

}  // namespace

int ember_fuzz_idx(const uint8_t* data, size_t size) {
  const std::string path = ember_fuzz::input_as_file(data, size);
  IdxArray got;
  const bool ok =
      ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { got = ember::data::read_idx(path, kMaxBytes); });
  const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  if (!gzip) {
    const std::optional<IdxArray> want = reference_decode(data, size, kMaxBytes);
    EMBER_FUZZ_EXPECT(ok == want.has_value(), std::string("read_idx ") + (ok ? "accepted" : "rejected") +
                                                  " a plain input that the reference " +
                                                  (want ? "accepts" : "rejects"));
    if (!ok) return 0;
    EMBER_FUZZ_EXPECT(got.type_code == want->type_code, "type code");
    EMBER_FUZZ_EXPECT(got.dims == want->dims, "dims");
    EMBER_FUZZ_EXPECT(got.bytes == want->bytes, "element bytes");
  }
  if (!ok) return 0;
  // Self-consistency, gzip or not.
  EMBER_FUZZ_EXPECT(!got.dims.empty() && got.dims.size() <= 8, "dims count");
  size_t elem = 0;
  EMBER_FUZZ_EXPECT(ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { elem = got.element_size(); }),
                    "element_size() of an accepted array");
  for (int64_t d : got.dims) EMBER_FUZZ_EXPECT(d >= 0 && d <= 0xffffffffLL, "dim range");
  EMBER_FUZZ_EXPECT(got.numel() >= 0 && static_cast<uint64_t>(got.numel()) * elem == got.bytes.size(),
                    "bytes.size() == numel * element_size");
  EMBER_FUZZ_EXPECT(got.bytes.size() <= static_cast<size_t>(kMaxBytes), "max_bytes respected");
  return 0;
}
