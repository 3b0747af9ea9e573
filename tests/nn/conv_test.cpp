// conv2d (op and nn::functional) and nn::Conv2d: known values, gradcheck, printing, bad input, CUDA vs CPU.
#include "kernels/conv.h"

#include <omp.h>

#include <cmath>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/onednn.h"
#include "nn/functional/conv.h"
#include "nn/layers/conv.h"
#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;
namespace F = nn::functional;

// The deterministic input of tests/nn/data/conv_pool_reference.py: value i = scale * sin(0.7 * i + offset).
Tensor pattern(IntArrayRef shape, double scale, double offset, const TensorOptions& options) {
  std::vector<double> v(static_cast<size_t>(product(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = scale * std::sin(0.7 * static_cast<double>(i) + offset);
  return tensor(v).view(shape).to(options);
}

// Direct convolution in double loops: the reference the GEMM path is checked against.
Tensor naive_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, IntArrayRef stride, IntArrayRef padding,
                    IntArrayRef dilation, int64_t groups) {
  const std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  const std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>();
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t k = w.size(0), cg = w.size(1), kh = w.size(2), kw = w.size(3), mg = k / groups;
  const int64_t ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const int64_t wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  std::vector<double> out(static_cast<size_t>(n * k * ho * wo));
  for (int64_t in = 0; in < n; ++in)
    for (int64_t co = 0; co < k; ++co)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          double acc = bv.empty() ? 0.0 : bv[co];
          const int64_t gi = co / mg;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * stride[0] - padding[0] + i * dilation[0];
                const int64_t iw = ow * stride[1] - padding[1] + j * dilation[1];
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                acc += xv[((in * c + gi * cg + ci) * h + ih) * wd + iw] * wv[((co * cg + ci) * kh + i) * kw + j];
              }
          out[((in * k + co) * ho + oh) * wo + ow] = acc;
        }
  return tensor(out).view({n, k, ho, wo});
}

class ConvTest : public testing::DeviceTest {};

TEST_P(ConvTest, StrideTwoPaddingOneWithBias) {
  const Tensor x = pattern({1, 2, 5, 5}, 1.0, 0.0, opts(kFloat64));
  const Tensor w = pattern({3, 2, 3, 3}, 0.5, 1.0, opts(kFloat64));
  const Tensor b = tensor({0.1, -0.2, 0.3}).to(opts(kFloat64));
  const std::vector<double> expected = {
      0.213650516584,  -0.698417277608, 0.555251992188,  -0.495588495118, -1.701920384338, -0.759092361132,
      -1.758774157699, -2.142054734119, -0.057002807709, -0.075619195089, -1.068069612099, 0.184315238342,
      -0.825709908142, -2.076374266697, -1.104202140274, -2.058723338788, -2.482519744937, -0.36407009137,
      0.434970439817,  -0.6367403083,   0.61294388968,   -0.355123750257, -1.648706290623, -0.648289421417,
      -1.556570621626, -2.020403616239, 0.129048160187};
  EXPECT_TRUE(values_are(conv2d(x, w, b, 2, 1), {1, 3, 3, 3}, expected, 1e-9, 1e-10));
  // float32 runs the same path in single precision.
  EXPECT_TRUE(
      values_are(conv2d(x.to(kFloat32), w.to(kFloat32), b.to(kFloat32), 2, 1), {1, 3, 3, 3}, expected, 1e-5, 1e-5));
  // The functional spellings give the same.
  EXPECT_TRUE(all_close(F::conv2d(x, w, F::Conv2dFuncOptions().bias(b).stride(2).padding(1)), conv2d(x, w, b, 2, 1)));
  EXPECT_TRUE(all_close(F::conv2d(x, w, b, {2, 2}, {1, 1}), conv2d(x, w, b, 2, 1)));
}

TEST_P(ConvTest, DilationAsymmetricStrideNoBias) {
  const Tensor x = pattern({1, 1, 6, 7}, 1.0, 0.0, opts(kFloat64));
  const Tensor w = pattern({2, 1, 3, 3}, 1.0, 0.5, opts(kFloat64));
  const std::vector<double> expected = {
      0.037497478603,  1.696733316904,  0.600990097145, -0.470187171386, -0.582855160227, 1.558760440527,
      1.204402238312,  -1.132699629182, 0.06736704573,  0.424115631393,  0.987227707918,  -0.454551325967,
      -1.778700824186, 0.779708520157,  0.616902459453, -1.320738036414, -1.581555091431, -0.519243610296,
      -0.002298162727, 1.681391221674,  0.601566698631, -0.478299013041, -0.613512603516, 1.528615534416,
      1.240204401983,  -1.112232175265, 0.066133325352, 0.438521470901,  1.009226811262,  -0.41407222669,
      -1.800087091236, 0.749981067785,  0.622501119039, -1.325927263621, -1.599438852862, -0.554780252304};
  EXPECT_TRUE(values_are(conv2d(x, w, {}, {1, 2}, {2, 1}, 2), {1, 2, 6, 3}, expected, 1e-9, 1e-10));
}

