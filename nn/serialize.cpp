// nn::save / nn::load: module state to and from safetensors files (Note [Module checkpoints]), and
// training checkpoints (Note [Training checkpoints]).
#include "nn/serialize.h"

#include <dirent.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
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

// Tensors on their way to a file: host copies (kept alive until written) and their views.
struct HostTensors {
  std::vector<Tensor> host;
  std::vector<safetensors::TensorView> views;

  void add(const std::string& name, const Tensor& tensor, const char* who, const std::string& path) {
    EMBER_CHECK(tensor.defined(), who, ": '", path, "': tensor '", name, "' is undefined");
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
};

}  // namespace

void save(const StateDict& state, const std::string& path) {
  NoGradGuard no_grad;
  HostTensors out;
  for (const auto& [name, tensor] : state) out.add(name, tensor, "nn::save", path);
  safetensors::save(path, out.views, {{"format", "pt"}});
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

// ---- training checkpoints -----------------------------------------------------------------------

namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kCheckpointKey = "ember.checkpoint";
constexpr const char* kCheckpointVersion = "1";
const std::string kModelPrefix = "model.";
const std::string kOptimPrefix = "optimizer.state.";
const std::string kRngCpu = "rng.cpu";
const std::string kRngCudaPrefix = "rng.cuda.";

Json value_to_json(const StateValue& value, const std::string& path, const std::string& key) {
  if (const auto* b = std::get_if<bool>(&value)) return *b;
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  auto finite = [&](double d) {
    EMBER_CHECK(std::isfinite(d), "nn::save_checkpoint: '", path, "': the entry '", key, "' is ", d,
                ", which JSON cannot hold");
    return d;
  };
  if (const auto* d = std::get_if<double>(&value)) return finite(*d);
  Json list = Json::array();
  for (double d : std::get<std::vector<double>>(value)) list.push_back(finite(d));
  return list;
}

Json map_to_json(const StateValueMap& map, const std::string& path) {
  Json out = Json::object();
  for (const auto& [key, value] : map) out[key] = value_to_json(value, path, key);
  return out;
}

[[noreturn]] void bad_checkpoint(const std::string& path, const std::string& problem) {
  EMBER_THROW("nn::load_checkpoint: '", path, "': ", problem);
}

StateValue value_from_json(const Json& j, const std::string& path, const std::string& where) {
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number_integer()) return j.get<int64_t>();
  if (j.is_number_float()) return j.get<double>();
  if (j.is_array()) {
    std::vector<double> list;
    for (const Json& e : j) {
      if (!e.is_number()) bad_checkpoint(path, detail::str_cat(where, " holds a list with ", e.dump()));
      list.push_back(e.get<double>());
    }
    return list;
  }
  bad_checkpoint(path, detail::str_cat(where, " is ", j.dump(), " (expected a bool, a number or a list of numbers)"));
}

StateValueMap map_from_json(const Json& j, const std::string& path, const std::string& where) {
  if (!j.is_object()) bad_checkpoint(path, detail::str_cat(where, " is not a JSON object"));
  StateValueMap out;
  for (const auto& [key, value] : j.items())
    out.emplace(key, value_from_json(value, path, detail::str_cat(where, " entry '", key, "'")));
  return out;
}

Json parse_json(const std::map<std::string, std::string>& metadata, const std::string& key, const std::string& path) {
  try {
    return Json::parse(metadata.at(key));
  } catch (const Json::exception& e) {
    bad_checkpoint(path, detail::str_cat("the metadata '", key, "' is not valid JSON: ", e.what()));
  }
}

int64_t parse_int(const std::map<std::string, std::string>& metadata, const std::string& key, const std::string& path) {
  auto it = metadata.find(key);
  if (it == metadata.end()) bad_checkpoint(path, detail::str_cat("the metadata '", key, "' is missing"));
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || errno != 0)
    bad_checkpoint(path, detail::str_cat("the metadata '", key, "' should be an integer, got \"", it->second, "\""));
  return v;
}

