// TensorOptions: dtype, device, requires_grad and pinned memory for tensor creation, builder style.
#pragma once

#include <optional>

#include "runtime/device.h"
#include "runtime/dtype.h"

namespace ember {

class TensorOptions {
 public:
  TensorOptions() = default;
  TensorOptions(DType d) : dtype_(d) {}            // NOLINT: zeros({2}, kFloat64)
  TensorOptions(Device d) : device_(d) {}          // NOLINT: zeros({2}, Device::cuda())
  TensorOptions(DeviceType t) : device_(Device(t)) {}  // NOLINT

  TensorOptions dtype(DType d) const {
    TensorOptions o = *this;
    o.dtype_ = d;
    return o;
  }
  TensorOptions device(Device d) const {
    TensorOptions o = *this;
    o.device_ = d;
    return o;
  }
  TensorOptions requires_grad(bool r) const {
    TensorOptions o = *this;
    o.requires_grad_ = r;
    return o;
  }
  TensorOptions pinned_memory(bool p) const {
    TensorOptions o = *this;
    o.pinned_memory_ = p;
    return o;
  }

  DType dtype() const { return dtype_.value_or(kFloat32); }
  Device device() const { return device_.value_or(Device::cpu()); }
  bool requires_grad() const { return requires_grad_; }
  bool pinned_memory() const { return pinned_memory_; }
  bool has_dtype() const { return dtype_.has_value(); }
  bool has_device() const { return device_.has_value(); }
  // This set of options with `dtype` where none was given (arange, tensor() from ints...).
  TensorOptions dtype_or(DType d) const { return has_dtype() ? *this : dtype(d); }

 private:
  std::optional<DType> dtype_;
  std::optional<Device> device_;
  bool requires_grad_ = false;
  bool pinned_memory_ = false;
};

inline TensorOptions dtype(DType d) { return TensorOptions().dtype(d); }
inline TensorOptions device(Device d) { return TensorOptions().device(d); }
inline TensorOptions requires_grad(bool r = true) { return TensorOptions().requires_grad(r); }

}  // namespace ember
