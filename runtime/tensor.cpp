// TensorImpl bookkeeping and the Tensor methods that are pure metadata or host access.
#include "runtime/tensor.h"

#include <cstring>
#include <limits>

#include "kernels/dispatch.h"
#include "runtime/autograd/meta.h"
#include "runtime/cuda/memory.h"
#include "runtime/factory.h"

namespace ember {

TensorImpl::TensorImpl(StoragePtr st, IntArrayRef sz, IntArrayRef strd, int64_t off, DType dt)
    : storage(std::move(st)), sizes(sz), strides(strd), offset(off), dtype(dt), device(storage->device()) {
  refresh();
}

TensorImpl::~TensorImpl() = default;

void TensorImpl::refresh() {
  numel = product(sizes);  // throws past int64
  if (numel == 0) {        // (and the running product below then stays within numel)
    contiguous = true;
    return;
  }
  bool c = true;
  int64_t expected = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    if (sizes[i] == 1) continue;
    if (strides[i] != expected) {
      c = false;
      break;
    }
    expected *= sizes[i];
  }
  contiguous = c;
}

DimVector contiguous_strides(IntArrayRef sizes) {
  DimVector s(sizes.size());
  int64_t acc = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    s[i] = acc;
    // Past int64 only for a shape with a zero size somewhere (numel is checked), whose strides address
    // nothing: saturate rather than overflow. The view ops check their own stride and offset arithmetic on
    // them (kernels/views.cpp), the element-wise iterator and the reductions visit nothing of an empty
    // tensor (kernels/iter.cpp, kernels/reduce.cpp); other ops are not audited (fuzz/fuzz_shapes.cpp).
    if (__builtin_mul_overflow(acc, std::max<int64_t>(sizes[i], 1), &acc)) acc = std::numeric_limits<int64_t>::max();
  }
  return s;
}

int64_t product(IntArrayRef r) {
  int64_t p = 1;
  bool overflow = false;
  for (int64_t v : r) {
    if (v == 0) return 0;
    overflow = __builtin_mul_overflow(p, v, &p) || overflow;
  }
  EMBER_CHECK(!overflow, "numel: the shape ", r, " has more elements than int64 can count");
  return p;
}

int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim) {
  const int64_t n = std::max<int64_t>(ndim, 1);  // a 0-d tensor accepts dim 0 and -1, as PyTorch
  EMBER_CHECK(dim >= -n && dim < n, op, ": dim ", dim, " is out of range for a tensor of ", ndim,
              " dims (expected a dim in [", -n, ", ", n - 1, "])");
  return dim < 0 ? dim + n : dim;
}

Tensor make_tensor(StoragePtr storage, IntArrayRef sizes, IntArrayRef strides, int64_t offset, DType dtype) {
  return Tensor(std::make_shared<TensorImpl>(std::move(storage), sizes, strides, offset, dtype));
}

void Tensor::throw_undefined() {
  EMBER_THROW("this Tensor is undefined (default-constructed or moved from); create it with a factory "
              "such as zeros() or empty() first");
}

int64_t Tensor::size(int64_t d) const { return checked()->sizes[wrap_dim("size", d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return checked()->strides[wrap_dim("stride", d, dim())]; }

std::string Tensor::shape_str() const {
  std::ostringstream os;
  os << sizes();
  return os.str();
}

void Tensor::record_stream(const cuda::Stream& stream) const {
  EMBER_CHECK(is_cuda(), "record_stream: the tensor is on ", device(), "; only CUDA tensors belong to streams");
  cuda::detail::record_stream(storage()->data_ptr(), stream);
}

void* Tensor::data_ptr() const {
  EMBER_CHECK(!is_cuda(), "data_ptr: the tensor is on ", device(),
              "; host pointers exist only for CPU tensors (use cpu() or to_vector())");
  return raw_data();
}

template <class T>
T* Tensor::data_ptr() const {
  EMBER_CHECK(dtype() == dtype_v<T>, "data_ptr<", dtype_name(dtype_v<T>), ">: the tensor has dtype ", dtype());
  return static_cast<T*>(data_ptr());
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  // One contiguous host copy in the tensor's dtype (waits for the device), then convert.
  Tensor host = is_cuda() ? cpu() : contiguous();
  if (!host.is_contiguous()) host = host.contiguous();
  std::vector<T> out(static_cast<size_t>(host.numel()));
  dispatch_all(host.dtype(), "to_vector", [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* src = static_cast<const S*>(host.raw_data());
    for (size_t i = 0; i < out.size(); ++i) {
      if constexpr (std::is_same_v<T, bool>) {
        out[i] = static_cast<float>(src[i]) != 0.0f;
      } else if constexpr (std::is_same_v<S, Half> || std::is_same_v<S, BFloat16>) {
        out[i] = static_cast<T>(static_cast<float>(src[i]));
      } else if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
        out[i] = T(static_cast<float>(src[i]));
      } else {
        out[i] = static_cast<T>(src[i]);
      }
    }
  });
  return out;
}

template <class T>
T Tensor::item() const {
  EMBER_CHECK(numel() == 1, "item: the tensor has ", numel(), " elements (shape ", sizes(),
              "); only a one-element tensor can be converted to a number");
  return to_vector<T>()[0];
}

Scalar Tensor::item() const {
  switch (dtype()) {
    case DType::Float32:
    case DType::Float16:
    case DType::BFloat16:
    case DType::Float64: return Scalar(item<double>());
    case DType::Bool: return Scalar(item<bool>());
    default: return Scalar(item<int64_t>());
  }
}

#define EMBER_INSTANTIATE_HOST_ACCESS(T)                  \
  template T* Tensor::data_ptr<T>() const;                \
  template std::vector<T> Tensor::to_vector<T>() const;   \
  template T Tensor::item<T>() const;
EMBER_INSTANTIATE_HOST_ACCESS(float)
EMBER_INSTANTIATE_HOST_ACCESS(double)
EMBER_INSTANTIATE_HOST_ACCESS(int64_t)
EMBER_INSTANTIATE_HOST_ACCESS(int32_t)
EMBER_INSTANTIATE_HOST_ACCESS(uint8_t)
EMBER_INSTANTIATE_HOST_ACCESS(Half)
EMBER_INSTANTIATE_HOST_ACCESS(BFloat16)
template bool* Tensor::data_ptr<bool>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;
template bool Tensor::item<bool>() const;
#undef EMBER_INSTANTIATE_HOST_ACCESS

}  // namespace ember