// Parses "<digits>" as a non-negative index; -1 when it is not one.
int64_t parse_index(std::string_view s) {
  if (s.empty() || s.size() > 18) return -1;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& ck) {
  NoGradGuard no_grad;
  const char* who = "nn::save_checkpoint";
  HostTensors out;
  std::map<std::string, std::string> metadata{{"format", "pt"},
                                              {kCheckpointKey, kCheckpointVersion},
                                              {"epoch", std::to_string(ck.epoch)},
                                              {"step", std::to_string(ck.step)}};
  try {  // nlohmann throws for keys or strings that are not UTF-8
    for (const auto& [name, tensor] : ck.model) out.add(kModelPrefix + name, tensor, who, path);
    if (ck.optimizer) {
      Json groups = Json::array();
      for (const optim::ParamGroupState& g : ck.optimizer->param_groups) {
        Json group = map_to_json(g.options, path);
        group["params"] = g.params;
        groups.push_back(std::move(group));
      }
      metadata["optimizer.param_groups"] = groups.dump();
      for (const auto& [index, entries] : ck.optimizer->state) {
        EMBER_CHECK(index >= 0, who, ": '", path, "': optimizer state for the parameter index ", index);
        for (const auto& [name, tensor] : entries)
          out.add(detail::str_cat(kOptimPrefix, index, ".", name), tensor, who, path);
      }
    }
    if (ck.scheduler) metadata["scheduler"] = map_to_json(*ck.scheduler, path).dump();
    if (!ck.data.empty()) metadata["data"] = map_to_json(ck.data, path).dump();
    if (!ck.extra.empty()) {
      Json extra = Json::object();
      for (const auto& [k, v] : ck.extra) extra[k] = v;
      metadata["extra"] = extra.dump();
    }
  } catch (const Json::exception& e) {
    EMBER_THROW(who, ": '", path, "': ", e.what());
  }
  if (ck.rng.cpu.defined()) out.add(kRngCpu, ck.rng.cpu, who, path);
  for (size_t i = 0; i < ck.rng.cuda.size(); ++i)
    out.add(detail::str_cat(kRngCudaPrefix, i), ck.rng.cuda[i], who, path);
  safetensors::save(path, out.views, metadata);
}

bool is_checkpoint(const std::string& path) {
  try {
    return safetensors::File::open(path).metadata().count(kCheckpointKey) > 0;
  } catch (const Error&) {
    return false;
  }
}

