// Tests of the IDX reader: every type code, plain and gzipped files, each malformed-file error,
// and the Fashion-MNIST labels when Debian's dataset-fashion-mnist package is installed.
#include "data/idx.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "runtime/error.h"

namespace {

namespace fs = std::filesystem;
using ember::data::IdxArray;
using ember::data::read_idx;

using Bytes = std::vector<uint8_t>;

// The IDX header for a type code and dims.
Bytes header(uint8_t type, const std::vector<uint32_t>& dims) {
  Bytes b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    b.push_back(static_cast<uint8_t>(d >> 24));
    b.push_back(static_cast<uint8_t>(d >> 16));
    b.push_back(static_cast<uint8_t>(d >> 8));
    b.push_back(static_cast<uint8_t>(d));
  }
  return b;
}

// Big-endian bytes of each value, as IDX stores them.
template <class T>
Bytes big_endian(const std::vector<T>& values) {
  Bytes b;
  for (T v : values) {
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    if constexpr (std::endian::native == std::endian::little) std::reverse(raw, raw + sizeof(T));
    b.insert(b.end(), raw, raw + sizeof(T));
  }
  return b;
}

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

template <class T>
std::vector<T> values_of(const IdxArray& a) {
  EXPECT_EQ(a.bytes.size() % sizeof(T), 0u);
  std::vector<T> v(a.bytes.size() / sizeof(T));
  std::memcpy(v.data(), a.bytes.data(), a.bytes.size());
  return v;
}

