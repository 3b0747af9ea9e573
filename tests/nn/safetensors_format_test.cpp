// Tests of the safetensors file layer: round trips, files written by PyTorch's safetensors, byte
// equality with the Python writer, atomic writes, and one corrupt file per validation rule.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "runtime/error.h"

#ifndef EMBER_TEST_DATA_DIR
#error "EMBER_TEST_DATA_DIR must name the tests/ folder of the source tree"
#endif

namespace {

namespace fs = std::filesystem;
namespace st = ember::safetensors;

static_assert(std::endian::native == std::endian::little, "these tests write little-endian bytes by memcpy");

const std::string kDataDir = EMBER_TEST_DATA_DIR "/nn/data";

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A file with the given header text (N set to its length) followed by data_size bytes of data.
std::string file_bytes(const std::string& header, size_t data_size) {
  return le64(header.size()) + header + std::string(data_size, '\x5a');
}

template <class T>
std::vector<T> read_as(const st::File& f, const std::string& name) {
  const st::TensorEntry* e = f.find(name);
  EXPECT_NE(e, nullptr) << name;
  if (e == nullptr) return {};
  EXPECT_EQ((e->end - e->begin) % sizeof(T), 0u);
  std::vector<T> out((e->end - e->begin) / sizeof(T));
  f.read(*e, out.data());
  return out;
}

template <class T>
st::TensorView view(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                    const std::vector<T>& values) {
  return {name, dtype, std::move(shape), values.data(), values.size() * sizeof(T)};
}

// Expects f() to throw ember::Error whose message contains every one of words.
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

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ember_safetensors_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes bytes to a file and expects File::open to fail naming the file and the words.
  void expect_open_error(const std::string& bytes, const std::vector<std::string>& words) {
    std::string p = path("bad.safetensors");
    write_bytes(p, bytes);
    std::vector<std::string> all = words;
    all.push_back(p);
    expect_error([&] { st::File::open(p); }, all);
  }