Checkpoint load_checkpoint(const std::string& path, Device device) {
  const safetensors::File file = safetensors::File::open(path);
  const auto& metadata = file.metadata();
  auto version = metadata.find(kCheckpointKey);
  if (version == metadata.end())
    bad_checkpoint(path,
                   "not a training checkpoint (its metadata has no \"ember.checkpoint\"); a model file "
                   "written by nn::save loads with nn::load");
  if (version->second != kCheckpointVersion)
    bad_checkpoint(path, detail::str_cat("checkpoint format version \"", version->second, "\", this ember reads \"",
                                         kCheckpointVersion, "\""));
  Checkpoint ck;
  ck.epoch = parse_int(metadata, "epoch", path);
  ck.step = parse_int(metadata, "step", path);
  if (metadata.count("optimizer.param_groups")) {
    const Json groups = parse_json(metadata, "optimizer.param_groups", path);
    if (!groups.is_array()) bad_checkpoint(path, "the metadata 'optimizer.param_groups' is not a JSON array");
    ck.optimizer.emplace();
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const std::string where = detail::str_cat("optimizer param group ", gi);
      Json g = groups[gi];
      if (!g.is_object() || !g.contains("params") || !g["params"].is_array())
        bad_checkpoint(path, detail::str_cat(where, " is not an object with a \"params\" list"));
      optim::ParamGroupState state;
      for (const Json& p : g["params"]) {
        if (!p.is_number_integer()) bad_checkpoint(path, detail::str_cat(where, " lists the parameter ", p.dump()));
        state.params.push_back(p.get<int64_t>());
      }
      g.erase("params");
      state.options = map_from_json(g, path, where);
      ck.optimizer->param_groups.push_back(std::move(state));
    }
  }
  if (metadata.count("scheduler"))
    ck.scheduler = map_from_json(parse_json(metadata, "scheduler", path), path, "scheduler");
  if (metadata.count("data")) ck.data = map_from_json(parse_json(metadata, "data", path), path, "data");
  if (metadata.count("extra")) {
    const Json extra = parse_json(metadata, "extra", path);
    if (!extra.is_object()) bad_checkpoint(path, "the metadata 'extra' is not a JSON object");
    for (const auto& [k, v] : extra.items()) {
      if (!v.is_string()) bad_checkpoint(path, detail::str_cat("the extra entry '", k, "' is not a string"));
      ck.extra.emplace(k, v.get<std::string>());
    }
  }

  std::map<size_t, Tensor> rng_cuda;
  for (const safetensors::TensorEntry& e : file.entries()) {
    Tensor t = read_entry(file, e, ember_dtype(path, e));
    const std::string& name = e.name;
    if (starts_with(name, kModelPrefix)) {
      if (device != t.device()) t = t.to(device);
      ck.model.insert(name.substr(kModelPrefix.size()), std::move(t));
    } else if (starts_with(name, kOptimPrefix)) {
      const std::string rest = name.substr(kOptimPrefix.size());
      const size_t dot = rest.find('.');
      const int64_t index = dot == std::string::npos ? -1 : parse_index(std::string_view(rest).substr(0, dot));
      if (index < 0 || dot + 1 >= rest.size())
        bad_checkpoint(path, detail::str_cat("the tensor '", name, "' is not optimizer.state.<index>.<name>"));
      if (!ck.optimizer)
        bad_checkpoint(path, detail::str_cat("the tensor '", name, "' is optimizer state, but the metadata has no ",
                                             "optimizer.param_groups"));
      if (device != t.device()) t = t.to(device);
      ck.optimizer->state[index].emplace(rest.substr(dot + 1), std::move(t));
    } else if (name == kRngCpu) {
      ck.rng.cpu = std::move(t);
    } else if (starts_with(name, kRngCudaPrefix)) {
      const int64_t i = parse_index(std::string_view(name).substr(kRngCudaPrefix.size()));
      if (i < 0) bad_checkpoint(path, detail::str_cat("the tensor '", name, "' is not rng.cuda.<device index>"));
      rng_cuda[static_cast<size_t>(i)] = std::move(t);
    } else {
      bad_checkpoint(path, detail::str_cat("unexpected tensor '", name,
                                           "' (a checkpoint holds model.*, optimizer.state.* and rng.* tensors)"));
    }
  }
  for (const auto& [i, t] : rng_cuda) {
    if (i != ck.rng.cuda.size())
      bad_checkpoint(path, detail::str_cat("rng.cuda.", ck.rng.cuda.size(), " is missing (rng.cuda.", i, " is there)"));
    ck.rng.cuda.push_back(t);
  }
  return ck;
}

std::string checkpoint_path(const std::string& dir, int64_t number) {
  EMBER_CHECK(number >= 0, "nn::checkpoint_path: the number must be >= 0, got ", number);
  char name[64];
  std::snprintf(name, sizeof name, "checkpoint-%08lld.safetensors", static_cast<long long>(number));
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string latest_checkpoint(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  EMBER_CHECK(d != nullptr, "nn::latest_checkpoint: cannot list the folder '", dir, "': ", std::strerror(errno));
  const std::string prefix = "checkpoint-", suffix = ".safetensors";
  int64_t best = -1;
  std::string best_name;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() <= prefix.size() + suffix.size() || !starts_with(name, prefix) ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const int64_t n =
        parse_index(std::string_view(name).substr(prefix.size(), name.size() - prefix.size() - suffix.size()));
    if (n > best) {
      best = n;
      best_name = name;
    }
  }
  ::closedir(d);
  if (best < 0) return std::string();
  return dir.back() == '/' ? dir + best_name : dir + "/" + best_name;
}

}  // namespace ember::nn
