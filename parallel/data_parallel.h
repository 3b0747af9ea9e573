// DataParallel and data_parallel: PyTorch's nn.DataParallel over several GPUs or logical CPU devices.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/holder.h"
#include "nn/module.h"
#include "parallel/parallel.h"
#include "parallel/reducer.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::parallel {

namespace detail {

template <class T>
struct is_tensor_tuple : std::false_type {};
template <class... Ts>
struct is_tensor_tuple<std::tuple<Ts...>> : std::bool_constant<(std::is_same_v<Ts, Tensor> && ...)> {};

}  // namespace detail

// Note [DataParallel]
// PyTorch's semantics with two changes of mechanism (api.md): replicas are kept between steps and
// refreshed from the module only when a parameter or buffer changed (storage identity + version
// counter), and replica gradients are summed into the module's parameters by the Reducer
// (all-reduce in buckets while backward runs) instead of flowing back through a broadcast. The
// module itself is the replica of devices[0]; each forward scatters tensor arguments along `dim`,
// runs every replica in a thread of its own, and gathers the outputs on `output_device`.
template <class T>
class DataParallelImpl : public nn::Module {
 public:
  DataParallelImpl(std::shared_ptr<T> module, std::vector<Device> devices, std::optional<Device> output_device = {},
                   int64_t dim = 0)
      : nn::Module("DataParallel"), module_(std::move(module)), devices_(std::move(devices)), dim_(dim) {
    EMBER_CHECK(module_ != nullptr, "DataParallel: the module is null");
    const long refs_before = module_.use_count();
    check_devices("DataParallel", devices_);
    warn_if_imbalanced(devices_);
    output_device_ = output_device.value_or(devices_[0]);
    check_params_on_first_device();
    register_module("module", module_);
    replicas_.push_back(module_);
    for (size_t i = 1; i < devices_.size(); ++i) {
      std::shared_ptr<nn::Module> copy = module_->clone(devices_[i]);  // throws for non-Cloneable modules
      auto typed = std::dynamic_pointer_cast<T>(copy);
      EMBER_CHECK(typed != nullptr, "DataParallel: cloning ", module_->name(), " did not give a ", module_->name());
      replicas_.push_back(typed);
    }
    std::vector<std::vector<Tensor>> params;
    for (const auto& r : replicas_) {
      params.push_back(r->parameters());
      state_.push_back(tensors_of(*r));
    }
    synced_.assign(replicas_.size(), std::vector<Synced>(state_[0].size()));
    for (size_t r = 1; r < replicas_.size(); ++r)
      for (size_t k = 0; k < state_[0].size(); ++k) synced_[r][k] = stamp(state_[0][k]);
    reducer_ = Reducer::create(std::move(params), devices_);
    own_refs_ = module_.use_count() - refs_before + 1;
  }

  // Whether nothing but this object holds the module (data_parallel's cache then drops it).
  bool sole_owner_of_module() const { return module_.use_count() <= own_refs_; }

  std::shared_ptr<T> module() const { return module_; }
  const std::vector<Device>& devices() const { return devices_; }
  Device output_device() const { return output_device_; }
  int64_t dim() const { return dim_; }
  const Reducer& reducer() const { return *reducer_; }

  // Splits every batch in these proportions instead of evenly (chunk i to devices()[i]), e.g. a smaller
  // share for the output device, which also holds the gathered output. Sizes that sum to the batch size
  // are used as they are; other batch sizes are split in the same proportions (when every device still
  // gets at least one item; otherwise evenly). Empty: even chunks again.
  void set_chunk_sizes(std::vector<int64_t> sizes) {
    if (!sizes.empty()) {
      EMBER_CHECK(sizes.size() == devices_.size(), "DataParallel::set_chunk_sizes: ", sizes.size(),
                  " sizes for ", devices_.size(), " devices");
      (void)scale_chunk_sizes(sizes, 1);  // checks that they are positive
    }
    chunk_sizes_ = std::move(sizes);
  }
  const std::vector<int64_t>& chunk_sizes() const { return chunk_sizes_; }