  // The files in dir_, so tests can check that no temporary file is left behind.
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

// ---- dtypes ---------------------------------------------------------------------------------

TEST(SafetensorsDtype, Sizes) {
  EXPECT_EQ(st::dtype_size("F64"), 8u);
  EXPECT_EQ(st::dtype_size("F32"), 4u);
  EXPECT_EQ(st::dtype_size("F16"), 2u);
  EXPECT_EQ(st::dtype_size("BF16"), 2u);
  EXPECT_EQ(st::dtype_size("I64"), 8u);
  EXPECT_EQ(st::dtype_size("I32"), 4u);
  EXPECT_EQ(st::dtype_size("I16"), 2u);
  EXPECT_EQ(st::dtype_size("I8"), 1u);
  EXPECT_EQ(st::dtype_size("U8"), 1u);
  EXPECT_EQ(st::dtype_size("U64"), 8u);
  EXPECT_EQ(st::dtype_size("BOOL"), 1u);
  EXPECT_EQ(st::dtype_size("F8_E4M3"), 1u);
  EXPECT_EQ(st::dtype_size("C64"), 8u);
  expect_error([] { st::dtype_size("F128"); }, {"unknown dtype", "F128"});
  expect_error([] { st::dtype_size("f32"); }, {"unknown dtype", "f32"});
  expect_error([] { st::dtype_size("F4"); }, {"F4", "several elements per byte"});
}

// ---- round trips ----------------------------------------------------------------------------

TEST_F(SafetensorsTest, RoundTripSeveralDtypes) {
  std::vector<float> w = {1.f, -2.f, 3.5f, 0.25f, 0.f, -0.5f};
  std::vector<double> b = {1.5, -2.25};
  std::vector<int64_t> steps = {1, -2, int64_t{1} << 40};
  std::vector<int32_t> counts = {7, -8, 9, 2147483647};
  std::vector<uint16_t> half = {0x3C00, 0xB800, 0x7BFF};
  std::vector<uint16_t> brain = {0x3F80, 0xC040};
  std::vector<uint8_t> bytes = {0, 1, 128, 255};
  std::vector<uint8_t> mask = {1, 0, 1};
  std::vector<float> scalar = {42.f};
  std::vector<float> empty;
  std::vector<double> empty2d;
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"epoch", "3"}, {"note", "any \"text\" é\n"}};

  std::string p = path("model.safetensors");
  st::save(p,
           {view("weight", "F32", {2, 3}, w), view("bias", "F64", {2}, b), view("steps", "I64", {3}, steps),
            view("counts", "I32", {2, 2}, counts), view("half", "F16", {3}, half),
            view("brain", "BF16", {2}, brain), view("bytes", "U8", {4}, bytes),
            view("mask", "BOOL", {3}, mask), view("scalar", "F32", {}, scalar),
            view("empty", "F32", {0}, empty), view("empty2d", "F64", {3, 0}, empty2d)},
           meta);
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"});  // no temporary left

  st::File f = st::File::open(p);
  EXPECT_EQ(f.path(), p);
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.entries().size(), 11u);
  // Header order is the writer's: dtype alignment descending (I64 > F64 > F32 > I32 > BF16 >
  // F16 > U8 > BOOL in the reference's dtype order), then name.
  std::vector<std::string> names;
  for (const auto& e : f.entries()) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"steps", "bias", "empty2d", "empty", "scalar", "weight",
                                             "counts", "brain", "half", "bytes", "mask"}));
  uint64_t offset = 0;
  for (const auto& e : f.entries()) {
    EXPECT_EQ(e.begin, offset) << e.name;
    offset = e.end;
  }
  EXPECT_EQ(offset, 6 * 4 + 2 * 8 + 3 * 8 + 4 * 4 + 3 * 2 + 2 * 2 + 4 + 3 + 4u);

  const st::TensorEntry* e = f.find("weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->dtype, "F32");
  EXPECT_EQ(e->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.find("scalar")->shape, std::vector<int64_t>{});
  EXPECT_EQ(f.find("empty")->shape, std::vector<int64_t>{0});
  EXPECT_EQ(f.find("empty2d")->shape, (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(f.find("empty")->end - f.find("empty")->begin, 0u);
  EXPECT_EQ(f.find("nope"), nullptr);

  EXPECT_EQ(read_as<float>(f, "weight"), w);
  EXPECT_EQ(read_as<double>(f, "bias"), b);
  EXPECT_EQ(read_as<int64_t>(f, "steps"), steps);
  EXPECT_EQ(read_as<int32_t>(f, "counts"), counts);
  EXPECT_EQ(read_as<uint16_t>(f, "half"), half);
  EXPECT_EQ(read_as<uint16_t>(f, "brain"), brain);
  EXPECT_EQ(read_as<uint8_t>(f, "bytes"), bytes);
  EXPECT_EQ(read_as<uint8_t>(f, "mask"), mask);
  EXPECT_EQ(read_as<float>(f, "scalar"), scalar);
  f.read(*f.find("empty"), nullptr);  // zero bytes: dst is not touched

  // A copy shares the open descriptor and outlives the original.
  st::File copy = f;
  f = st::File::open(p);
  EXPECT_EQ(read_as<double>(copy, "bias"), b);
}

TEST_F(SafetensorsTest, EmptyFileMatchesReferenceBytes) {
  // The reference's own test: no tensors, no metadata -> N = 8, "{}" and six spaces.
  std::string p = path("empty.safetensors");
  st::save(p, {});
  std::vector<unsigned char> got = read_bytes(p);
  std::string want = le64(8) + "{}      ";
  EXPECT_EQ(std::string(got.begin(), got.end()), want);
  st::File f = st::File::open(p);
  EXPECT_TRUE(f.entries().empty());
  EXPECT_TRUE(f.metadata().empty());

  // And with metadata {"framework": "pt"}: N = 40, padded with five spaces.
  st::save(p, {}, {{"framework", "pt"}});
  got = read_bytes(p);
  EXPECT_EQ(std::string(got.begin(), got.end()), le64(40) + "{\"__metadata__\":{\"framework\":\"pt\"}}     ");
}

TEST_F(SafetensorsTest, WriterOrdersByReferenceDtypeOrderThenName) {
  std::vector<uint8_t> one(8, 0);
  auto v = [&](const std::string& name, const std::string& dtype) {
    return st::TensorView{name, dtype, {1}, one.data(), st::dtype_size(dtype)};
  };
  std::string p = path("order.safetensors");
  st::save(p, {v("a_bool", "BOOL"), v("z_u8", "U8"), v("a_i8", "I8"), v("b_f16", "F16"), v("a_bf16", "BF16"),
               v("a_i16", "I16"), v("z_u16", "U16"), v("z_f32", "F32"), v("a_i32", "I32"), v("a_u32", "U32"),
               v("a_f64", "F64"), v("a_i64", "I64"), v("z_u64", "U64"), v("a_u64", "U64"), v("b_c64", "C64"),
               v("q_e4m3", "F8_E4M3"), v("q_e5m2", "F8_E5M2"), v("q_e8m0", "F8_E8M0")});
  st::File f = st::File::open(p);
  std::vector<std::string> names;
  for (const auto& e : f.entries()) names.push_back(e.name);
  // As safetensors 0.8.0 orders them (checked against its serialize()).
  EXPECT_EQ(names, (std::vector<std::string>{"a_u64", "z_u64", "a_i64", "a_f64", "b_c64", "z_f32", "a_u32",
                                             "a_i32", "a_bf16", "b_f16", "z_u16", "a_i16", "q_e8m0", "q_e4m3",
                                             "q_e5m2", "a_i8", "z_u8", "a_bool"}));
}

TEST_F(SafetensorsTest, AnyNameRoundTrips) {
  std::vector<float> x = {1.f};
  std::string p = path("names.safetensors");
  std::vector<std::string> odd = {"",
                                  "a.b/c",
                                  "tab\there",
                                  "quote\"back\\slash",
                                  "\x01\x1f\x7f",
                                  "na\xc3\xafve \xce\xb1",
                                  "__metadata__x"};
  std::vector<st::TensorView> views;
  for (const auto& n : odd) views.push_back(view(n, "F32", {1}, x));
  st::save(p, views, {{"", ""}, {"k\n", "v\t\""}});
  st::File f = st::File::open(p);
  for (const auto& n : odd) {
    ASSERT_NE(f.find(n), nullptr) << n;
    EXPECT_EQ(read_as<float>(f, n), x);
  }
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"", ""}, {"k\n", "v\t\""}}));
}