TEST_P(ConvTest, Groups) {
  const Tensor x = pattern({2, 4, 4, 4}, 1.0, 0.0, opts(kFloat64));
  const Tensor w = pattern({4, 2, 2, 2}, 1.0, 2.0, opts(kFloat64));
  const Tensor b = tensor({0.5, 0.25, -0.5, 1.0}).to(opts(kFloat64));
  const std::vector<double> expected = {
      2.795207806206,  3.006883921259,  2.039533357002,  -1.271867634027, -2.058514432651, -1.641851915708,
      1.54377873277,   2.814494993475,  2.996668093767,  1.746835453053,  1.726512035046,  1.01176193582,
      -0.98788645345,  -1.332318860652, -0.932561983275, 1.08589309025,   1.75528032609,   1.716710703915,
      -0.378165413288, -0.182588206957, -0.13629472659,  -0.498198694354, -0.736187051539, -0.863092947861,
      -0.625229047556, -0.372330359969, -0.179476698981, 2.767122482543,  2.620350508036,  1.711502370925,
      -0.525258432238, -0.801187542209, -0.229990006748, 2.107142657752,  2.773887775972,  2.606345755391,
      2.920664741212,  1.786554522632,  0.047357609089,  -2.07453340909,  -1.459269012414, 0.077470215223,
      2.930901048472,  2.90557954712,   1.748876396541,  1.649299605726,  0.843549544704,  -0.241356141659,
      -1.316328404815, -0.80081872934,  0.208907414039,  1.802359625954,  1.636660220849,  0.818792846715,
      -0.162739668114, -0.145963090471, -0.295695603359, -0.767810262728, -0.868149507913, -0.795342287031,
      -0.33258670668,  -0.160279527406, -0.147748194671, 2.512927433846,  1.510410965981,  0.267840245424,
      -0.761813637109, -0.064634489345, 1.133258894131,  2.807112904113,  2.495833835033,  1.481040740289};
  EXPECT_TRUE(values_are(conv2d(x, w, b, 1, 0, 1, 2), {2, 4, 3, 3}, expected, 1e-9, 1e-10));
}

TEST_P(ConvTest, UnbatchedInputRectangularKernel) {
  const Tensor x = pattern({3, 7, 8}, 1.0, 0.0, opts(kFloat64));
  const Tensor w = pattern({2, 3, 2, 3}, 0.3, 0.2, opts(kFloat64));
  const std::vector<double> expected = {0.179112808174, 0.706783957397, -0.902217075567, 0.225452338885,
                                        0.202116904479, 0.692598424033, -0.910169989485, 0.248276934584};
  EXPECT_TRUE(values_are(conv2d(x, w, {}, 3), {2, 2, 2}, expected, 1e-9, 1e-10));
}

TEST_P(ConvTest, MatchesDirectConvolution) {
  manual_seed(3);
  struct Case {
    std::vector<int64_t> x, w;
    std::vector<int64_t> stride, padding, dilation;
    int64_t groups;
    bool bias;
  };
  const std::vector<Case> cases = {
      {{3, 5, 9, 11}, {6, 5, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true},
      {{2, 6, 13, 7}, {4, 3, 3, 2}, {2, 1}, {0, 2}, {1, 3}, 2, false},
      {{1, 4, 8, 8}, {8, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 4, true},  // depthwise
      {{2, 3, 7, 7}, {5, 3, 1, 1}, {1, 1}, {0, 0}, {1, 1}, 1, true},  // 1x1
      {{2, 2, 5, 6}, {3, 2, 5, 6}, {1, 1}, {0, 0}, {1, 1}, 1, true},  // kernel = whole input
      {{2, 3, 6, 5}, {2, 3, 3, 3}, {3, 2}, {2, 2}, {2, 1}, 1, true},  // padding wider than the data reach
  };
  for (const Case& c : cases) {
    const Tensor x = randn(c.x, opts(kFloat64)), w = randn(c.w, opts(kFloat64));
    const Tensor b = c.bias ? randn({c.w[0]}, opts(kFloat64)) : Tensor();
    const Tensor ref =
        naive_conv2d(x.cpu(), w.cpu(), c.bias ? b.cpu() : Tensor(), c.stride, c.padding, c.dilation, c.groups);
    EXPECT_TRUE(all_close(conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups), ref, 1e-10, 1e-10))
        << "input " << x.sizes() << " weight " << w.sizes();
  }
}

TEST_P(ConvTest, LargeBatch) {
  // Enough work that the CPU path may spread the images over threads (Note [CPU convolution]).
  manual_seed(4);
  const Tensor x = randn({160, 3, 32, 32}, opts()), w = randn({4, 3, 3, 3}, opts()), b = randn({4}, opts());
  const Tensor ref = naive_conv2d(x.cpu(), w.cpu(), b.cpu(), {1, 1}, {1, 1}, {1, 1}, 1);
  const Tensor y = conv2d(x, w, b, 1, 1);
  EXPECT_TRUE(all_close(y, ref, 1e-4, 1e-4));
  // Backward over several chunks: the weight gradient sums all images.
  const Tensor xl = x.detach().requires_grad_(), wl = w.detach().requires_grad_(), bl = b.detach().requires_grad_();
  conv2d(xl, wl, bl, 1, 1).sum().backward();
  // d(sum)/db = N * H * W per channel; d(sum)/dw[co, c, i, j] = sum of the input window shifted by (i, j).
  EXPECT_TRUE(values_are(bl.grad(), {4}, {160.0 * 1024, 160.0 * 1024, 160.0 * 1024, 160.0 * 1024}, 1e-6, 1e-3));
  const Tensor xs = x.cpu().to(kFloat64);
  const Tensor center = xs.sum({0, 2, 3});  // tap (1, 1) sees every input pixel once
  EXPECT_TRUE(all_close(wl.grad().cpu().select(3, 1).select(2, 1).select(0, 2), center, 1e-4, 1e-2));
}

TEST_P(ConvTest, GradcheckAllArguments) {
  manual_seed(5);
  const Tensor x = rand_leaf({2, 4, 7, 6}, device());
  const Tensor w = rand_leaf({6, 2, 3, 2}, device());
  const Tensor b = rand_leaf({6}, device());
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        return conv2d(in[0], in[1], in[2], {2, 1}, {1, 2}, {1, 2}, 2);
      },
      {x, w, b}));
}