  // Tensor arguments are scattered along dim(); other arguments go to every replica unchanged. The
  // result (a Tensor, std::vector<Tensor> or std::tuple of Tensors) is gathered on output_device().
  template <class... Args>
  auto forward(Args&&... args) {
    using R = decltype(module_->forward(std::forward<Args>(args)...));
    static_assert(std::is_same_v<R, Tensor> || std::is_same_v<R, std::vector<Tensor>> || detail::is_tensor_tuple<R>::value,
                  "DataParallel: forward must return a Tensor, a std::vector<Tensor> or a std::tuple of Tensors");
    constexpr size_t kTensors = (std::is_same_v<std::decay_t<Args>, Tensor> + ... + 0);
    static_assert(kTensors > 0, "DataParallel: forward needs at least one Tensor argument to scatter");
    check_params_on_first_device();
    // Scatter every tensor argument; all must split into the same number of chunks.
    std::vector<std::vector<Tensor>> chunks(kTensors);
    size_t t = 0, used = 0;
    auto scatter_arg = [&](const auto& a) {
      if constexpr (std::is_same_v<std::decay_t<decltype(a)>, Tensor>) {
        EMBER_CHECK(a.defined(), "DataParallel: tensor argument ", t, " is undefined");
        EMBER_CHECK(dim_ >= -a.dim() && dim_ < a.dim(), "DataParallel: dim ", dim_, " does not exist in input ", t,
                    " of shape ", a.sizes());
        chunks[t] = split(a);
        EMBER_CHECK(t == 0 || chunks[t].size() == used, "DataParallel: input ", t, " splits into ", chunks[t].size(),
                    " chunks along dim ", dim_, " but input 0 splits into ", used);
        used = chunks[t].size();
        ++t;
      }
    };
    (scatter_arg(args), ...);
    refresh_replicas(used);
    if (GradMode::is_enabled()) reducer_->prepare_for_backward(used);

    std::vector<R> outputs(used);
    std::vector<Device> active(devices_.begin(), devices_.begin() + static_cast<std::ptrdiff_t>(used));
    run_on_devices(active, [&](size_t i) { outputs[i] = call_replica(i, chunks, args...); });
    return gather_outputs(outputs);
  }

 private:
  struct Synced {
    const void* storage = nullptr;
    uint32_t version = 0;
    bool operator==(const Synced& o) const { return storage == o.storage && version == o.version; }
  };
  static Synced stamp(const Tensor& t) { return {t.storage().get(), t.version()}; }
  static std::vector<Tensor> tensors_of(const nn::Module& m) {
    std::vector<Tensor> out = m.parameters();
    for (const Tensor& b : m.buffers())
      if (b.defined()) out.push_back(b);
    return out;
  }

  std::vector<Tensor> split(const Tensor& a) const {
    if (!chunk_sizes_.empty()) {
      const std::vector<int64_t> sizes = scale_chunk_sizes(chunk_sizes_, a.size(dim_ < 0 ? dim_ + a.dim() : dim_));
      if (!sizes.empty()) return scatter(a, devices_, dim_, sizes);
    }
    return scatter(a, devices_, dim_);
  }

  void check_params_on_first_device() const {
    for (const auto& [name, p] : module_->named_parameters())
      EMBER_CHECK(p.device() == devices_[0], "DataParallel: module parameter '", name, "' is on ", p.device(),
                  " but must be on device_ids[0] = ", devices_[0], "; move the module there first (module->to(",
                  devices_[0], "))");
  }

