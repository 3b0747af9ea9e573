// Tests of tensor creation, metadata, host access, fill/copy/to across dtypes and devices, and printing.
#include "tests/testing.h"

namespace ember {
namespace {

using testing::values_are;

class TensorTest : public testing::DeviceTest {};

TEST_P(TensorTest, FactoriesMakeWhatTheySay) {
  Tensor a = zeros({2, 3}, opts());
  EXPECT_EQ(a.sizes(), IntArrayRef({2, 3}));
  EXPECT_EQ(a.sizes(), std::vector<int64_t>({2, 3}));
  EXPECT_EQ(a.dim(), 2);
  EXPECT_EQ(a.numel(), 6);
  EXPECT_EQ(a.size(1), 3);
  EXPECT_EQ(a.size(-1), 3);
  EXPECT_EQ(a.strides(), IntArrayRef({3, 1}));
  EXPECT_EQ(a.dtype(), kFloat32);
  EXPECT_EQ(a.device(), device());
  EXPECT_TRUE(a.is_contiguous());
  EXPECT_TRUE(a.defined());
  EXPECT_TRUE(values_are(a, {2, 3}, {0, 0, 0, 0, 0, 0}));
  EXPECT_TRUE(values_are(ones({2, 2}, opts()), {2, 2}, {1, 1, 1, 1}));
  EXPECT_TRUE(values_are(full({3}, 1.5, opts()), {3}, {1.5, 1.5, 1.5}));
  EXPECT_EQ(full({2}, 7, TensorOptions(device())).dtype(), kInt64);  // dtype from the value, as PyTorch
  EXPECT_EQ(empty({4}, opts()).numel(), 4);
  Tensor z = zeros({2, 3}, TensorOptions().dtype(kFloat64).device(device()));
  EXPECT_EQ(z.dtype(), kFloat64);
  EXPECT_EQ(z.is_cuda(), device().is_cuda());
}

TEST_P(TensorTest, ArangeEyeAndFromValues) {
  Tensor b = arange(0, 10, 1, TensorOptions(device()));
  EXPECT_EQ(b.dtype(), kInt64);
  EXPECT_EQ(b.to_vector<int64_t>(), std::vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(arange(5).to_vector<int64_t>(), std::vector<int64_t>({0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(10, 0, -3).to_vector<int64_t>(), std::vector<int64_t>({10, 7, 4, 1}));
  Tensor f = arange(0.0, 1.0, 0.25);
  EXPECT_EQ(f.dtype(), kFloat32);
  EXPECT_TRUE(values_are(f, {4}, {0, 0.25, 0.5, 0.75}));
  EXPECT_TRUE(values_are(eye(3, opts()), {3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}));
  EXPECT_TRUE(values_are(eye(2, 3, opts()), {2, 3}, {1, 0, 0, 0, 1, 0}));
  EXPECT_TRUE(values_are(linspace(0, 1, 5, opts()), {5}, {0, 0.25, 0.5, 0.75, 1}));

  Tensor t = tensor({1.f, 2.f, 3.f, 4.f}, opts()).view({2, 2});
  EXPECT_EQ(t.dtype(), kFloat32);
  EXPECT_TRUE(values_are(t, {2, 2}, {1, 2, 3, 4}));
  Tensor i = tensor(std::vector<int64_t>{3, 1, 4});
  EXPECT_EQ(i.dtype(), kInt64);
  Tensor d = tensor({1.0, 2.0});
  EXPECT_EQ(d.dtype(), kFloat64);
  EXPECT_EQ(tensor({1, 2, 3}).dtype(), kInt64);
  EXPECT_EQ(tensor(std::vector<bool>{true, false}).to_vector<bool>(), std::vector<bool>({true, false}));
  EXPECT_EQ(tensor({1.5, 2.5}, TensorOptions(kFloat32).device(device())).dtype(), kFloat32);
}

TEST_P(TensorTest, ZeroDimAndEmptyTensors) {
  Tensor s = scalar_tensor(3.5, opts(kFloat64));
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item<double>(), 3.5);
  EXPECT_EQ(s.item().to_double(), 3.5);
  Tensor e = zeros({0, 3}, opts());
  EXPECT_EQ(e.numel(), 0);
  EXPECT_TRUE(e.to_vector<float>().empty());
  Tensor e2 = e.clone();
  EXPECT_EQ(e2.sizes(), IntArrayRef({0, 3}));
  EXPECT_EMBER_ERROR(e.item<float>(), "item", "0 elements");
  EXPECT_EMBER_ERROR(zeros({2, 2}, opts()).item<float>(), "item", "4 elements", "[2, 2]");
}

TEST_P(TensorTest, HostAccess) {
  Tensor a = arange(0, 6, 1, opts()).view({2, 3});
  EXPECT_EQ(a.sum().item<float>(), 15.0f);
  const std::vector<float> xs = a.to_vector<float>();
  EXPECT_EQ(xs, std::vector<float>({0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(a.t().to_vector<float>(), std::vector<float>({0, 3, 1, 4, 2, 5}));
  if (device().is_cpu()) {
    float* p = a.data_ptr<float>();
    p[4] = 40;
    EXPECT_EQ(a.to_vector<float>()[4], 40.0f);
    EXPECT_EMBER_ERROR(a.data_ptr<double>(), "data_ptr", "float32");
  } else {
    EXPECT_EMBER_ERROR(a.data_ptr<float>(), "data_ptr", "cuda:0", "CPU");
  }
}

TEST_P(TensorTest, FillZeroAndCopyAcrossDtypes) {
  Tensor a = empty({2, 3}, opts());
  a.fill_(2.5);
  EXPECT_TRUE(values_are(a, {2, 3}, {2.5, 2.5, 2.5, 2.5, 2.5, 2.5}));
  a.zero_();
  EXPECT_TRUE(values_are(a, {2, 3}, {0, 0, 0, 0, 0, 0}));
  const std::vector<DType> dtypes = {kFloat32, kFloat64, kInt64, kInt32, kUInt8, kBool, kFloat16, kBFloat16};
  Tensor src = tensor({0.0, 1.0, 2.0, 3.0, 4.0, 5.0}, opts(kFloat64)).view({2, 3});
  for (DType from : dtypes) {
    Tensor s = src.to(from);
    for (DType to : dtypes) {
      Tensor d = empty({2, 3}, opts(to));
      d.copy_(s);
      std::vector<double> expect = {0, 1, 2, 3, 4, 5};
      if (to == kBool || from == kBool)
        for (double& v : expect) v = v != 0 ? 1 : 0;
      EXPECT_TRUE(values_are(d, {2, 3}, expect)) << dtype_name(from) << " -> " << dtype_name(to);
      EXPECT_EQ(d.dtype(), to);
    }
  }
}

TEST_P(TensorTest, CopyBroadcastsAndWritesThroughViews) {
  Tensor dst = zeros({3, 4}, opts());
  dst.copy_(tensor({1.f, 2.f, 3.f, 4.f}, opts()));
  EXPECT_TRUE(values_are(dst, {3, 4}, {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}));
  Tensor col = dst.select(1, 2);  // strided view
  col.copy_(tensor({7.f, 8.f, 9.f}, opts()));
  EXPECT_TRUE(values_are(dst, {3, 4}, {1, 2, 7, 4, 1, 2, 8, 4, 1, 2, 9, 4}));
  Tensor t = dst.t();  // copy into a transposed destination
  Tensor src = arange(0, 12, 1, opts()).view({4, 3});
  t.copy_(src);
  EXPECT_TRUE(values_are(dst, {3, 4}, {0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11}));
  // Overlapping source and destination: the result is as if src were read first.
  Tensor x = arange(0, 6, 1, opts());
  x.slice(0, 1, 6).copy_(x.slice(0, 0, 5));
  EXPECT_TRUE(values_are(x, {6}, {0, 0, 1, 2, 3, 4}));
  EXPECT_EMBER_ERROR(zeros({2, 3}, opts()).copy_(zeros({4}, opts())), "copy_", "[4]", "[2, 3]");
  EXPECT_EMBER_ERROR(zeros({3}, opts()).copy_(zeros({2, 3}, opts())), "copy_");
  Tensor expanded = zeros({1}, opts()).expand({4});
  EXPECT_EMBER_ERROR(expanded.fill_(1), "fill_", "overlapping memory");
}

TEST_P(TensorTest, ToMovesBetweenDevicesAndDtypes) {
  Tensor x = randn({4, 5}, opts());
  EXPECT_TRUE(x.to(device()).is_same(x));  // no copy onto its own device and dtype
  EXPECT_TRUE(x.to(kFloat32).is_same(x));
  EXPECT_FALSE(x.to(device(), false, /*copy=*/true).is_same(x));
  Tensor d = x.to(kFloat64);
  EXPECT_EQ(d.dtype(), kFloat64);
  EXPECT_TRUE(testing::all_close(d, x.to(kFloat64)));
  // Logical CPU devices: moving there and back keeps the values.
  Tensor on1 = x.to(Device::cpu(1));
  EXPECT_EQ(on1.device(), Device::cpu(1));
  EXPECT_TRUE(testing::all_close(on1.to(device()), x));
  Tensor back = x.cpu();
  EXPECT_TRUE(back.is_cpu());
  EXPECT_TRUE(testing::all_close(back, x));
  if (device().is_cuda()) {
    EXPECT_TRUE(x.cpu().cuda().is_cuda());
    Tensor pinned = x.cpu().pin_memory();
    EXPECT_TRUE(pinned.is_pinned());
    Tensor async = pinned.to(device(), /*non_blocking=*/true);
    EXPECT_TRUE(testing::all_close(async, x));
    Tensor host_async = x.to(Device::cpu(), /*non_blocking=*/true);
    cuda::synchronize();
    EXPECT_TRUE(testing::all_close(host_async, x.cpu()));
  }
}

TEST_P(TensorTest, CloneOwnsItsStorage) {
  Tensor x = arange(0, 4, 1, opts());
  Tensor y = x.clone();
  EXPECT_FALSE(y.is_alias_of(x));
  y.fill_(9);
  EXPECT_TRUE(values_are(x, {4}, {0, 1, 2, 3}));
  Tensor t = arange(0, 6, 1, opts()).view({2, 3}).t();
  Tensor tc = t.clone();
  EXPECT_TRUE(values_are(tc, {3, 2}, {0, 3, 1, 4, 2, 5}));
  EXPECT_TRUE(t.contiguous().is_contiguous());
  Tensor c = arange(0, 3, 1, opts());
  EXPECT_TRUE(c.contiguous().is_same(c));
}

TEST_P(TensorTest, PrintsLikePyTorch) {
  Tensor t = tensor({1.f, 2.f, 3.f, 4.f}, opts()).view({2, 2});
  const std::string dev = device().str();
  EXPECT_EQ(t.str(), "tensor([[1., 2.],\n        [3., 4.]], device=" + dev + ", dtype=float32)");
  EXPECT_EQ(tensor({0.5, 1.25}, opts(kFloat64)).str(), "tensor([0.5000, 1.2500], device=" + dev + ", dtype=float64)");
  EXPECT_EQ(tensor(std::vector<int64_t>{3, -1}, TensorOptions(device())).str(),
            "tensor([ 3, -1], device=" + dev + ", dtype=int64)");
  EXPECT_EQ(scalar_tensor(2.0, opts()).str(), "tensor(2., device=" + dev + ", dtype=float32)");
  EXPECT_EQ(tensor(std::vector<bool>{true, false}, TensorOptions(device())).str(),
            "tensor([ True, False], device=" + dev + ", dtype=bool)");
  EXPECT_EQ(zeros({0}, opts()).str(), "tensor([], size=[0], device=" + dev + ", dtype=float32)");
  EXPECT_EQ(tensor({1e-6, 1.0}, opts(kFloat64)).str(), "tensor([1.0000e-06, 1.0000e+00], device=" + dev + ", dtype=float64)");
  const std::string big = zeros({2000}, opts()).str();
  EXPECT_THAT(big, ::testing::HasSubstr("0., 0., 0., ..., 0., 0., 0."));
  Tensor leaf = ones({1}, opts()).requires_grad_();
  EXPECT_THAT(leaf.str(), ::testing::HasSubstr("requires_grad=True"));
  EXPECT_THAT((leaf * 2).str(), ::testing::HasSubstr("grad_fn=<MulBackward"));
  std::ostringstream os;
  os << Tensor();
  EXPECT_EQ(os.str(), "[ undefined Tensor ]");
}

TEST(Tensor, LogicalCpuDevicesAreStrict) {
  Tensor a = ones({3}, TensorOptions(Device::cpu(0)));
  Tensor b = ones({3}, TensorOptions(Device::cpu(1)));
  EXPECT_EQ(b.device(), Device::cpu(1));
  EXPECT_EMBER_ERROR(a + b, "add", "cpu:0", "cpu:1");
  Tensor c = a.to(Device::cpu(1)) + b;
  EXPECT_EQ(c.device(), Device::cpu(1));
  EXPECT_TRUE(values_are(c, {3}, {2, 2, 2}));
}

TEST_P(TensorTest, BadInputIsAClearError) {
  EXPECT_EMBER_ERROR(zeros({2, -1}, opts()), "negative dimension", "[2, -1]");
  EXPECT_EMBER_ERROR(Tensor().sizes(), "undefined");
  EXPECT_EMBER_ERROR(zeros({2, 3}, opts()).size(2), "size", "dim 2", "out of range");
  EXPECT_EMBER_ERROR(arange(0, 10, 0), "arange", "step");
  EXPECT_EMBER_ERROR(arange(5, 0, 1), "arange");
}

EMBER_INSTANTIATE_DEVICE_TESTS(TensorTest);

// CUDA requests on a machine without a GPU (or a CPU-only build) are errors, never crashes.
TEST(TensorNoGpu, CudaUseWithoutGpuThrows) {
  if (cuda::is_available()) GTEST_SKIP() << "this machine has a GPU";
  const std::string why = cuda::is_compiled() ? "CUDA device" : "built without CUDA";
  EXPECT_EMBER_ERROR(zeros({2}, TensorOptions(Device::cuda(0))), why);
  EXPECT_EMBER_ERROR(ones({2}).cuda(), why);
  EXPECT_EMBER_ERROR(ones({2}).to(Device("cuda:7")), why);
  EXPECT_EMBER_ERROR(ones({2}).pin_memory(), why);
}

TEST(TensorGpu, DeviceIndexThatDoesNotExist_CUDA) {
  EMBER_REQUIRE_CUDA();
  const int n = cuda::device_count();
  EXPECT_EMBER_ERROR(zeros({2}, TensorOptions(Device::cuda(n))), "cuda:" + std::to_string(n), "out of range");
}

}  // namespace
}  // namespace ember
