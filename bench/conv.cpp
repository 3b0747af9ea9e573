// conv2d and max_pool2d forward + backward (family "conv") on the Fashion-MNIST CNN's layer shapes: GFLOP/s
// and images/s, on the CPU and (CUDA events) the GPU.
#include "kernels/conv.h"

#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"
#include "kernels/pool.h"

namespace ember::bench {
namespace {

// One convolution layer of the Fashion-MNIST CNN: [batch, cin, hw, hw] -> [batch, cout, hw, hw], 3x3, pad 1.
struct ConvShape {
  int64_t batch, cin, cout, hw;
  bool input_grad;  // the first layer's input (the images) needs no gradient
};

double conv_flops(const ConvShape& s) {  // multiply-adds of one pass, times two
  return 2.0 * static_cast<double>(s.batch * s.cout * s.hw * s.hw * s.cin * 9);
}

void conv_forward_backward(benchmark::State& state, ConvShape s, Device device) {
  manual_seed(0);
  const TensorOptions o = TensorOptions().device(device);
  Tensor x = randn({s.batch, s.cin, s.hw, s.hw}, o);
  if (s.input_grad) x.requires_grad_();
  const Tensor w = (randn({s.cout, s.cin, 3, 3}, o) * 0.1).detach().requires_grad_();
  const Tensor b = zeros({s.cout}, o).requires_grad_();
  const Tensor g = randn({s.batch, s.cout, s.hw, s.hw}, o);
  run_timed(state, device, 3, [&] {
    x.set_grad(Tensor());
    w.set_grad(Tensor());
    b.set_grad(Tensor());
    conv2d(x, w, b, 1, 1).backward(g);
  });
  // Forward, weight gradient, and (when the input needs one) input gradient: one GEMM-sized pass each.
  const double flops = conv_flops(s) * (s.input_grad ? 3.0 : 2.0);
  set_gflops(state, flops);
  set_rate(state, "images/s", static_cast<double>(s.batch));
}

void conv_forward(benchmark::State& state, ConvShape s, Device device) {
  manual_seed(0);
  const TensorOptions o = TensorOptions().device(device);
  const Tensor x = randn({s.batch, s.cin, s.hw, s.hw}, o);
  const Tensor w = randn({s.cout, s.cin, 3, 3}, o) * 0.1;
  const Tensor b = zeros({s.cout}, o);
  NoGradGuard no_grad;
  run_timed(state, device, 3, [&] { benchmark::DoNotOptimize(conv2d(x, w, b, 1, 1)); });
  set_gflops(state, conv_flops(s));
  set_rate(state, "images/s", static_cast<double>(s.batch));
}

// The CNN's 2x2 max pooling after each convolution, forward + backward.
void max_pool_forward_backward(benchmark::State& state, ConvShape s, Device device) {
  manual_seed(0);
  const TensorOptions o = TensorOptions().device(device);
  const Tensor x = randn({s.batch, s.cout, s.hw, s.hw}, o).requires_grad_();
  const Tensor g = randn({s.batch, s.cout, s.hw / 2, s.hw / 2}, o);
  run_timed(state, device, 3, [&] {
    x.set_grad(Tensor());
    max_pool2d(x, 2).backward(g);
  });
  const double bytes = 4.0 * static_cast<double>(x.numel()) * 2.5;  // read x, write grad, plus the quarter-size outputs
  set_gbps(state, bytes);
  set_rate(state, "images/s", static_cast<double>(s.batch));
}

const ConvShape kConv1{64, 1, 32, 28, false};  // [1 -> 32, 3x3, pad 1] on 28x28
const ConvShape kConv2{64, 32, 64, 14, true};  // [32 -> 64, 3x3, pad 1] on 14x14

}  // namespace

void register_conv() {
  std::vector<Device> devices{Device::cpu()};
  if (cuda::is_available()) devices.push_back(Device::cuda(0));
  for (const Device& d : devices) {
    const std::string dev = d.is_cuda() ? "cuda" : "cpu";
    auto reg = [&](const std::string& name, auto fn, ConvShape s) {
      auto* b = benchmark::RegisterBenchmark(("conv/" + name + "/" + dev).c_str(), fn, s, d);
      b->Unit(benchmark::kMillisecond);
      if (d.is_cuda())
        b->UseManualTime();
      else
        b->UseRealTime();  // the work runs on several threads
    };
    reg("conv2d_fwd_bwd/b64_1to32_28x28", conv_forward_backward, kConv1);
    reg("conv2d_fwd_bwd/b64_32to64_14x14", conv_forward_backward, kConv2);
    reg("conv2d_fwd/b64_1to32_28x28", conv_forward, kConv1);
    reg("conv2d_fwd/b64_32to64_14x14", conv_forward, kConv2);
    reg("max_pool2d_fwd_bwd/b64_32x28x28", max_pool_forward_backward, kConv1);
    reg("max_pool2d_fwd_bwd/b64_64x14x14", max_pool_forward_backward, kConv2);
  }
}

}  // namespace ember::bench
