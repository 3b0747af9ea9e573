// Reducer (Note [Reducer]): buckets, grad-ready hooks, bucket all-reduce, end-of-backward finalisation.
#include "parallel/reducer.h"

#include "kernels/ops.h"
#include "runtime/autograd/engine.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::parallel {

std::shared_ptr<Reducer> Reducer::create(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices,
                                         size_t first_bucket_bytes, size_t bucket_bytes) {
  std::shared_ptr<Reducer> r(new Reducer(std::move(replica_params), std::move(devices)));
  r->build_buckets(first_bucket_bytes, bucket_bytes);
  r->install_hooks();
  return r;
}

Reducer::Reducer(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices)
    : params_(std::move(replica_params)), devices_(std::move(devices)) {
  EMBER_CHECK(!params_.empty() && params_.size() == devices_.size(), "Reducer: ", params_.size(),
              " replicas for ", devices_.size(), " devices");
  for (size_t r = 1; r < params_.size(); ++r)
    EMBER_CHECK(params_[r].size() == params_[0].size(), "Reducer: replica ", r, " has ", params_[r].size(),
                " parameters but the module has ", params_[0].size());
  seen_.assign(params_.size(), std::vector<bool>(params_[0].size(), false));
}

void Reducer::build_buckets(size_t first_bucket_bytes, size_t bucket_bytes) {
  const size_t n = params_[0].size();
  bucket_of_.assign(n, 0);
  // One open bucket per dtype; reverse registration order.
  std::vector<int> open(kNumDTypes, -1);
  std::vector<size_t> bytes(kNumDTypes, 0);
  for (size_t k = n; k-- > 0;) {
    const Tensor& p = params_[0][k];
    if (!p.requires_grad()) continue;
    const int dt = static_cast<int>(p.dtype());
    const size_t cap = buckets_.empty() ? first_bucket_bytes : bucket_bytes;
    if (open[dt] < 0 || (bytes[dt] > 0 && bytes[dt] + p.nbytes() > cap)) {
      open[dt] = static_cast<int>(buckets_.size());
      buckets_.emplace_back();
      buckets_.back().dtype = p.dtype();
      bytes[dt] = 0;
    }
    Bucket& b = buckets_[static_cast<size_t>(open[dt])];
    b.params.push_back(k);
    b.numel += p.numel();
    bytes[dt] += p.nbytes();
    bucket_of_[k] = static_cast<size_t>(open[dt]);
  }
}

void Reducer::install_hooks() {
  std::weak_ptr<Reducer> weak = shared_from_this();
  for (size_t r = 0; r < params_.size(); ++r) {
    for (size_t k = 0; k < params_[r].size(); ++k) {
      const Tensor& p = params_[r][k];
      if (!p.requires_grad()) continue;
      p.register_post_accumulate_grad_hook([weak, r, k](const Tensor&) {
        if (auto self = weak.lock()) self->on_grad_ready(r, k);
      });
    }
  }
}

std::vector<std::vector<size_t>> Reducer::bucket_layout() const {
  std::vector<std::vector<size_t>> out;
  for (const Bucket& b : buckets_) out.push_back(b.params);
  return out;
}

void Reducer::prepare_for_backward(size_t active) {
  std::lock_guard<std::mutex> lock(mutex_);
  EMBER_ASSERT(active >= 1 && active <= params_.size(), "active replicas ", active);
  active_ = active;
  armed_ = true;
  finalize_queued_ = false;
  reduced_early_ = 0;
  for (Bucket& b : buckets_) {
    b.ready = 0;
    b.reduced = false;
  }
  for (auto& row : seen_) row.assign(row.size(), false);
  // Replicas other than the module start from no gradient: only this step's contribution is summed.
  NoGradGuard no_grad;
  for (size_t r = 1; r < params_.size(); ++r)
    for (const Tensor& p : params_[r]) p.set_grad(Tensor());
}

void Reducer::on_grad_ready(size_t replica, size_t param) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_ || replica >= active_ || seen_[replica][param]) return;
  seen_[replica][param] = true;
  if (!finalize_queued_) {
    finalize_queued_ = true;
    std::weak_ptr<Reducer> weak = shared_from_this();
    autograd::queue_callback([weak] {
      if (auto self = weak.lock()) self->finalize();
    });
  }
  Bucket& b = buckets_[bucket_of_[param]];
  if (++b.ready == b.params.size() * active_) {
    reduce_bucket(b);
    ++reduced_early_;
  }
}

void Reducer::reduce_bucket(Bucket& b) {
  NoGradGuard no_grad;
  b.reduced = true;
  if (active_ == 1 || b.ready == 0) return;  // one replica: its gradient is the batch's; none: nothing to sum
  std::vector<Tensor> flats;
  std::vector<Device> devices(devices_.begin(), devices_.begin() + static_cast<std::ptrdiff_t>(active_));
  for (size_t r = 0; r < active_; ++r) {
    Tensor flat = empty({b.numel}, TensorOptions(b.dtype).device(devices_[r]));
    int64_t offset = 0;
    for (size_t k : b.params) {
      const Tensor& p = params_[r][k];
      Tensor slot = flat.narrow(0, offset, p.numel());
      const Tensor g = p.grad();
      if (g.defined())
        slot.copy_(g.reshape({-1}));
      else
        slot.zero_();
      offset += p.numel();
    }
    flats.push_back(flat);
  }
  Communicator::get(devices)->all_reduce(flats);
  int64_t offset = 0;
  for (size_t k : b.params) {
    const Tensor& p = params_[0][k];
    bool any = false;  // a parameter no replica used keeps no gradient, as in single-device training
    for (size_t r = 0; r < active_; ++r) any = any || seen_[r][k];
    if (!any) {
      offset += p.numel();
      continue;
    }
    Tensor sum = flats[0].narrow(0, offset, p.numel()).view(p.sizes());
    Tensor g = p.grad();
    if (g.defined())
      g.copy_(sum);
    else
      p.set_grad(sum.clone());
    offset += p.numel();
  }
}

void Reducer::finalize() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;
  for (Bucket& b : buckets_)
    if (!b.reduced) reduce_bucket(b);
  armed_ = false;
}

}  // namespace ember::parallel
