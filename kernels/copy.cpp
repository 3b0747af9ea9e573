// copy_, fill_, to (device/dtype moves), clone and contiguous, with their backward nodes.
#include "kernels/cpu/copy.h"
#include "kernels/cuda/copy.h"
#include "kernels/iter.h"
#include "kernels/ops.h"
#include "runtime/autograd/node.h"
#include "runtime/cuda/cuda.h"

namespace ember {

using autograd::Node;
using autograd::tensor_list;

namespace {

// Gradient of a device/dtype move: the same move backwards.
struct ToCopyBackward final : Node {
  Device src_device;
  DType src_dtype = kFloat32;
  DimVector src_sizes;
  std::string name() const override { return "ToCopyBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    Tensor g = grads[0];
    if (!g.defined()) return {Tensor()};
    g = g.to(src_device, src_dtype);
    if (g.sizes() != src_sizes.ref()) g = autograd::sum_to(g, src_sizes);
    return {g};
  }
};

struct CloneBackward final : Node {
  std::string name() const override { return "CloneBackward"; }
  tensor_list apply(tensor_list&& grads) override { return {grads[0]}; }
};

void check_copy_devices(const Tensor& dst, const Tensor& src) {
  if (dst.is_cuda() || src.is_cuda()) {
    if (dst.is_cuda()) cuda::check_device(dst.device(), "copy_");
    if (src.is_cuda()) cuda::check_device(src.device(), "copy_");
  }
}

// Raw copy (no autograd): broadcasts src, resolves overlap, picks the backend.
void copy_kernel(const Tensor& dst, const Tensor& src, bool non_blocking) {
  Tensor s = src;
  if (s.sizes() != dst.sizes()) {
    NoGradGuard no_grad;
    s = s.expand(dst.sizes());
  }
  if (dst.is_alias_of(s) && !(dst.storage_offset() == s.storage_offset() && dst.strides() == s.strides())) {
    // Partially overlapping source and destination: read from a snapshot.
    NoGradGuard no_grad;
    Tensor snapshot = empty(s.sizes(), s.options());
    copy_kernel(snapshot, s, false);
    s = snapshot;
  } else if (dst.is_alias_of(s) && dst.dtype() == s.dtype()) {
    return;  // the very same elements
  }
  if (dst.is_cpu() && s.is_cpu()) {
    cpu::copy(dst, s);
  } else {
    check_copy_devices(dst, s);
    cuda::copy_(dst, s, non_blocking);
  }
}

}  // namespace

Tensor& copy_(Tensor& dst, const Tensor& src, bool non_blocking) {
  EMBER_CHECK(dst.defined() && src.defined(), "copy_: undefined tensor");
  autograd::check_inplace("copy_", dst);
  // Validates broadcasting with a clear message before any work.
  if (src.sizes() != dst.sizes()) {
    const DimVector b = broadcast_shapes("copy_", dst.sizes(), src.sizes());
    EMBER_CHECK(b.ref() == dst.sizes(), "copy_: the source of shape ", src.sizes(),
                " cannot be broadcast to the destination shape ", dst.sizes());
  }
  copy_kernel(dst, src, non_blocking);
  autograd::bump_version(dst);
  if (autograd::needs_grad(dst, src)) {
    auto node = std::make_shared<ToCopyBackward>();
    node->src_device = src.device();
    node->src_dtype = src.dtype();
    node->src_sizes = src.sizes();
    autograd::rebase_history(dst, node, {&src});
    if (!src.requires_grad()) node->mutable_next_edges()[0] = autograd::Edge{};
  }
  return dst;
}

Tensor& fill_(Tensor& self, const Scalar& value) {
  autograd::check_inplace("fill_", self);
  if (self.is_cpu()) {
    cpu::fill(self, value);
  } else {
    cuda::check_device(self.device(), "fill_");
    cuda::fill_(self, value);
  }
  autograd::bump_version(self);
  autograd::rebase_history_overwritten(self);
  return self;
}

Tensor to(const Tensor& t, Device device, DType dtype, bool non_blocking, bool copy) {
  if (!copy && t.device() == device && t.dtype() == dtype) return t;
  if (device.is_cuda()) cuda::check_device(device, "to");
  // Staging for a non-blocking device->host copy lands in pinned memory so that it is truly async.
  const bool pinned = non_blocking && device.is_cpu() && t.is_cuda();
  Tensor out = empty(t.sizes(), TensorOptions().dtype(dtype).device(device).pinned_memory(pinned));
  copy_kernel(out, t, non_blocking);
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<ToCopyBackward>();
    node->src_device = t.device();
    node->src_dtype = t.dtype();
    node->src_sizes = t.sizes();
    autograd::record(node, {&out}, {&t});
  }
  return out;
}

Tensor clone(const Tensor& t) {
  Tensor out = empty(t.sizes(), t.options());
  copy_kernel(out, t, false);
  if (autograd::needs_grad(t)) autograd::record(std::make_shared<CloneBackward>(), {&out}, {&t});
  return out;
}

Tensor contiguous(const Tensor& t) { return t.is_contiguous() ? t : clone(t); }

// ---- Tensor methods ------------------------------------------------------------------------------

Tensor& Tensor::copy_(const Tensor& src, bool non_blocking) { return ember::copy_(*this, src, non_blocking); }
Tensor& Tensor::fill_(const Scalar& value) { return ember::fill_(*this, value); }
Tensor& Tensor::fill_(const Tensor& value) {
  EMBER_CHECK(value.numel() == 1, "fill_: the value must be a one-element tensor; got shape ", value.sizes());
  return ember::copy_(*this, value.reshape({}));
}
Tensor& Tensor::zero_() { return ember::fill_(*this, 0); }
Tensor Tensor::clone() const { return ember::clone(*this); }
Tensor Tensor::contiguous() const { return ember::contiguous(*this); }

Tensor Tensor::to(Device device, bool non_blocking, bool copy) const {
  return ember::to(*this, device, dtype(), non_blocking, copy);
}
Tensor Tensor::to(DType dt, bool non_blocking, bool copy) const {
  return ember::to(*this, device(), dt, non_blocking, copy);
}
Tensor Tensor::to(Device device, DType dt, bool non_blocking, bool copy) const {
  return ember::to(*this, device, dt, non_blocking, copy);
}
Tensor Tensor::to(const TensorOptions& options, bool non_blocking, bool copy) const {
  return ember::to(*this, options.has_device() ? options.device() : device(),
                   options.has_dtype() ? options.dtype() : dtype(), non_blocking, copy);
}
Tensor Tensor::cuda(bool non_blocking) const {
  // Without a usable GPU, to() reports the problem for cuda:0 (current_device() would name itself).
  const int index = cuda::is_available() ? cuda::current_device() : 0;
  return to(Device::cuda(index), non_blocking);
}
Tensor Tensor::cuda(int index, bool non_blocking) const { return to(Device::cuda(index), non_blocking); }
Tensor Tensor::cpu() const { return to(Device::cpu(is_cpu() ? device().index() : 0)); }

Tensor Tensor::pin_memory() const {
  EMBER_CHECK(is_cpu(), "pin_memory: only host tensors can be pinned; this one is on ", device());
  if (is_pinned()) return *this;
  Tensor out = empty(sizes(), options().pinned_memory(true));
  copy_kernel(out, *this, false);
  if (autograd::needs_grad(*this)) autograd::record(std::make_shared<CloneBackward>(), {&out}, {this});
  return out;
}

}  // namespace ember
