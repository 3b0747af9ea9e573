// Tensor factories: empty/zeros/ones/full, arange/linspace/eye, from host data, *_like.
#include "runtime/factory.h"

#include <cmath>
#include <cstring>

#include "kernels/dispatch.h"
#include "kernels/ops.h"
#include "kernels/shared/cast.h"
#include "runtime/autograd/grad_mode.h"
#include "runtime/cuda/cuda.h"

namespace ember {

namespace {
void check_sizes(const char* op, IntArrayRef sizes) {
  for (int64_t s : sizes)
    EMBER_CHECK(s >= 0, op, ": negative dimension ", s, " in the shape ", sizes);
}

Tensor finish(Tensor t, const TensorOptions& options) {
  if (options.requires_grad()) t.requires_grad_(true);
  return t;
}
}  // namespace

Tensor empty_strided(IntArrayRef sizes, IntArrayRef strides, const TensorOptions& options) {
  check_sizes("empty", sizes);
  EMBER_CHECK(sizes.size() == strides.size(), "empty_strided: ", sizes.size(), " sizes but ", strides.size(), " strides");
  const Device device = options.device();
  if (device.is_cuda()) cuda::check_device(device, "empty");
  EMBER_CHECK(!options.pinned_memory() || device.is_cpu(), "empty: pinned memory is for host tensors, not ", device);
  int64_t extent = 1;  // elements needed to hold the largest offset
  bool any_zero = false;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] == 0) any_zero = true;
    extent += (sizes[i] - 1) * strides[i];
  }
  if (any_zero) extent = 0;
  const size_t nbytes = static_cast<size_t>(extent) * element_size(options.dtype());
  auto storage = std::make_shared<Storage>(allocate_bytes(device, nbytes, options.pinned_memory()), nbytes,
                                           options.pinned_memory());
  return finish(make_tensor(std::move(storage), sizes, strides, 0, options.dtype()), options);
}

Tensor empty(IntArrayRef sizes, const TensorOptions& options) {
  check_sizes("empty", sizes);
  const Device device = options.device();
  if (device.is_cuda()) cuda::check_device(device, "empty");
  EMBER_CHECK(!options.pinned_memory() || device.is_cpu(), "empty: pinned memory is for host tensors, not ", device);
  const size_t nbytes = static_cast<size_t>(product(sizes)) * element_size(options.dtype());
  auto storage = std::make_shared<Storage>(allocate_bytes(device, nbytes, options.pinned_memory()), nbytes,
                                           options.pinned_memory());
  return finish(make_tensor(std::move(storage), sizes, contiguous_strides(sizes), 0, options.dtype()), options);
}

Tensor full(IntArrayRef sizes, const Scalar& value, const TensorOptions& options) {
  // PyTorch: full() infers the dtype from the value when none is given (int -> int64, bool -> bool).
  const TensorOptions opts = options.has_dtype() ? options : options.dtype(value.natural_dtype());
  Tensor t = empty(sizes, opts.requires_grad(false));
  t.fill_(value);
  return finish(t, options);
}

Tensor zeros(IntArrayRef sizes, const TensorOptions& options) {
  Tensor t = empty(sizes, options.requires_grad(false));
  t.zero_();
  return finish(t, options);
}

Tensor ones(IntArrayRef sizes, const TensorOptions& options) {
  Tensor t = empty(sizes, options.requires_grad(false));
  t.fill_(1);
  return finish(t, options);
}

Tensor scalar_tensor(const Scalar& value, const TensorOptions& options) { return full({}, value, options); }

Tensor empty_like(const Tensor& t) { return empty(t.sizes(), t.options()); }
Tensor empty_like(const Tensor& t, const TensorOptions& options) {
  return empty(t.sizes(), t.options().dtype(options.has_dtype() ? options.dtype() : t.dtype())
                              .device(options.has_device() ? options.device() : t.device())
                              .requires_grad(options.requires_grad()));
}
Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), t.options()); }
Tensor zeros_like(const Tensor& t, const TensorOptions& options) {
  Tensor out = empty_like(t, options);
  NoGradGuard no_grad;
  return out.zero_();
}
Tensor ones_like(const Tensor& t) { return ones(t.sizes(), t.options()); }
Tensor ones_like(const Tensor& t, const TensorOptions& options) {
  Tensor out = empty_like(t, options);
  NoGradGuard no_grad;
  return out.fill_(1);
}
Tensor full_like(const Tensor& t, const Scalar& value) { return full(t.sizes(), value, t.options()); }
Tensor rand_like(const Tensor& t) { return rand(t.sizes(), t.options()); }
Tensor randn_like(const Tensor& t) { return randn(t.sizes(), t.options()); }