TEST_P(ConvTest, GradcheckNoBiasUnbatchedAndNonContiguous) {
  manual_seed(6);
  const Tensor w = rand_leaf({3, 2, 3, 3}, device());
  const Tensor x3 = rand_leaf({2, 5, 7}, device());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], {}, 1, 1); }, {x3, w}));
  // A transposed view of the input (H and W swapped) and a strided slice of the weight.
  const Tensor xt = rand_leaf({1, 2, 7, 5}, device());
  const Tensor wide = rand_leaf({3, 2, 3, 6}, device());
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        return conv2d(in[0].transpose(2, 3), in[1].slice(3, 0, 6, 2), {}, {1, 2}, 0);
      },
      {xt, wide}));
}

TEST_P(ConvTest, GradcheckPointwiseGroups) {
  // A 1x1 kernel with stride 1 and no padding reads the input in place (no im2col) on the CPU.
  manual_seed(11);
  const Tensor x = rand_leaf({3, 4, 5, 3}, device());
  const Tensor w = rand_leaf({6, 2, 1, 1}, device());
  const Tensor b = rand_leaf({6}, device());
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], 1, 0, 1, 2); }, {x, w, b}));
}

TEST_P(ConvTest, GradientsOnlyWhereNeeded) {
  manual_seed(7);
  const Tensor x = randn({2, 3, 5, 5}, opts());
  const Tensor w = randn({4, 3, 3, 3}, opts()).requires_grad_();
  conv2d(x, w, {}, 1, 1).sum().backward();
  EXPECT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().sizes(), w.sizes());
  EXPECT_FALSE(x.grad().defined());
}

TEST_P(ConvTest, EmptyBatch) {
  const Tensor x = zeros({0, 3, 5, 5}, opts());
  const Tensor w = ones({4, 3, 3, 3}, opts()).requires_grad_();
  const Tensor b = ones({4}, opts()).requires_grad_();
  const Tensor y = conv2d(x, w, b, 1, 1);
  EXPECT_EQ(y.sizes(), IntArrayRef({0, 4, 5, 5}));
  y.sum().backward();
  EXPECT_TRUE(values_are(b.grad(), {4}, {0, 0, 0, 0}));
  EXPECT_EQ(w.grad().sizes(), w.sizes());
  EXPECT_EQ(w.grad().abs().sum().item<float>(), 0.0f);
}

TEST_P(ConvTest, BadInput) {
  const Tensor w = zeros({32, 3, 3, 3}, opts());
  EXPECT_EMBER_ERROR(conv2d(zeros({8, 1, 28, 28}, opts()), w),
                     "conv2d: expected input with 3 channels (weight [32, 3, 3, 3], groups 1) but got input of shape "
                     "[8, 1, 28, 28]");
  EXPECT_EMBER_ERROR(conv2d(zeros({28, 28}, opts()), w), "conv2d", "3-D", "4-D", "[28, 28]");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 28, 28}, opts()), zeros({32, 3, 3}, opts())), "conv2d", "4-D weight",
                     "[32, 3, 3]");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 2, 2}, opts()), w), "conv2d", "kernel", "larger than the padded input",
                     "[1, 3, 2, 2]");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, opts()), w, {}, 0), "conv2d", "stride must be positive");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, opts()), w, {}, {1, -1}), "conv2d", "stride must be positive");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, opts()), w, {}, 1, -1), "conv2d", "padding must be non-negative");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, opts()), w, {}, 1, 0, 0), "conv2d", "dilation must be positive");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, opts()), w, {}, {1, 1, 1}), "conv2d", "stride", "3 values");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 6, 8, 8}, opts()), zeros({5, 3, 3, 3}, opts()), {}, 1, 0, 1, 2), "conv2d",
                     "5 output channels", "not divisible by groups 2");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, opts()), w, zeros({31}, opts())), "conv2d", "bias of shape [32]",
                     "[31]");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, opts(kFloat64)), w), "conv2d", "float32", "float64");
  EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, opts(kInt64)), zeros({32, 3, 3, 3}, opts(kInt64))), "conv2d",
                     "floating-point", "int64");
  if (device().is_cpu()) {
    EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, opts(kFloat16)), zeros({32, 3, 3, 3}, opts(kFloat16))), "conv2d",
                       "float16", "CUDA only");
    // Logical CPU devices are different devices.
    EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}, TensorOptions().device(Device::cpu(1))), w), "conv2d", "cpu:0",
                       "cpu:1");
  } else {
    EXPECT_EMBER_ERROR(conv2d(zeros({1, 3, 8, 8}), w), "conv2d", "cpu:0", "cuda:0");
  }
}

