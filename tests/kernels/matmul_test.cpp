// Tests of mm, bmm, matmul and addmm: values, every rank combination, strided inputs, gradients, errors, CUDA vs CPU.
#include <cmath>
#include <limits>
#include <thread>
#include <tuple>
#include <vector>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/onednn.h"
#include "kernels/ops.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/stream.h"
#include "tests/testing.h"

namespace ember {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::rand_leaf;
using testing::values_are;

class MatmulTest : public testing::DeviceTest {};

// Reference: a @ b with NumPy matmul semantics, by plain loops in double on the host.
Tensor reference_matmul(const Tensor& a_in, const Tensor& b_in) {
  NoGradGuard no_grad;
  Tensor a = a_in.cpu().to(kFloat64), b = b_in.cpu().to(kFloat64);
  const bool a1 = a.dim() == 1, b1 = b.dim() == 1;
  if (a1) a = a.unsqueeze(0);
  if (b1) b = b.unsqueeze(1);
  const int64_t na = a.dim() - 2, nb = b.dim() - 2, nbatch = std::max(na, nb);
  DimVector batch(static_cast<size_t>(nbatch));
  for (int64_t i = 0; i < nbatch; ++i) {
    const int64_t ia = i - (nbatch - na), ib = i - (nbatch - nb);
    const int64_t sa = ia >= 0 ? a.size(ia) : 1, sb = ib >= 0 ? b.size(ib) : 1;
    batch[i] = sa == 1 ? sb : sa;
  }
  const int64_t n = a.size(-2), k = a.size(-1), m = b.size(-1);
  DimVector ashape(batch), bshape(batch), oshape(batch);
  ashape.push_back(n);
  ashape.push_back(k);
  bshape.push_back(k);
  bshape.push_back(m);
  oshape.push_back(n);
  oshape.push_back(m);
  const std::vector<double> va = a.expand(ashape).contiguous().to_vector<double>();
  const std::vector<double> vb = b.expand(bshape).contiguous().to_vector<double>();
  const int64_t nbat = product(batch);
  std::vector<double> out(static_cast<size_t>(nbat * n * m), 0.0);
  for (int64_t t = 0; t < nbat; ++t)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += va[t * n * k + i * k + p] * vb[t * k * m + p * m + j];
        out[t * n * m + i * m + j] = s;
      }
  Tensor r = tensor(out).view(oshape);
  if (a1) r = r.squeeze(-2);
  if (b1) r = r.squeeze(-1);
  return r;
}

TEST_P(MatmulTest, MmValues) {
  Tensor a = tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}).view({2, 3}).to(device());
  Tensor b = tensor({7.f, 8.f, 9.f, 10.f, 11.f, 12.f}).view({3, 2}).to(device());
  EXPECT_TRUE(values_are(mm(a, b), {2, 2}, {58, 64, 139, 154}));
  EXPECT_TRUE(values_are(a.matmul(b), {2, 2}, {58, 64, 139, 154}));
  // Transposed operands are read in place (CblasTrans / CUBLAS_OP_T): a^T a and a a^T.
  EXPECT_TRUE(values_are(mm(a.t(), a), {3, 3}, {17, 22, 27, 22, 29, 36, 27, 36, 45}));
  EXPECT_TRUE(values_are(mm(a, a.t()), {2, 2}, {14, 32, 32, 77}));
  EXPECT_EQ(mm(a, b).device(), device());
}

