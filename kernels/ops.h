// The op API as free functions (Tensor's methods forward here). One op family per file in kernels/.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "runtime/factory.h"
#include "runtime/tensor.h"

namespace ember {

// ---- copy and conversion (kernels/copy.cpp) ----------------------------------------------------
// dst <- src, converting dtype, crossing devices, broadcasting src. Differentiable w.r.t. src.
Tensor& copy_(Tensor& dst, const Tensor& src, bool non_blocking = false);
Tensor& fill_(Tensor& self, const Scalar& value);
Tensor to(const Tensor& t, Device device, DType dtype, bool non_blocking = false, bool copy = false);
Tensor clone(const Tensor& t);
Tensor contiguous(const Tensor& t);

// ---- views (kernels/views.cpp) ----------------------------------------------------------------
Tensor view(const Tensor& t, IntArrayRef sizes);
Tensor reshape(const Tensor& t, IntArrayRef sizes);
Tensor flatten(const Tensor& t, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor transpose(const Tensor& t, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& t, IntArrayRef dims);
Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& t, int64_t dim, int64_t index);
Tensor unsqueeze(const Tensor& t, int64_t dim);
Tensor squeeze(const Tensor& t);
Tensor squeeze(const Tensor& t, int64_t dim);
Tensor expand(const Tensor& t, IntArrayRef sizes);
Tensor as_strided(const Tensor& t, IntArrayRef sizes, IntArrayRef strides, int64_t storage_offset);
std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& t, IntArrayRef split_sizes, int64_t dim = 0);
std::vector<Tensor> unbind(const Tensor& t, int64_t dim = 0);

// ---- joins (kernels/join.cpp) -----------------------------------------------------------------
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);

// ---- element-wise (kernels/binary.cpp, kernels/unary.cpp) -------------------------------------
Tensor add(const Tensor& a, const Tensor& b, const Scalar& alpha = 1);
Tensor add(const Tensor& a, const Scalar& b);
Tensor sub(const Tensor& a, const Tensor& b, const Scalar& alpha = 1);
Tensor sub(const Tensor& a, const Scalar& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Scalar& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Scalar& b);
Tensor rsub(const Tensor& a, const Scalar& b);  // b - a
Tensor rdiv(const Tensor& a, const Scalar& b);  // b / a
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Scalar& exponent);
Tensor pow(const Tensor& a, const Tensor& exponent);
Tensor neg(const Tensor& t);
Tensor exp(const Tensor& t);
Tensor log(const Tensor& t);
Tensor log1p(const Tensor& t);
Tensor sqrt(const Tensor& t);
Tensor rsqrt(const Tensor& t);
Tensor square(const Tensor& t);
Tensor reciprocal(const Tensor& t);
Tensor abs(const Tensor& t);
Tensor sign(const Tensor& t);
Tensor sin(const Tensor& t);
Tensor cos(const Tensor& t);
Tensor relu(const Tensor& t);
Tensor sigmoid(const Tensor& t);
Tensor tanh(const Tensor& t);
// approximate: "none" (erf) or "tanh", as PyTorch.
Tensor gelu(const Tensor& t, const std::string& approximate = "none");
Tensor clamp(const Tensor& t, std::optional<Scalar> lo, std::optional<Scalar> hi);
Tensor clamp_min(const Tensor& t, const Scalar& lo);
Tensor clamp_max(const Tensor& t, const Scalar& hi);

// In place (bump the version; recorded for autograd when differentiable).
Tensor& add_(Tensor& self, const Tensor& other, const Scalar& alpha = 1);
Tensor& add_(Tensor& self, const Scalar& other);
Tensor& sub_(Tensor& self, const Tensor& other, const Scalar& alpha = 1);
Tensor& sub_(Tensor& self, const Scalar& other);
Tensor& mul_(Tensor& self, const Tensor& other);
Tensor& mul_(Tensor& self, const Scalar& other);
Tensor& div_(Tensor& self, const Tensor& other);
Tensor& div_(Tensor& self, const Scalar& other);
Tensor& clamp_(Tensor& self, std::optional<Scalar> lo, std::optional<Scalar> hi);
Tensor& relu_(Tensor& self);