TEST_F(SafetensorsTest, SaveOverwritesAtomically) {
  std::vector<int64_t> a = {1, 2, 3}, b = {4};
  std::string p = path("ckpt.safetensors");
  st::save(p, {view("a", "I64", {3}, a)});
  st::save(p, {view("b", "I64", {1}, b)});
  EXPECT_EQ(listing(), std::vector<std::string>{"ckpt.safetensors"});
  st::File f = st::File::open(p);
  EXPECT_EQ(f.find("a"), nullptr);
  EXPECT_EQ(read_as<int64_t>(f, "b"), b);

  // A relative path (no directory part) writes into the working directory.
  fs::path old = fs::current_path();
  fs::current_path(dir_);
  st::save("rel.safetensors", {view("a", "I64", {3}, a)});
  fs::current_path(old);
  EXPECT_EQ(read_as<int64_t>(st::File::open(path("rel.safetensors")), "a"), a);
}

TEST_F(SafetensorsTest, SaveIoErrorsNameThePathAndLeaveNothing) {
  std::vector<float> x = {1.f};
  std::string missing = path("no/such/dir/m.safetensors");
  expect_error([&] { st::save(missing, {view("x", "F32", {1}, x)}); },
               {"safetensors::save", missing, "No such file or directory"});
  // The target's parent is a regular file.
  write_bytes(path("plain"), "x");
  std::string under_file = path("plain/m.safetensors");
  expect_error([&] { st::save(under_file, {view("x", "F32", {1}, x)}); }, {under_file, "Not a directory"});
  // The target is a directory: rename fails after the data was written; the temporary goes.
  fs::create_directory(path("isdir"));
  fs::create_directory(path("isdir/inner"));
  expect_error([&] { st::save(path("isdir"), {view("x", "F32", {1}, x)}); }, {path("isdir"), "rename"});
  EXPECT_EQ(listing(), (std::vector<std::string>{"isdir", "plain"}));
}