TEST_P(MatmulTest, MatmulRankCombinations) {
  const TensorOptions o = opts(kFloat64);
  // 1-D x 1-D: a dot product, 0-d.
  Tensor v = tensor({1.0, 2.0, 3.0}).to(device());
  Tensor dot = matmul(v, tensor({4.0, 5.0, 6.0}).to(device()));
  EXPECT_EQ(dot.dim(), 0);
  EXPECT_DOUBLE_EQ(dot.item<double>(), 32.0);
  // 2-D x 1-D and 1-D x 2-D.
  Tensor m = tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}).view({2, 3}).to(device());
  EXPECT_TRUE(values_are(matmul(m, v), {2}, {14, 32}));
  EXPECT_TRUE(values_are(matmul(tensor({1.0, 1.0}).to(device()), m), {3}, {5, 7, 9}));
  // Every other combination against the loop reference, odd sizes.
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> cases = {{{7}, {7, 13}},
                                                                                    {{13, 7}, {7}},
                                                                                    {{7}, {3, 7, 5}},
                                                                                    {{3, 5, 7}, {7}},
                                                                                    {{5, 7}, {3, 7, 13}},
                                                                                    {{3, 5, 7}, {7, 13}},
                                                                                    {{3, 5, 7}, {3, 7, 4}},
                                                                                    {{3, 1, 4, 5}, {2, 5, 6}},
                                                                                    {{1, 4, 5}, {2, 3, 5, 6}},
                                                                                    {{2, 1, 3, 4, 5}, {3, 1, 5, 2}},
                                                                                    {{33, 7}, {7, 13}}};
  for (const auto& [sa, sb] : cases) {
    Tensor a = randn(sa, o), b = randn(sb, o);
    Tensor out = matmul(a, b);
    EXPECT_TRUE(all_close(out, reference_matmul(a, b), 1e-10, 1e-10)) << IntArrayRef(sa) << " @ " << IntArrayRef(sb);
    EXPECT_EQ(out.device(), device());
  }
  // The broadcast example of the docs: [3,1,4,5] @ [2,5,6] -> [3,2,4,6].
  EXPECT_EQ(matmul(randn({3, 1, 4, 5}, o), randn({2, 5, 6}, o)).sizes(), IntArrayRef({3, 2, 4, 6}));
}

TEST_P(MatmulTest, StridedOperands) {
  const TensorOptions o = opts(kFloat64);
  Tensor a = randn({9, 14}, o), b = randn({14, 13}, o);
  // Every-other-column slices have no BLAS layout and are copied; transposes are read in place.
  Tensor as = a.slice(1, 0, 14, 2);  // [9, 7], col stride 2
  Tensor bs = b.slice(0, 0, 14, 2);  // [7, 13], row stride 26
  EXPECT_TRUE(all_close(mm(as, bs), reference_matmul(as, bs), 1e-10, 1e-10));
  EXPECT_TRUE(all_close(mm(bs.t(), as.t()), reference_matmul(bs.t(), as.t()), 1e-10, 1e-10));
  // Batched, transposed in the matrix dims, and a broadcast (expanded) batch operand.
  Tensor x = randn({4, 7, 5}, o).transpose(1, 2);  // [4, 5, 7]
  Tensor y = randn({7, 3}, o).expand({4, 7, 3});
  EXPECT_TRUE(all_close(bmm(x, y), reference_matmul(x, y), 1e-10, 1e-10));
  // A batch dim permuted to the middle: non-mergeable batch strides.
  Tensor z = randn({5, 3, 2, 4}, o).permute({1, 0, 2, 3});  // [3, 5, 2, 4]
  Tensor w = randn({3, 1, 4, 6}, o);
  EXPECT_TRUE(all_close(matmul(z, w), reference_matmul(z, w), 1e-10, 1e-10));
  // A 3-D left operand whose leading dims do not fold by a view, times a 2-D right one.
  Tensor t = randn({4, 3, 5}, o).transpose(0, 1);  // [3, 4, 5]
  Tensor r = randn({5, 2}, o);
  EXPECT_TRUE(all_close(matmul(t, r), reference_matmul(t, r), 1e-10, 1e-10));
}

