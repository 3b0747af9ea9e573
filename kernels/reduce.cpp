// Reductions (sum, mean, var, max/min, argmax/argmin, any/all): dim and dtype rules, output shapes, the
// device switch and the backward nodes.
#include "kernels/cpu/reduce.h"

#include <algorithm>
#include <tuple>

#include "kernels/cuda/reduce.h"
#include "kernels/ops.h"
#include "runtime/autograd/node.h"
#include "runtime/cuda/cuda.h"

namespace ember {

using autograd::Node;
using autograd::SavedVariable;
using autograd::tensor_list;

namespace {

using DimMask = uint32_t;  // bit d set: dim d is reduced
static_assert(ReduceGeometry::kMaxDims <= 32, "DimMask holds one bit per dim");

bool reduced(DimMask mask, int64_t d) { return (mask >> d) & 1u; }

// Wraps the dims, rejecting duplicates; an empty list means every dim.
DimMask dim_mask(const char* op, const Tensor& t, IntArrayRef dims) {
  const int64_t nd = t.dim();
  EMBER_CHECK(nd <= ReduceGeometry::kMaxDims, op, ": tensors of more than ", ReduceGeometry::kMaxDims,
              " dims are not supported (got shape ", t.sizes(), ")");
  const DimMask all = nd == 0 ? 0u : static_cast<DimMask>((uint64_t{1} << nd) - 1);
  if (dims.empty()) return all;
  DimMask mask = 0;
  for (const int64_t d : dims) {
    const int64_t w = wrap_dim(op, d, nd);
    EMBER_CHECK(!reduced(mask, w), op, ": dim ", w, " appears more than once in the dims list ", dims);
    mask |= DimMask{1} << w;
  }
  return mask & all;  // a 0-d tensor accepts dim 0 / -1 and has nothing to reduce
}

DimMask single_dim(const char* op, const Tensor& t, int64_t dim) {
  const int64_t d = wrap_dim(op, dim, t.dim());
  return t.dim() == 0 ? 0u : DimMask{1} << d;
}

DimVector reduced_shape(const Tensor& t, DimMask mask, bool keepdim) {
  DimVector shape;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (!reduced(mask, d))
      shape.push_back(t.size(d));
    else if (keepdim)
      shape.push_back(1);
  }
  return shape;
}

int64_t reduced_count(const Tensor& t, DimMask mask) {
  DimVector sizes;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (reduced(mask, d)) sizes.push_back(t.size(d));
  return product(sizes);  // 0 if any is (an empty tensor's other sizes may multiply past int64)
}

DimVector mask_dims(const Tensor& t, DimMask mask) {
  DimVector dims;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (reduced(mask, d)) dims.push_back(d);
  return dims;
}

// a * b == c, false where a * b overflows (an empty tensor's saturated strides, contiguous_strides).
bool product_is(int64_t a, int64_t b, int64_t c) {
  int64_t p = 0;
  return !__builtin_mul_overflow(a, b, &p) && p == c;
}

// Note [Reduction geometry]: kept dims in output order, reduced dims in memory order, both coalesced.
// Called with at least one output (run_reduce): the kept sizes then multiply within int64, and so do
// the reduced ones unless one of them is 0 (R = 0, handled below).
ReduceGeometry make_geometry(const Tensor& in, DimMask mask) {
  struct Dim {
    int64_t size, stride;
  };
  ReduceGeometry g;
  g.out_ndim = 0;
  g.red_ndim = 0;
  const int64_t M = product(reduced_shape(in, mask, /*keepdim=*/false));
  const int64_t R = reduced_count(in, mask);
  Dim red[ReduceGeometry::kMaxDims];
  int nr = 0;
  for (int64_t d = in.dim() - 1; d >= 0; --d) {
    const int64_t size = in.size(d), stride = in.stride(d);
    if (reduced(mask, d)) {
      if (size != 1) red[nr++] = {size, stride};
      continue;
    }
    if (size == 1) continue;
    const int k = g.out_ndim - 1;
    if (k >= 0 && product_is(g.out_strides[k], g.out_sizes[k], stride)) {
      g.out_sizes[k] *= size;
    } else {
      g.out_sizes[k + 1] = size;
      g.out_strides[k + 1] = stride;
      ++g.out_ndim;
    }
  }
  if (R == 0) {
    nr = 1;
    red[0] = {0, 0};
  }
  std::stable_sort(red, red + nr, [](const Dim& a, const Dim& b) { return a.stride < b.stride; });
  for (int i = 0; i < nr; ++i) {
    const int k = g.red_ndim - 1;
    if (k >= 0 && product_is(g.red_strides[k], g.red_sizes[k], red[i].stride)) {
      g.red_sizes[k] *= red[i].size;
    } else {
      g.red_sizes[k + 1] = red[i].size;
      g.red_strides[k + 1] = red[i].stride;
      ++g.red_ndim;
    }
  }
  if (g.out_ndim == 0) {
    g.out_ndim = 1;
    g.out_sizes[0] = 1;
    g.out_strides[0] = 0;
  }
  if (g.red_ndim == 0) {
    g.red_ndim = 1;
    g.red_sizes[0] = 1;
    g.red_strides[0] = 0;
  }
  g.num_outputs = M;
  g.reduce_size = R;
  return g;
}

// Runs the kernel: out / indices are contiguous with one element per output.
void run_reduce(const char* op, ReduceKind kind, const Tensor& in, DimMask mask, const Tensor& out,
                const Tensor& indices, double correction = 0.0) {
  if (product(reduced_shape(in, mask, /*keepdim=*/false)) == 0) return;  // no outputs (Note [Reduction geometry])
  const ReduceGeometry g = make_geometry(in, mask);
  if (in.is_cuda()) {
    cuda::check_device(in.device(), op);
    cuda::reduce(kind, in, g, out, indices, correction);
  } else {
    cpu::reduce(kind, in, g, out, indices, correction);
  }
}

void check_floating(const char* op, const Tensor& t) {
  EMBER_CHECK(t.is_floating_point(), op, ": expected a floating-point input, got ", t.dtype(), " (shape ", t.sizes(),
              "); convert it first, e.g. .to(kFloat32)");
}

void check_nonempty(const char* op, const Tensor& t) {
  EMBER_CHECK(t.numel() > 0, op, ": expected a non-empty tensor, got shape ", t.sizes(), " (the ", op,
              " of zero elements is undefined); pass a dim to reduce over a non-empty dim");
}

void check_nonempty_dim(const char* op, const Tensor& t, int64_t dim) {
  if (t.dim() == 0) return;
  const int64_t d = wrap_dim(op, dim, t.dim());
  EMBER_CHECK(t.size(d) > 0, op, ": cannot reduce over dim ", d, " of size 0 (input shape ", t.sizes(), "): the ", op,
              " of zero elements is undefined");
}

// The gradient of a reduced output, reshaped so that it broadcasts against the input (reduced dims of size 1).
Tensor unsqueeze_reduced(Tensor g, int64_t ndim, DimMask mask, bool keepdim) {
  if (keepdim) return g;
  for (int64_t d = 0; d < ndim; ++d)
    if (reduced(mask, d)) g = g.unsqueeze(d);
  return g;
}

struct SumBackward final : Node {
  DimVector sizes;
  DimMask mask = 0;
  bool keepdim = false;
  double scale = 1.0;  // mean: 1 / count
  bool mean = false;
  std::string name() const override { return mean ? "MeanBackward" : "SumBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    Tensor g = unsqueeze_reduced(grads[0], static_cast<int64_t>(sizes.size()), mask, keepdim);
    if (mean) g = g * scale;
    return {g.expand(sizes)};
  }
};

struct VarBackward final : Node {
  SavedVariable input;
  DimMask mask = 0;
  bool keepdim = false;
  double correction = 1.0;
  int64_t count = 0;
  std::string name() const override { return "VarBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor x = input.unpack(this);
    const Tensor g = unsqueeze_reduced(grads[0], x.dim(), mask, keepdim);
    // An empty dims list means every dim: also right for a 0-d input.
    const Tensor centred = x - mean(x, mask_dims(x, mask), /*keepdim=*/true);
    return {centred * (g * (2.0 / (static_cast<double>(count) - correction)))};
  }
  void release_variables() override { input.reset(); }
};

// max(dim) / min(dim): the gradient goes to the selected index only.
struct IndexReduceBackward final : Node {
  SavedVariable indices;
  DimVector sizes;
  int64_t dim = 0;
  bool keepdim = false;
  bool is_max = true;
  std::string name() const override { return is_max ? "MaxBackward" : "MinBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    Tensor g = grads[0];
    if (sizes.empty()) return {g};  // a 0-d input is its own max
    Tensor idx = indices.unpack(this);
    if (!keepdim) {
      g = g.unsqueeze(dim);
      idx = idx.unsqueeze(dim);
    }
    Tensor out = zeros(sizes, g.options());
    out.scatter_add_(dim, idx, g);
    return {out};
  }
  void release_variables() override { indices.reset(); }
};

// max() / min() of every element: ties share the gradient evenly (as PyTorch).
struct ExtremumBackward final : Node {
  SavedVariable input, result;
  bool is_max = true;
  std::string name() const override { return is_max ? "MaxBackward" : "MinBackward"; }
  tensor_list apply(tensor_list&& grads) override {
    if (!grads[0].defined() || !needs_input_grad(0)) return {Tensor()};
    const Tensor x = input.unpack(this);
    const Tensor mask = eq(x, result.unpack(this));
    const Tensor share = grads[0] / sum(mask).to(grads[0].dtype());
    return {where(mask, share, 0)};
  }
  void release_variables() override {
    input.reset();
    result.reset();
  }
};

Tensor sum_impl(const char* op, const Tensor& t, IntArrayRef dims, bool keepdim, bool mean) {
  const DimMask mask = dim_mask(op, t, dims);
  if (mean) check_floating(op, t);
  const DType dtype = t.is_floating_point() ? t.dtype() : kInt64;
  Tensor out = empty(reduced_shape(t, mask, keepdim), t.options().dtype(dtype));
  run_reduce(op, mean ? ReduceKind::Mean : ReduceKind::Sum, t, mask, out, Tensor());
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<SumBackward>();
    node->sizes = t.sizes();
    node->mask = mask;
    node->keepdim = keepdim;
    node->mean = mean;
    node->scale = 1.0 / static_cast<double>(reduced_count(t, mask));
    autograd::record(node, {&out}, {&t});
  }
  return out;
}

