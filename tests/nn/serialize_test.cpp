// Tests of module checkpoints (nn::save / nn::load): round trips, dtypes, devices, a file written by
// PyTorch's safetensors, corrupt and mismatched files, and atomic writes.
#include "nn/serialize.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "nn/cloneable.h"
#include "nn/safetensors.h"
#include "tests/testing.h"

#ifndef EMBER_TEST_DATA_DIR
#error "EMBER_TEST_DATA_DIR must name the tests/ folder of the source tree"
#endif

namespace ember {
namespace {

namespace fs = std::filesystem;
using testing::all_close;

const std::string kDataDir = EMBER_TEST_DATA_DIR "/nn/data";

// ---- a small model with PyTorch's names: Linear(4, 3) -> BatchNorm1d(3) (eval) -> ReLU -> Linear(3, 2)

class FcImpl : public nn::Cloneable<FcImpl> {
 public:
  FcImpl(int64_t in, int64_t out) : in_(in), out_(out) { reset(); }
  void reset() override {
    NoGradGuard no_grad;
    weight = register_parameter("weight", (rand({out_, in_}) - 0.5) * 0.8);
    bias = register_parameter("bias", (rand({out_}) - 0.5) * 0.8);
  }
  Tensor forward(const Tensor& x) { return x.matmul(weight.t()) + bias; }
  Tensor weight, bias;

 private:
  int64_t in_, out_;
};
EMBER_MODULE(Fc);

class BnImpl : public nn::Cloneable<BnImpl> {
 public:
  explicit BnImpl(int64_t c) : c_(c) { reset(); }
  void reset() override {
    NoGradGuard no_grad;
    weight = register_parameter("weight", rand({c_}) + 0.5);
    bias = register_parameter("bias", rand({c_}) - 0.5);
    running_mean = register_buffer("running_mean", rand({c_}) - 0.5);
    running_var = register_buffer("running_var", rand({c_}) + 0.5);
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, kInt64));
  }
  // Evaluation mode: the running statistics.
  Tensor forward(const Tensor& x) { return (x - running_mean) / (running_var + 1e-5).sqrt() * weight + bias; }
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  int64_t c_;
};
EMBER_MODULE(Bn);

class TinyNetImpl : public nn::Cloneable<TinyNetImpl> {
 public:
  TinyNetImpl() { reset(); }
  void reset() override {
    fc = register_module("fc", Fc(4, 3));
    bn = register_module("bn", Bn(3));
    fc2 = register_module("fc2", Fc(3, 2));
  }
  Tensor forward(const Tensor& x) { return fc2->forward(bn->forward(fc->forward(x)).relu()); }
  Fc fc{nullptr};
  Bn bn{nullptr};
  Fc fc2{nullptr};
};
EMBER_MODULE(TinyNet);

const std::vector<std::string> kNames = {"fc.weight",       "fc.bias",        "bn.weight",
                                         "bn.bias",         "fc2.weight",     "fc2.bias",
                                         "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"};

// The input of tests/nn/data/make_module_reference.py: (arange(8).view(2, 4) - 3.5) / 4.
Tensor reference_input(Device device = Device::cpu()) {
  return ((arange(0, 8, 1, TensorOptions(kFloat32)).view({2, 4}) - 3.5) / 4).to(device);
}

// Printed by tests/nn/data/make_module_reference.py (torch 1.13) for module_torch.safetensors.
const std::vector<double> kTorchOutput = {0.614164174, -0.157035291, 0.588500619, -0.100806661};
const std::vector<double> kTorchFcWeight = {-0.00374341011, 0.268221796, -0.411522567,   -0.367969513,
                                            -0.192577183,   0.134078681, -0.00990658998, 0.396444738,
                                            -0.0443720222,  0.132306278, -0.151106536,   -0.0982826948};

