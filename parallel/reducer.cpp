// Reducer (Note [Reducer]): buckets and their buffers, grad-ready hooks, in-order bucket launches,
// end-of-backward finalisation.
#include "parallel/reducer.h"

#include <algorithm>
#include <chrono>

#include "kernels/ops.h"
#include "runtime/autograd/engine.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::parallel {

std::shared_ptr<Reducer> Reducer::create(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices,
                                         BucketReduce reduce, ReducerOptions options) {
  std::shared_ptr<Reducer> r(
      new Reducer(std::move(replica_params), std::move(devices), std::move(reduce), std::move(options)));
  r->build_buckets();
  r->allocate_buffers();
  r->install_hooks();
  return r;
}

std::shared_ptr<Reducer> Reducer::create(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices,
                                         size_t first_bucket_bytes, size_t bucket_bytes, bool always_communicate) {
  ReducerOptions options;
  options.first_bucket_bytes = first_bucket_bytes;
  options.bucket_bytes = bucket_bytes;
  options.always_communicate = always_communicate;
  // In-process replicas are summed: flats[r] sits on devices[r] (the first flats.size() of them).
  BucketReduce sum = [devices](size_t, const std::vector<Tensor>& flats) -> std::function<void()> {
    std::vector<Device> active(devices.begin(), devices.begin() + static_cast<std::ptrdiff_t>(flats.size()));
    std::shared_ptr<Communicator> comm = Communicator::get(active);
    comm->all_reduce(flats);
    // On GPUs the sum is ordered on the streams, not waited for; what finalize can still do is report a
    // collective that already failed (the watchdog's verdict) instead of stepping with partial sums.
    return [comm] { comm->check(); };
  };
  return create(std::move(replica_params), std::move(devices), std::move(sum), options);
}

Reducer::Reducer(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices, BucketReduce reduce,
                 ReducerOptions options)
    : params_(std::move(replica_params)),
      devices_(std::move(devices)),
      reduce_(std::move(reduce)),
      options_(options) {
  EMBER_CHECK(!params_.empty() && params_.size() == devices_.size(), "Reducer: ", params_.size(),
              " replicas for ", devices_.size(), " devices");
  EMBER_CHECK(reduce_ != nullptr, "Reducer: no bucket reduction given");
  for (size_t r = 1; r < params_.size(); ++r)
    EMBER_CHECK(params_[r].size() == params_[0].size(), "Reducer: replica ", r, " has ", params_[r].size(),
                " parameters but the module has ", params_[0].size());
  for (size_t r = 0; r < params_.size(); ++r)
    for (size_t k = 0; k < params_[r].size(); ++k)
      EMBER_CHECK(params_[r][k].device() == devices_[r], "Reducer: parameter ", k, " of replica ", r, " is on ",
                  params_[r][k].device(), " but the replica's device is ", devices_[r]);
  seen_.assign(params_.size(), std::vector<bool>(params_[0].size(), false));
}

void Reducer::build_buckets() {
  const size_t n = params_[0].size();
  bucket_of_.assign(n, 0);
  // One open bucket per dtype; reverse registration order. As PyTorch's compute_bucket_assignment_by_size:
  // a parameter joins the open bucket, which closes once it holds at least its cap. Each dtype's first
  // bucket has the small cap, so that the first all-reduce starts early in backward (and a large last
  // layer closes it rather than waiting in a later bucket for the end of backward).
  std::vector<int> open(kNumDTypes, -1);
  std::vector<size_t> bytes(kNumDTypes, 0);
  std::vector<int> count(kNumDTypes, 0);
  for (size_t k = n; k-- > 0;) {
    const Tensor& p = params_[0][k];
    if (!p.requires_grad()) continue;
    const int dt = static_cast<int>(p.dtype());
    if (open[dt] < 0) {
      open[dt] = static_cast<int>(buckets_.size());
      buckets_.emplace_back();
      buckets_.back().dtype = p.dtype();
      bytes[dt] = 0;
      ++count[dt];
    }
    Bucket& b = buckets_[static_cast<size_t>(open[dt])];
    b.params.push_back(k);
    b.numel += p.numel();
    bytes[dt] += p.nbytes();
    bucket_of_[k] = static_cast<size_t>(open[dt]);
    const size_t cap = count[dt] == 1 ? options_.first_bucket_bytes : options_.bucket_bytes;
    if (bytes[dt] >= cap) open[dt] = -1;
  }
  ready_streams_.assign(buckets_.size(), std::vector<std::vector<cuda::Stream>>(params_.size()));
}

