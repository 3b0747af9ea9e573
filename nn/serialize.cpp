// nn::save / nn::load: module state to and from safetensors files (Note [Module checkpoints]).
#include "nn/serialize.h"

#include <bit>
#include <cstring>
#include <string_view>
#include <vector>

#include "kernels/ops.h"
#include "nn/safetensors.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::nn {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian bytes; ember writes and reads host memory as is");

struct DtypeName {
  DType dtype;
  const char* name;
};
constexpr DtypeName kDtypeNames[] = {
    {kFloat32, "F32"}, {kFloat64, "F64"}, {kFloat16, "F16"}, {kBFloat16, "BF16"},
    {kInt64, "I64"},   {kInt32, "I32"},   {kUInt8, "U8"},    {kBool, "BOOL"},
};

const char* safetensors_dtype(DType dtype) {
  for (const DtypeName& d : kDtypeNames)
    if (d.dtype == dtype) return d.name;
  EMBER_THROW("nn::save: ", dtype, " has no safetensors dtype");
}

// The ember dtype of a safetensors dtype name; throws naming the file and tensor when there is none.
DType ember_dtype(const std::string& path, const safetensors::TensorEntry& e) {
  for (const DtypeName& d : kDtypeNames)
    if (e.dtype == d.name) return d.dtype;
  EMBER_THROW("nn::load: '", path, "': tensor '", e.name, "' has dtype ", e.dtype,
              ", which ember does not support (it reads F32, F64, F16, BF16, I64, I32, U8 and BOOL)");
}

// Floating point to floating point, integer to integer, bool to bool (Note [Module checkpoints]).
int dtype_kind(DType t) { return is_floating_point(t) ? 0 : t == kBool ? 2 : 1; }

// Reads one entry into a new host tensor of its dtype.
Tensor read_entry(const safetensors::File& file, const safetensors::TensorEntry& e, DType dtype) {
  Tensor t = empty(e.shape, TensorOptions().dtype(dtype));
  file.read(e, t.raw_data());
  if (dtype == kBool) {
    const auto* bytes = static_cast<const unsigned char*>(t.raw_data());
    for (int64_t i = 0; i < t.numel(); ++i)
      EMBER_CHECK(bytes[i] <= 1, "nn::load: '", file.path(), "': BOOL tensor '", e.name, "' holds the byte ",
                  static_cast<int>(bytes[i]), " at element ", i, " (booleans are stored as 0 or 1)");
  }
  return t;
}

}  // namespace

void save(const StateDict& state, const std::string& path) {
  NoGradGuard no_grad;
  std::vector<Tensor> host;  // keeps the host copies alive until the file is written
  host.reserve(state.size());
  std::vector<safetensors::TensorView> views;
  views.reserve(state.size());
  for (const auto& [name, tensor] : state) {
    EMBER_CHECK(tensor.defined(), "nn::save: '", path, "': tensor '", name, "' is undefined");
    Tensor h = tensor.detach();
    if (!h.is_cpu()) h = h.cpu();  // logical CPU devices are host memory already
    if (!h.is_contiguous()) h = h.contiguous();
    safetensors::TensorView v;
    v.name = name;
    v.dtype = safetensors_dtype(h.dtype());
    v.shape.assign(h.sizes().begin(), h.sizes().end());
    v.data = h.numel() > 0 ? h.raw_data() : nullptr;
    v.nbytes = h.nbytes();
    views.push_back(std::move(v));
    host.push_back(std::move(h));
  }
  safetensors::save(path, views, {{"format", "pt"}});
}

void save(const Module& module, const std::string& path) { save(module.state_dict(), path); }

StateDict load_state_dict(const std::string& path, Device device) {
  const safetensors::File file = safetensors::File::open(path);
  StateDict out("state_dict");
  for (const safetensors::TensorEntry& e : file.entries()) {
    Tensor t = read_entry(file, e, ember_dtype(path, e));
    if (device != t.device()) t = t.to(device);
    out.insert(e.name, std::move(t));
  }
  return out;
}

void load(Module& module, const std::string& path, bool strict) {
  const safetensors::File file = safetensors::File::open(path);
  const StateDict mine = module.state_dict();

  // Dtypes first, from the header alone: nothing is read or changed when the file cannot fit.
  std::string problems;
  std::vector<DType> dtypes;
  dtypes.reserve(file.entries().size());
  for (const safetensors::TensorEntry& e : file.entries()) {
    dtypes.push_back(ember_dtype(path, e));
    const Tensor* target = mine.find(e.name);
    if (target && dtype_kind(dtypes.back()) != dtype_kind(target->dtype()))
      problems += detail::str_cat("\n  ", e.name, " is ", e.dtype, " (", dtypes.back(), ") in the file but ",
                                  target->dtype(), " in ", module.name());
  }
  EMBER_CHECK(problems.empty(), "nn::load: '", path, "': dtypes the module cannot take (ember converts between ",
              "floating-point dtypes and between integer dtypes only):", problems);

  StateDict state("state_dict");
  for (size_t i = 0; i < file.entries().size(); ++i) {
    const safetensors::TensorEntry& e = file.entries()[i];
    state.insert(e.name, read_entry(file, e, dtypes[i]));
  }
  try {
    module.load_state_dict(state, strict);  // names and shapes; copies with dtype and device conversion
  } catch (const Error& err) {
    EMBER_THROW("nn::load: '", path, "': ", err.what());
  }
}

}  // namespace ember::nn