// max() / min() over every element.
Tensor extremum(const char* op, const Tensor& t, bool is_max) {
  check_nonempty(op, t);
  Tensor out = empty({}, t.options());
  run_reduce(op, is_max ? ReduceKind::Max : ReduceKind::Min, t, dim_mask(op, t, {}), out, Tensor());
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<ExtremumBackward>();
    node->input = SavedVariable(t);
    node->result = SavedVariable(out);
    node->is_max = is_max;
    autograd::record(node, {&out}, {&t});
  }
  return out;
}

// Values (when want_values) and int64 indices of the max/min along dim.
std::tuple<Tensor, Tensor> arg_extremum(const char* op, const Tensor& t, int64_t dim, bool keepdim, bool is_max,
                                        bool want_values) {
  const DimMask mask = single_dim(op, t, dim);
  check_nonempty_dim(op, t, dim);
  const DimVector shape = reduced_shape(t, mask, keepdim);
  Tensor values = want_values ? empty(shape, t.options()) : Tensor();
  Tensor indices = empty(shape, t.options().dtype(kInt64));
  run_reduce(op, is_max ? ReduceKind::ArgMax : ReduceKind::ArgMin, t, mask, values, indices);
  if (want_values && autograd::needs_grad(t)) {
    auto node = std::make_shared<IndexReduceBackward>();
    node->indices = SavedVariable(indices);
    node->sizes = t.sizes();
    node->dim = t.dim() == 0 ? 0 : wrap_dim(op, dim, t.dim());
    node->keepdim = keepdim;
    node->is_max = is_max;
    autograd::record(node, {&values}, {&t});
  }
  return {values, indices};
}