  // Copies the module's parameters and buffers into replicas whose copies are out of date.
  void refresh_replicas(size_t used) {
    NoGradGuard no_grad;
    const std::vector<Tensor>& src = state_[0];
    for (size_t r = 1; r < used; ++r) {
      for (size_t k = 0; k < src.size(); ++k) {
        const Synced now = stamp(src[k]);
        if (synced_[r][k] == now) continue;
        Tensor dst = state_[r][k];
        EMBER_CHECK(dst.sizes() == src[k].sizes(), "DataParallel: parameter ", k, " of ", module_->name(),
                    " changed shape (", dst.sizes(), " -> ", src[k].sizes(), ") after DataParallel was created");
        dst.copy_(src[k]);
        synced_[r][k] = now;
      }
    }
  }

  template <class... Args>
  auto call_replica(size_t i, const std::vector<std::vector<Tensor>>& chunks, Args&... args) {
    size_t t = 0;
    auto pick_arg = [&](auto& a) -> decltype(auto) {
      if constexpr (std::is_same_v<std::decay_t<decltype(a)>, Tensor>) {
        return static_cast<const Tensor&>(chunks[t++][i]);
      } else {
        return static_cast<decltype(a)>(a);
      }
    };
    // Braced init evaluates left to right, so tensor arguments meet their chunks in order.
    return std::apply([&](auto&&... picked) { return replicas_[i]->forward(picked...); },
                      std::tuple<decltype(pick_arg(args))...>{pick_arg(args)...});
  }

  template <class R>
  auto gather_outputs(std::vector<R>& outputs) {
    if constexpr (std::is_same_v<R, Tensor>) {
      return gather(outputs, output_device_, dim_);
    } else if constexpr (std::is_same_v<R, std::vector<Tensor>>) {
      std::vector<Tensor> out;
      for (size_t k = 0; k < outputs[0].size(); ++k) {
        std::vector<Tensor> parts;
        for (auto& o : outputs) parts.push_back(o[k]);
        out.push_back(gather(parts, output_device_, dim_));
      }
      return out;
    } else {
      return gather_tuple(outputs, std::make_index_sequence<std::tuple_size_v<R>>{});
    }
  }
  template <class R, size_t... K>
  R gather_tuple(std::vector<R>& outputs, std::index_sequence<K...>) {
    auto one = [&](auto k) {
      std::vector<Tensor> parts;
      for (auto& o : outputs) parts.push_back(std::get<decltype(k)::value>(o));
      return gather(parts, output_device_, dim_);
    };
    return R{one(std::integral_constant<size_t, K>{})...};
  }

  std::shared_ptr<T> module_;
  std::vector<Device> devices_;
  Device output_device_;
  int64_t dim_;
  std::vector<std::shared_ptr<T>> replicas_;  // [0] is module_
  std::vector<std::vector<Tensor>> state_;    // parameters then buffers, per replica
  std::vector<std::vector<Synced>> synced_;   // what each replica last copied
  std::shared_ptr<Reducer> reducer_;
  std::vector<int64_t> chunk_sizes_;  // empty: even chunks
  long own_refs_ = 1;  // references to module_ held by this object (member, registration, replica 0)
};

// The holder: `parallel::DataParallel<NetImpl> dp(net, {0, 1}); dp->forward(x);`.
template <class T>
class DataParallel : public nn::ModuleHolder<DataParallelImpl<T>> {
  using Base = nn::ModuleHolder<DataParallelImpl<T>>;

 public:
  // GPU indices (empty: every visible GPU); output_device -1: device_ids[0].
  DataParallel(const nn::ModuleHolder<T>& module, std::vector<int> device_ids = {}, int output_device = -1,
               int64_t dim = 0)
      : DataParallel(module.ptr(), std::move(device_ids), output_device, dim) {}
  DataParallel(std::shared_ptr<T> module, std::vector<int> device_ids = {}, int output_device = -1, int64_t dim = 0)
      : Base(std::make_shared<DataParallelImpl<T>>(
            std::move(module), cuda_devices(device_ids),
            output_device < 0 ? std::nullopt : std::optional<Device>(Device::cuda(output_device)), dim)) {}
  // Explicit devices (GPUs or logical CPU devices).
  DataParallel(const nn::ModuleHolder<T>& module, std::vector<Device> devices,
               std::optional<Device> output_device = std::nullopt, int64_t dim = 0)
      : DataParallel(module.ptr(), std::move(devices), output_device, dim) {}
  DataParallel(std::shared_ptr<T> module, std::vector<Device> devices, std::optional<Device> output_device = std::nullopt,
               int64_t dim = 0)
      : Base(std::make_shared<DataParallelImpl<T>>(std::move(module), std::move(devices), output_device, dim)) {}
};

