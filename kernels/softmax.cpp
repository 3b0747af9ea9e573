// softmax and log_softmax along one dim: checks, the device switch, and the fused backward node.
#include "kernels/cpu/softmax.h"

#include "kernels/cuda/softmax.h"
#include "kernels/ops.h"
#include "runtime/autograd/node.h"
#include "runtime/cuda/cuda.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

// The input seen as [outer, dim_size, inner] around the softmax dim (a 0-d tensor is one row of one).
struct SoftmaxShape {
  int64_t outer = 1, dim_size = 1, inner = 1;
};

SoftmaxShape softmax_shape(const Tensor& t, int64_t d) {
  SoftmaxShape s;
  for (int64_t k = 0; k < t.dim(); ++k) {
    if (k < d)
      s.outer *= t.size(k);
    else if (k == d)
      s.dim_size = t.size(k);
    else
      s.inner *= t.size(k);
  }
  return s;
}

// Uses the saved output: grad_in = y * (g - sum(g * y)) or, for log_softmax, g - exp(y) * sum(g).
struct SoftmaxBackward final : Node {
  SavedVariable output;
  SoftmaxShape shape;
  bool log = false;
  std::string name() const override { return log ? "LogSoftmaxBackward" : "SoftmaxBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor y = output.unpack(this);
    const Tensor g = grads[0].dtype() == y.dtype() ? grads[0].contiguous() : grads[0].to(y.dtype()).contiguous();
    Tensor grad_in = empty(y.sizes(), y.options());
    if (y.is_cuda())
      cuda::softmax_backward(g, y, grad_in, shape.outer, shape.dim_size, shape.inner, log);
    else
      cpu::softmax_backward(g, y, grad_in, shape.outer, shape.dim_size, shape.inner, log);
    return {grad_in};
  }
  void release_variables() override { output.reset(); }
};

Tensor softmax_impl(const char* op, const Tensor& t, int64_t dim, bool log) {
  EMBER_CHECK(t.defined(), op, ": got an undefined tensor");
  EMBER_CHECK(t.is_floating_point(), op, ": expected a floating-point input, got ", t.dtype(), " (shape ", t.sizes(),
              "); convert it first, e.g. .to(kFloat32)");
  const int64_t d = wrap_dim(op, dim, t.dim());
  if (t.is_cuda()) cuda::check_device(t.device(), op);
  const SoftmaxShape shape = softmax_shape(t, d);
  Tensor x;
  {
    NoGradGuard no_grad;  // the kernel's contiguous copy is not part of the graph
    x = t.contiguous();
  }
  Tensor out = empty(t.sizes(), t.options());
  if (out.numel() > 0) {
    if (t.is_cuda())
      cuda::softmax_forward(x, out, shape.outer, shape.dim_size, shape.inner, log);
    else
      cpu::softmax_forward(x, out, shape.outer, shape.dim_size, shape.inner, log);
  }
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<SoftmaxBackward>();
    node->output = SavedVariable(out);
    node->shape = shape;
    node->log = log;
    autograd::record(node, {&out}, {&t});
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& t, int64_t dim) { return softmax_impl("softmax", t, dim, false); }
Tensor log_softmax(const Tensor& t, int64_t dim) { return softmax_impl("log_softmax", t, dim, true); }

}  // namespace ember
