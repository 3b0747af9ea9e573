// The install test's consumer: includes <ember.h> from the installed tree, does a little math, checks it.
#include <ember.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

using namespace ember;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

bool near(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::fabs(a[i] - b[i]) > 1e-5f * (1.f + std::fabs(b[i]))) return false;
  }
  return true;
}

// [[1 2 3] [4 5 6]] @ [[1 0] [0 1] [1 1]] + 1, then the gradient of its sum with respect to the left factor.
void math_on(Device device) {
  const std::string on = " on " + device.str();
  Tensor a = tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}).view({2, 3}).to(device).requires_grad_();
  Tensor b = tensor({1.f, 0.f, 0.f, 1.f, 1.f, 1.f}).view({3, 2}).to(device);
  Tensor c = a.matmul(b) + 1.f;
  check(c.device() == device, "result stays" + on);
  check(near(c.to_vector<float>(), {5.f, 6.f, 11.f, 12.f}), "matmul + scalar" + on);
  Tensor s = c.sum();
  check(s.item<float>() == 34.f, "sum" + on);
  s.backward();
  // d(sum(a @ b))/da = ones @ b^T: each row is the row sums of b, [1 1 2].
  check(near(a.grad().cpu().to_vector<float>(), {1.f, 1.f, 2.f, 1.f, 1.f, 2.f}), "gradient" + on);
}

}  // namespace

int main() {
  check(zeros({2, 3}).sum().item<float>() == 0.f, "zeros");
  check(arange(0, 5).dtype() == kInt64, "arange is int64");
  math_on(Device::cpu());
  math_on(Device::cpu(1));

  if (cuda::is_available()) {
    math_on(Device::cuda(0));
  } else {
    // Without a usable GPU (or in a CPU-only build) a CUDA request is an ember::Error, never a crash.
    bool threw = false;
    try {
      Tensor g = ones({2}).cuda();
    } catch (const Error& e) {
      threw = true;
      std::printf("     (expected) %s\n", e.what());
    }
    check(threw, "cuda() without a GPU throws ember::Error");
  }
  std::printf("%s\n", failures == 0 ? "consumer: all checks passed" : "consumer: FAILED");
  return failures == 0 ? 0 : 1;
}
