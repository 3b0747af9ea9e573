// CPU copies (memcpy fast path, element-wise cast otherwise) and fills.
#include "kernels/cpu/copy.h"

#include <cstring>

#include "kernels/cpu/loops.h"
#include "kernels/dispatch.h"
#include "kernels/iter.h"
#include "kernels/shared/cast.h"

namespace ember::cpu {

void copy(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous() && src.sizes() == dst.sizes()) {
    char* d = static_cast<char*>(dst.raw_data());
    const char* s = static_cast<const char*>(src.raw_data());
    const int64_t n = static_cast<int64_t>(dst.nbytes());
    parallel_for(n, int64_t{1} << 20, [&](int64_t b, int64_t e) { std::memcpy(d + b, s + b, static_cast<size_t>(e - b)); });
    return;
  }
  const StridedIter it = make_iter("copy_", dst, {&src});
  dispatch_all(dst.dtype(), "copy_", [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    dispatch_all(src.dtype(), "copy_", [&](auto stag) {
      using S = typename decltype(stag)::type;
      elementwise<D, S>(it, [](S v) { return cast_value<D>(v); });
    });
  });
}

void fill(const Tensor& self, const Scalar& value) {
  if (self.numel() == 0) return;
  const StridedIter it = make_iter("fill_", self, {});
  dispatch_all(self.dtype(), "fill_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = value.to<T>();
    elementwise<T>(it, [v]() { return v; });
  });
}

}  // namespace ember::cpu
