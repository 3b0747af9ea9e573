// conv2d: argument checks, output allocation, the CPU/CUDA switch, and its backward node.
#include "kernels/conv.h"

#include "kernels/cpu/conv.h"
#include "kernels/cuda/conv.h"
#include "kernels/ops.h"
#include "runtime/autograd/node.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

// One value for both spatial dims or {h, w}.
void expand_pair(IntArrayRef v, const char* what, int64_t out[2]) {
  EMBER_CHECK(v.size() == 1 || v.size() == 2, "conv2d: expected ", what, " as one value or {h, w}, got ", v.size(),
              " values ", v);
  out[0] = v[0];
  out[1] = v.size() == 2 ? v[1] : v[0];
}

void check_dtype(const Tensor& t) {
  const DType d = t.dtype();
  if (d == kFloat32 || d == kFloat64 || (t.is_cuda() && is_reduced_float(d))) return;
  if (is_reduced_float(d))
    EMBER_THROW("conv2d: ", d, " convolution runs on CUDA only; convert to float32 on ", t.device());
  EMBER_THROW("conv2d: expected floating-point tensors (float32 or float64), got ", d);
}

void check_same(const Tensor& input, const Tensor& other, const char* name) {
  EMBER_CHECK(other.device() == input.device(), "conv2d: expected ", name, " on ", input.device(),
              " (where the input is), got ", other.device(), " (input ", input.sizes(), ", ", name, " ", other.sizes(),
              ")");
  EMBER_CHECK(other.dtype() == input.dtype(), "conv2d: expected ", name, " of dtype ", input.dtype(),
              " (the input's dtype), got ", other.dtype(), " (input ", input.sizes(), ", ", name, " ", other.sizes(),
              ")");
}

struct ConvolutionBackward final : Node {
  SavedVariable input, weight;
  Conv2dParams params;
  std::string name() const override { return "ConvolutionBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor(), Tensor()};
    Conv2dGrads r = conv2d_backward(g, input.unpack(this), weight.unpack(this), params, needs_input_grad(0),
                                    needs_input_grad(1), needs_input_grad(2));
    return {r.input, r.weight, r.bias};
  }
  void release_variables() override {
    input.reset();
    weight.reset();
  }
};

