// The oneDNN entry points of a build without oneDNN (EMBER_DNNL=OFF, or not found): every call declines.
#include "kernels/cpu/onednn.h"

namespace ember::cpu::onednn {

bool compiled() { return false; }
std::string version() { return {}; }

bool conv2d_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) { return false; }
bool conv2d_backward(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&, const Tensor&, const Tensor&,
                     const Tensor&) {
  return false;
}

bool sgemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*,
           int64_t) {
  return false;
}

size_t cached_plans() { return 0; }
void clear_cache() {}
std::string last_forward_impl() { return {}; }

}  // namespace ember::cpu::onednn