// max(dim) / min(dim) values: without autograd a plain value reduction, else through the indices.
Tensor extremum_dim(const char* op, const Tensor& t, int64_t dim, bool keepdim, bool is_max) {
  if (autograd::needs_grad(t)) return std::get<0>(arg_extremum(op, t, dim, keepdim, is_max, true));
  const DimMask mask = single_dim(op, t, dim);
  check_nonempty_dim(op, t, dim);
  Tensor out = empty(reduced_shape(t, mask, keepdim), t.options());
  run_reduce(op, is_max ? ReduceKind::Max : ReduceKind::Min, t, mask, out, Tensor());
  return out;
}

Tensor logical_reduce(const char* op, const Tensor& t, ReduceKind kind) {
  Tensor out = empty({}, t.options().dtype(kBool));
  run_reduce(op, kind, t, dim_mask(op, t, {}), out, Tensor());
  return out;
}

}  // namespace

Tensor sum(const Tensor& t) { return sum_impl("sum", t, {}, false, false); }
Tensor sum(const Tensor& t, IntArrayRef dims, bool keepdim) { return sum_impl("sum", t, dims, keepdim, false); }
Tensor mean(const Tensor& t) { return sum_impl("mean", t, {}, false, true); }
Tensor mean(const Tensor& t, IntArrayRef dims, bool keepdim) { return sum_impl("mean", t, dims, keepdim, true); }