TEST_P(MatmulTest, Float32AndBatches) {
  // Many small matrices (the OpenMP-over-the-batch path on the CPU) and a larger threaded GEMM.
  Tensor a = randn({64, 8, 9}, opts()), b = randn({64, 9, 7}, opts());
  EXPECT_TRUE(all_close(bmm(a, b), reference_matmul(a, b), 1e-4, 1e-4));
  Tensor a2 = randn({256, 16, 17}, opts()), b2 = randn({17, 15}, opts());
  EXPECT_TRUE(all_close(matmul(a2.transpose(0, 1).transpose(0, 1), b2.expand({256, 17, 15})), reference_matmul(a2, b2),
                        1e-4, 1e-4));
  EXPECT_TRUE(all_close(bmm(a2, b2.expand({256, 17, 15})), reference_matmul(a2, b2), 1e-4, 1e-4));
  Tensor c = randn({200, 300}, opts()), d = randn({300, 250}, opts());
  EXPECT_TRUE(all_close(mm(c, d), reference_matmul(c, d), 1e-4, 1e-3));
  // Matrix-vector shapes (gemv on the CPU), including transposed and strided vectors.
  Tensor e = randn({33, 13}, opts()), f = randn({13, 1}, opts());
  EXPECT_TRUE(all_close(mm(e, f), reference_matmul(e, f), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(mm(f.t(), e.t()), reference_matmul(f.t(), e.t()), 1e-5, 1e-5));
  Tensor g = randn({13, 4}, opts()).select(1, 2);  // [13], stride 4
  EXPECT_TRUE(all_close(matmul(e, g), reference_matmul(e, g), 1e-5, 1e-5));
  EXPECT_TRUE(all_close(matmul(g, e.t()), reference_matmul(g, e.t()), 1e-5, 1e-5));
}

TEST_P(MatmulTest, EmptyDims) {
  // k == 0: an empty sum is zero (even where the output memory held garbage).
  Tensor z = mm(empty({3, 0}, opts()), empty({0, 4}, opts()));
  EXPECT_TRUE(values_are(z, {3, 4}, std::vector<double>(12, 0.0)));
  EXPECT_TRUE(values_are(bmm(empty({2, 1, 0}, opts()), empty({2, 0, 2}, opts())), {2, 1, 2}, {0, 0, 0, 0}));
  EXPECT_DOUBLE_EQ(matmul(empty({0}, opts()), empty({0}, opts())).item<double>(), 0.0);
  // Empty n or m, and an empty batch.
  EXPECT_EQ(mm(empty({0, 3}, opts()), randn({3, 4}, opts())).sizes(), IntArrayRef({0, 4}));
  EXPECT_EQ(mm(randn({2, 3}, opts()), empty({3, 0}, opts())).sizes(), IntArrayRef({2, 0}));
  EXPECT_EQ(matmul(empty({0, 2, 3}, opts()), randn({3, 4}, opts())).sizes(), IntArrayRef({0, 2, 4}));
  // addmm with k == 0 keeps beta * self.
  Tensor self = full({2, 3}, 2.0, opts());
  EXPECT_TRUE(values_are(addmm(self, empty({2, 0}, opts()), empty({0, 3}, opts()), 1.5, 3.0), {2, 3},
                         std::vector<double>(6, 3.0)));
  EXPECT_TRUE(values_are(addmm(self, empty({2, 0}, opts()), empty({0, 3}, opts()), 0.0, 3.0), {2, 3},
                         std::vector<double>(6, 0.0)));
}

TEST_P(MatmulTest, AddmmValues) {
  Tensor a = tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}).view({2, 3}).to(device());
  Tensor b = tensor({7.f, 8.f, 9.f, 10.f, 11.f, 12.f}).view({3, 2}).to(device());
  Tensor bias = tensor({1.f, -1.f}).to(device());
  // beta * bias (broadcast over rows) + alpha * a @ b.
  EXPECT_TRUE(values_are(addmm(bias, a, b), {2, 2}, {59, 63, 140, 153}));
  EXPECT_TRUE(values_are(addmm(bias, a, b, 2, 0.5), {2, 2}, {31, 30, 71.5, 75}));
  EXPECT_TRUE(values_are(addmm(bias.view({1, 2}), a, b), {2, 2}, {59, 63, 140, 153}));
  EXPECT_TRUE(values_are(addmm(tensor({10.f, 20.f}).view({2, 1}).to(device()), a, b), {2, 2}, {68, 74, 159, 174}));
  EXPECT_TRUE(values_are(addmm(full({}, 1.0, opts()), a, b), {2, 2}, {59, 65, 140, 155}));
  // beta == 0 ignores self entirely, NaNs included.
  Tensor nan_self = full({2, 2}, std::numeric_limits<double>::quiet_NaN(), opts());
  EXPECT_TRUE(values_are(addmm(nan_self, a, b, 0, 1), {2, 2}, {58, 64, 139, 154}));
}