TEST_F(SafetensorsTest, SaveRejectsInvalidTensors) {
  std::vector<float> x = {1.f, 2.f};
  std::string p = path("bad.safetensors");
  expect_error(
      [&] {
        st::save(p, {view("a", "F32", {2}, x), view("a", "F32", {2}, x)});
      },
      {p, "\"a\"", "duplicate tensor name"});
  expect_error([&] { st::save(p, {view("__metadata__", "F32", {2}, x)}); }, {p, "reserved"});
  expect_error([&] { st::save(p, {view("a", "F33", {2}, x)}); }, {p, "unknown dtype", "F33"});
  expect_error([&] { st::save(p, {view("a", "F32", {3}, x)}); }, {p, "[3]", "needs 12 bytes", "nbytes = 8"});
  expect_error([&] { st::save(p, {view("a", "F64", {2}, x)}); }, {p, "F64", "needs 16 bytes"});
  expect_error([&] { st::save(p, {view("a", "F32", {-2}, x)}); }, {p, "negative dimension"});
  expect_error([&] { st::save(p, {view("a", "F32", {int64_t{1} << 62, 8}, x)}); }, {p, "overflows"});
  expect_error([&] { st::save(p, {st::TensorView{"a", "F32", {2}, nullptr, 8}}); }, {p, "data is null"});
  expect_error([&] { st::save(p, {view("bad\xff", "F32", {2}, x)}); }, {p, "not valid UTF-8"});
  expect_error(
      [&] {
        st::save(p, {view("a", "F32", {2}, x)}, {{"k", "\xc3"}});
      },
      {p, "metadata value", "not valid UTF-8"});
  EXPECT_TRUE(listing().empty());
}

// ---- files written by the Python library ----------------------------------------------------

