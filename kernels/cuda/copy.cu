// CUDA copies (same device, host <-> device, device <-> device across GPUs) and fills (kernels/cuda/copy.h).
//
// Note [CUDA copy paths]
//  * Same device: a cudaMemcpyAsync when both sides are contiguous with one dtype, else the
//    element-wise launcher with a converting functor (any strides, broadcast sources, any dtypes).
//  * Host <-> device: one cudaMemcpyAsync of a contiguous buffer in a single dtype. Dtype
//    conversion and strided gathers/scatters happen on the device side (a staging tensor there),
//    where they are cheap; a non-contiguous host side goes through a contiguous host staging copy.
//    The copy is asynchronous only when non_blocking was asked and the host buffer that the DMA
//    reads or writes is pinned: the pinned block is then recorded as used by the stream
//    (record_pinned_use) so that the pinned allocator does not hand it out before the copy ends.
//    Otherwise the stream is synchronised after the transfer, as PyTorch does (a pageable buffer
//    may be reused as soon as we return; a device-to-host result must be there when we return).
//  * Device <-> device on two GPUs: cudaMemcpyPeerAsync of contiguous buffers of the destination's
//    dtype, queued on the destination device's current stream. Stream ordering: an event recorded
//    on the source device's current stream makes the copy wait for the producer of the source;
//    an event recorded after the copy makes the source stream wait for the copy, so memory of the
//    source (or of its staging buffer, which the caching allocator gives back to the source
//    stream) cannot be reused or overwritten by later source-stream work before the copy has read
//    it. Neither side waits on the host: the copy stays asynchronous, as any other CUDA op.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cpu/copy.h"
#include "kernels/cuda/copy.h"
#include "kernels/cuda/loops.cuh"
#include "kernels/dispatch.h"
#include "kernels/iter.h"
#include "kernels/shared/elementwise_ops.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/memory.h"
#include "runtime/factory.h"