template <class F>
void expect_error(F&& f, const std::vector<std::string>& words) {
  try {
    f();
    ADD_FAILURE() << "expected ember::Error containing \"" << words.front() << "\"";
  } catch (const ember::Error& e) {
    std::string msg = e.what();
    for (const std::string& w : words)
      EXPECT_NE(msg.find(w), std::string::npos) << "\"" << w << "\" not in: " << msg;
  }
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ember_idx_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string plain(const std::string& name, const Bytes& b) {
    std::string p = (dir_ / name).string();
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    EXPECT_TRUE(out.good());
    return p;
  }

  std::string gzipped(const std::string& name, const Bytes& b) {
    std::string p = (dir_ / name).string();
    gzFile f = gzopen(p.c_str(), "wb9");
    EXPECT_NE(f, nullptr);
    if (!b.empty()) {
      EXPECT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
    }
    EXPECT_EQ(gzclose(f), Z_OK);
    return p;
  }

  Bytes file(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  // Expects read_idx on b, stored plain and gzipped, to fail with the path and the words.
  void expect_both_fail(const Bytes& b, const std::vector<std::string>& words,
                        int64_t max_bytes = int64_t{1} << 32) {
    for (const std::string& p : {plain("bad.idx", b), gzipped("bad.idx.gz", b)}) {
      SCOPED_TRACE(p);
      std::vector<std::string> all = words;
      all.push_back(p);
      all.push_back("read_idx");
      expect_error([&] { read_idx(p, max_bytes); }, all);
    }
  }

  fs::path dir_;
};

TEST_F(IdxTest, UnsignedBytePlainAndGzipped) {
  Bytes data = {0, 1, 2, 127, 128, 255};
  Bytes b = cat(header(0x08, {2, 3}), data);
  for (const std::string& p : {plain("u8.idx", b), gzipped("u8.idx.gz", b)}) {
    SCOPED_TRACE(p);
    IdxArray a = read_idx(p);
    EXPECT_EQ(a.type_code, 0x08);
    EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(a.numel(), 6);
    EXPECT_EQ(a.element_size(), 1u);
    EXPECT_EQ(a.bytes, data);
  }
}

TEST_F(IdxTest, EveryTypeConvertsToHostOrder) {
  std::vector<int8_t> i8 = {-128, -1, 0, 127};
  std::vector<int16_t> i16 = {-32768, -2, 258, 32767};
  std::vector<int32_t> i32 = {INT32_MIN, -3, 0x01020304, INT32_MAX};
  std::vector<float> f32 = {-1.5f, 0.f, 3.25e-3f, 1e30f};
  std::vector<double> f64 = {-2.5, 1.0 / 3.0, 6.02e23, -0.0};
  for (bool gz : {false, true}) {
    SCOPED_TRACE(gz ? "gzip" : "plain");
    auto path = [&](const std::string& name, const Bytes& b) {
      return gz ? gzipped(name + ".gz", b) : plain(name, b);
    };

    IdxArray a = read_idx(path("i8", cat(header(0x09, {4}), big_endian(i8))));
    EXPECT_EQ(a.type_code, 0x09);
    EXPECT_EQ(a.element_size(), 1u);
    EXPECT_EQ(values_of<int8_t>(a), i8);

    a = read_idx(path("i16", cat(header(0x0B, {2, 2}), big_endian(i16))));
    EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(a.element_size(), 2u);
    EXPECT_EQ(values_of<int16_t>(a), i16);

    a = read_idx(path("i32", cat(header(0x0C, {1, 4, 1}), big_endian(i32))));
    EXPECT_EQ(a.dims, (std::vector<int64_t>{1, 4, 1}));
    EXPECT_EQ(a.element_size(), 4u);
    EXPECT_EQ(values_of<int32_t>(a), i32);

    a = read_idx(path("f32", cat(header(0x0D, {4}), big_endian(f32))));
    EXPECT_EQ(a.element_size(), 4u);
    EXPECT_EQ(values_of<float>(a), f32);

    a = read_idx(path("f64", cat(header(0x0E, {4}), big_endian(f64))));
    EXPECT_EQ(a.element_size(), 8u);
    std::vector<double> got = values_of<double>(a);
    EXPECT_EQ(got, f64);
    EXPECT_TRUE(std::signbit(got[3]));
  }
  // The byte order in the file really is big-endian: 258 is stored as 01 02.
  EXPECT_EQ(big_endian(std::vector<int16_t>{258}), (Bytes{0x01, 0x02}));
}

TEST_F(IdxTest, EightDimsAndEmptyArrays) {
  Bytes data(2 * 3 * 2, 0);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  IdxArray a = read_idx(plain("8d.idx", cat(header(0x08, {1, 2, 1, 3, 1, 1, 2, 1}), data)));
  EXPECT_EQ(a.dims, (std::vector<int64_t>{1, 2, 1, 3, 1, 1, 2, 1}));
  EXPECT_EQ(a.bytes, data);

  for (const std::string& p :
       {plain("e.idx", header(0x0D, {3, 0})), gzipped("e.idx.gz", header(0x0D, {3, 0}))}) {
    a = read_idx(p);
    EXPECT_EQ(a.dims, (std::vector<int64_t>{3, 0}));
    EXPECT_EQ(a.numel(), 0);
    EXPECT_TRUE(a.bytes.empty());
  }
  // max_bytes is inclusive.
  a = read_idx(plain("m.idx", cat(header(0x0C, {2}), big_endian(std::vector<int32_t>{1, 2}))), 8);
  EXPECT_EQ(values_of<int32_t>(a), (std::vector<int32_t>{1, 2}));
}

TEST_F(IdxTest, MissingFileAndDirectory) {
  std::string p = (dir_ / "nope.idx.gz").string();
  expect_error([&] { read_idx(p); }, {p, "not found", "No such file or directory"});
  expect_error([&] { read_idx(dir_.string()); }, {dir_.string(), "directory"});
}

TEST_F(IdxTest, TruncatedFiles) {
  expect_both_fail(cat(header(0x08, {2, 3}), {1, 2, 3, 4}), {"truncated: expected 6 bytes of data, got 4"});
  expect_both_fail(header(0x0C, {3}), {"truncated: expected 12 bytes of data, got 0"});
  expect_both_fail(cat(header(0x0E, {2}), Bytes(15, 1)), {"truncated: expected 16 bytes of data, got 15"});
  expect_both_fail({0, 0, 0x08}, {"truncated", "3 bytes", "4-byte magic"});
  expect_both_fail({}, {"truncated", "0 bytes"});
  expect_both_fail({0, 0, 0x08, 2, 0, 0, 0, 5, 0, 0}, {"truncated: expected 8 bytes of dimensions, got 6"});
  // A claim of almost 4 GiB over 3 bytes of data: fails after reading them, without the allocation.
  expect_both_fail(cat(header(0x08, {0x7fffffff, 2}), {1, 2, 3}),
                   {"truncated: expected 4294967294 bytes of data, got 3"});
}

TEST_F(IdxTest, TrailingGarbage) {
  expect_both_fail(cat(header(0x08, {2}), {1, 2, 3}), {"trailing garbage", "2 bytes of data", "dims {2}"});
  expect_both_fail(cat(header(0x08, {0}), {0}), {"trailing garbage"});
}

TEST_F(IdxTest, BadHeaders) {
  expect_both_fail(cat({1, 0, 0x08, 1, 0, 0, 0, 1}, {9}), {"bad magic number", "0x01 0x00"});
  expect_both_fail(cat({0, 0x08, 0x08, 1, 0, 0, 0, 1}, {9}), {"bad magic number", "0x00 0x08"});
  expect_both_fail(cat(header(0x0A, {1}), {9}), {"unknown type code 0x0a"});
  expect_both_fail(cat(header(0x00, {1}), {9}), {"unknown type code 0x00"});
  expect_both_fail(cat(header(0xFF, {1}), {9}), {"unknown type code 0xff"});
  expect_both_fail(cat(header(0x08, {}), {9}), {"declares 0 dimensions", "1 to 8"});
  expect_both_fail(cat(header(0x08, {1, 1, 1, 1, 1, 1, 1, 1, 1}), {9}), {"declares 9 dimensions"});
  expect_both_fail(header(0x08, {0xffffffff, 0xffffffff, 0xffffffff}), {"more bytes than fit in 64 bits"});
  expect_both_fail(header(0x0E, {0xffffffff, 0xffffffff, 0x80000000}), {"more bytes than fit in 64 bits"});
  expect_both_fail(header(0x0E, {0x10000, 0x10000}),
                   {"dims {65536, 65536} describe 34359738368 bytes", "more than max_bytes = 4294967296"});
  expect_both_fail(cat(header(0x0C, {3}), Bytes(12, 0)),
                   {"dims {3} describe 12 bytes of data", "max_bytes = 11"}, 11);
  std::string p = plain("ok.idx", cat(header(0x08, {1}), {9}));
  expect_error([&] { read_idx(p, -1); }, {p, "max_bytes must be >= 0"});
}

TEST_F(IdxTest, CorruptGzipStreams) {
  // Enough varied data that deflate emits a real (dynamic) block.
  Bytes data(4096);
  uint32_t x = 12345;
  for (auto& v : data) v = static_cast<uint8_t>((x = x * 1103515245u + 12345u) >> 24);
  Bytes good = file(gzipped("good.idx.gz", cat(header(0x08, {64, 64}), data)));
  ASSERT_EQ(read_idx((dir_ / "good.idx.gz").string()).bytes, data);

  auto expect_corrupt = [&](const Bytes& b, const std::string& zlib_words) {
    std::string p = plain("bad.idx.gz", b);
    expect_error([&] { read_idx(p); }, {p, "corrupt gzip stream", zlib_words});
  };
  // The CRC-32 in the trailer does not match the data.
  Bytes bad_crc = good;
  bad_crc[bad_crc.size() - 8] ^= 0xff;
  expect_corrupt(bad_crc, "incorrect data check");
  // The first deflate block header (byte 10 after the 10-byte gzip header) with the reserved type 3.
  Bytes bad_block = good;
  bad_block[10] = 0xff;
  expect_corrupt(bad_block, "invalid block type");
  // A compression method other than deflate.
  Bytes bad_method = good;
  bad_method[2] = 9;
  expect_corrupt(bad_method, "unknown compression method");
  // The stream cut short, inside the data and inside the trailer.
  expect_corrupt(Bytes(good.begin(), good.begin() + static_cast<long>(good.size() / 2)),
                 "unexpected end of file");
  expect_corrupt(Bytes(good.begin(), good.end() - 4), "unexpected end of file");
}

TEST_F(IdxTest, ElementSizeOfUnknownTypeThrows) {
  IdxArray a;
  expect_error([&] { (void)a.element_size(); }, {"unknown IDX type code 0x00"});
  a.type_code = 0x0D;
  EXPECT_EQ(a.element_size(), 4u);
  EXPECT_EQ(ember::data::idx_element_size(0x0E), 8u);
  EXPECT_EQ(ember::data::idx_element_size(0x07), 0u);
}

// ---- the real data set ------------------------------------------------------------------------

const std::string kFashionDir = "/usr/share/datasets/fashion-mnist";

TEST(IdxFashionMnist, TrainLabels) {
  const std::string p = kFashionDir + "/train-labels-idx1-ubyte.gz";
  ASSERT_TRUE(fs::exists(p)) << p << " is absent: install Debian's dataset-fashion-mnist (scripts/deps.sh does)";
  IdxArray a = read_idx(p);
  EXPECT_EQ(a.type_code, 0x08);
  ASSERT_EQ(a.dims, std::vector<int64_t>{60000});
  std::array<int, 10> count{};
  for (uint8_t label : a.bytes) {
    ASSERT_LT(label, 10);
    ++count[label];
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(count[c], 6000) << "class " << c;
}

TEST(IdxFashionMnist, TestImagesAndLabels) {
  const std::string images = kFashionDir + "/t10k-images-idx3-ubyte.gz";
  const std::string labels = kFashionDir + "/t10k-labels-idx1-ubyte.gz";
  ASSERT_TRUE(fs::exists(images) && fs::exists(labels))
      << kFashionDir << " lacks the t10k files: install Debian's dataset-fashion-mnist (scripts/deps.sh does)";
  IdxArray x = read_idx(images);
  EXPECT_EQ(x.type_code, 0x08);
  EXPECT_EQ(x.dims, (std::vector<int64_t>{10000, 28, 28}));
  EXPECT_EQ(x.bytes.size(), 10000u * 28 * 28);
  IdxArray y = read_idx(labels);
  ASSERT_EQ(y.dims, std::vector<int64_t>{10000});
  std::array<int, 10> count{};
  for (uint8_t label : y.bytes) {
    ASSERT_LT(label, 10);
    ++count[label];
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(count[c], 1000) << "class " << c;
}

}  // namespace