namespace detail {
// data_parallel keeps one DataParallelImpl per (module, devices, output device, dim) so that replicas
// and the reducer survive between calls (and until backward has run).
template <class T>
std::shared_ptr<DataParallelImpl<T>> cached_data_parallel(const std::shared_ptr<T>& module, const std::vector<Device>& devices,
                                                          Device output_device, int64_t dim) {
  static std::mutex mutex;
  static std::map<std::tuple<const void*, std::vector<int>, int, int64_t>, std::shared_ptr<DataParallelImpl<T>>> cache;
  std::vector<int> ids;
  for (const Device& d : devices) ids.push_back(d.flat_index());
  std::lock_guard<std::mutex> lock(mutex);
  // Entries whose module the user has dropped go (the entry itself keeps the module alive).
  for (auto it = cache.begin(); it != cache.end();) it = it->second->sole_owner_of_module() ? cache.erase(it) : std::next(it);
  auto key = std::make_tuple(static_cast<const void*>(module.get()), ids, output_device.flat_index(), dim);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto dp = std::make_shared<DataParallelImpl<T>>(module, devices, output_device, dim);
  cache.emplace(key, dp);
  return dp;
}
}  // namespace detail

// The functional form: parallel::data_parallel(net, x, {0, 1}, 0, 0).
template <class T>
auto data_parallel(const nn::ModuleHolder<T>& module, const Tensor& input, std::vector<int> device_ids = {},
                   int output_device = -1, int64_t dim = 0) {
  std::vector<Device> devices = cuda_devices(device_ids);
  const Device out = output_device < 0 ? devices[0] : Device::cuda(output_device);
  return detail::cached_data_parallel(module.ptr(), devices, out, dim)->forward(input);
}
template <class T>
auto data_parallel(const nn::ModuleHolder<T>& module, const Tensor& input, std::vector<Device> devices,
                   std::optional<Device> output_device = std::nullopt, int64_t dim = 0) {
  check_devices("data_parallel", devices);
  return detail::cached_data_parallel(module.ptr(), devices, output_device.value_or(devices[0]), dim)->forward(input);
}

// Several inputs: tensors in `inputs` are scattered, other values go to every replica unchanged (the C++
// counterpart of PyTorch's `inputs` tuple and `module_kwargs`):
//   parallel::data_parallel(net, std::make_tuple(x, mask, 0.5), devices);
template <class T, class... Args>
auto data_parallel(const nn::ModuleHolder<T>& module, const std::tuple<Args...>& inputs, std::vector<Device> devices,
                   std::optional<Device> output_device = std::nullopt, int64_t dim = 0) {
  check_devices("data_parallel", devices);
  auto dp = detail::cached_data_parallel(module.ptr(), devices, output_device.value_or(devices[0]), dim);
  return std::apply([&](const auto&... a) { return dp->forward(a...); }, inputs);
}
template <class T, class... Args>
auto data_parallel(const nn::ModuleHolder<T>& module, const std::tuple<Args...>& inputs,
                   std::vector<int> device_ids = {}, int output_device = -1, int64_t dim = 0) {
  std::vector<Device> devices = cuda_devices(device_ids);
  const Device out = output_device < 0 ? devices[0] : Device::cuda(output_device);
  auto dp = detail::cached_data_parallel(module.ptr(), devices, out, dim);
  return std::apply([&](const auto&... a) { return dp->forward(a...); }, inputs);
}

}  // namespace ember::parallel
