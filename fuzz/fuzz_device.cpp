// Fuzz target: the device-string parser, Device(const std::string&) and Device(const char*)
// (runtime/device.cpp). The input is the string itself. A reference parser decides what must be accepted:
// "cpu" or "cuda", optionally followed by ':' and one or more decimal digits whose value is below
// kMaxCpuDevices / kMaxCudaDevices; every other string must throw ember::Error.
#include <optional>
#include <string>

#include "fuzz/fuzz_targets.h"
#include "runtime/device.h"

namespace {

using ember::Device;
using ember::DeviceType;

std::optional<Device> reference_parse(const std::string& s) {
  const size_t colon = s.find(':');
  const std::string kind = s.substr(0, colon);
  DeviceType type;
  int limit;
  if (kind == "cpu") {
    type = DeviceType::CPU;
    limit = ember::kMaxCpuDevices;
  } else if (kind == "cuda") {
    type = DeviceType::CUDA;
    limit = ember::kMaxCudaDevices;
  } else {
    return std::nullopt;
  }
  if (colon == std::string::npos) return Device(type, 0);
  if (colon + 1 == s.size()) return std::nullopt;
  long value = 0;
  for (size_t i = colon + 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    value = value * 10 + (s[i] - '0');
    if (value >= limit) return std::nullopt;
  }
  return Device(type, static_cast<int>(value));
}

void check(const std::string& spec, bool via_c_string) {
  const std::optional<Device> want = reference_parse(spec);
  std::optional<Device> got;
  const bool ok = ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] {
    got = via_c_string ? Device(spec.c_str()) : Device(spec);
  });
  const std::string what = std::string(via_c_string ? "Device(const char*)" : "Device(std::string)") + " of '" +
                           spec + "': ember " + (ok ? "accepted " + got->str() : std::string("threw")) +
                           ", the reference " + (want ? "accepts " + want->str() : std::string("rejects"));
  EMBER_FUZZ_EXPECT(ok == want.has_value(), what);
  if (!ok) return;
  EMBER_FUZZ_EXPECT(*got == *want, what);
  // The canonical form parses back to the same device.
  const std::string canonical = got->str();
  EMBER_FUZZ_EXPECT(canonical == ember::device_type_name(got->type()) + ":" + std::to_string(got->index()), what);
  std::optional<Device> again;
  EMBER_FUZZ_EXPECT(ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { again = Device(canonical); }),
                    what + "; its str() does not parse");
  EMBER_FUZZ_EXPECT(*again == *got, what + "; its str() parses to " + again->str());
  EMBER_FUZZ_EXPECT(got->flat_index() >= 0 && got->flat_index() < ember::kMaxCpuDevices + ember::kMaxCudaDevices,
                    what);
}

}  // namespace

int ember_fuzz_device(const uint8_t* data, size_t size) {
  if (size > 256) return 0;
  const std::string spec(reinterpret_cast<const char*>(data), size);
  check(spec, false);
  // The C-string constructor sees the input up to its first NUL.
  check(std::string(spec.c_str()), true);
  return 0;
}