void Reducer::allocate_buffers() {
  NoGradGuard no_grad;
  buffers_.assign(params_.size(), {});
  views_.assign(params_.size(), std::vector<Tensor>(params_[0].size()));
  for (size_t r = 0; r < params_.size(); ++r) {
    for (const Bucket& b : buckets_) {
      Tensor flat = zeros({b.numel}, TensorOptions(b.dtype).device(devices_[r]));
      int64_t offset = 0;
      for (size_t k : b.params) {
        const Tensor& p = params_[r][k];
        Tensor view = flat.narrow(0, offset, p.numel()).view(p.sizes());
        // A gradient the parameter already has moves into its slot now.
        const Tensor g = p.grad();
        if (g.defined() && options_.gradient_as_bucket_view) {
          view.copy_(g);
          p.set_grad(view);
        }
        views_[r][k] = std::move(view);
        offset += p.numel();
      }
      buffers_[r].push_back(std::move(flat));
    }
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

std::vector<size_t> Reducer::take_unready_parameters() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(unready_, {});
}

void Reducer::prepare_for_backward(size_t active) {
  std::lock_guard<std::mutex> lock(mutex_);
  EMBER_ASSERT(active >= 1 && active <= params_.size(), "active replicas ", active);
  active_ = active;
  armed_ = require_sync_;
  finalize_queued_ = false;
  reduced_early_ = 0;
  next_bucket_ = 0;
  pending_.clear();
  for (Bucket& b : buckets_) {
    b.ready = 0;
    b.launched = false;
  }
  for (auto& per_replica : ready_streams_)
    for (auto& streams : per_replica) streams.clear();
  for (auto& row : seen_) row.assign(row.size(), false);
  // Replicas other than the module start from no gradient: only this step's contribution is summed.
  NoGradGuard no_grad;
  for (size_t r = 1; r < params_.size(); ++r)
    for (const Tensor& p : params_[r]) p.set_grad(Tensor());
}

bool Reducer::is_view(size_t replica, size_t param) const {
  const Tensor g = params_[replica][param].grad();
  const Tensor& v = views_[replica][param];
  return g.defined() && g.storage().get() == v.storage().get() && g.raw_data() == v.raw_data() &&
         g.sizes() == v.sizes() && g.is_contiguous();
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
  const size_t b = bucket_of_[param];
  {
    // Runs on the thread and stream that produced the gradient (AccumulateGrad's): the copy into the
    // slot, when needed, is ordered after it.
    NoGradGuard no_grad;
    const Tensor& p = params_[replica][param];
    if (!is_view(replica, param)) {
      views_[replica][param].copy_(p.grad());
      if (options_.gradient_as_bucket_view) p.set_grad(views_[replica][param]);
    }
    if (devices_[replica].is_cuda()) {
      const cuda::Stream s = cuda::current_stream(devices_[replica].index());
      auto& streams = ready_streams_[b][replica];
      if (std::find(streams.begin(), streams.end(), s) == streams.end()) streams.push_back(s);
    }
  }
  if (++buckets_[b].ready == buckets_[b].params.size() * active_) {
    const size_t before = next_bucket_;
    launch_ready_buckets();
    reduced_early_ += next_bucket_ - before;
  }
}

void Reducer::launch_ready_buckets() {
  while (next_bucket_ < buckets_.size()) {
    Bucket& b = buckets_[next_bucket_];
    if (b.ready != b.params.size() * active_) return;
    launch(next_bucket_++);
  }
}

void Reducer::launch(size_t index) {
  NoGradGuard no_grad;
  Bucket& b = buckets_[index];
  b.launched = true;
  // One replica's gradient is already the batch's (DataParallel on one device), unless told otherwise.
  const bool communicate = active_ > 1 || options_.always_communicate;
  // On GPUs each replica's reduction is ordered after the streams that produced its gradients: the
  // first of them is made current for the launch and waits for the others.
  // Guards of several devices must be undone in reverse order to restore the thread's current device.
  struct GuardStack {
    std::vector<std::unique_ptr<cuda::StreamGuard>> guards;
    ~GuardStack() {
      while (!guards.empty()) guards.pop_back();
    }
  } stack;
  auto& guards = stack.guards;
  std::vector<Tensor> flats;
  for (size_t r = 0; r < active_; ++r) {
    if (devices_[r].is_cuda()) {
      const auto& streams = ready_streams_[index][r];
      const cuda::Stream s = streams.empty() ? cuda::current_stream(devices_[r].index()) : streams[0];
      for (size_t i = 1; i < streams.size(); ++i) s.wait(streams[i]);
      guards.push_back(std::make_unique<cuda::StreamGuard>(s));
    }
    // Slots of parameters with no gradient this step hold zeros (or the gradient kept in the slot).
    for (size_t k : b.params) {
      if (seen_[r][k] || is_view(r, k)) continue;
      const Tensor g = params_[r][k].grad();
      if (g.defined())
        views_[r][k].copy_(g);
      else
        views_[r][k].zero_();
    }
    flats.push_back(buffers_[r][index]);
  }
  if (communicate) {
    std::function<void()> finish = reduce_(index, flats);
    if (finish) pending_.push_back(std::move(finish));
  }
}

void Reducer::reduce_zeros() {
  std::lock_guard<std::mutex> lock(mutex_);
  EMBER_CHECK(params_.size() == 1, "Reducer::reduce_zeros: only for one replica per process (DDP)");
  NoGradGuard no_grad;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    buffers_[0][i].zero_();
    std::function<void()> finish = reduce_(i, {buffers_[0][i]});
    if (finish) finish();
  }
}

