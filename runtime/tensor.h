// Tensor: a shared handle to a strided view of a Storage, with the whole method API of api.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "runtime/array_ref.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/scalar.h"
#include "runtime/storage.h"
#include "runtime/tensor_options.h"

namespace ember {

class Tensor;
namespace autograd {
class Node;
struct AutogradMeta;
}  // namespace autograd
namespace cuda {
class Stream;
}

// The shared state behind a Tensor handle. Views share `storage`; each view has its own
// sizes, strides (in elements) and offset (in elements).
struct TensorImpl {
  TensorImpl(StoragePtr storage, IntArrayRef sizes, IntArrayRef strides, int64_t offset, DType dtype);
  ~TensorImpl();

  StoragePtr storage;
  DimVector sizes;
  DimVector strides;
  int64_t offset = 0;
  int64_t numel = 0;
  DType dtype = kFloat32;
  Device device;
  bool contiguous = true;
  std::unique_ptr<autograd::AutogradMeta> autograd;  // created on first use
  // Views (Note [In-place on views]): the tensor this one is a view of (the root of a chain of views,
  // never itself a view), whether grad mode was on when the view was made, and the storage version
  // at which the view's autograd history was last made consistent with its base's.
  std::shared_ptr<TensorImpl> view_base;
  bool view_made_with_grad = false;
  std::atomic<uint32_t> view_version{0};

  // Recomputes numel and contiguity after sizes/strides changed.
  void refresh();
  void* data() const {
    char* base = static_cast<char*>(storage->data());
    // An empty view may sit at an offset into an empty storage, whose data is null: no arithmetic on null.
    return base == nullptr ? nullptr : base + offset * static_cast<int64_t>(element_size(dtype));
  }
};

// Contiguous (row-major) strides for `sizes`.
DimVector contiguous_strides(IntArrayRef sizes);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- identity and metadata ----------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  long use_count() const { return impl_.use_count(); }

