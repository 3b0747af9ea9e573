// Device parsing and printing.
#include "runtime/device.h"

#include <charconv>
#include <ostream>

#include "runtime/error.h"

namespace ember {

namespace {
int index_limit(DeviceType type) { return type == DeviceType::CPU ? kMaxCpuDevices : kMaxCudaDevices; }

[[noreturn]] void throw_bad_index(DeviceType type, long index, const std::string& what) {
  EMBER_THROW("invalid device ", what, ": the index must be in [0, ", index_limit(type), ") for ",
              device_type_name(type), " devices (got ", index, ")");
}
}  // namespace

Device::Device(DeviceType type, int index) : type_(type), index_(static_cast<int16_t>(index)) {
  if (index < 0 || index >= index_limit(type)) [[unlikely]]
    throw_bad_index(type, index, device_type_name(type) + ":" + std::to_string(index));
}

Device::Device(const char* spec) : Device(std::string(spec ? spec : "")) {}

Device::Device(const std::string& spec) {
  const auto bad = [&]() {
    EMBER_THROW("invalid device string '", spec, "': expected 'cpu', 'cpu:N', 'cuda' or 'cuda:N' with N >= 0");
  };
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  if (kind == "cpu") {
    type_ = DeviceType::CPU;
  } else if (kind == "cuda") {
    type_ = DeviceType::CUDA;
  } else {
    bad();
  }
  if (colon == std::string::npos) return;
  const char* first = spec.data() + colon + 1;
  const char* last = spec.data() + spec.size();
  long value = -1;
  auto [ptr, ec] = std::from_chars(first, last, value);
  // Digits only: from_chars also takes a leading '-', which would let "cpu:-0" through as cpu:0.
  if (first == last || *first < '0' || *first > '9' || ec != std::errc() || ptr != last) bad();
  if (value >= index_limit(type_)) throw_bad_index(type_, value, "'" + spec + "'");
  index_ = static_cast<int16_t>(value);
}

std::string Device::str() const { return device_type_name(type_) + ":" + std::to_string(index_); }

std::string device_type_name(DeviceType t) { return t == DeviceType::CPU ? "cpu" : "cuda"; }

std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }
std::ostream& operator<<(std::ostream& os, DeviceType t) { return os << device_type_name(t); }

}  // namespace ember