// CUDA (cuDNN) against the CPU (im2col + OpenBLAS) on the same random data, TF32 off.
// Compares the CUDA backend with the CPU: instantiated on cuda:0 only.
class ConvTestCuda : public ConvTest {};

TEST_P(ConvTestCuda, CudaMatchesCpu) {
  cuda::set_allow_tf32(false);
  manual_seed(8);
  struct Case {
    std::vector<int64_t> x, w, stride, padding, dilation;
    int64_t groups;
  };
  const std::vector<Case> cases = {{{64, 1, 28, 28}, {32, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1},
                                   {{8, 32, 14, 14}, {64, 32, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1},
                                   {{3, 6, 13, 11}, {4, 3, 3, 2}, {2, 1}, {1, 0}, {1, 2}, 2},
                                   {{2, 8, 9, 9}, {8, 1, 5, 5}, {2, 2}, {2, 2}, {1, 1}, 8}};
  for (const Case& c : cases) {
    for (DType dt : {kFloat32, kFloat64}) {
      const TensorOptions cpu_opts = TensorOptions().dtype(dt);
      const Tensor x = randn(c.x, cpu_opts), w = randn(c.w, cpu_opts), b = randn({c.w[0]}, cpu_opts);
      const Tensor g = randn(conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups).sizes(), cpu_opts);
      auto run = [&](Device d) {
        const Tensor xl = x.to(d, false, true).requires_grad_(), wl = w.to(d, false, true).requires_grad_(),
                     bl = b.to(d, false, true).requires_grad_();
        const Tensor y = conv2d(xl, wl, bl, c.stride, c.padding, c.dilation, c.groups);
        (y * g.to(d)).sum().backward();
        return std::vector<Tensor>{y.cpu(), xl.grad().cpu(), wl.grad().cpu(), bl.grad().cpu()};
      };
      const auto ref = run(Device::cpu()), got = run(device());
      const double tol = dt == kFloat32 ? 1e-4 : 1e-10;
      for (size_t i = 0; i < ref.size(); ++i)
        EXPECT_TRUE(all_close(got[i], ref[i], tol, tol))
            << "output " << i << " input " << c.x.size() << "-D " << x.sizes() << " weight " << w.sizes() << " " << dt;
    }
  }
  // float16 through cuDNN (tensor cores, float accumulation) against float32.
  const Tensor x = randn({4, 8, 10, 10}, opts()), w = randn({16, 8, 3, 3}, opts());
  EXPECT_TRUE(
      all_close(conv2d(x.to(kFloat16), w.to(kFloat16), {}, 1, 1).to(kFloat32), conv2d(x, w, {}, 1, 1), 2e-2, 5e-2));
}

// bfloat16 on CUDA (cuDNN convolution; ember's own bias add and bias-gradient sum, Note [conv2d bias on
// CUDA]) against float32 on the CPU, both from the same bfloat16-representable data. cuDNN accumulates in
// float and rounds each result to bfloat16 (2^-9 relative); the forward rounds twice (convolution, then the
// bias add), hence an absolute term scaled by the largest value as well.
TEST_P(ConvTestCuda, BFloat16MatchesFloat32Cpu) {
  manual_seed(13);
  struct Case {
    std::vector<int64_t> x, w, stride, padding, dilation;
    int64_t groups;
  };
  const std::vector<Case> cases = {{{4, 8, 10, 10}, {16, 8, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1},
                                   {{3, 6, 13, 11}, {4, 3, 3, 2}, {2, 1}, {1, 0}, {1, 2}, 2}};
  auto bf16_exact = [](const Tensor& t) { return t.to(kBFloat16).to(kFloat32); };
  for (const Case& c : cases) {
    const Tensor x = bf16_exact(randn(c.x)), w = bf16_exact(randn(c.w));
    const Tensor b = bf16_exact(randn({c.w[0]}) * 4);  // large enough that a lost bias cannot hide in the tolerance
    const Tensor g = bf16_exact(randn(conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups).sizes()));
    auto run = [&](Device d, DType dt) {
      const Tensor xl = x.to(d, dt, false, true).requires_grad_(), wl = w.to(d, dt, false, true).requires_grad_(),
                   bl = b.to(d, dt, false, true).requires_grad_();
      const Tensor y = conv2d(xl, wl, bl, c.stride, c.padding, c.dilation, c.groups);
      EXPECT_EQ(y.dtype(), dt);
      y.backward(g.to(d, dt));
      std::vector<Tensor> r{y, xl.grad(), wl.grad(), bl.grad()};
      for (Tensor& t : r) {
        EXPECT_EQ(t.dtype(), dt);
        t = t.cpu().to(kFloat32);
      }
      return r;
    };
    const auto ref = run(Device::cpu(), kFloat32), got = run(device(), kBFloat16);
    const char* names[] = {"output", "grad_input", "grad_weight", "grad_bias"};
    for (size_t i = 0; i < ref.size(); ++i) {
      const double scale = ref[i].abs().max().item<double>();
      EXPECT_TRUE(all_close(got[i], ref[i], 2e-2, 5e-3 * scale))
          << names[i] << ": input " << x.sizes() << " weight " << w.sizes() << " groups " << c.groups;
    }
  }
}

EMBER_INSTANTIATE_DEVICE_TESTS(ConvTest);
EMBER_INSTANTIATE_CUDA_TESTS(ConvTestCuda);

}  // namespace
}  // namespace ember