  IntArrayRef sizes() const { return checked()->sizes; }
  IntArrayRef strides() const { return checked()->strides; }
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(checked()->sizes.size()); }
  int64_t ndimension() const { return dim(); }
  int64_t numel() const { return checked()->numel; }
  int64_t storage_offset() const { return checked()->offset; }
  DType dtype() const { return checked()->dtype; }
  DType scalar_type() const { return dtype(); }
  Device device() const { return checked()->device; }
  TensorOptions options() const { return TensorOptions().dtype(dtype()).device(device()); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_cpu() const { return device().is_cpu(); }
  bool is_contiguous() const { return checked()->contiguous; }
  bool is_floating_point() const { return ember::is_floating_point(dtype()); }
  bool is_pinned() const { return checked()->storage->is_pinned(); }
  size_t element_size() const { return ember::element_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  const StoragePtr& storage() const { return checked()->storage; }
  // Version counter shared by every view of this storage (bumped by in-place writes).
  uint32_t version() const { return checked()->storage->version(); }
  // Whether the two tensors view the same storage.
  bool is_alias_of(const Tensor& o) const { return storage() == o.storage(); }
  // Whether this tensor was made by a view op (view, slice, select, t, expand, ...; not detach), and
  // the tensor it views (the first non-view one up the chain; undefined for a non-view), as
  // LibTorch's is_view() and _base().
  bool is_view() const { return checked()->view_base != nullptr; }
  Tensor _base() const { return Tensor(checked()->view_base); }

  // Raw element pointers: host tensors only (CUDA tensors throw; use to_vector or cpu()).
  template <class T>
  T* data_ptr() const;
  void* data_ptr() const;
  // Device pointer for any device (kernels use this).
  void* raw_data() const { return checked()->data(); }

  // The single value of a one-element tensor; waits for the device.
  template <class T>
  T item() const;
  Scalar item() const;
  // The elements in row-major order (converted to T), on the host.
  template <class T>
  std::vector<T> to_vector() const;
  std::string str() const;  // what operator<< prints
  std::string shape_str() const;

  // ---- device and dtype ---------------------------------------------------------------------
  // Onto the tensor's own device and dtype `to` returns the same tensor (no copy) unless copy.
  Tensor to(Device device, bool non_blocking = false, bool copy = false) const;
  Tensor to(DType dtype, bool non_blocking = false, bool copy = false) const;
  Tensor to(Device device, DType dtype, bool non_blocking = false, bool copy = false) const;
  Tensor to(const TensorOptions& options, bool non_blocking = false, bool copy = false) const;
  // cuda() moves to the thread's current CUDA device (cuda:0 unless a DeviceGuard says otherwise).
  Tensor cuda(bool non_blocking = false) const;
  Tensor cuda(int index, bool non_blocking = false) const;
  Tensor cpu() const;
  Tensor pin_memory() const;
  // Tells the CUDA caching allocator that `stream` also uses this tensor's memory.
  void record_stream(const cuda::Stream& stream) const;

  // ---- views (share storage) ----------------------------------------------------------------
  Tensor view(IntArrayRef sizes) const;
  Tensor view_as(const Tensor& other) const { return view(other.sizes()); }
  Tensor reshape(IntArrayRef sizes) const;
  Tensor reshape_as(const Tensor& other) const { return reshape(other.sizes()); }
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor unflatten(int64_t dim, IntArrayRef sizes) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const;
  Tensor permute(IntArrayRef dims) const;
  Tensor movedim(int64_t source, int64_t destination) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor operator[](int64_t index) const { return select(0, index); }
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(IntArrayRef sizes) const;
  Tensor expand_as(const Tensor& other) const { return expand(other.sizes()); }
  Tensor as_strided(IntArrayRef sizes, IntArrayRef strides, int64_t storage_offset) const;
  Tensor contiguous() const;
  std::vector<Tensor> chunk(int64_t chunks, int64_t dim = 0) const;
  std::vector<Tensor> split(int64_t split_size, int64_t dim = 0) const;
  std::vector<Tensor> split(IntArrayRef split_sizes, int64_t dim = 0) const;
  std::vector<Tensor> split_with_sizes(IntArrayRef split_sizes, int64_t dim = 0) const;
  std::vector<Tensor> unbind(int64_t dim = 0) const;
  // A copy in storage of its own (differentiable).
  Tensor clone() const;

  // ---- in place -----------------------------------------------------------------------------
  Tensor& fill_(const Scalar& value);
  Tensor& fill_(const Tensor& value);  // a 0-d tensor, possibly on the device
  Tensor& zero_();
  // Copies src into this tensor, converting dtype and crossing devices; src broadcasts.
  Tensor& copy_(const Tensor& src, bool non_blocking = false);
  Tensor& add_(const Tensor& other, const Scalar& alpha = 1);
  Tensor& add_(const Scalar& other);
  Tensor& sub_(const Tensor& other, const Scalar& alpha = 1);
  Tensor& sub_(const Scalar& other);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(const Scalar& other);
  Tensor& div_(const Tensor& other);
  Tensor& div_(const Scalar& other);
  Tensor& clamp_(std::optional<Scalar> lo, std::optional<Scalar> hi);
  Tensor& relu_();
  Tensor& masked_fill_(const Tensor& mask, const Scalar& value);
  Tensor& uniform_(double from = 0.0, double to = 1.0);
  Tensor& normal_(double mean = 0.0, double std = 1.0);
  Tensor& bernoulli_(double p);
  Tensor& index_add_(int64_t dim, const Tensor& index, const Tensor& source, const Scalar& alpha = 1);
  Tensor& scatter_add_(int64_t dim, const Tensor& index, const Tensor& src);
  Tensor& index_fill_(int64_t dim, const Tensor& index, const Scalar& value);

  // ---- math (free functions of the same names exist too) -------------------------------------
  Tensor add(const Tensor& other, const Scalar& alpha = 1) const;
  Tensor add(const Scalar& other) const;
  Tensor sub(const Tensor& other, const Scalar& alpha = 1) const;
  Tensor sub(const Scalar& other) const;
  Tensor mul(const Tensor& other) const;
  Tensor mul(const Scalar& other) const;
  Tensor div(const Tensor& other) const;
  Tensor div(const Scalar& other) const;
  Tensor neg() const;
  Tensor pow(const Scalar& exponent) const;
  Tensor pow(const Tensor& exponent) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor log1p() const;
  Tensor sqrt() const;
  Tensor rsqrt() const;
  Tensor square() const;
  Tensor reciprocal() const;
  Tensor abs() const;
  Tensor sign() const;
  Tensor sin() const;
  Tensor cos() const;
  Tensor clamp(std::optional<Scalar> lo, std::optional<Scalar> hi) const;
  Tensor clamp_min(const Scalar& lo) const;
  Tensor clamp_max(const Scalar& hi) const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor gelu(const std::string& approximate = "none") const;
  Tensor maximum(const Tensor& other) const;
  Tensor minimum(const Tensor& other) const;

  Tensor eq(const Tensor& other) const;
  Tensor eq(const Scalar& other) const;
  Tensor ne(const Tensor& other) const;
  Tensor ne(const Scalar& other) const;
  Tensor gt(const Tensor& other) const;
  Tensor gt(const Scalar& other) const;
  Tensor lt(const Tensor& other) const;
  Tensor lt(const Scalar& other) const;
  Tensor ge(const Tensor& other) const;
  Tensor ge(const Scalar& other) const;
  Tensor le(const Tensor& other) const;
  Tensor le(const Scalar& other) const;
  Tensor logical_not() const;
  Tensor masked_fill(const Tensor& mask, const Scalar& value) const;

  Tensor matmul(const Tensor& other) const;
  Tensor mm(const Tensor& other) const;
  Tensor bmm(const Tensor& other) const;

  Tensor sum() const;
  Tensor sum(IntArrayRef dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(IntArrayRef dims, bool keepdim = false) const;
  Tensor var(IntArrayRef dims, bool unbiased = true, bool keepdim = false) const;
  Tensor max() const;
  Tensor max(int64_t dim, bool keepdim = false) const;  // values (api.md)
  Tensor min() const;
  Tensor min(int64_t dim, bool keepdim = false) const;
  Tensor argmax() const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor argmin(int64_t dim, bool keepdim = false) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;

  Tensor index_select(int64_t dim, const Tensor& index) const;
  Tensor gather(int64_t dim, const Tensor& index) const;
  Tensor scatter_add(int64_t dim, const Tensor& index, const Tensor& src) const;
  Tensor index_add(int64_t dim, const Tensor& index, const Tensor& source, const Scalar& alpha = 1) const;

  // ---- autograd -----------------------------------------------------------------------------
  bool requires_grad() const;
  // Leaves only (as PyTorch); returns *this.
  Tensor& requires_grad_(bool requires_grad = true);
  const Tensor& requires_grad_(bool requires_grad = true) const;
  // The accumulated gradient (undefined until a backward reached this tensor).
  Tensor grad() const;
  Tensor& mutable_grad() const;
  void set_grad(const Tensor& grad) const;
  bool is_leaf() const;
  // The node that produced this tensor (null for leaves).
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  uint32_t output_nr() const;
  // Makes this tensor (and every handle to it) refer to `new_data`'s storage, shape, dtype and device,
  // keeping its autograd identity (requires_grad, hooks): how Module::to moves parameters in place.
  void set_data(const Tensor& new_data) const;
  // A tensor sharing storage but cut off from the graph (shares the version counter).
  Tensor detach() const;
  Tensor& detach_();
  void retain_grad() const;
  bool retains_grad() const;
  // backward(gradient={}, retain_graph=false). A non-scalar needs `gradient`.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  // A hook on the gradient flowing into this tensor: observe it, or return a replacement.
  using Hook = std::function<Tensor(const Tensor&)>;
  using VoidHook = std::function<void(const Tensor&)>;
  size_t register_hook(Hook hook) const;
  size_t register_hook(VoidHook hook) const;
  template <class F, std::enable_if_t<!std::is_same_v<std::decay_t<F>, Hook> &&
                                          !std::is_same_v<std::decay_t<F>, VoidHook>,
                                      int> = 0>
  size_t register_hook(F&& f) const {
    if constexpr (std::is_void_v<std::invoke_result_t<F&, const Tensor&>>) {
      return register_hook(VoidHook(std::forward<F>(f)));
    } else {
      return register_hook(Hook(std::forward<F>(f)));
    }
  }
  void remove_hook(size_t handle) const;
  // Fires after this leaf's .grad has been accumulated by backward (the reducer builds on it).
  size_t register_post_accumulate_grad_hook(VoidHook hook) const;

  // Autograd metadata (created on demand); for the engine and op recording.
  autograd::AutogradMeta* autograd_meta() const { return checked()->autograd.get(); }
  autograd::AutogradMeta& ensure_autograd_meta() const;

  // ---- operators ----------------------------------------------------------------------------
  Tensor operator-() const { return neg(); }
  Tensor& operator+=(const Tensor& o) { return add_(o); }
  Tensor& operator+=(const Scalar& o) { return add_(o); }
  Tensor& operator-=(const Tensor& o) { return sub_(o); }
  Tensor& operator-=(const Scalar& o) { return sub_(o); }
  Tensor& operator*=(const Tensor& o) { return mul_(o); }
  Tensor& operator*=(const Scalar& o) { return mul_(o); }
  Tensor& operator/=(const Tensor& o) { return div_(o); }
  Tensor& operator/=(const Scalar& o) { return div_(o); }

  TensorImpl* checked() const {
    if (!impl_) [[unlikely]]
      throw_undefined();
    return impl_.get();
  }

 private:
  [[noreturn]] static void throw_undefined();
  std::shared_ptr<TensorImpl> impl_;
};

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, const Scalar& b);
Tensor operator+(const Scalar& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Scalar& b);
Tensor operator-(const Scalar& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Scalar& b);
Tensor operator*(const Scalar& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Scalar& b);
Tensor operator/(const Scalar& a, const Tensor& b);

// PyTorch-like printing: tensor([[1., 2.], [3., 4.]], device=cpu:0, dtype=float32).
std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- helpers for ops ---------------------------------------------------------------------------
// Wraps a negative dim and checks the range; names the op in the error.
int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim);

// Makes a new tensor impl over `storage` (a view) without autograd history.
Tensor make_tensor(StoragePtr storage, IntArrayRef sizes, IntArrayRef strides, int64_t offset, DType dtype);

}  // namespace ember
