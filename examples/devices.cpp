// devices: moves a tensor to every available device (logical CPU devices, each GPU) and back, checking
// that the values survive and that math runs where the tensor lives. Prints what it did; exit 1 on a mismatch.
#include <ember.h>

#include <cstdio>
#include <string>
#include <vector>

using namespace ember;

namespace {

bool same_values(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) return false;  // copies are exact: no tolerance
  }
  return true;
}

}  // namespace

int main() {
  manual_seed(42);
  const Tensor x = randn({64, 784});
  const std::vector<float> values = x.to_vector<float>();
  std::printf("tensor: %s %s on %s\n", x.shape_str().c_str(), dtype_name(x.dtype()).c_str(), x.device().str().c_str());

  std::vector<Device> devices = {Device::cpu(0), Device::cpu(1)};
  if (cuda::is_available()) {
    for (int i = 0; i < cuda::device_count(); ++i) devices.push_back(Device::cuda(i));
    std::printf("CUDA: %d device(s)\n", cuda::device_count());
  } else {
    std::printf("CUDA: not available (%s)\n", cuda::is_compiled() ? "no GPU visible" : "built without CUDA");
  }

  int failures = 0;
  for (const Device& device : devices) {
    Tensor there = x.to(device);
    // Math where the tensor lives; doubling is exact in float32, so the check stays exact.
    Tensor doubled = there + there;
    Tensor back = there.to(Device::cpu());
    std::vector<float> twice = doubled.cpu().to_vector<float>();
    for (float& v : twice) v *= 0.5f;
    const bool ok = there.device() == device && doubled.device() == device && back.device() == Device::cpu() &&
                    same_values(back.to_vector<float>(), values) && same_values(twice, values);
    std::printf("  cpu:0 -> %-7s -> cpu:0  %s\n", device.str().c_str(), ok ? "values intact" : "MISMATCH");
    if (!ok) ++failures;
  }

  // One trip through every device in turn, as DataParallel's scatter/gather would chain them.
  Tensor hop = x;
  std::string path = hop.device().str();
  for (const Device& device : devices) {
    if (device == hop.device()) continue;
    hop = hop.to(device);
    path += " -> " + device.str();
  }
  hop = hop.cpu();
  path += " -> cpu:0";
  const bool chain_ok = same_values(hop.to_vector<float>(), values);
  std::printf("  %s  %s\n", path.c_str(), chain_ok ? "values intact" : "MISMATCH");
  if (!chain_ok) ++failures;

  if (!cuda::is_available()) {
    // Without a GPU a CUDA request is a clear ember::Error, never a crash.
    try {
      Tensor g = x.cuda();
      std::printf("x.cuda() unexpectedly succeeded without a GPU\n");
      ++failures;
    } catch (const Error& e) {
      std::printf("x.cuda() -> ember::Error: %s\n", e.what());
    }
  }

  std::printf("%s\n", failures == 0 ? "devices: OK" : "devices: FAILED");
  return failures == 0 ? 0 : 1;
}