// OpenBLAS's process-wide thread count (kernels/cpu/conv.cpp reads it to choose how to thread).
extern "C" int openblas_get_num_threads(void);
extern "C" void openblas_set_num_threads(int num_threads);

namespace ember {
namespace {

// With OpenBLAS single-threaded, the CPU path spreads the images over OpenMP threads, each with its own
// column buffer and weight-gradient partial; it must agree with the one-image-after-another path.
TEST(ConvCpuThreadingTest, ImagesOverThreadsMatchesSerial) {
  manual_seed(12);
  const Tensor x = randn({37, 6, 17, 15}), w = randn({8, 6, 3, 3}), b = randn({8}), g = randn({37, 8, 9, 8});
  auto run = [&] {
    const Tensor xl = x.detach().requires_grad_(), wl = w.detach().requires_grad_(), bl = b.detach().requires_grad_();
    const Tensor y = conv2d(xl, wl, bl, 2, 1);
    y.backward(g);
    return std::vector<Tensor>{y, xl.grad(), wl.grad(), bl.grad()};
  };
  const int saved = openblas_get_num_threads();
  openblas_set_num_threads(2);
  const auto serial = run();
  openblas_set_num_threads(1);
  const auto threaded = run();
  openblas_set_num_threads(saved);
  for (size_t i = 0; i < serial.size(); ++i)
    EXPECT_TRUE(all_close(threaded[i], serial[i], 1e-5, 1e-4)) << "output " << i;
}

// ---- oneDNN and the im2col reference (Note [oneDNN convolution]) -------------------------------------

// Runs the CPU convolutions of its lifetime with one algorithm, then puts back the one before.
class ConvAlgorithmScope {
 public:
  explicit ConvAlgorithmScope(cpu::CpuConvAlgorithm a) : saved_(cpu::conv_algorithm()) { cpu::set_conv_algorithm(a); }
  ~ConvAlgorithmScope() { cpu::set_conv_algorithm(saved_); }
  ConvAlgorithmScope(const ConvAlgorithmScope&) = delete;
  ConvAlgorithmScope& operator=(const ConvAlgorithmScope&) = delete;