TEST_P(MatmulTest, Gradients) {
  const Device dev = device();
  auto leaf = [&](IntArrayRef s) { return rand_leaf(s, dev); };
  // mm with odd sizes, and with transposed (non-contiguous) operands.
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return mm(x[0], x[1]); }, {leaf({7, 13}), leaf({13, 5})}));
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& x) { return mm(x[0].t(), x[1].t()); }, {leaf({13, 7}), leaf({5, 13})}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return mm(x[0].slice(1, 0, 13, 2), x[1]); },
                        {leaf({5, 13}), leaf({7, 3})}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return bmm(x[0], x[1].transpose(1, 2)); },
                        {leaf({3, 7, 5}), leaf({3, 4, 5})}));
  // matmul: every rank combination, broadcasting batch dims, folded and unfolded paths.
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> cases = {{{7}, {7}},
                                                                                    {{7}, {7, 3}},
                                                                                    {{3, 7}, {7}},
                                                                                    {{3, 7}, {7, 5}},
                                                                                    {{5}, {2, 5, 3}},
                                                                                    {{2, 3, 5}, {5}},
                                                                                    {{2, 3, 5}, {5, 4}},
                                                                                    {{3, 5}, {2, 5, 4}},
                                                                                    {{2, 3, 5}, {2, 5, 4}},
                                                                                    {{3, 1, 2, 5}, {2, 5, 3}},
                                                                                    {{1, 2, 3}, {2, 1, 3, 2}}};
  for (const auto& [sa, sb] : cases)
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {leaf(sa), leaf(sb)}))
        << IntArrayRef(sa) << " @ " << IntArrayRef(sb);
  // Only one side requiring grad; a 3-D operand that does not fold by a view (the batched path).
  Tensor fixed = rand(IntArrayRef{5, 4}, opts(kFloat64));
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& x) { return matmul(x[0].transpose(0, 1), fixed); }, {leaf({3, 2, 5})}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return matmul(fixed.t(), x[0]); }, {leaf({2, 5, 3})}));
}

TEST_P(MatmulTest, AddmmGradients) {
  const Device dev = device();
  auto leaf = [&](IntArrayRef s) { return rand_leaf(s, dev); };
  auto f = [](double beta, double alpha) {
    return [=](const std::vector<Tensor>& x) { return addmm(x[0], x[1], x[2], beta, alpha); };
  };
  EXPECT_TRUE(gradcheck(f(1, 1), {leaf({7, 5}), leaf({7, 13}), leaf({13, 5})}));
  EXPECT_TRUE(gradcheck(f(0.5, 2), {leaf({5}), leaf({7, 13}), leaf({13, 5})}));
  EXPECT_TRUE(gradcheck(f(-1.5, 0.25), {leaf({7, 1}), leaf({7, 3}), leaf({3, 5})}));
  EXPECT_TRUE(gradcheck(f(2, 1), {leaf({}), leaf({3, 4}), leaf({4, 2})}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return addmm(x[0], x[1].t(), x[2], 1, 3); },
                        {leaf({1, 5}), leaf({13, 7}), leaf({13, 5})}));
}

TEST_P(MatmulTest, BackwardNames) {
  Tensor a = rand_leaf({3, 4}, device()), b = rand_leaf({4, 2}, device());
  EXPECT_EQ(mm(a, b).grad_fn()->name(), "MmBackward");
  EXPECT_EQ(addmm(rand_leaf({2}, device()), a, b).grad_fn()->name(), "AddmmBackward");
  EXPECT_EQ(bmm(a.unsqueeze(0), b.unsqueeze(0)).grad_fn()->name(), "BmmBackward");
  // Only a needs a gradient: b is not saved, and backward still runs.
  Tensor c = rand(IntArrayRef{4, 2}, opts(kFloat64));
  mm(a, c).sum().backward();
  EXPECT_TRUE(all_close(a.grad(), c.sum({1}).unsqueeze(0).expand({3, 4}), 1e-12, 1e-12));
}