void Reducer::finalize() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;
  armed_ = false;
  const auto start = std::chrono::steady_clock::now();
  NoGradGuard no_grad;
  // Buckets whose parameters did not all get a gradient: as zeros, or (without find_unused_parameters)
  // left unreduced from the first such bucket on, their parameters named at the next forward.
  while (next_bucket_ < buckets_.size()) {
    Bucket& b = buckets_[next_bucket_];
    if (b.ready != b.params.size() * active_ && !options_.find_unused_parameters) {
      for (size_t i = next_bucket_; i < buckets_.size(); ++i)
        for (size_t k : buckets_[i].params)
          for (size_t r = 0; r < active_; ++r)
            if (!seen_[r][k]) {
              unready_.push_back(k);
              break;
            }
      std::sort(unready_.begin(), unready_.end());
      break;
    }
    launch(next_bucket_++);
  }
  std::vector<std::function<void()>> pending = std::exchange(pending_, {});
  for (auto& finish : pending) finish();
  finalize_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // What the reductions wrote is ordered before the caller's current streams (the optimizer's).
  for (size_t r = 0; r < active_; ++r) {
    if (!devices_[r].is_cuda()) continue;
    const cuda::Stream caller = cuda::current_stream(devices_[r].index());
    for (const auto& per_replica : ready_streams_)
      for (const cuda::Stream& s : per_replica[r]) caller.wait(s);
  }
  for (size_t i = 0; i < next_bucket_; ++i) {
    for (size_t k : buckets_[i].params) {
      bool any = false;  // a parameter no replica used keeps no gradient, as in single-device training
      for (size_t r = 0; r < active_; ++r) any = any || seen_[r][k];
      if (!(any || options_.grad_for_unused) || is_view(0, k)) continue;
      const Tensor& p = params_[0][k];
      Tensor g = p.grad();
      if (options_.gradient_as_bucket_view)
        p.set_grad(views_[0][k]);
      else if (g.defined())
        g.copy_(views_[0][k]);  // on the caller's current stream, after the reduction (ordered above)
      else
        p.set_grad(views_[0][k].clone());
    }
  }
}

}  // namespace ember::parallel
