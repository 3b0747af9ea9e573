// max_pool2d, avg_pool2d, adaptive_avg_pool2d: checks, geometry, the CPU/CUDA switch and backward nodes.
#include "kernels/pool.h"

#include <string>

#include "kernels/cpu/pool.h"
#include "kernels/cuda/pool.h"
#include "kernels/ops.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;
using pool::Pool2dGeometry;

namespace {

// One value for both spatial dims or {h, w}.
void expand_pair(const char* op, IntArrayRef v, const char* what, int64_t& h, int64_t& w) {
  EMBER_CHECK(v.size() == 1 || v.size() == 2, op, ": expected ", what, " as one value or {h, w}, got ", v.size(),
              " values ", v);
  h = v[0];
  w = v.size() == 2 ? v[1] : v[0];
}

// [C, H, W] or [N, C, H, W] with non-empty C, H, W (the batch may be empty), a pooling dtype.
void check_input(const char* op, const Tensor& input) {
  EMBER_CHECK(input.defined(), op, ": got an undefined input");
  EMBER_CHECK(input.dim() == 3 || input.dim() == 4, op,
              ": expected a 3-D (unbatched [C, H, W]) or 4-D (batched [N, C, H, W]) input, got input of shape ",
              input.sizes());
  const int64_t d = input.dim();
  EMBER_CHECK(input.size(d - 3) > 0 && input.size(d - 2) > 0 && input.size(d - 1) > 0, op,
              ": expected non-empty channel and spatial dims, got input of shape ", input.sizes());
  const DType t = input.dtype();
  if (t == kFloat32 || t == kFloat64 || (input.is_cuda() && is_reduced_float(t))) return;
  if (is_reduced_float(t))
    EMBER_THROW(op, ": ", t, " pooling runs on CUDA only; convert to float32 on ", input.device());
  EMBER_THROW(op, ": expected a floating-point input (float32 or float64), got ", t);
}

// Checks the hyper-parameters against the input [N, C, H, W] and computes the output plane.
Pool2dGeometry make_geometry(const char* op, const Tensor& x, IntArrayRef kernel_size, IntArrayRef stride,
                             IntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
  Pool2dGeometry g;
  expand_pair(op, kernel_size, "kernel_size", g.kernel_h, g.kernel_w);
  if (stride.empty()) {
    g.stride_h = g.kernel_h;
    g.stride_w = g.kernel_w;
  } else {
    expand_pair(op, stride, "stride", g.stride_h, g.stride_w);
  }
  expand_pair(op, padding, "padding", g.pad_h, g.pad_w);
  expand_pair(op, dilation, "dilation", g.dilation_h, g.dilation_w);
  EMBER_CHECK(g.kernel_h > 0 && g.kernel_w > 0, op, ": kernel_size must be positive, got ", kernel_size);
  EMBER_CHECK(g.stride_h > 0 && g.stride_w > 0, op, ": stride must be positive, got ", stride);
  EMBER_CHECK(g.dilation_h > 0 && g.dilation_w > 0, op, ": dilation must be positive, got ", dilation);
  EMBER_CHECK(g.pad_h >= 0 && g.pad_w >= 0, op, ": padding must be non-negative, got ", padding);
  EMBER_CHECK(g.pad_h <= g.kernel_h / 2 && g.pad_w <= g.kernel_w / 2, op,
              ": padding should be at most half of the kernel size, got padding [", g.pad_h, ", ", g.pad_w,
              "] for kernel_size [", g.kernel_h, ", ", g.kernel_w, "]");
  g.in_h = x.size(2);
  g.in_w = x.size(3);
  g.out_h = pool::output_size(g.in_h, g.kernel_h, g.pad_h, g.stride_h, g.dilation_h, ceil_mode);
  g.out_w = pool::output_size(g.in_w, g.kernel_w, g.pad_w, g.stride_w, g.dilation_w, ceil_mode);
  EMBER_CHECK(g.out_h >= 1 && g.out_w >= 1, op, ": the input plane [", g.in_h, ", ", g.in_w,
              "] is too small for kernel_size [", g.kernel_h, ", ", g.kernel_w, "] with padding [", g.pad_h, ", ",
              g.pad_w, "] and dilation [", g.dilation_h, ", ", g.dilation_w, "]: the output would be [", g.out_h, ", ",
              g.out_w, "]");
  return g;
}

struct MaxPool2DWithIndicesBackward final : Node {
  SavedVariable indices;
  Pool2dGeometry geometry;
  DimVector input_sizes;
  std::string name() const override { return "MaxPool2DWithIndicesBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor g = grads[0].contiguous();
    const Tensor idx = indices.unpack(this);
    Tensor gx = empty(input_sizes, g.options());
    if (gx.is_cuda())
      cuda::max_pool2d_backward(g, idx, gx, geometry);
    else
      cpu::max_pool2d_backward(g, idx, gx, geometry);
    return {gx};
  }
  void release_variables() override { indices.reset(); }
};

struct AvgPool2DBackward final : Node {
  Pool2dGeometry geometry;
  DimVector input_sizes;
  std::string name() const override { return "AvgPool2DBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor g = grads[0].contiguous();
    Tensor gx = empty(input_sizes, g.options());
    if (gx.is_cuda())
      cuda::avg_pool2d_backward(g, gx, geometry);
    else
      cpu::avg_pool2d_backward(g, gx, geometry);
    return {gx};
  }
};

struct AdaptiveAvgPool2DBackward final : Node {
  DimVector input_sizes;
  std::string name() const override { return "AdaptiveAvgPool2DBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor g = grads[0].contiguous();
    Tensor gx = empty(input_sizes, g.options());
    if (gx.is_cuda())
      cuda::adaptive_avg_pool2d_backward(g, gx);
    else
      cpu::adaptive_avg_pool2d_backward(g, gx);
    return {gx};
  }
};

Tensor batched(const Tensor& input) { return input.dim() == 3 ? input.unsqueeze(0) : input; }
Tensor unbatched_like(const Tensor& input, const Tensor& out) { return input.dim() == 3 ? out.squeeze(0) : out; }

}  // namespace