TEST_P(MatmulTest, Errors) {
  EXPECT_EMBER_ERROR(matmul(randn({64, 784}, opts()), randn({100, 10}, opts())),
                     "matmul: shapes [64, 784] and [100, 10] cannot be multiplied");
  EXPECT_EMBER_ERROR(mm(randn({2, 3}, opts()), randn({4, 5}, opts())),
                     "mm: shapes [2, 3] and [4, 5] cannot be multiplied");
  EXPECT_EMBER_ERROR(bmm(randn({2, 2, 3}, opts()), randn({2, 4, 5}, opts())),
                     "bmm: shapes [2, 2, 3] and [2, 4, 5] cannot be multiplied");
  EXPECT_EMBER_ERROR(bmm(randn({2, 2, 3}, opts()), randn({5, 3, 5}, opts())),
                     "bmm: shapes [2, 2, 3] and [5, 3, 5] cannot be multiplied", "batch");
  EXPECT_EMBER_ERROR(matmul(randn({2, 2, 3}, opts()), randn({5, 3, 5}, opts())),
                     "matmul: shapes [2, 2, 3] and [5, 3, 5] cannot be multiplied", "batch");
  EXPECT_EMBER_ERROR(matmul(randn({3}, opts()), randn({4}, opts())), "matmul: shapes [3] and [4] cannot be multiplied");
  EXPECT_EMBER_ERROR(matmul(randn({2, 3}, opts()), randn({4}, opts())), "matmul: shapes [2, 3] and [4]");
  EXPECT_EMBER_ERROR(matmul(full({}, 1.0, opts()), randn({3}, opts())), "matmul", "at least 1 dim", "[]");
  EXPECT_EMBER_ERROR(mm(randn({3}, opts()), randn({3, 2}, opts())), "mm", "2-D", "[3]");
  EXPECT_EMBER_ERROR(bmm(randn({3, 2}, opts()), randn({2, 2}, opts())), "bmm", "3-D", "[3, 2]");
  EXPECT_EMBER_ERROR(mm(randn({2, 3}, opts()), randn({3, 2}, opts(kFloat64))), "mm", "dtype", "float32", "float64");
  EXPECT_EMBER_ERROR(matmul(ones({2, 3}, opts(kInt64)), ones({3, 2}, opts(kInt64))), "matmul", "floating-point",
                     "int64");
  EXPECT_EMBER_ERROR(addmm(randn({3}, opts()), randn({2, 3}, opts()), randn({3, 4}, opts())), "addmm", "[3]",
                     "does not broadcast", "[2, 4]");
  EXPECT_EMBER_ERROR(addmm(randn({4}, opts(kFloat64)), randn({2, 3}, opts()), randn({3, 4}, opts())), "addmm",
                     "float64", "float32");
  EXPECT_EMBER_ERROR(addmm(randn({4}, opts()), randn({2, 3}, opts()), randn({5, 4}, opts())),
                     "addmm: shapes [2, 3] and [5, 4] cannot be multiplied");
}

// ---- oneDNN's sgemm and OpenBLAS (Note [CPU GEMM libraries] in kernels/cpu/blas.cpp) -----------------

// Runs the CPU float32 products of its lifetime on one library, then puts back the one before.
class GemmLibraryScope {
 public:
  explicit GemmLibraryScope(cpu::CpuGemmLibrary l) : saved_(cpu::gemm_library()) { cpu::set_gemm_library(l); }
  ~GemmLibraryScope() { cpu::set_gemm_library(saved_); }
  GemmLibraryScope(const GemmLibraryScope&) = delete;
  GemmLibraryScope& operator=(const GemmLibraryScope&) = delete;

