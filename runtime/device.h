// Device and DeviceType: where a tensor lives (cpu:N logical host devices, cuda:N GPUs).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

namespace ember {

enum class DeviceType : int8_t { CPU = 0, CUDA = 1 };
inline constexpr DeviceType kCPU = DeviceType::CPU;
inline constexpr DeviceType kCUDA = DeviceType::CUDA;

// Logical CPU devices cpu:0 .. cpu:(kMaxCpuDevices-1) all live in host memory; an op whose
// inputs sit on different ones throws, exactly as for two GPUs (see api.md).
inline constexpr int kMaxCpuDevices = 64;
// Upper bound on CUDA device indices accepted by the parser (the real limit is the GPU count).
inline constexpr int kMaxCudaDevices = 64;

class Device {
 public:
  constexpr Device() = default;  // cpu:0
  Device(DeviceType type, int index = 0);
  // Parses "cpu", "cpu:N", "cuda", "cuda:N" ("cuda" means cuda:0). Throws ember::Error otherwise.
  Device(const std::string& spec);  // NOLINT: implicit, as in LibTorch
  Device(const char* spec);         // NOLINT

  static Device cpu(int index = 0) { return Device(DeviceType::CPU, index); }
  static Device cuda(int index = 0) { return Device(DeviceType::CUDA, index); }

  constexpr DeviceType type() const { return type_; }
  constexpr int index() const { return index_; }
  constexpr bool is_cuda() const { return type_ == DeviceType::CUDA; }
  constexpr bool is_cpu() const { return type_ == DeviceType::CPU; }
  std::string str() const;

  constexpr bool operator==(const Device& o) const { return type_ == o.type_ && index_ == o.index_; }
  constexpr bool operator!=(const Device& o) const { return !(*this == o); }
  // A dense id, handy for per-device tables: CPU devices first, then CUDA devices.
  constexpr int flat_index() const { return is_cpu() ? index_ : kMaxCpuDevices + index_; }

 private:
  DeviceType type_ = DeviceType::CPU;
  int16_t index_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Device& d);
std::ostream& operator<<(std::ostream& os, DeviceType t);
std::string device_type_name(DeviceType t);

}  // namespace ember

template <>
struct std::hash<ember::Device> {
  size_t operator()(const ember::Device& d) const noexcept { return std::hash<int>()(d.flat_index()); }
};