// ---- comparisons and selection (kernels/compare.cpp) -------------------------------------------
// Masks are kBool tensors.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Scalar& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Scalar& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Scalar& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Scalar& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Scalar& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Scalar& b);
Tensor logical_not(const Tensor& t);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
// mask ? a : b with broadcasting; differentiable w.r.t. a and b.
Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& mask, const Tensor& a, const Scalar& b);
Tensor where(const Tensor& mask, const Scalar& a, const Tensor& b);
Tensor masked_fill(const Tensor& t, const Tensor& mask, const Scalar& value);
Tensor& masked_fill_(Tensor& t, const Tensor& mask, const Scalar& value);
// Whether all elements are within atol + rtol * |b| of b (NaNs unequal).
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);
bool equal(const Tensor& a, const Tensor& b);

// ---- reductions (kernels/reduce.cpp) ----------------------------------------------------------
// Empty dims = all dims. sum of integral/bool tensors gives kInt64 (as PyTorch).
Tensor sum(const Tensor& t);
Tensor sum(const Tensor& t, IntArrayRef dims, bool keepdim = false);
Tensor mean(const Tensor& t);
Tensor mean(const Tensor& t, IntArrayRef dims, bool keepdim = false);
Tensor var(const Tensor& t, IntArrayRef dims, bool unbiased = true, bool keepdim = false);
Tensor max(const Tensor& t);
Tensor max(const Tensor& t, int64_t dim, bool keepdim = false);  // values
std::tuple<Tensor, Tensor> max_with_indices(const Tensor& t, int64_t dim, bool keepdim = false);
Tensor min(const Tensor& t);
Tensor min(const Tensor& t, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& t);  // over the flattened tensor
Tensor argmax(const Tensor& t, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& t, int64_t dim, bool keepdim = false);
Tensor any(const Tensor& t);
Tensor all(const Tensor& t);

// ---- softmax (kernels/softmax.cpp) ------------------------------------------------------------
Tensor softmax(const Tensor& t, int64_t dim);
Tensor log_softmax(const Tensor& t, int64_t dim);

// ---- matrix products (kernels/matmul.cpp) -----------------------------------------------------
Tensor matmul(const Tensor& a, const Tensor& b);  // numpy/PyTorch matmul with batch broadcasting
Tensor mm(const Tensor& a, const Tensor& b);      // [n, k] x [k, m]
Tensor bmm(const Tensor& a, const Tensor& b);     // [b, n, k] x [b, k, m]
// beta * self + alpha * (a @ b), 2-D (Linear's fused form).
Tensor addmm(const Tensor& self, const Tensor& a, const Tensor& b, const Scalar& beta = 1, const Scalar& alpha = 1);

// ---- indexing (kernels/index.cpp) -------------------------------------------------------------
Tensor index_select(const Tensor& t, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& t, int64_t dim, const Tensor& index);
Tensor scatter_add(const Tensor& t, int64_t dim, const Tensor& index, const Tensor& src);
Tensor& scatter_add_(Tensor& t, int64_t dim, const Tensor& index, const Tensor& src);
Tensor index_add(const Tensor& t, int64_t dim, const Tensor& index, const Tensor& source, const Scalar& alpha = 1);
Tensor& index_add_(Tensor& t, int64_t dim, const Tensor& index, const Tensor& source, const Scalar& alpha = 1);
Tensor& index_fill_(Tensor& t, int64_t dim, const Tensor& index, const Scalar& value);
// [*] int64 class indices -> [*, num_classes] int64 (num_classes = -1: max + 1, which syncs).
Tensor one_hot(const Tensor& index, int64_t num_classes = -1);

// ---- random (kernels/random.cpp) --------------------------------------------------------------
Tensor& uniform_(Tensor& t, double from = 0.0, double to = 1.0);
Tensor& normal_(Tensor& t, double mean = 0.0, double std = 1.0);
Tensor& bernoulli_(Tensor& t, double p);

}  // namespace ember