namespace ember::cuda {

namespace {

cudaStream_t native(const Stream& s) { return static_cast<cudaStream_t>(s.handle()); }

TensorOptions on(Device device, DType dtype) { return TensorOptions().dtype(dtype).device(device); }

// dst <- src, both on dst's device (any dtypes and strides; src may be expanded).
void copy_same_device(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  DeviceGuard guard(dst.device());
  cudaStream_t stream = native_stream(dst.device());
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    EMBER_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const StridedIter it = make_iter("copy_", dst, {&src});
  dispatch_all(dst.dtype(), "copy_", [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    dispatch_all(src.dtype(), "copy_", [&](auto stag) {
      using S = typename decltype(stag)::type;
      launch_elementwise<D, S>(it, ew::Convert<D>{}, stream);
    });
  });
}

void copy_host_to_device(const Tensor& dst, const Tensor& src, bool non_blocking) {
  DeviceGuard guard(dst.device());
  const Stream stream = current_stream(dst.device().index());
  // Host side: contiguous, in src's dtype (pinned staging keeps a non_blocking copy asynchronous).
  Tensor host = src;
  if (!src.is_contiguous()) {
    host = empty(src.sizes(), on(src.device(), src.dtype()).pinned_memory(non_blocking && src.is_pinned()));
    cpu::copy(host, src);
  }
  // Device side: dst itself when the bytes can land there directly, else a staging tensor.
  const bool direct = dst.is_contiguous() && dst.dtype() == src.dtype();
  const Tensor dev = direct ? dst : empty(src.sizes(), on(dst.device(), src.dtype()));
  EMBER_CUDA_CHECK(
      cudaMemcpyAsync(dev.raw_data(), host.raw_data(), host.nbytes(), cudaMemcpyHostToDevice, native(stream)));
  if (non_blocking && host.is_pinned())
    detail::record_pinned_use(host.storage()->data_ptr(), stream);
  else
    stream.synchronize();
  if (!direct) copy_same_device(dst, dev);
}

void copy_device_to_host(const Tensor& dst, const Tensor& src, bool non_blocking) {
  DeviceGuard guard(src.device());
  const Stream stream = current_stream(src.device().index());
  // Device side: contiguous, already in dst's dtype.
  const bool src_ready = src.is_contiguous() && src.dtype() == dst.dtype();
  const Tensor dev = src_ready ? src : empty(src.sizes(), on(src.device(), dst.dtype()));
  if (!src_ready) copy_same_device(dev, src);
  // Host side: dst itself when contiguous, else a staging tensor scattered into dst afterwards.
  const bool direct = dst.is_contiguous();
  const Tensor host = direct ? dst : empty(dst.sizes(), on(dst.device(), dst.dtype()));
  EMBER_CUDA_CHECK(
      cudaMemcpyAsync(host.raw_data(), dev.raw_data(), dev.nbytes(), cudaMemcpyDeviceToHost, native(stream)));
  if (non_blocking && direct && dst.is_pinned()) {
    detail::record_pinned_use(dst.storage()->data_ptr(), stream);
    return;
  }
  stream.synchronize();
  if (!direct) cpu::copy(dst, host);
}

// Two GPUs: Note [CUDA copy paths].
void copy_peer(const Tensor& dst, const Tensor& src) {
  const Device src_device = src.device(), dst_device = dst.device();
  const Tensor staged_src = src.is_contiguous() && src.dtype() == dst.dtype()
                                ? src
                                : empty(src.sizes(), on(src_device, dst.dtype()));
  if (!staged_src.is_same(src)) copy_same_device(staged_src, src);
  const bool direct = dst.is_contiguous();
  const Tensor staged_dst = direct ? dst : empty(dst.sizes(), on(dst_device, dst.dtype()));

  const Stream src_stream = current_stream(src_device.index());
  const Stream dst_stream = current_stream(dst_device.index());
  Event source_ready;
  source_ready.record(src_stream);
  source_ready.block(dst_stream);
  {
    DeviceGuard guard(dst_device);
    EMBER_CUDA_CHECK(cudaMemcpyPeerAsync(staged_dst.raw_data(), dst_device.index(), staged_src.raw_data(),
                                         src_device.index(), staged_src.nbytes(), native(dst_stream)));
  }
  Event copied;
  copied.record(dst_stream);
  copied.block(src_stream);
  if (!direct) copy_same_device(dst, staged_dst);
}

// Whether a fill value is stored as all-zero bytes in every dtype (memset can do it).
bool zero_bits(const Scalar& v) {
  if (v.is_floating_point()) return v.to_double() == 0.0 && !std::signbit(v.to_double());
  return v.to_int() == 0;
}

}  // namespace

void copy_(const Tensor& dst, const Tensor& src, bool non_blocking) {
  if (dst.numel() == 0) return;
  EMBER_ASSERT(src.sizes() == dst.sizes(), "cuda::copy_: the source of shape ", src.sizes(),
               " was not expanded to the destination shape ", dst.sizes());
  if (dst.is_cuda() && src.is_cuda()) {
    if (dst.device() == src.device())
      copy_same_device(dst, src);
    else
      copy_peer(dst, src);
  } else if (dst.is_cuda()) {
    copy_host_to_device(dst, src, non_blocking);
  } else {
    EMBER_ASSERT(src.is_cuda(), "cuda::copy_: neither ", dst.device(), " nor ", src.device(), " is a CUDA device");
    copy_device_to_host(dst, src, non_blocking);
  }
}

void fill_(const Tensor& self, const Scalar& value) {
  if (self.numel() == 0) return;
  DeviceGuard guard(self.device());
  cudaStream_t stream = native_stream(self.device());
  if (self.is_contiguous() && zero_bits(value)) {
    EMBER_CUDA_CHECK(cudaMemsetAsync(self.raw_data(), 0, self.nbytes(), stream));
    return;
  }
  const StridedIter it = make_iter("fill_", self, {});
  dispatch_all(self.dtype(), "fill_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_elementwise<T>(it, ew::FillValue<T>{value.to<T>()}, stream);
  });
}

}  // namespace ember::cuda