Tensor from_host(const void* data, DType src_dtype, IntArrayRef sizes, const TensorOptions& options) {
  const DType dtype = options.has_dtype() ? options.dtype() : src_dtype;
  const int64_t n = product(sizes);
  // Build on the host in the source dtype, then convert/move in one copy.
  auto storage = std::make_shared<Storage>(cpu_allocate(static_cast<size_t>(n) * element_size(src_dtype)),
                                           static_cast<size_t>(n) * element_size(src_dtype));
  if (n > 0) std::memcpy(storage->data(), data, static_cast<size_t>(n) * element_size(src_dtype));
  Tensor host = make_tensor(std::move(storage), sizes, contiguous_strides(sizes), 0, src_dtype);
  Tensor out = host.to(options.device(), dtype, false, /*copy=*/false);
  return finish(out, options);
}

Tensor arange(const Scalar& end, const TensorOptions& options) { return arange(0, end, 1, options); }

Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step, const TensorOptions& options) {
  const bool integral = start.is_integral() && end.is_integral() && step.is_integral();
  const DType dtype = options.has_dtype() ? options.dtype() : (integral ? kInt64 : kFloat32);
  const double s = start.to_double(), e = end.to_double(), st = step.to_double();
  EMBER_CHECK(st != 0, "arange: step must be nonzero");
  EMBER_CHECK((st > 0 && e >= s) || (st < 0 && e <= s), "arange: the range [", s, ", ", e,
              ") is inconsistent with the step ", st);
  const int64_t n = integral ? (end.to_int() - start.to_int() + step.to_int() - (st > 0 ? 1 : -1)) / step.to_int()
                             : static_cast<int64_t>(std::ceil((e - s) / st));
  Tensor host = empty({std::max<int64_t>(n, 0)}, TensorOptions(dtype));
  dispatch_all(dtype, "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = static_cast<T*>(host.raw_data());
    for (int64_t i = 0; i < n; ++i) {
      if (integral) {
        p[i] = cast_value<T>(start.to_int() + i * step.to_int());
      } else {
        p[i] = cast_value<T>(s + static_cast<double>(i) * st);
      }
    }
  });
  return finish(host.to(options.device()), options);
}

Tensor linspace(double start, double end, int64_t steps, const TensorOptions& options) {
  EMBER_CHECK(steps >= 0, "linspace: number of steps must be non-negative, got ", steps);
  Tensor host = empty({steps}, TensorOptions(options.dtype()));
  dispatch_floating_and_half(options.dtype(), "linspace", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = static_cast<T*>(host.raw_data());
    const double step = steps > 1 ? (end - start) / static_cast<double>(steps - 1) : 0.0;
    // As PyTorch: the second half counts back from `end` so both endpoints are exact.
    for (int64_t i = 0; i < steps; ++i)
      p[i] = cast_value<T>(i < steps / 2 ? start + step * static_cast<double>(i)
                                         : end - step * static_cast<double>(steps - 1 - i));
  });
  return finish(host.to(options.device()), options);
}

Tensor eye(int64_t n, const TensorOptions& options) { return eye(n, n, options); }

Tensor eye(int64_t n, int64_t m, const TensorOptions& options) {
  EMBER_CHECK(n >= 0 && m >= 0, "eye: sizes must be non-negative, got ", n, " and ", m);
  Tensor out = zeros({n, m}, options.requires_grad(false));
  const int64_t k = std::min(n, m);
  if (k > 0) {
    NoGradGuard no_grad;
    out.as_strided({k}, {m + 1}, 0).fill_(1);
  }
  return finish(out, options);
}

}  // namespace ember