Tensor var(const Tensor& t, IntArrayRef dims, bool unbiased, bool keepdim) {
  const char* op = "var";
  const DimMask mask = dim_mask(op, t, dims);
  check_floating(op, t);
  const double correction = unbiased ? 1.0 : 0.0;
  Tensor out = empty(reduced_shape(t, mask, keepdim), t.options());
  run_reduce(op, ReduceKind::Var, t, mask, out, Tensor(), correction);
  if (autograd::needs_grad(t)) {
    auto node = std::make_shared<VarBackward>();
    node->input = SavedVariable(t);
    node->mask = mask;
    node->keepdim = keepdim;
    node->correction = correction;
    node->count = reduced_count(t, mask);
    autograd::record(node, {&out}, {&t});
  }
  return out;
}

Tensor max(const Tensor& t) { return extremum("max", t, true); }
Tensor min(const Tensor& t) { return extremum("min", t, false); }
Tensor max(const Tensor& t, int64_t dim, bool keepdim) { return extremum_dim("max", t, dim, keepdim, true); }
Tensor min(const Tensor& t, int64_t dim, bool keepdim) { return extremum_dim("min", t, dim, keepdim, false); }

std::tuple<Tensor, Tensor> max_with_indices(const Tensor& t, int64_t dim, bool keepdim) {
  return arg_extremum("max", t, dim, keepdim, true, true);
}

Tensor argmax(const Tensor& t) {
  check_nonempty("argmax", t);
  Tensor flat;
  {
    NoGradGuard no_grad;  // a view or copy for the kernel only
    flat = t.reshape({t.numel()});
  }
  return std::get<1>(arg_extremum("argmax", flat, 0, false, true, false));
}
Tensor argmax(const Tensor& t, int64_t dim, bool keepdim) {
  return std::get<1>(arg_extremum("argmax", t, dim, keepdim, true, false));
}
Tensor argmin(const Tensor& t, int64_t dim, bool keepdim) {
  return std::get<1>(arg_extremum("argmin", t, dim, keepdim, false, false));
}

Tensor any(const Tensor& t) { return logical_reduce("any", t, ReduceKind::Any); }
Tensor all(const Tensor& t) { return logical_reduce("all", t, ReduceKind::All); }

}  // namespace ember
