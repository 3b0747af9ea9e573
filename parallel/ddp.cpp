// DistributedDataParallel's untemplated core (Note [DistributedDataParallel]) and the built-in comm hooks.
#include "parallel/ddp.h"

#include <algorithm>
#include <sstream>

#include "kernels/ops.h"

namespace ember::parallel {

// ---- communication hooks ------------------------------------------------------------------------

std::function<void()> allreduce_hook(distributed::ProcessGroup& group, const GradBucket& bucket) {
  Tensor buffer = bucket.buffer();
  if (bucket.divisor() != 1) buffer.div_(static_cast<double>(bucket.divisor()));
  auto work = group.all_reduce_async(buffer, distributed::ReduceOp::Sum);
  return [work] { work->wait(); };
}

namespace {

std::function<void()> compressed_allreduce(distributed::ProcessGroup& group, const GradBucket& bucket, DType wire) {
  Tensor buffer = bucket.buffer();
  Tensor compressed = buffer.to(wire);
  if (bucket.divisor() != 1) compressed.div_(static_cast<double>(bucket.divisor()));
  auto work = group.all_reduce_async(compressed, distributed::ReduceOp::Sum);
  return [work, compressed, buffer]() mutable {
    work->wait();
    NoGradGuard no_grad;
    if (compressed.raw_data() == buffer.raw_data()) return;
    buffer.copy_(compressed);
    // Made on the stream the bucket was launched from, read here on the caller's: keep its memory
    // from that stream's next allocations until the copy has run.
    if (compressed.is_cuda()) compressed.record_stream(cuda::current_stream(compressed.device().index()));
  };
}

}  // namespace

std::function<void()> fp16_compress(distributed::ProcessGroup& group, const GradBucket& bucket) {
  return compressed_allreduce(group, bucket, kFloat16);
}

std::function<void()> bf16_compress(distributed::ProcessGroup& group, const GradBucket& bucket) {
  return compressed_allreduce(group, bucket, kBFloat16);
}

namespace detail {

namespace {

// One line per parameter and buffer: what every rank's model must agree on.
std::vector<std::string> model_signature(const nn::Module& module) {
  std::vector<std::string> lines;
  for (const auto& [name, p] : module.named_parameters()) {
    std::ostringstream os;
    os << "parameter '" << name << "' " << p.sizes() << " " << dtype_name(p.dtype())
       << (p.requires_grad() ? "" : " (no grad)");
    lines.push_back(os.str());
  }
  for (const auto& [name, b] : module.named_buffers()) {
    if (!b.defined()) continue;
    std::ostringstream os;
    os << "buffer '" << name << "' " << b.sizes() << " " << dtype_name(b.dtype());
    lines.push_back(os.str());
  }
  return lines;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string line; std::getline(is, line);) out.push_back(line);
  return out;
}

}  // namespace

DdpCore::DdpCore(nn::Module& module, std::shared_ptr<distributed::ProcessGroup> group, DDPOptions options)
    : module_(module), group_(std::move(group)), options_(std::move(options)), hook_(allreduce_hook) {
  // Every parameter and buffer on one device: the group picks NCCL or MPI by that device.
  std::vector<Tensor> params;
  bool have_device = false;
  for (const auto& [name, p] : module_.named_parameters()) {
    if (!have_device) {
      device_ = p.device();
      have_device = true;
    }
    EMBER_CHECK(p.device() == device_, "DistributedDataParallel: parameter '", name, "' is on ", p.device(),
                " but the first parameter is on ", device_, "; one process drives one device: move the whole module "
                "there (module->to(device))");
    if (!p.requires_grad()) continue;
    params.push_back(p);
    param_names_.push_back(name);
  }
  for (const auto& [name, b] : module_.named_buffers()) {
    if (!b.defined()) continue;
    if (!have_device) {
      device_ = b.device();
      have_device = true;
    }
    EMBER_CHECK(b.device() == device_, "DistributedDataParallel: buffer '", name, "' is on ", b.device(),
                " but the parameters are on ", device_);
    buffers_.push_back(b);
  }
  divisor_ = group_->size();
  check_same_model_on_every_rank();
  broadcast_state(/*parameters_too=*/true);

  ReducerOptions ro;
  ro.bucket_bytes = std::max<size_t>(1, static_cast<size_t>(options_.bucket_cap_mb() * 1024.0 * 1024.0));
  ro.first_bucket_bytes = std::min(Reducer::kFirstBucketBytes, ro.bucket_bytes);
  ro.find_unused_parameters = options_.find_unused_parameters();
  ro.grad_for_unused = true;
  ro.always_communicate = true;
  ro.gradient_as_bucket_view = options_.gradient_as_bucket_view();
  // The reducer (owned by this core) calls back into it only while it exists.
  BucketReduce reduce = [this](size_t index, const std::vector<Tensor>& flats) -> std::function<void()> {
    const GradBucket bucket(index, flats[0], bucket_params_[index], index + 1 == bucket_params_.size(), divisor_);
    return hook_(*group_, bucket);
  };
  reducer_ = Reducer::create({params}, {device_}, std::move(reduce), ro);
  for (const auto& ks : reducer_->bucket_layout()) {
    bucket_params_.emplace_back();
    for (size_t k : ks) bucket_params_.back().push_back(params[k]);
  }
}

void DdpCore::check_same_model_on_every_rank() {
  const std::vector<std::string> mine = model_signature(module_);
  if (group_->size() == 1) return;
  const std::vector<std::string> all = group_->all_gather_bytes(join_lines(mine));
  const std::vector<std::string> reference = split_lines(all[0]);
  std::vector<int> differing;
  std::string first;
  for (size_t r = 1; r < all.size(); ++r) {
    const std::vector<std::string> theirs = split_lines(all[r]);
    if (theirs == reference) continue;
    differing.push_back(static_cast<int>(r));
    if (!first.empty()) continue;
    size_t i = 0;
    while (i < theirs.size() && i < reference.size() && theirs[i] == reference[i]) ++i;
    std::ostringstream os;
    os << "rank 0 has " << (i < reference.size() ? reference[i] : "nothing more") << " where rank " << r << " has "
       << (i < theirs.size() ? theirs[i] : "nothing more") << " (entry " << i << "; rank 0 has " << reference.size()
       << " parameters and buffers, rank " << r << " has " << theirs.size() << ")";
    first = os.str();
  }
  if (differing.empty()) return;
  std::ostringstream ranks;
  for (size_t i = 0; i < differing.size(); ++i) ranks << (i ? ", " : "") << differing[i];
  EMBER_THROW("DistributedDataParallel: the model is not the same on every rank: ", first,
              ". Ranks whose model differs from rank 0's: ", ranks.str(),
              ". Build the same architecture on every rank before wrapping it");
}

void DdpCore::broadcast_state(bool parameters_too) {
  if (group_->size() == 1) return;
  NoGradGuard no_grad;
  std::vector<std::shared_ptr<distributed::Work>> works;
  auto send = [&](const Tensor& t, const char* what) {
    EMBER_CHECK(t.is_contiguous(), "DistributedDataParallel: a ", what, " of shape ", t.sizes(),
                " is not contiguous and cannot be broadcast in place");
    works.push_back(group_->broadcast_async(t, 0));
  };
  if (parameters_too)
    for (const Tensor& p : module_.parameters()) send(p, "parameter");
  for (const Tensor& b : buffers_) send(b, "buffer");
  for (auto& w : works) w->wait();
}

int64_t DdpCore::count_active(bool active) {
  Tensor vote = full({1}, active ? 1.0 : 0.0, TensorOptions(kInt64).device(device_));
  group_->all_reduce(vote, distributed::ReduceOp::Sum);
  return vote.item<int64_t>();
}

void DdpCore::before_forward() {
  const std::vector<size_t> unready = reducer_->take_unready_parameters();
  if (!unready.empty()) {
    std::string names;
    for (size_t i = 0; i < unready.size(); ++i) names += (i ? ", '" : "'") + param_names_[unready[i]] + "'";
    EMBER_THROW("DistributedDataParallel: the last backward on rank ", group_->rank(),
                " produced no gradient for these parameters, so their buckets were never reduced: ", names,
                ". Make every parameter take part in the loss, or construct DDP with "
                "DDPOptions().find_unused_parameters(true)");
  }
  divisor_ = joinable_ ? count_active(true) : group_->size();
  // As PyTorch: buffers are synced for training steps (grad mode on, gradients synced), so evaluating
  // under NoGradGuard, or accumulating under no_sync(), communicates nothing.
  const bool training_step = GradMode::is_enabled() && reducer_->require_sync();
  if (training_step && options_.broadcast_buffers() && !buffers_.empty()) broadcast_state(/*parameters_too=*/false);
  if (GradMode::is_enabled()) reducer_->prepare_for_backward(1);
}

void DdpCore::set_require_sync(bool require) {
  EMBER_CHECK(require || !joinable_, "DistributedDataParallel: no_sync() inside join() is not supported (a rank "
              "that has joined could not tell which steps communicate)");
  reducer_->set_require_sync(require);
}

bool DdpCore::require_sync() const { return reducer_->require_sync(); }

void DdpCore::register_comm_hook(CommHook hook) {
  EMBER_CHECK(hook != nullptr, "DistributedDataParallel::register_comm_hook: the hook is empty");
  hook_ = std::move(hook);
}

void DdpCore::join_begin() {
  EMBER_CHECK(!joinable_, "DistributedDataParallel: join() is already active");
  EMBER_CHECK(reducer_->require_sync(), "DistributedDataParallel: join() inside no_sync() is not supported");
  joinable_ = true;
}

void DdpCore::join_end() {
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{joinable_};
  // This rank has no more batches: shadow the steps of those that still have, until none has.
  while (true) {
    const int64_t active = count_active(false);
    if (active == 0) break;
    divisor_ = active;
    if (options_.broadcast_buffers() && !buffers_.empty()) broadcast_state(/*parameters_too=*/false);
    reducer_->reduce_zeros();
  }
  divisor_ = group_->size();
}

}  // namespace detail
}  // namespace ember::parallel