 private:
  cpu::CpuGemmLibrary saved_;
};

// float32 products on oneDNN against OpenBLAS's and against the float64 loops: every transpose
// combination (views, not copies), padded leading dimensions, batches small enough for the OpenMP split
// and large enough for a threaded GEMM, addmm's beta and alpha, and beta == 0 over an output of NaNs.
TEST(MatmulCpuLibraries, OneDnnMatchesOpenBlasAndFloat64) {
  // Without oneDNN (EMBER_DNNL off or not found) kOneDnn falls back to OpenBLAS (onednn::sgemm declines),
  // and the checks below hold for that path too.
  manual_seed(5);
  struct Case {
    int64_t batch, n, k, m;
    bool ta, tb;
  };
  const std::vector<Case> cases = {{1, 64, 784, 256, false, true},  {1, 256, 64, 784, true, false},
                                   {1, 64, 256, 10, false, true},   {1, 7, 5, 3, true, true},
                                   {1, 200, 300, 250, false, false}, {64, 8, 9, 7, false, false},
                                   {3, 33, 17, 29, true, true},      {1, 2, 1, 2, false, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " n " << c.n << " k " << c.k << " m " << c.m << " ta "
                                    << c.ta << " tb " << c.tb);
    // A transposed operand is the transpose of a stored [.., k, n] (or [.., m, k]) tensor; row-major ones are
    // column slices of a wider tensor, so their leading dimension exceeds their width.
    const Tensor a = c.ta ? randn({c.batch, c.k, c.n}).transpose(1, 2) : randn({c.batch, c.n, c.k + 3}).narrow(2, 1, c.k);
    const Tensor b = c.tb ? randn({c.batch, c.m, c.k}).transpose(1, 2) : randn({c.batch, c.k, c.m + 2}).narrow(2, 0, c.m);
    const Tensor ref = reference_matmul(a, b);
    Tensor onednn, openblas;
    {
      GemmLibraryScope s(cpu::CpuGemmLibrary::kOpenBlas);
      openblas = bmm(a, b);
    }
    {
      GemmLibraryScope s(cpu::CpuGemmLibrary::kOneDnn);
      onednn = bmm(a, b);
    }
    const double tol = 1e-5 * std::sqrt(static_cast<double>(c.k));
    EXPECT_TRUE(all_close(onednn, ref, tol, tol));
    EXPECT_TRUE(all_close(onednn, openblas, tol, tol));
  }
  GemmLibraryScope s(cpu::CpuGemmLibrary::kOneDnn);
  const Tensor a = randn({5, 6}), b = randn({6, 4}), self = randn({5, 4});
  EXPECT_TRUE(all_close(addmm(self, a, b, 0.5, 2.0),
                        self.to(kFloat64) * 0.5 + reference_matmul(a, b) * 2.0, 1e-5, 1e-5));
  const Tensor nan_self = full({5, 4}, std::numeric_limits<double>::quiet_NaN());
  EXPECT_TRUE(all_close(addmm(nan_self, a, b, 0, 1), reference_matmul(a, b), 1e-5, 1e-5));
}

TEST(MatmulDevices, LogicalCpuDeviceMismatch) {
  Tensor a = randn({2, 3}), b = randn({3, 2}).to(Device::cpu(1));
  EXPECT_EMBER_ERROR(mm(a, b), "mm", "same device", "cpu:0", "cpu:1");
  EXPECT_EMBER_ERROR(matmul(a, b), "matmul", "cpu:0", "cpu:1");
  EXPECT_EMBER_ERROR(addmm(randn({2}).to(Device::cpu(2)), a, a.t()), "addmm", "cpu:0", "cpu:2");
  // On one logical device everything works and the result stays there.
  Tensor c = randn({2, 3}).to(Device::cpu(1));
  EXPECT_EQ(mm(c, b).device(), Device::cpu(1));
}