 private:
  cpu::CpuConvAlgorithm saved_;
};

struct ConvGeometry {
  std::vector<int64_t> x, w, stride, padding, dilation;
  int64_t groups;
  bool bias;
};

std::ostream& operator<<(std::ostream& os, const ConvGeometry& c) {
  return os << "input " << IntArrayRef(c.x) << " weight " << IntArrayRef(c.w) << " stride " << IntArrayRef(c.stride)
            << " padding " << IntArrayRef(c.padding) << " dilation " << IntArrayRef(c.dilation) << " groups "
            << c.groups << (c.bias ? " bias" : "");
}

// Output, then the input, weight and bias gradients (undefined when not asked for) of conv2d on copies of
// x, w, b, with `g` as the output gradient; `input_grad` says whether x needs one.
std::vector<Tensor> conv_fwd_bwd(const ConvGeometry& c, const Tensor& x, const Tensor& w, const Tensor& b,
                                 const Tensor& g, bool input_grad = true) {
  const Tensor xl = input_grad ? x.detach().requires_grad_() : x.detach(), wl = w.detach().requires_grad_();
  const Tensor bl = c.bias ? b.detach().requires_grad_() : Tensor();
  const Tensor y = conv2d(xl, wl, bl, c.stride, c.padding, c.dilation, c.groups);
  y.backward(g);
  return {y, input_grad ? xl.grad() : Tensor(), wl.grad(), c.bias ? bl.grad() : Tensor()};
}

int64_t conv_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

// Random geometries: odd sizes, strides, paddings, dilations, groups (depthwise included), rectangular
// and 1x1 kernels, batch 1, with and without bias; plus the Fashion-MNIST CNN's two layers.
std::vector<ConvGeometry> random_geometries(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  auto pick = [&](int lo, int hi) { return static_cast<int64_t>(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  std::vector<ConvGeometry> out = {
      {{64, 1, 28, 28}, {32, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, false},
      {{64, 32, 14, 14}, {64, 32, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, false},
      {{2, 8, 9, 9}, {8, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 8, true},  // depthwise
      {{3, 16, 7, 5}, {24, 16, 1, 1}, {1, 1}, {0, 0}, {1, 1}, 1, true},
  };
  while (static_cast<int>(out.size()) < count) {
    ConvGeometry c;
    const int64_t groups = pick(1, 3), cg = pick(1, 7), mg = pick(1, 7), kh = pick(1, 5), kw = pick(1, 5);
    c.stride = {pick(1, 3), pick(1, 3)};
    c.padding = {pick(0, 3), pick(0, 3)};
    c.dilation = {pick(1, 3), pick(1, 2)};
    c.groups = groups;
    c.bias = pick(0, 1) == 1;
    c.x = {pick(1, 5), groups * cg, pick(1, 17), pick(1, 19)};
    c.w = {groups * mg, cg, kh, kw};
    if (c.x[2] + 2 * c.padding[0] < c.dilation[0] * (kh - 1) + 1 ||
        c.x[3] + 2 * c.padding[1] < c.dilation[1] * (kw - 1) + 1)
      continue;  // the kernel does not fit the padded input
    out.push_back(c);
  }
  return out;
}

// oneDNN's float32 results against the im2col path's, in float32 and in float64 (so that oneDNN is held
// to the exact answer, not only to another float32 sum), forward and all three gradients.
TEST(ConvOneDnnTest, MatchesIm2colOnRandomGeometries) {
  if (!cpu::onednn::compiled()) GTEST_SKIP() << "ember was built without oneDNN (EMBER_DNNL)";
  manual_seed(21);
  int taken = 0;
  const std::vector<ConvGeometry> cases = random_geometries(80, 21);
  for (const ConvGeometry& c : cases) {
    const Tensor x = randn(c.x), w = randn(c.w) * 0.3, b = c.bias ? randn({c.w[0]}) : Tensor();
    const int64_t ho = conv_out_size(c.x[2], c.w[2], c.stride[0], c.padding[0], c.dilation[0]);
    const int64_t wo = conv_out_size(c.x[3], c.w[3], c.stride[1], c.padding[1], c.dilation[1]);
    const Tensor g = randn({c.x[0], c.w[0], ho, wo});
    std::vector<Tensor> ref32, ref64, got;
    {
      ConvAlgorithmScope im2col(cpu::CpuConvAlgorithm::kIm2col);
      ref32 = conv_fwd_bwd(c, x, w, b, g);
      ref64 = conv_fwd_bwd(c, x.to(kFloat64), w.to(kFloat64), c.bias ? b.to(kFloat64) : Tensor(), g.to(kFloat64));
    }
    {
      ConvAlgorithmScope onednn(cpu::CpuConvAlgorithm::kOneDnn);
      got = conv_fwd_bwd(c, x, w, b, g);
      if (!cpu::onednn::last_forward_impl().empty()) ++taken;
    }
    // Each result is a float32 sum of `terms` products of unit-scale numbers, added in another order by
    // each path: C_in/groups * kH * kW for the output and the input gradient, N * H_out * W_out for the
    // weight and bias gradients (50176 for the CNN's first layer).
    const double k_terms = static_cast<double>(c.w[1] * c.w[2] * c.w[3]);
    const double terms[] = {k_terms, static_cast<double>(c.w[0] / c.groups * c.w[2] * c.w[3]),
                            static_cast<double>(c.x[0] * ho * wo), static_cast<double>(c.x[0] * ho * wo)};
    for (size_t i = 0; i < got.size(); ++i) {
      if (!got[i].defined()) continue;
      const double atol = 1e-4 + 1e-6 * terms[i];
      EXPECT_TRUE(all_close(got[i], ref32[i], 1e-4, atol)) << "output " << i << " of " << c;
      EXPECT_TRUE(all_close(got[i], ref64[i].to(kFloat32), 1e-4, atol))
          << "output " << i << " of " << c << " (float64)";
    }
  }
  // oneDNN 2.6 takes every float32 geometry here; a decline would be correct (the im2col path runs) but slow.
  EXPECT_EQ(taken, static_cast<int>(cases.size()));
}

TEST(ConvOneDnnTest, FirstLayerWithoutInputGradient) {
  // The CNN's first layer: only the weight gradient is asked for.
  if (!cpu::onednn::compiled()) GTEST_SKIP() << "ember was built without oneDNN (EMBER_DNNL)";
  manual_seed(22);
  const ConvGeometry c{{17, 1, 28, 28}, {32, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true};
  const Tensor x = randn(c.x), w = randn(c.w), b = randn({32}), g = randn({17, 32, 28, 28});
  std::vector<Tensor> ref, got;
  {
    ConvAlgorithmScope im2col(cpu::CpuConvAlgorithm::kIm2col);
    ref = conv_fwd_bwd(c, x, w, b, g, false);
  }
  {
    ConvAlgorithmScope onednn(cpu::CpuConvAlgorithm::kOneDnn);
    got = conv_fwd_bwd(c, x, w, b, g, false);
  }
  EXPECT_FALSE(got[1].defined());
  for (size_t i : {0, 2, 3}) EXPECT_TRUE(all_close(got[i], ref[i], 1e-4, 0.05)) << "output " << i;  // 13328 terms
}

TEST(ConvOneDnnTest, Float64AndReducedPrecisionGoToIm2col) {
  // oneDNN 2.6 has no float64 convolution: float64 (every gradcheck) runs the im2col path, bit for bit.
  manual_seed(23);
  const ConvGeometry c{{2, 4, 7, 6}, {6, 2, 3, 2}, {2, 1}, {1, 2}, {1, 2}, 2, true};
  const Tensor x = randn(c.x, kFloat64), w = randn(c.w, kFloat64), b = randn({6}, kFloat64);
  const Tensor g = randn({2, 6, 4, 8}, kFloat64);  // H_out = (7 + 2 - 3) / 2 + 1, W_out = (6 + 4 - 3) / 1 + 1
  cpu::onednn::clear_cache();
  std::vector<Tensor> got;
  {
    ConvAlgorithmScope onednn(cpu::CpuConvAlgorithm::kOneDnn);
    got = conv_fwd_bwd(c, x, w, b, g);
    EXPECT_EQ(cpu::onednn::cached_plans(), 0u);
    EXPECT_EQ(cpu::onednn::last_forward_impl(), "");
  }
  std::vector<Tensor> ref;
  {
    ConvAlgorithmScope im2col(cpu::CpuConvAlgorithm::kIm2col);
    ref = conv_fwd_bwd(c, x, w, b, g);
  }
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(all_close(got[i], ref[i], 0, 0)) << "output " << i;
}

TEST(ConvOneDnnTest, ReferencePathCanBeForced) {
  if (!cpu::onednn::compiled()) GTEST_SKIP() << "ember was built without oneDNN (EMBER_DNNL)";
  const Tensor x = randn({2, 3, 8, 8}), w = randn({4, 3, 3, 3});
  cpu::onednn::clear_cache();
  {
    ConvAlgorithmScope im2col(cpu::CpuConvAlgorithm::kIm2col);
    EXPECT_EQ(cpu::conv_algorithm(), cpu::CpuConvAlgorithm::kIm2col);
    conv2d(x, w, {}, 1, 1);
    EXPECT_EQ(cpu::onednn::cached_plans(), 0u);
  }
  ConvAlgorithmScope onednn(cpu::CpuConvAlgorithm::kOneDnn);
  conv2d(x, w, {}, 1, 1);
  EXPECT_EQ(cpu::onednn::cached_plans(), 1u);  // one forward plan, built once
  conv2d(x, w, {}, 1, 1);
  EXPECT_EQ(cpu::onednn::cached_plans(), 1u);
  EXPECT_FALSE(cpu::onednn::last_forward_impl().empty());
}

TEST(ConvOneDnnTest, ThreadCountIsPartOfThePlan) {
  // A primitive splits its work for the OpenMP thread count it was made with: fewer threads, another plan.
  if (!cpu::onednn::compiled()) GTEST_SKIP() << "ember was built without oneDNN (EMBER_DNNL)";
  manual_seed(24);
  const ConvGeometry c{{8, 6, 11, 9}, {10, 6, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true};
  const Tensor x = randn(c.x), w = randn(c.w), b = randn({10}), g = randn({8, 10, 11, 9});
  ConvAlgorithmScope onednn(cpu::CpuConvAlgorithm::kOneDnn);
  cpu::onednn::clear_cache();
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<Tensor> one = conv_fwd_bwd(c, x, w, b, g);
  const size_t plans_one = cpu::onednn::cached_plans();
  omp_set_num_threads(std::max(2, saved));
  const std::vector<Tensor> many = conv_fwd_bwd(c, x, w, b, g);
  omp_set_num_threads(saved);
  EXPECT_EQ(plans_one, 3u);  // forward, input gradient, weight gradient
  EXPECT_EQ(cpu::onednn::cached_plans(), 6u);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(all_close(many[i], one[i], 1e-4, 1e-4)) << "output " << i;
}

TEST(ConvOneDnnTest, ConcurrentCallsShareThePlans) {
  // DataParallel runs replicas' forward and backward on several threads at once: one plan, many callers.
  manual_seed(25);
  const ConvGeometry c{{6, 5, 12, 10}, {7, 5, 3, 3}, {2, 1}, {1, 1}, {1, 1}, 1, true};
  const Tensor x = randn(c.x), w = randn(c.w), b = randn({7}), g = randn({6, 7, 6, 10});
  ConvAlgorithmScope onednn(cpu::CpuConvAlgorithm::kOneDnn);
  const std::vector<Tensor> ref = conv_fwd_bwd(c, x, w, b, g);
  constexpr int kThreads = 4, kRounds = 20;
  std::vector<int> bad(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        const std::vector<Tensor> got = conv_fwd_bwd(c, x, w, b, g);
        for (size_t i = 0; i < got.size(); ++i)
          if (!all_close(got[i], ref[i], 1e-5, 1e-5)) ++bad[t];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
}

TEST(ConvOneDnnTest, InsideAnOpenMPRegionRunsIm2col) {
  // A plan made for N threads would run on one inside a parallel region: oneDNN declines such calls.
  manual_seed(26);
  const ConvGeometry c{{3, 4, 9, 9}, {5, 4, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true};
  const Tensor x = randn(c.x), w = randn(c.w), b = randn({5}), g = randn({3, 5, 9, 9});
  std::vector<Tensor> ref;
  {
    ConvAlgorithmScope im2col(cpu::CpuConvAlgorithm::kIm2col);
    ref = conv_fwd_bwd(c, x, w, b, g);
  }
  ConvAlgorithmScope onednn(cpu::CpuConvAlgorithm::kOneDnn);
  std::vector<Tensor> got;
  std::string impl = "unset";
#pragma omp parallel num_threads(2)
  {
#pragma omp master
    {
      got = conv_fwd_bwd(c, x, w, b, g);
      impl = cpu::onednn::last_forward_impl();
    }
  }
  if (omp_get_max_threads() > 1) {
    EXPECT_EQ(impl, "");
  }
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(all_close(got[i], ref[i], 1e-5, 1e-5)) << "output " << i;
}

// ---- nn::Conv2d --------------------------------------------------------------------------------------

std::string repr(const nn::Module& m) {
  std::ostringstream os;
  m.pretty_print(os);
  return os.str();
}

TEST(Conv2dLayerTest, PrintsLikePyTorch) {
  // Strings from /usr/bin/python3 -c "import torch; print(torch.nn.Conv2d(...))" (PyTorch 1.13).
  EXPECT_EQ(repr(*nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1))),
            "Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))");
  EXPECT_EQ(repr(*nn::Conv2d(1, 32, 3)), "Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1))");
  EXPECT_EQ(
      repr(*nn::Conv2d(nn::Conv2dOptions(4, 8, {3, 5}).stride(2).padding({1, 2}).dilation(2).groups(2).bias(false))),
      "Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 2), padding=(1, 2), dilation=(2, 2), groups=2, bias=False)");
}

TEST(Conv2dLayerTest, ParametersAndInitialisation) {
  manual_seed(9);
  nn::Conv2d conv(nn::Conv2dOptions(6, 12, {3, 5}).groups(3));
  const auto params = conv->named_parameters();
  EXPECT_EQ(params.keys(), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(conv->weight.sizes(), IntArrayRef({12, 2, 3, 5}));
  EXPECT_EQ(conv->bias.sizes(), IntArrayRef({12}));
  EXPECT_TRUE(conv->weight.requires_grad());
  // kaiming_uniform_(a = sqrt(5)) and the bias both draw from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 2*3*5.
  const double bound = 1.0 / std::sqrt(30.0);
  const std::vector<float> wv = conv->weight.to_vector<float>();
  double lo = 1, hi = -1, mean = 0;
  for (float v : wv) {
    lo = std::min<double>(lo, v);
    hi = std::max<double>(hi, v);
    mean += v;
  }
  mean /= static_cast<double>(wv.size());
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.8 * bound);  // 360 draws cover the range
  EXPECT_GT(hi, 0.8 * bound);
  EXPECT_NEAR(mean, 0.0, 0.05);
  for (float v : conv->bias.to_vector<float>()) {
    EXPECT_GE(v, -bound);
    EXPECT_LE(v, bound);
  }
  nn::Conv2d no_bias(nn::Conv2dOptions(3, 4, 3).bias(false));
  EXPECT_EQ(no_bias->parameters().size(), 1u);
  EXPECT_FALSE(no_bias->bias.defined());
}

TEST(Conv2dLayerTest, ForwardGradcheckAndClone) {
  manual_seed(10);
  nn::Conv2d conv(nn::Conv2dOptions(2, 3, 3).stride({2, 1}).padding(1));
  conv->to(kFloat64);
  const Tensor x = rand_leaf({2, 2, 7, 5});
  EXPECT_TRUE(all_close(conv->forward(x), conv2d(x, conv->weight, conv->bias, {2, 1}, 1)));
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& in) { return conv->forward(in[0]); }, {x, conv->weight, conv->bias}));
  auto copy = std::dynamic_pointer_cast<nn::Conv2dImpl>(conv->clone());
  ASSERT_NE(copy, nullptr);
  EXPECT_TRUE(all_close(copy->forward(x), conv->forward(x)));
  EXPECT_FALSE(copy->weight.is_alias_of(conv->weight));
}

TEST(Conv2dLayerTest, BadInputNamesTheLayer) {
  nn::Conv2d conv(nn::Conv2dOptions(3, 8, 3));
  EXPECT_EMBER_ERROR(conv->forward(zeros({8, 1, 28, 28})), "Conv2d", "3 channels", "[8, 1, 28, 28]");
  EXPECT_EMBER_ERROR(conv->forward(zeros({28, 28})), "Conv2d", "3-D", "4-D", "[28, 28]");
  EXPECT_EMBER_ERROR(nn::Conv2d(nn::Conv2dOptions(3, 8, 3).groups(2)), "Conv2d", "in_channels (3)",
                     "divisible by groups (2)");
  EXPECT_EMBER_ERROR(nn::Conv2d(nn::Conv2dOptions(3, 8, 0)), "Conv2d", "kernel_size must be positive");
}

}  // namespace
}  // namespace ember