// Every state tensor of `a` equals `b`'s bit for bit (after moving to the CPU).
void expect_same_state(const nn::Module& a, const nn::Module& b) {
  const nn::StateDict sa = a.state_dict(), sb = b.state_dict();
  ASSERT_EQ(sa.keys(), sb.keys());
  for (const auto& [name, t] : sa) {
    SCOPED_TRACE(name);
    const Tensor& u = sb.at(name);
    EXPECT_EQ(t.dtype(), u.dtype());
    EXPECT_EQ(t.sizes(), u.sizes());
    EXPECT_TRUE(equal(t.to(Device::cpu()), u.to(Device::cpu())));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

class SerializeTest : public testing::DeviceTest {
 protected:
  void SetUp() override {
    testing::DeviceTest::SetUp();
    std::string tmpl = (fs::temp_directory_path() / "ember_serialize_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

// ---- round trips --------------------------------------------------------------------------------

TEST_P(SerializeTest, RoundTripGivesTheSameModel) {
  TinyNet a;
  a->to(device());
  {
    NoGradGuard no_grad;
    a->bn->num_batches_tracked.fill_(12);
  }
  const std::string p = path("net.safetensors");
  nn::save(a, p);
  TinyNet b;  // different random values
  b->to(device());
  nn::load(b, p);
  expect_same_state(*a, *b);
  // Values land on the device the module lives on and keep its dtypes.
  for (const auto& [name, t] : b->state_dict()) EXPECT_EQ(t.device(), device()) << name;
  EXPECT_TRUE(b->fc->weight.requires_grad());
  EXPECT_TRUE(b->fc->weight.is_leaf());
  EXPECT_EQ(b->bn->num_batches_tracked.item<int64_t>(), 12);
  Tensor x = reference_input(device());
  EXPECT_TRUE(equal(a->forward(x).cpu(), b->forward(x).cpu()));
  EXPECT_EQ(listing(), std::vector<std::string>{"net.safetensors"});
}

TEST_P(SerializeTest, FileHasPyTorchNamesDtypesAndMetadata) {
  TinyNet net;
  net->to(device());
  const std::string p = path("net.safetensors");
  nn::save(net, p);
  const auto file = safetensors::File::open(p);
  ASSERT_EQ(file.entries().size(), kNames.size());
  for (const std::string& name : kNames) {
    const auto* e = file.find(name);
    ASSERT_NE(e, nullptr) << name;
    EXPECT_EQ(e->dtype, name == "bn.num_batches_tracked" ? "I64" : "F32") << name;
  }
  EXPECT_EQ(file.find("fc.weight")->shape, (std::vector<int64_t>{3, 4}));
  EXPECT_TRUE(file.find("bn.num_batches_tracked")->shape.empty());
  EXPECT_EQ(file.metadata().at("format"), "pt");

  // load_state_dict: the file's dtypes, on the asked device.
  const nn::StateDict sd = nn::load_state_dict(p, device());
  ASSERT_EQ(sd.size(), kNames.size());
  EXPECT_EQ(sd.at("bn.num_batches_tracked").dtype(), kInt64);
  EXPECT_EQ(sd.at("fc.weight").device(), device());
  EXPECT_TRUE(equal(sd.at("fc2.bias").cpu(), net->fc2->bias.cpu()));
}

TEST_P(SerializeTest, EveryDtypeRoundTrips) {
  nn::StateDict sd;
  sd.insert("f32", tensor({1.5f, -2.f, 3.25f}).to(device()));
  sd.insert("f64", tensor({1.5, -1e300}).to(device()));
  sd.insert("f16", tensor({1.f, -0.5f, 65504.f}).to(TensorOptions(kFloat16).device(device())));
  sd.insert("bf16", tensor({1.f, -3.f}).to(TensorOptions(kBFloat16).device(device())));
  sd.insert("i64", tensor(std::vector<int64_t>{1, -2, int64_t{1} << 40}).to(device()));
  sd.insert("i32", tensor(std::vector<int32_t>{7, -8}).to(device()));
  sd.insert("u8", tensor(std::vector<uint8_t>{0, 255}).to(device()));
  sd.insert("bool", tensor(std::vector<bool>{true, false, true}).to(device()));
  sd.insert("scalar", scalar_tensor(42.0, TensorOptions(kFloat32).device(device())));
  sd.insert("empty", zeros({0, 3}, TensorOptions(kFloat32).device(device())));
  // Non-contiguous: written as its logical (row-major) values.
  sd.insert("transposed", arange(0, 6, 1, TensorOptions(kFloat32).device(device())).view({2, 3}).t());
  const std::string p = path("all.safetensors");
  nn::save(sd, p);
  const auto file = safetensors::File::open(p);
  EXPECT_EQ(file.find("f16")->dtype, "F16");
  EXPECT_EQ(file.find("bf16")->dtype, "BF16");
  EXPECT_EQ(file.find("u8")->dtype, "U8");
  EXPECT_EQ(file.find("bool")->dtype, "BOOL");
  EXPECT_EQ(file.find("i32")->dtype, "I32");
  const nn::StateDict back = nn::load_state_dict(p);
  ASSERT_EQ(back.size(), sd.size());
  for (const auto& [name, t] : sd) {
    SCOPED_TRACE(name);
    const Tensor& u = back.at(name);
    EXPECT_EQ(u.dtype(), t.dtype());
    EXPECT_EQ(u.sizes(), t.sizes());
    EXPECT_TRUE(u.is_cpu());
    EXPECT_TRUE(equal(u, t.cpu()));
  }
}

TEST_P(SerializeTest, ValuesAreConvertedToTheModulesDtype) {
  // A float64 checkpoint (and int32 counter) into a float32 module, and back the other way.
  TinyNet wide;
  wide->to(kFloat64);
  nn::StateDict sd = wide->state_dict();
  sd.insert_or_assign("bn.num_batches_tracked", scalar_tensor(5, TensorOptions(kInt32)));
  const std::string p = path("wide.safetensors");
  nn::save(sd, p);
  EXPECT_EQ(safetensors::File::open(p).find("fc.weight")->dtype, "F64");
  TinyNet narrow;
  narrow->to(device());
  nn::load(narrow, p);
  EXPECT_EQ(narrow->fc->weight.dtype(), kFloat32);
  EXPECT_EQ(narrow->fc->weight.device(), device());
  EXPECT_TRUE(all_close(narrow->fc->weight, wide->fc->weight.to(kFloat32), 0, 0));
  EXPECT_EQ(narrow->bn->num_batches_tracked.dtype(), kInt64);
  EXPECT_EQ(narrow->bn->num_batches_tracked.item<int64_t>(), 5);

  // float16 into float32.
  nn::StateDict half = narrow->state_dict();
  for (auto& [name, t] : half)
    if (t.is_floating_point()) t = t.to(kFloat16);
  nn::save(half, path("half.safetensors"));
  TinyNet from_half;
  nn::load(from_half, path("half.safetensors"));
  EXPECT_TRUE(all_close(from_half->fc->weight, narrow->fc->weight.cpu().to(kFloat16).to(kFloat32), 0, 0));
}

TEST_P(SerializeTest, HoldersPointersAndReferences) {
  TinyNet net;
  net->to(device());
  std::shared_ptr<TinyNetImpl> ptr = net.ptr();
  std::shared_ptr<nn::Module> base = net.ptr();
  nn::save(net, path("holder.safetensors"));
  nn::save(ptr, path("ptr.safetensors"));
  nn::save(base, path("base.safetensors"));
  nn::save(*net, path("ref.safetensors"));
  nn::save(net->state_dict(), path("sd.safetensors"));
  const std::string want = read_file(path("holder.safetensors"));
  for (const char* f : {"ptr.safetensors", "base.safetensors", "ref.safetensors", "sd.safetensors"})
    EXPECT_EQ(read_file(path(f)), want) << f;  // the same bytes whichever way the module is passed

  auto target = std::make_shared<TinyNetImpl>();
  target->to(device());
  nn::load(target, path("ptr.safetensors"));
  expect_same_state(*net, *target);
  TinyNet other;
  other->to(device());
  std::shared_ptr<nn::Module> other_base = other.ptr();
  nn::load(other_base, path("ref.safetensors"));
  expect_same_state(*net, *other);
  TinyNet third;
  third->to(device());
  nn::load(*third, path("sd.safetensors"));
  expect_same_state(*net, *third);
  std::shared_ptr<nn::Module> null;
  EXPECT_EMBER_ERROR(nn::save(null, path("x.safetensors")), "nn::save", "null");
  EXPECT_EMBER_ERROR(nn::load(null, path("x.safetensors")), "nn::load", "null");
}

// ---- interoperability with PyTorch --------------------------------------------------------------

TEST_P(SerializeTest, LoadsAFileWrittenByPyTorch) {
  // tests/nn/data/make_module_reference.py: safetensors.torch.save_file(model.state_dict(), ...).
  TinyNet net;
  net->to(device());
  nn::load(net, kDataDir + "/module_torch.safetensors");
  EXPECT_TRUE(all_close(net->fc->weight, tensor(kTorchFcWeight).view({3, 4}), 1e-8, 1e-9));
  EXPECT_TRUE(all_close(net->bn->running_mean, tensor({-0.6, -0.2, -0.5}), 1e-7, 0));
  EXPECT_TRUE(all_close(net->bn->running_var, tensor({0.5, 1.5, 2.0}), 0, 0));
  EXPECT_EQ(net->bn->num_batches_tracked.item<int64_t>(), 7);
  // PyTorch's eval-mode output on the same input (batch norm folds its operations differently).
  EXPECT_TRUE(all_close(net->forward(reference_input(device())), tensor(kTorchOutput).view({2, 2}), 1e-5, 1e-6));
}

// ---- corrupt files and files that do not fit ----------------------------------------------------

TEST_P(SerializeTest, CorruptFilesAreRejectedNamingTheProblem) {
  TinyNet net;
  net->to(device());
  const nn::StateDict before = net->state_dict();
  std::vector<Tensor> snapshot;
  for (const auto& [name, t] : before) snapshot.push_back(t.clone());
  const std::string good = path("good.safetensors");
  nn::save(net, good);
  const std::string bytes = read_file(good);
  const std::string bad = path("bad.safetensors");
  auto expect_load_error = [&](const std::string& contents, const std::vector<std::string>& words) {
    write_file(bad, contents);
    try {
      nn::load(net, bad);
      ADD_FAILURE() << "expected ember::Error containing " << words.front();
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_THAT(msg, ::testing::HasSubstr(bad));
      for (const std::string& w : words) EXPECT_THAT(msg, ::testing::HasSubstr(w));
    }
  };
  // A tensor of 4 F32 values as the whole file, under a given header.
  const std::string four = std::string(16, '\0');
  auto one_tensor = [&](const std::string& header, const std::string& data) {
    return le64(header.size()) + header + data;
  };

  expect_load_error(bytes.substr(0, bytes.size() - 10), {"beyond the data buffer"});        // truncated
  expect_load_error(bytes.substr(0, 5), {"shorter than the 8-byte header length"});         // truncated header
  expect_load_error(le64(uint64_t{1} << 40) + bytes.substr(8), {"header length"});          // bad N
  expect_load_error(le64(1000) + bytes.substr(8, 100), {"header length 1000 exceeds"});     // N past the end
  expect_load_error(one_tensor("{\"a\": {\"dtype\": \"F32\",", four), {"not valid JSON"});  // bad JSON
  expect_load_error(one_tensor("[1, 2]", ""), {"must be a JSON object"});
  expect_load_error(one_tensor(R"({"fc.bias":{"dtype":"F128","shape":[4],"data_offsets":[0,16]}})", four),
                    {"fc.bias", "unknown dtype", "F128"});
  expect_load_error(one_tensor(R"({"fc.bias":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", four),
                    {"fc.bias", "needs 12 bytes", "hold 16"});  // shape/bytes
  expect_load_error(
      one_tensor(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          std::string(12, '\0')),
      {"overlap"});
  expect_load_error(one_tensor(R"({"fc.bias":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})", four),
                    {"belong to no tensor"});  // trailing bytes
  // Valid files that ember cannot read.
  expect_load_error(
      one_tensor(R"({"fc.bias":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[0,3]}})", std::string(3, '\0')),
      {"fc.bias", "F8_E4M3", "does not support"});
  expect_load_error(one_tensor(R"({"fc.bias":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0')),
                    {"I16", "does not support"});

  // Valid files that do not fit the module: each problem named.
  auto with = [&](const std::function<void(nn::StateDict&)>& edit) {
    nn::StateDict sd = net->state_dict();
    edit(sd);
    nn::save(sd, bad);
    return read_file(bad);
  };
  expect_load_error(with([](nn::StateDict& sd) { sd.insert("fc3.weight", zeros({2})); }),
                    {"unexpected keys", "fc3.weight"});
  expect_load_error(with([](nn::StateDict& sd) { sd.erase("bn.running_var"); }), {"missing keys", "bn.running_var"});
  expect_load_error(with([](nn::StateDict& sd) {
                      sd.insert_or_assign("fc2.weight", zeros({3, 2}));
                    }),
                    {"shape mismatch", "fc2.weight", "[3, 2]", "[2, 3]"});
  expect_load_error(with([](nn::StateDict& sd) { sd.insert_or_assign("bn.num_batches_tracked", zeros({})); }),
                    {"bn.num_batches_tracked", "F32", "int64", "cannot take"});
  expect_load_error(with([](nn::StateDict& sd) { sd.insert_or_assign("fc.bias", zeros({3}, kInt64)); }),
                    {"fc.bias", "I64", "float32"});
  expect_load_error(
      one_tensor(R"({"x":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", std::string("\x01\x02", 2)),
      {"BOOL tensor 'x'", "byte 2"});
  EXPECT_THROW(nn::load(net, path("does_not_exist.safetensors")), Error);

  // Nothing was changed by any failed load.
  size_t i = 0;
  for (const auto& [name, t] : net->state_dict()) EXPECT_TRUE(equal(t.cpu(), snapshot[i++].cpu())) << name;
}

TEST_P(SerializeTest, NonStrictLoadSkipsMissingAndUnexpectedNames) {
  TinyNet src;
  nn::StateDict sd = src->state_dict();
  sd.erase("fc2.weight");
  sd.insert("extra", ones({2}));
  nn::save(sd, path("partial.safetensors"));
  TinyNet dst;
  dst->to(device());
  const Tensor fc2_before = dst->fc2->weight.clone();
  nn::load(dst, path("partial.safetensors"), /*strict=*/false);
  EXPECT_TRUE(equal(dst->fc->weight.cpu(), src->fc->weight));
  EXPECT_TRUE(equal(dst->fc2->weight.cpu(), fc2_before.cpu()));
  EXPECT_EMBER_ERROR(nn::load(dst, path("partial.safetensors")), "missing keys", "fc2.weight", "unexpected keys",
                     "extra");
}

// ---- saving -------------------------------------------------------------------------------------

TEST_P(SerializeTest, FailedSaveLeavesTheOldFileIntact) {
  TinyNet net;
  net->to(device());
  const std::string p = path("ckpt.safetensors");
  nn::save(net, p);
  const std::string original = read_file(p);

  // Fails before writing: an undefined tensor.
  nn::StateDict sd = net->state_dict();
  sd.insert("broken", Tensor());
  EXPECT_EMBER_ERROR(nn::save(sd, p), "nn::save", "broken", "undefined");
  EXPECT_EQ(read_file(p), original);

  // Fails while writing: the file-size limit makes write() fail with EFBIG half-way (SIGXFSZ
  // ignored so that the write returns an error instead of killing the process).
  nn::StateDict big;
  big.insert("big", zeros({1 << 20}, TensorOptions(kFloat32).device(device())));
  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  struct sigaction ignore {
  }, old_action{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGXFSZ, &ignore, &old_action), 0);
  struct rlimit small = old_limit;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  bool threw = false;
  try {
    nn::save(big, p);
  } catch (const Error& e) {
    threw = true;
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr(p));
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("write"));
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::sigaction(SIGXFSZ, &old_action, nullptr);
  EXPECT_TRUE(threw);
  EXPECT_EQ(read_file(p), original);
  EXPECT_EQ(listing(), std::vector<std::string>{"ckpt.safetensors"});  // no temporary left behind

  // A directory that does not exist.
  EXPECT_EMBER_ERROR(nn::save(net, path("no/such/dir/x.safetensors")), "no/such/dir/x.safetensors");
}

TEST(Serialize, LoadsOntoALogicalCpuDevice) {
  // Values land on the device each tensor lives on, also a logical CPU device.
  TinyNet a;
  const std::string p = (fs::temp_directory_path() / "ember_serialize_cpu1.safetensors").string();
  nn::save(a, p);
  TinyNet b;
  b->to(Device::cpu(1));
  nn::load(b, p);
  fs::remove(p);
  EXPECT_EQ(b->fc->weight.device(), Device::cpu(1));
  EXPECT_EQ(b->bn->num_batches_tracked.device(), Device::cpu(1));
  expect_same_state(*a, *b);
  nn::StateDict sd = nn::load_state_dict(kDataDir + "/module_torch.safetensors", Device::cpu(2));
  EXPECT_EQ(sd.at("fc.weight").device(), Device::cpu(2));
}

TEST(Serialize, SaveOnCudaLoadOnCudaGivesTheSameOutputs_CUDA) {
  EMBER_REQUIRE_CUDA();
  TinyNet a;
  a->cuda();
  const std::string p = (fs::temp_directory_path() / "ember_serialize_cuda.safetensors").string();
  nn::save(a, p);
  TinyNet b;
  b->cuda();
  nn::load(b, p);
  TinyNet c;  // and into a CPU module: the same values
  nn::load(c, p);
  fs::remove(p);
  EXPECT_TRUE(b->fc->weight.is_cuda());
  Tensor x = reference_input(Device::cuda(0));
  EXPECT_TRUE(equal(a->forward(x).cpu(), b->forward(x).cpu()));
  expect_same_state(*a, *c);
  EXPECT_TRUE(all_close(c->forward(x.cpu()), a->forward(x).cpu(), 1e-6, 1e-7));
}

EMBER_INSTANTIATE_DEVICE_TESTS(SerializeTest);

}  // namespace
}  // namespace ember