TEST(MatmulDevices, CudaMatchesCpu_CUDA) {
  EMBER_REQUIRE_CUDA();
  cuda::set_allow_tf32(false);
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> cases = {
      {{33, 13}, {13, 7}},       {{7}, {7, 13}},      {{13, 7}, {7}},
      {{3, 1, 4, 5}, {2, 5, 6}}, {{4, 7, 5}, {5, 3}}, {{2, 3, 5, 7}, {3, 7, 2}},
      {{257, 129}, {129, 65}},   {{7}, {7}}};
  for (DType dt : {kFloat32, kFloat64}) {
    const double tol = dt == kFloat32 ? 1e-4 : 1e-10;
    for (const auto& [sa, sb] : cases) {
      Tensor a = randn(sa, TensorOptions(dt)), b = randn(sb, TensorOptions(dt));
      Tensor g = matmul(a.cuda(), b.cuda());
      EXPECT_TRUE(g.is_cuda());
      EXPECT_TRUE(all_close(g.cpu(), matmul(a, b), tol, tol)) << IntArrayRef(sa) << " @ " << IntArrayRef(sb);
    }
    // Transposed, sliced and expanded operands; addmm with a broadcast bias; k == 0.
    Tensor a = randn({13, 9}, TensorOptions(dt)), b = randn({7, 9}, TensorOptions(dt));
    EXPECT_TRUE(all_close(mm(a.cuda(), b.cuda().t()).cpu(), mm(a, b.t()), tol, tol));
    EXPECT_TRUE(all_close(mm(a.cuda().slice(1, 0, 9, 2), b.cuda().t().slice(0, 0, 9, 2)).cpu(),
                          mm(a.slice(1, 0, 9, 2), b.t().slice(0, 0, 9, 2)), tol, tol));
    Tensor x = randn({4, 13, 9}, TensorOptions(dt)), w = randn({9, 5}, TensorOptions(dt));
    EXPECT_TRUE(all_close(bmm(x.cuda(), w.cuda().expand({4, 9, 5})).cpu(), bmm(x, w.expand({4, 9, 5})), tol, tol));
    Tensor bias = randn({5}, TensorOptions(dt));
    Tensor m2 = randn({9, 5}, TensorOptions(dt));
    EXPECT_TRUE(
        all_close(addmm(bias.cuda(), a.cuda(), m2.cuda(), 0.5, 2.0).cpu(), addmm(bias, a, m2, 0.5, 2.0), tol, tol));
    EXPECT_TRUE(all_close(mm(empty({3, 0}, TensorOptions(dt)).cuda(), empty({0, 2}, TensorOptions(dt)).cuda()).cpu(),
                          zeros({3, 2}, TensorOptions(dt))));
  }
  // Gradients on the device against the CPU's.
  Tensor a = randn({5, 7}, TensorOptions(kFloat64)), b = randn({3, 7, 4}, TensorOptions(kFloat64));
  Tensor ac = a.cuda().detach().requires_grad_(), bc = b.cuda().detach().requires_grad_();
  Tensor ah = a.detach().requires_grad_(), bh = b.detach().requires_grad_();
  matmul(ac, bc).sum().backward();
  matmul(ah, bh).sum().backward();
  EXPECT_TRUE(all_close(ac.grad().cpu(), ah.grad(), 1e-10, 1e-10));
  EXPECT_TRUE(all_close(bc.grad().cpu(), bh.grad(), 1e-10, 1e-10));
}

