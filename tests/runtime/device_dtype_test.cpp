// Tests of Device parsing/printing, DType properties, Half/BFloat16 conversion and Scalar.
#include <cmath>
#include <limits>

#include "tests/testing.h"

namespace ember {
namespace {

TEST(Device, ParsesAndPrints) {
  EXPECT_EQ(Device("cpu"), Device::cpu());
  EXPECT_EQ(Device("cpu").index(), 0);
  EXPECT_EQ(Device("cuda:1"), Device::cuda(1));
  EXPECT_EQ(Device("cuda"), Device::cuda(0));
  EXPECT_EQ(Device("cpu:2"), Device::cpu(2));
  const Device g = Device::cuda(1);
  EXPECT_EQ(g.type(), DeviceType::CUDA);
  EXPECT_EQ(g.index(), 1);
  EXPECT_EQ(g.str(), "cuda:1");
  EXPECT_TRUE(g.is_cuda());
  EXPECT_FALSE(g.is_cpu());
  EXPECT_EQ(Device::cpu(3).str(), "cpu:3");
  EXPECT_NE(Device::cpu(0), Device::cpu(1));
  EXPECT_NE(Device::cpu(0), Device::cuda(0));
  std::ostringstream os;
  os << Device::cuda(2) << " " << DeviceType::CPU;
  EXPECT_EQ(os.str(), "cuda:2 cpu");
}

TEST(Device, MalformedStringsThrow) {
  for (const char* bad : {"gpu", "", "cuda:", "cuda:x", "cuda:-1", "cpu:1:2", "CUDA:0", "cuda:1.5", " cpu", "cuda0"})
    EXPECT_EMBER_ERROR(Device{std::string(bad)}, "invalid device", "expected 'cpu', 'cpu:N', 'cuda' or 'cuda:N'");
  EXPECT_EMBER_ERROR(Device("cpu:100000"), "invalid device", "index must be in");
  EXPECT_EMBER_ERROR(Device(DeviceType::CPU, -3), "invalid device");
}

TEST(Device, HashesDistinctly) {
  std::hash<Device> h;
  EXPECT_NE(h(Device::cpu(1)), h(Device::cuda(1)));
  EXPECT_EQ(h(Device("cuda:3")), h(Device::cuda(3)));
}

TEST(DType, NamesSizesAndKinds) {
  EXPECT_EQ(dtype_name(kFloat32), "float32");
  EXPECT_EQ(dtype_name(kFloat64), "float64");
  EXPECT_EQ(dtype_name(kInt64), "int64");
  EXPECT_EQ(dtype_name(kBool), "bool");
  EXPECT_EQ(dtype_name(kFloat16), "float16");
  EXPECT_EQ(dtype_name(kBFloat16), "bfloat16");
  EXPECT_EQ(element_size(kFloat32), 4u);
  EXPECT_EQ(element_size(kFloat64), 8u);
  EXPECT_EQ(element_size(kInt64), 8u);
  EXPECT_EQ(element_size(kFloat16), 2u);
  EXPECT_EQ(element_size(kBool), 1u);
  EXPECT_TRUE(is_floating_point(kBFloat16));
  EXPECT_FALSE(is_floating_point(kInt64));
  EXPECT_EQ(dtype_v<double>, kFloat64);
  EXPECT_EQ(dtype_v<int64_t>, kInt64);
}

TEST(Half, RoundTripsAndRounds) {
  EXPECT_EQ(static_cast<float>(Half(1.0f)), 1.0f);
  EXPECT_EQ(static_cast<float>(Half(-2.5f)), -2.5f);
  EXPECT_EQ(static_cast<float>(Half(65504.0f)), 65504.0f);           // largest half
  EXPECT_TRUE(std::isinf(static_cast<float>(Half(65520.0f))));       // rounds to inf
  EXPECT_EQ(static_cast<float>(Half(5.960464477539063e-08f)), 5.960464477539063e-08f);  // smallest subnormal
  EXPECT_EQ(static_cast<float>(Half(1e-8f)), 0.0f);
  EXPECT_TRUE(std::isnan(static_cast<float>(Half(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(Half(1.0f).bits, 0x3c00);
  EXPECT_EQ(Half(0.1f).bits, 0x2e66);                           // 0.1 rounds to 0x2e66
  EXPECT_EQ(static_cast<float>(Half(1.0f + 1.0f / 4096)), 1.0f);  // ties to even (mantissa 10 bits)
  EXPECT_EQ(static_cast<float>(Half::from_bits(0x0001)), 5.960464477539063e-08f);
  // Every half value converts to float and back to the same bits.
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const Half h = Half::from_bits(static_cast<uint16_t>(b));
    const float f = h;
    if (std::isnan(f)) continue;
    ASSERT_EQ(Half(f).bits, b) << "bits " << b;
  }
}

TEST(BFloat16, RoundTripsAndRounds) {
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f)), 1.0f);
  EXPECT_EQ(BFloat16(1.0f).bits, 0x3f80);
  EXPECT_EQ(static_cast<float>(BFloat16(3.140625f)), 3.140625f);
  EXPECT_EQ(BFloat16(1.00390625f).bits, 0x3f80);  // halfway between 0x3f80 and 0x3f81 -> even
  EXPECT_TRUE(std::isnan(static_cast<float>(BFloat16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Scalar, RemembersKind) {
  EXPECT_TRUE(Scalar(3).is_integral());
  EXPECT_TRUE(Scalar(int64_t{3}).is_integral());
  EXPECT_TRUE(Scalar(2.5).is_floating_point());
  EXPECT_TRUE(Scalar(true).is_bool());
  EXPECT_EQ(Scalar(2.5).to<int64_t>(), 2);
  EXPECT_EQ(Scalar(7).to<double>(), 7.0);
  EXPECT_EQ(Scalar(7).natural_dtype(), kInt64);
  EXPECT_EQ(Scalar(1.5f).natural_dtype(), kFloat32);
}

}  // namespace
}  // namespace ember