TEST_F(SafetensorsTest, LoadsFileWrittenByPyTorchSafetensors) {
  // tests/nn/data/make_safetensors_reference.py, torch 1.13 + safetensors 0.8.0.
  st::File f = st::File::open(kDataDir + "/reference_torch.safetensors");
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  std::vector<std::string> names;
  for (const auto& e : f.entries()) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"steps", "bias", "empty", "scalar", "weight", "counts", "brain",
                                             "half", "bytes", "mask"}));

  auto expect_entry = [&](const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                          uint64_t begin, uint64_t end) {
    const st::TensorEntry* e = f.find(name);
    ASSERT_NE(e, nullptr) << name;
    EXPECT_EQ(e->dtype, dtype) << name;
    EXPECT_EQ(e->shape, shape) << name;
    EXPECT_EQ(e->begin, begin) << name;
    EXPECT_EQ(e->end, end) << name;
  };
  expect_entry("steps", "I64", {3}, 0, 24);
  expect_entry("bias", "F64", {2}, 24, 40);
  expect_entry("empty", "F32", {0}, 40, 40);
  expect_entry("scalar", "F32", {}, 40, 44);
  expect_entry("weight", "F32", {2, 3}, 44, 68);
  expect_entry("counts", "I32", {2, 2}, 68, 84);
  expect_entry("brain", "BF16", {2}, 84, 88);
  expect_entry("half", "F16", {3}, 88, 94);
  expect_entry("bytes", "U8", {4}, 94, 98);
  expect_entry("mask", "BOOL", {3}, 98, 101);

  EXPECT_EQ(read_as<float>(f, "weight"), (std::vector<float>{1.f, -2.f, 3.5f, 0.25f, 0.f, -0.5f}));
  EXPECT_EQ(read_as<double>(f, "bias"), (std::vector<double>{1.5, -2.25}));
  EXPECT_EQ(read_as<int64_t>(f, "steps"), (std::vector<int64_t>{1, -2, int64_t{1} << 40}));
  EXPECT_EQ(read_as<int32_t>(f, "counts"), (std::vector<int32_t>{7, -8, 9, 2147483647}));
  EXPECT_EQ(read_as<uint16_t>(f, "half"), (std::vector<uint16_t>{0x3C00, 0xB800, 0x7BFF}));
  EXPECT_EQ(read_as<uint16_t>(f, "brain"), (std::vector<uint16_t>{0x3F80, 0xC040}));
  EXPECT_EQ(read_as<uint8_t>(f, "bytes"), (std::vector<uint8_t>{0, 1, 128, 255}));
  EXPECT_EQ(read_as<uint8_t>(f, "mask"), (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(read_as<float>(f, "scalar"), std::vector<float>{42.f});
}

TEST_F(SafetensorsTest, WritesBytesIdenticalToPythonLibrary) {
  std::vector<float> w = {1.f, -2.f, 3.5f, 0.25f, 0.f, -0.5f};
  std::vector<double> b = {1.5, -2.25};
  std::vector<int64_t> steps = {1, -2, int64_t{1} << 40};
  std::vector<int32_t> counts = {7, -8, 9, 2147483647};
  std::vector<uint16_t> half = {0x3C00, 0xB800, 0x7BFF};
  std::vector<uint16_t> brain = {0x3F80, 0xC040};
  std::vector<uint8_t> bytes = {0, 1, 128, 255};
  std::vector<uint8_t> mask = {1, 0, 1};
  std::vector<float> scalar = {42.f}, empty;
  // Deliberately not in the file's order: the writer sorts.
  std::string p = path("mine.safetensors");
  st::save(p,
           {view("mask", "BOOL", {3}, mask), view("weight", "F32", {2, 3}, w), view("half", "F16", {3}, half),
            view("bias", "F64", {2}, b), view("scalar", "F32", {}, scalar), view("bytes", "U8", {4}, bytes),
            view("counts", "I32", {2, 2}, counts), view("empty", "F32", {0}, empty),
            view("brain", "BF16", {2}, brain), view("steps", "I64", {3}, steps)},
           {{"format", "pt"}});
  EXPECT_EQ(read_bytes(p), read_bytes(kDataDir + "/reference_torch.safetensors"));

  // Names that need escaping, non-ASCII names, the empty name, an escaped metadata value.
  std::vector<float> f32 = {1.f, 2.f};
  std::vector<int64_t> i64 = {3};
  std::vector<uint8_t> u8 = {4};
  std::vector<uint16_t> f16 = {0x4500};  // 5.0
  std::vector<int32_t> i32 = {6};
  std::string q = path("names.safetensors");
  st::save(q,
           {view("layer.0/weight", "F32", {2}, f32), view("quote\"back\\slash", "I64", {1}, i64),
            view("tab\tnew\nline\x01\x7f", "U8", {1}, u8),
            view("na\xc3\xafve \xce\xb1\xce\xb2", "F16", {1}, f16), view("", "I32", {1}, i32)},
           {{"b key", "x\"y\xc3\xa9\n"}});
  EXPECT_EQ(read_bytes(q), read_bytes(kDataDir + "/reference_names.safetensors"));

  st::File ref = st::File::open(kDataDir + "/reference_names.safetensors");
  EXPECT_EQ(read_as<int64_t>(ref, "quote\"back\\slash"), i64);
  EXPECT_EQ(read_as<uint8_t>(ref, "tab\tnew\nline\x01\x7f"), u8);
  EXPECT_EQ(read_as<int32_t>(ref, ""), i32);
  EXPECT_EQ(ref.metadata().at("b key"), "x\"y\xc3\xa9\n");
}

// ---- corrupt files --------------------------------------------------------------------------

const std::string kGoodEntry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

TEST_F(SafetensorsTest, OpenRejectsBadFramesAndLengths) {
  expect_open_error("", {"0 bytes", "shorter than the 8-byte"});
  expect_open_error(std::string("\x08\x00\x00\x00\x00", 5), {"5 bytes", "shorter than the 8-byte"});
  expect_open_error(le64(uint64_t{1} << 62) + "{}", {"header length 4611686018427387904", "100 MiB"});
  expect_open_error(le64((uint64_t{100} << 20) + 1) + "{}", {"100 MiB"});
  expect_open_error(le64(~uint64_t{0}) + "{}", {"header length 18446744073709551615", "100 MiB"});
  expect_open_error(le64(100) + "{}      ", {"header length 100", "exceeds the 8 bytes", "truncated"});

  // The reference file cut short: inside the header, and inside the data.
  std::vector<unsigned char> ref = read_bytes(kDataDir + "/reference_torch.safetensors");
  std::string whole(ref.begin(), ref.end());
  expect_open_error(whole.substr(0, 100), {"header length 632", "truncated"});
  expect_open_error(whole.substr(0, whole.size() - 3),
                    {"\"mask\"", "[98, 101]", "end beyond the data buffer of 98 bytes"});
  expect_open_error(whole.substr(0, whole.size() - 6), {"end beyond the data buffer of 95 bytes"});

  std::string missing = path("absent.safetensors");
  expect_error([&] { st::File::open(missing); }, {missing, "No such file or directory"});
  expect_error([&] { st::File::open(dir_.string()); }, {dir_.string(), "not a regular file"});
}

TEST_F(SafetensorsTest, OpenRejectsBadJson) {
  expect_open_error(file_bytes("{not json", 0), {"not valid JSON"});
  expect_open_error(file_bytes("{" + kGoodEntry, 8), {"not valid JSON"});
  expect_open_error(file_bytes("{" + kGoodEntry + "}x", 8), {"not valid JSON"});
  expect_open_error(file_bytes("{\"a\xff\":1}", 0), {"not valid JSON"});  // not UTF-8
  expect_open_error(file_bytes("[1, 2]", 0), {"must be a JSON object", "array"});
  expect_open_error(file_bytes("\"{}\"", 0), {"must be a JSON object", "string"});
  expect_open_error(file_bytes("", 0), {"not valid JSON"});
  // Trailing spaces (the writers' padding) and other whitespace are fine.
  write_bytes(path("ok.safetensors"), file_bytes("\n{" + kGoodEntry + "}  \t ", 8));
  EXPECT_EQ(st::File::open(path("ok.safetensors")).entries().size(), 1u);
}

TEST_F(SafetensorsTest, OpenRejectsBadEntries) {
  auto one = [&](const std::string& entry, size_t data) { return file_bytes("{\"t\":" + entry + "}", data); };
  expect_open_error(one("3", 0), {"tensor \"t\"", "expected an object, got number"});
  expect_open_error(one("[]", 0), {"tensor \"t\"", "expected an object, got array"});
  expect_open_error(one(R"({"shape":[2],"data_offsets":[0,8]})", 8), {"\"t\"", "missing \"dtype\""});
  expect_open_error(one(R"({"dtype":"F32","data_offsets":[0,8]})", 8), {"\"t\"", "missing \"shape\""});
  expect_open_error(one(R"({"dtype":"F32","shape":[2]})", 8), {"\"t\"", "missing \"data_offsets\""});
  expect_open_error(one(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})", 8),
                    {"\"dtype\" must be a string"});
  expect_open_error(one(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})", 8),
                    {"\"shape\" must be an array"});
  expect_open_error(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,9]})", 8),
                    {"\"data_offsets\" must be [begin, end]"});
  expect_open_error(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})", 8),
                    {"\"data_offsets\" must be [begin, end]"});
  expect_open_error(one(R"({"dtype":"F32","shape":[2],"data_offsets":[-1,8]})", 8),
                    {"\"data_offsets\" must be [begin, end]"});
  expect_open_error(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8.0]})", 8),
                    {"\"data_offsets\" must be [begin, end]"});
  expect_open_error(one(R"({"dtype":"F32","shape":[2],"data_offsets":{"a":0}})", 8),
                    {"\"data_offsets\" must be [begin, end]"});
  // dtypes
  expect_open_error(one(R"({"dtype":"F128","shape":[2],"data_offsets":[0,8]})", 8),
                    {"\"t\"", "unknown dtype \"F128\""});
  expect_open_error(one(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})", 8), {"unknown dtype \"f32\""});
  expect_open_error(one(R"({"dtype":"F4","shape":[2],"data_offsets":[0,1]})", 1),
                    {"\"F4\"", "several elements per byte"});
  // shapes
  expect_open_error(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})", 8),
                    {"\"t\"", "non-negative integers", "[-2]"});
  expect_open_error(one(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})", 8),
                    {"non-negative integers", "[2.5]"});
  expect_open_error(one(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})", 8),
                    {"non-negative integers"});
  expect_open_error(one(R"({"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]})", 8),
                    {"non-negative integers"});
  expect_open_error(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", 8),
                    {"\"t\"", "shape [3] of dtype F32 needs 12 bytes but data_offsets [0, 8] hold 8"});
  expect_open_error(one(R"({"dtype":"F32","shape":[2,0],"data_offsets":[0,8]})", 8), {"needs 0 bytes"});
  expect_open_error(
      one(R"({"dtype":"F64","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]})", 8),
      {"\"t\"", "overflows 64 bits"});
  expect_open_error(one(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]})", 0),
                    {"overflows 64 bits"});  // 2^61 * 8 = 2^64
  // offsets
  expect_open_error(one(R"({"dtype":"F32","shape":[0],"data_offsets":[8,4]})", 8), {"\"t\"", "begin > end"});
  expect_open_error(one(R"({"dtype":"F32","shape":[2],"data_offsets":[4,12]})", 8),
                    {"\"t\"", "data_offsets [4, 12] end beyond the data buffer of 8 bytes"});
  expect_open_error(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 0),
                    {"end beyond the data buffer of 0 bytes"});
  // Extra fields in an entry are ignored, as the reference reader does.
  write_bytes(path("ok.safetensors"), one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":[1]})", 8));
  EXPECT_EQ(st::File::open(path("ok.safetensors")).entries().size(), 1u);
}