std::tuple<Tensor, Tensor> max_pool2d_with_indices(const Tensor& input, IntArrayRef kernel_size, IntArrayRef stride,
                                                   IntArrayRef padding, IntArrayRef dilation, bool ceil_mode) {
  check_input("max_pool2d", input);
  const Tensor x = batched(input);
  const Pool2dGeometry g = make_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode);
  Tensor out = empty({x.size(0), x.size(1), g.out_h, g.out_w}, x.options());
  Tensor indices = empty(out.sizes(), TensorOptions().dtype(kInt64).device(x.device()));
  {
    NoGradGuard no_grad;
    const Tensor xc = x.contiguous();
    if (out.is_cuda())
      cuda::max_pool2d(xc, out, indices, g);
    else
      cpu::max_pool2d(xc, out, indices, g);
  }
  if (autograd::needs_grad(x)) {
    auto node = std::make_shared<MaxPool2DWithIndicesBackward>();
    node->indices = SavedVariable(indices);
    node->geometry = g;
    node->input_sizes = x.sizes();
    autograd::record(node, {&out}, {&x});
  }
  return {unbatched_like(input, out), unbatched_like(input, indices)};
}

Tensor max_pool2d(const Tensor& input, IntArrayRef kernel_size, IntArrayRef stride, IntArrayRef padding,
                  IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode));
}

Tensor avg_pool2d(const Tensor& input, IntArrayRef kernel_size, IntArrayRef stride, IntArrayRef padding, bool ceil_mode,
                  bool count_include_pad, std::optional<int64_t> divisor_override) {
  check_input("avg_pool2d", input);
  const Tensor x = batched(input);
  Pool2dGeometry g = make_geometry("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode);
  g.count_include_pad = count_include_pad;
  if (divisor_override) {
    EMBER_CHECK(*divisor_override > 0, "avg_pool2d: divisor_override must be positive, got ", *divisor_override);
    g.divisor_override = *divisor_override;
  }
  Tensor out = empty({x.size(0), x.size(1), g.out_h, g.out_w}, x.options());
  {
    NoGradGuard no_grad;
    const Tensor xc = x.contiguous();
    if (out.is_cuda())
      cuda::avg_pool2d(xc, out, g);
    else
      cpu::avg_pool2d(xc, out, g);
  }
  if (autograd::needs_grad(x)) {
    auto node = std::make_shared<AvgPool2DBackward>();
    node->geometry = g;
    node->input_sizes = x.sizes();
    autograd::record(node, {&out}, {&x});
  }
  return unbatched_like(input, out);
}

Tensor adaptive_avg_pool2d(const Tensor& input, IntArrayRef output_size) {
  check_input("adaptive_avg_pool2d", input);
  const Tensor x = batched(input);
  int64_t oh = 0, ow = 0;
  expand_pair("adaptive_avg_pool2d", output_size, "output_size", oh, ow);
  EMBER_CHECK(oh > 0 && ow > 0, "adaptive_avg_pool2d: output_size must be positive, got ", output_size);
  Tensor out = empty({x.size(0), x.size(1), oh, ow}, x.options());
  {
    NoGradGuard no_grad;
    const Tensor xc = x.contiguous();
    if (out.is_cuda())
      cuda::adaptive_avg_pool2d(xc, out);
    else
      cpu::adaptive_avg_pool2d(xc, out);
  }
  if (autograd::needs_grad(x)) {
    auto node = std::make_shared<AdaptiveAvgPool2DBackward>();
    node->input_sizes = x.sizes();
    autograd::record(node, {&out}, {&x});
  }
  return unbatched_like(input, out);
}

}  // namespace ember