// Linear's forward on CUDA: addmm(bias, x, W^T) with beta 1 adds the bias in cuBLASLt's epilogue (Note
// [cuBLASLt bias epilogue]); the cases it declines (one row, a misaligned bias, strided operands) fall back.
TEST(MatmulDevices, BiasEpilogueMatchesCpu_CUDA) {
  EMBER_REQUIRE_CUDA();
  cuda::set_allow_tf32(false);
  for (DType dt : {kFloat32, kFloat64}) {
    const double tol = dt == kFloat32 ? 1e-4 : 1e-10;
    const TensorOptions o(dt);
    for (const auto& [n, k, m] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {64, 784, 256}, {33, 13, 7}, {2, 1, 3}, {1, 9, 5}, {513, 65, 129}}) {
      Tensor x = randn({n, k}, o), w = randn({m, k}, o), bias = randn({m}, o);
      Tensor xc = x.cuda(), wc = w.cuda(), bc = bias.cuda();
      EXPECT_TRUE(all_close(addmm(bc, xc, wc.t()).cpu(), addmm(bias, x, w.t()), tol, tol)) << n << "x" << k << "x" << m;
      EXPECT_TRUE(all_close(addmm(bc.view({1, m}), xc, wc.t(), 1, 2.5).cpu(), addmm(bias, x, w.t(), 1, 2.5), tol, tol));
      EXPECT_TRUE(all_close(addmm(bc, xc.t().contiguous().t(), wc.t()).cpu(), addmm(bias, x, w.t()), tol, tol));
      EXPECT_TRUE(all_close(addmm(bc, xc, wc.t().contiguous()).cpu(), addmm(bias, x, w.t()), tol, tol));
      // A bias that starts 1 element into its storage (4 or 8 bytes: below the epilogue's alignment).
      Tensor long_bias = randn({m + 1}, o);
      EXPECT_TRUE(all_close(addmm(long_bias.cuda().narrow(0, 1, m), xc, wc.t()).cpu(),
                            addmm(long_bias.narrow(0, 1, m), x, w.t()), tol, tol));
    }
  }
  // With gradients.
  Tensor x = randn({16, 10}, TensorOptions(kFloat64)), w = randn({6, 10}, TensorOptions(kFloat64));
  Tensor b = randn({6}, TensorOptions(kFloat64));
  Tensor wc = w.cuda().requires_grad_(), bc = b.cuda().requires_grad_();
  Tensor wh = w.clone().requires_grad_(), bh = b.clone().requires_grad_();
  Tensor yc = addmm(bc, x.cuda(), wc.t()), yh = addmm(bh, x, wh.t());
  EXPECT_TRUE(all_close(yc.cpu(), yh, 1e-10, 1e-10));
  (yc * yc).sum().backward();
  (yh * yh).sum().backward();
  EXPECT_TRUE(all_close(wc.grad().cpu(), wh.grad(), 1e-9, 1e-9));
  EXPECT_TRUE(all_close(bc.grad().cpu(), bh.grad(), 1e-9, 1e-9));
}

TEST(MatmulDevices, ThreadsAndStreams_CUDA) {
  EMBER_REQUIRE_CUDA();
  // cuBLAS handles are per (device, thread) and workspaces per stream: threads on their own streams
  // run products concurrently, and handles of finished threads are destroyed (Note [cuBLAS handle lifetime]).
  Tensor a = randn({129, 65}), b = randn({65, 33});
  const Tensor expected = mm(a, b);
  std::vector<Tensor> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      cuda::StreamGuard guard(cuda::get_stream_from_pool(0));
      Tensor r;
      for (int k = 0; k < 10; ++k) r = mm(a.cuda(), b.cuda());
      cuda::current_stream(0).synchronize();
      results[static_cast<size_t>(t)] = r;
    });
  }
  for (std::thread& th : threads) th.join();
  for (const Tensor& r : results) EXPECT_TRUE(all_close(r.cpu(), expected, 1e-4, 1e-4));
}

TEST(MatmulDevices, HalfPrecision_CUDA) {
  EMBER_REQUIRE_CUDA();
  Tensor a = randn({33, 64}), b = randn({64, 17});
  for (DType dt : {kFloat16, kBFloat16}) {
    Tensor g = mm(a.to(dt).cuda(), b.to(dt).cuda());
    EXPECT_EQ(g.dtype(), dt);
    EXPECT_TRUE(all_close(g.cpu().to(kFloat32), mm(a.to(dt).to(kFloat32), b.to(dt).to(kFloat32)), 2e-2, 2e-1));
  }
  EXPECT_EMBER_ERROR(mm(a.to(kFloat16), b.to(kFloat16)), "mm", "float16", "CUDA only");
}

EMBER_INSTANTIATE_DEVICE_TESTS(MatmulTest);

}  // namespace
}  // namespace ember
