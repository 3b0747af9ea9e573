// Smoke test of the LibTorch oracle: ember and LibTorch link into one binary and agree on a small graph.
#include "tests/torch/oracle.h"

namespace ember {
namespace {

using namespace oracle;

TEST(TorchOracle, RoundTripKeepsValuesAndDtype) {
  manual_seed(3);
  for (DType dtype : {kFloat32, kFloat64, kInt64}) {
    Tensor x = dtype == kInt64 ? randint(-50, 50, {3, 5}) : randn({3, 5}).to(dtype);
    at::Tensor tx = to_torch(x);
    EXPECT_EQ(tx.scalar_type(), oracle::to_torch_dtype(dtype));
    Tensor back = from_torch(tx);
    EXPECT_EQ(back.dtype(), dtype);
    EXPECT_TRUE(all_close(back, tx, 0, 0));
  }
}

// Both libraries call into OpenBLAS (ember directly, LibTorch through libblas.so.3) and both use libgomp;
// a float64 matmul chain with its gradients must agree to rounding.
TEST(TorchOracle, MatmulReluSumValueAndGradients) {
  manual_seed(7);
  Tensor a = randn({13, 33}, TensorOptions().dtype(kFloat64)).requires_grad_();
  Tensor b = randn({33, 7}, TensorOptions().dtype(kFloat64)).requires_grad_();
  at::Tensor ta = to_torch(a).requires_grad_();
  at::Tensor tb = to_torch(b).requires_grad_();

  Tensor loss = relu(a.matmul(b)).pow(2).sum();
  at::Tensor tloss = at::relu(ta.matmul(tb)).pow(2).sum();
  EXPECT_TRUE(all_close(loss, tloss, 1e-12, 1e-12));

  loss.backward();
  tloss.backward();
  EXPECT_TRUE(all_close(a.grad(), ta.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(b.grad(), tb.grad(), 1e-12, 1e-12));
}

}  // namespace
}  // namespace ember