TEST_F(SafetensorsTest, OpenRejectsBadMetadata) {
  expect_open_error(file_bytes(R"({"__metadata__":[1]})", 0), {"\"__metadata__\" must be an object"});
  expect_open_error(file_bytes(R"({"__metadata__":"x"})", 0), {"\"__metadata__\" must be an object"});
  expect_open_error(file_bytes(R"({"__metadata__":{"k":1}})", 0),
                    {"\"__metadata__\" value of \"k\" must be a string"});
  expect_open_error(file_bytes(R"({"__metadata__":{"k":{"a":"b"}}})", 0),
                    {"value of \"k\" must be a string"});
  write_bytes(path("ok.safetensors"), file_bytes(R"({"__metadata__":{}})", 0));
  EXPECT_TRUE(st::File::open(path("ok.safetensors")).metadata().empty());
}

TEST_F(SafetensorsTest, OpenRejectsDuplicateNames) {
  expect_open_error(file_bytes("{" + kGoodEntry + "," + kGoodEntry + "}", 8),
                    {"duplicate tensor name \"a\""});
  // Different offsets, so the second copy would otherwise silently win and hide bytes [0, 8).
  expect_open_error(
      file_bytes(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
          16),
      {"duplicate tensor name \"a\""});
  expect_open_error(file_bytes(R"({"__metadata__":{},"__metadata__":{}})", 0),
                    {"duplicate tensor name \"__metadata__\""});
  expect_open_error(file_bytes(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
                    {"duplicate key \"dtype\""});
  expect_open_error(file_bytes(R"({"__metadata__":{"k":"1","k":"2"}})", 0), {"duplicate key \"k\""});
  // Equal keys in different objects are not duplicates.
  write_bytes(
      path("ok.safetensors"),
      file_bytes(R"({"__metadata__":{"a":"x"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8));
  EXPECT_EQ(st::File::open(path("ok.safetensors")).metadata().at("a"), "x");
}

TEST_F(SafetensorsTest, OpenRequiresTensorsToTileTheDataBuffer) {
  const std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  // Overlap.
  expect_open_error(file_bytes("{" + a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                    {"\"a\" [0, 8]", "\"b\" [4, 12]", "overlap"});
  // Same range twice.
  expect_open_error(file_bytes("{" + a + R"(,"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})", 8),
                    {"overlap"});
  // A zero-byte tensor inside another one's range.
  expect_open_error(file_bytes("{" + a + R"(,"b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", 8),
                    {"overlap"});
  // A hole between two tensors, and one at the start.
  expect_open_error(file_bytes("{" + a + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", 16),
                    {"bytes [8, 12)", "belong to no tensor", "hole before \"b\""});
  expect_open_error(file_bytes(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
                    {"bytes [0, 4)", "hole before \"b\""});
  // Bytes after the last tensor.
  expect_open_error(file_bytes("{" + a + "}", 9),
                    {"bytes [8, 9) at the end of the data buffer belong to no tensor"});
  expect_open_error(file_bytes("{}", 3), {"bytes [0, 3) at the end"});
  // Zero-byte tensors at a boundary, and header order unlike offset order, are fine.
  write_bytes(
      path("ok.safetensors"),
      file_bytes(
          R"({"z":{"dtype":"U8","shape":[1],"data_offsets":[8,9]},"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)" +
              a + "}",
          9));
  st::File f = st::File::open(path("ok.safetensors"));
  ASSERT_EQ(f.entries().size(), 3u);
  EXPECT_EQ(f.entries()[0].name, "a");
  EXPECT_EQ(f.entries()[1].name, "e");
  EXPECT_EQ(f.entries()[2].name, "z");
  EXPECT_EQ(read_as<uint8_t>(f, "z"), std::vector<uint8_t>{0x5a});

  // Zero-byte tensors at the same offset keep the header's order, not the name order.
  write_bytes(
      path("ok.safetensors"),
      file_bytes(
          R"({"z0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})",
          0));
  f = st::File::open(path("ok.safetensors"));
  ASSERT_EQ(f.entries().size(), 2u);
  EXPECT_EQ(f.entries()[0].name, "z0");
  EXPECT_EQ(f.entries()[1].name, "a0");
}

TEST_F(SafetensorsTest, ReadChecksRangeAndNoticesShrunkFile) {
  std::vector<double> x = {1, 2, 3, 4};
  std::string p = path("r.safetensors");
  st::save(p, {view("x", "F64", {4}, x)});
  st::File f = st::File::open(p);
  st::TensorEntry forged = *f.find("x");
  forged.end += 8;
  std::vector<double> out(8);
  expect_error([&] { f.read(forged, out.data()); },
               {p, "\"x\"", "do not lie in the data buffer of 32 bytes"});

  // Truncate behind the reader's back: the open descriptor sees the shorter file.
  fs::resize_file(p, fs::file_size(p) - 8);
  expect_error([&] { f.read(*f.find("x"), out.data()); },
               {p, "\"x\"", "unexpected end of file", "after 24 of 32 bytes"});
}

}  // namespace