// Empty batch, channels or filters: the sums are empty (or there is nothing to compute).
bool is_degenerate(const Tensor& x, const Tensor& w, const Tensor& out) {
  return x.numel() == 0 || w.numel() == 0 || out.numel() == 0;
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, IntArrayRef stride, IntArrayRef padding,
              IntArrayRef dilation, int64_t groups) {
  EMBER_CHECK(input.defined() && weight.defined(), "conv2d: got an undefined input or weight");
  EMBER_CHECK(input.dim() == 3 || input.dim() == 4,
              "conv2d: expected a 3-D (unbatched [C, H, W]) or 4-D (batched [N, C, H, W]) input, got input of shape ",
              input.sizes());
  EMBER_CHECK(weight.dim() == 4, "conv2d: expected a 4-D weight [out_channels, in_channels / groups, kH, kW], got ",
              "weight of shape ", weight.sizes());
  check_same(input, weight, "weight");
  if (bias.defined()) check_same(input, bias, "bias");
  check_dtype(input);

  Conv2dParams p;
  expand_pair(stride, "stride", p.stride);
  expand_pair(padding, "padding", p.padding);
  expand_pair(dilation, "dilation", p.dilation);
  p.groups = groups;
  EMBER_CHECK(p.stride[0] > 0 && p.stride[1] > 0, "conv2d: stride must be positive, got ", stride);
  EMBER_CHECK(p.padding[0] >= 0 && p.padding[1] >= 0, "conv2d: padding must be non-negative, got ", padding);
  EMBER_CHECK(p.dilation[0] > 0 && p.dilation[1] > 0, "conv2d: dilation must be positive, got ", dilation);
  EMBER_CHECK(groups > 0, "conv2d: groups must be positive, got ", groups);

  const bool unbatched = input.dim() == 3;
  const Tensor x = unbatched ? input.unsqueeze(0) : input;
  const int64_t c_out = weight.size(0);
  EMBER_CHECK(x.size(1) == weight.size(1) * groups, "conv2d: expected input with ", weight.size(1) * groups,
              " channels (weight ", weight.sizes(), ", groups ", groups, ") but got input of shape ", input.sizes());
  EMBER_CHECK(c_out % groups == 0, "conv2d: the weight's ", c_out, " output channels (weight ", weight.sizes(),
              ") are not divisible by groups ", groups);
  if (bias.defined())
    EMBER_CHECK(bias.dim() == 1 && bias.size(0) == c_out, "conv2d: expected bias of shape [", c_out,
                "] (one per output channel of weight ", weight.sizes(), "), got ", bias.sizes());
  const int64_t eff_h = p.dilation[0] * (weight.size(2) - 1) + 1, eff_w = p.dilation[1] * (weight.size(3) - 1) + 1;
  const int64_t padded_h = x.size(2) + 2 * p.padding[0], padded_w = x.size(3) + 2 * p.padding[1];
  EMBER_CHECK(eff_h <= padded_h && eff_w <= padded_w, "conv2d: the kernel (", eff_h, " x ", eff_w,
              " with dilation) is larger than the padded input (", padded_h, " x ", padded_w, ") for input of shape ",
              input.sizes(), ", weight ", weight.sizes(), " and padding ", padding);
  const int64_t ho = (padded_h - eff_h) / p.stride[0] + 1, wo = (padded_w - eff_w) / p.stride[1] + 1;

  Tensor out = empty({x.size(0), c_out, ho, wo}, x.options());
  {
    NoGradGuard no_grad;
    const Tensor xc = x.contiguous(), wc = weight.contiguous();
    const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
    if (is_degenerate(xc, wc, out)) {
      if (out.numel() > 0) {
        if (bc.defined())
          out.copy_(bc.view({1, c_out, 1, 1}));
        else
          out.zero_();
      }
    } else if (out.is_cuda()) {
      // Note [conv2d bias on CUDA]: cuDNN convolves, ember's own kernels add the bias.
      cuda::conv2d_forward(xc, wc, Tensor(), out, p);
      if (bc.defined()) out.add_(bc.view({1, c_out, 1, 1}));
    } else {
      cpu::conv2d_forward(xc, wc, bc, out, p);
    }
  }
  if (autograd::needs_grad({&x, &weight, &bias})) {
    auto node = std::make_shared<ConvolutionBackward>();
    node->input = SavedVariable(x);
    node->weight = SavedVariable(weight);
    node->params = p;
    autograd::record(node, {&out}, {&x, &weight, &bias});
  }
  return unbatched ? out.squeeze(0) : out;
}

Conv2dGrads conv2d_backward(const Tensor& grad_output, const Tensor& input, const Tensor& weight,
                            const Conv2dParams& params, bool need_input, bool need_weight, bool need_bias) {
  NoGradGuard no_grad;
  const Tensor g = grad_output.contiguous(), x = input.contiguous(), w = weight.contiguous();
  Conv2dGrads r;
  if (need_input) r.input = empty(x.sizes(), x.options());
  if (need_weight) r.weight = empty(w.sizes(), w.options());
  if (need_bias && !g.is_cuda()) r.bias = empty({w.size(0)}, w.options());  // CUDA: summed below
  if (!need_input && !need_weight && !need_bias) return r;
  if (is_degenerate(x, w, g)) {
    if (need_input) r.input.zero_();
    if (need_weight) r.weight.zero_();
    if (need_bias) r.bias = g.numel() > 0 ? g.sum({0, 2, 3}) : zeros({w.size(0)}, w.options());
    return r;
  }
  if (g.is_cuda()) {
    // Note [conv2d bias on CUDA]: the bias gradient is ember's reduction, not cuDNN's.
    cuda::conv2d_backward(g, x, w, params, r.input, r.weight, Tensor());
    if (need_bias) r.bias = g.sum({0, 2, 3});
  } else
    cpu::conv2d_backward(g, x, w, params, r.input, r.weight, r.bias);
  return r;
}

}  // namespace ember
