// ProcessGroup: argument checks, routing to MPI / NCCL / a world of one, sequence numbers, abort, exit hook.
#include <cstdlib>
#include <cstring>
#include <exception>

#include "parallel/distributed/detail.h"
#include "runtime/cuda/cuda.h"

namespace ember::distributed {

// ---- Work ---------------------------------------------------------------------------------------

Work::Work(std::string collective, uint64_t sequence_number, std::string description)
    : collective_(std::move(collective)), sequence_number_(sequence_number), description_(std::move(description)) {}

Work::~Work() = default;

namespace detail {

SignalWork::SignalWork(std::string collective, uint64_t seq, std::string description, Clock::time_point give_up_at)
    : Work(std::move(collective), seq, std::move(description)), give_up_at_(give_up_at) {}

void SignalWork::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!cv_.wait_until(lock, give_up_at_, [&] { return done_; }))
    EMBER_THROW(description(),
                ": got no outcome from the MPI worker of its process group long past the timeout "
                "(this is a bug in ember; please report it)");
  if (!error_.empty()) EMBER_THROW(error_);
}

bool SignalWork::is_completed() {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

bool SignalWork::is_success() {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_ && error_.empty();
}

void SignalWork::complete() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_) return;
    done_ = true;
  }
  cv_.notify_all();
}

void SignalWork::fail(const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_) return;
    done_ = true;
    error_ = message.empty() ? description() + " failed" : message;
  }
  cv_.notify_all();
}

// ---- GroupImpl --------------------------------------------------------------------------------------

GroupImpl::GroupImpl(GroupConfig config) : config_(std::move(config)) {}

GroupImpl::~GroupImpl() {
  try {
    shutdown();
  } catch (const std::exception& e) {
    ::ember::detail::log_warning(std::string("ProcessGroup: shutdown failed: ") + e.what());
  }
}

std::pair<uint64_t, std::string> GroupImpl::issue(const std::string& collective, const std::string& detail) {
  const uint64_t seq = seq_.load() + 1;
  std::string description = describe_collective(collective, seq, detail);
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    last_description_ = description;
  }
  seq_.store(seq);
  return {seq, std::move(description)};
}

std::pair<uint64_t, std::string> GroupImpl::last_issued() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return {seq_.load(), last_description_};
}

void GroupImpl::check_usable(const char* op) const {
  if (!aborted_.load() && !shut_down_.load()) return;
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (aborted_.load())
    EMBER_THROW(op, ": this process group (rank ", config_.rank, " of ", config_.size,
                ") was aborted earlier, by: ", abort_reason_);
  EMBER_CHECK(!shut_down_.load(), op, ": this process group (rank ", config_.rank, " of ", config_.size,
              ") was shut down (ProcessGroup::shutdown or destroy_process_group)");
}

std::string GroupImpl::abort_reason() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return abort_reason_;
}

void GroupImpl::abort(const std::string& reason) {
  std::shared_ptr<NcclBackend> nccl;
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    if (aborted_.load()) return;
    abort_reason_ = reason.empty() ? std::string("ProcessGroup::abort()") : reason;
    aborted_.store(true);
    nccl = nccl_;
  }
  if (mpi_) mpi_->on_abort(reason);
  if (nccl) nccl->on_abort(reason);
}

void GroupImpl::shutdown() {
  std::shared_ptr<NcclBackend> nccl;
  {
    // Under the issue mutex, so that no collective is half-issued while the backends stop.
    std::lock_guard<std::mutex> issue_lock(issue_mutex_);
    std::lock_guard<std::mutex> lock(state_mutex_);
    if (shut_down_.load()) return;
    shut_down_.store(true);
    nccl = nccl_;
  }
  if (nccl) nccl->shutdown();
  if (mpi_) mpi_->shutdown();
}

NcclBackend& GroupImpl::nccl() {
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    if (nccl_) return *nccl_;
  }
  std::shared_ptr<NcclBackend> made = make_nccl_backend(shared_from_this());
  std::lock_guard<std::mutex> lock(state_mutex_);
  nccl_ = std::move(made);
  return *nccl_;
}

// ---- registry and exit hook ---------------------------------------------------------------------

// Note [Exit hook]
// Groups own threads, MPI communicators and NCCL communicators; none of them may be torn down by a
// static destructor (the MPI library and the CUDA runtime may be gone by then). The hook, registered
// with std::atexit when MPI is initialised and again when the first NCCL communicator is made (so it
// runs before the CUDA runtime's own exit handlers, which were registered earlier), shuts every live
// group down and then finalises MPI. Groups destroyed later (a user's static) find themselves shut
// down already and make no MPI or CUDA call. The registry below is constant-initialised, so its own
// destructor runs after every handler registered at run time.
namespace {

std::mutex g_registry_mutex;
std::vector<std::weak_ptr<GroupImpl>> g_groups;
std::atomic<bool> g_exit_hook_ran{false};

void run_exit_hook() {
  if (g_exit_hook_ran.exchange(true)) return;
  std::vector<std::shared_ptr<GroupImpl>> live;
  {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    for (const auto& weak : g_groups)
      if (auto g = weak.lock()) live.push_back(std::move(g));
    g_groups.clear();
  }
  for (const auto& g : live) {
    try {
      g->shutdown();
    } catch (const std::exception& e) {
      ::ember::detail::log_warning(std::string("ProcessGroup: shutdown at exit failed: ") + e.what());
    }
  }
  live.clear();
  mpi_finalize_at_exit();
}

}  // namespace

void register_exit_hook() {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  if (std::atexit(run_exit_hook) != 0)
    ::ember::detail::log_warning("ProcessGroup: std::atexit failed; MPI will not be finalised at exit");
}

void register_group(const std::shared_ptr<GroupImpl>& group) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  std::erase_if(g_groups, [](const std::weak_ptr<GroupImpl>& w) { return w.expired(); });
  g_groups.push_back(group);
}

}  // namespace detail

// ---- ProcessGroup -------------------------------------------------------------------------------

using detail::GroupImpl;
using detail::Transport;

namespace {

std::string no_gpu_reason() {
  return cuda::is_compiled() ? "no CUDA device is available" : "ember was built without CUDA (EMBER_CUDA=OFF)";
}

// The transport for a tensor, with the NCCL device check.
Transport route(const GroupImpl& g, const char* op, Device device) {
  const Transport t = detail::choose_transport(op, g.config().backend, device, g.mpi() != nullptr);
  if (t == Transport::Nccl) {
    EMBER_CHECK(g.config().device >= 0, op, ": the tensor is on ", device,
                " but this process group has no GPU for NCCL (", no_gpu_reason(), " when it was made)");
    EMBER_CHECK(device.index() == g.config().device, op, ": the tensor is on ", device,
                " but this process group drives cuda:", g.config().device,
                " with NCCL (one GPU per process; InitOptions().device_id(...) picks it)");
  }
  return t;
}

// Issues one collective: a sequence number under the issue mutex, then the transport's call.
template <class Local, class Mpi, class Nccl>
std::shared_ptr<Work> issue(GroupImpl& g, const char* op, Transport transport, const std::string& detail_text,
                            Local&& local, Mpi&& mpi, Nccl&& nccl) {
  std::lock_guard<std::mutex> lock(g.issue_mutex());
  g.check_usable(op);
  // Made before the sequence number is taken: creating it may fail (and then uses no number).
  detail::NcclBackend* nccl_backend = transport == Transport::Nccl ? &g.nccl() : nullptr;
  auto [seq, description] = g.issue(op, detail_text);
  switch (transport) {
    case Transport::Local: {
      local();
      auto work = std::make_shared<detail::SignalWork>(op, seq, std::move(description), detail::Clock::now());
      work->complete();
      return work;
    }
    case Transport::Mpi: return mpi(*g.mpi(), seq, std::move(description));
    case Transport::Nccl: return nccl(*nccl_backend, seq, std::move(description));
  }
  EMBER_ASSERT(false, "unknown transport");
  return nullptr;
}

void copy_bytes(const Tensor& dst, const Tensor& src) {
  if (dst.raw_data() != src.raw_data()) std::memmove(dst.raw_data(), src.raw_data(), src.nbytes());
}

std::shared_ptr<Work> no_nccl(detail::NcclBackend&, uint64_t, std::string) {
  EMBER_ASSERT(false, "a collective without tensors was routed to NCCL");
  return nullptr;
}

}  // namespace

ProcessGroup::ProcessGroup(std::shared_ptr<detail::GroupImpl> impl) : impl_(std::move(impl)) {
  EMBER_CHECK(impl_ != nullptr, "ProcessGroup: made without a group; use distributed::init_process_group()");
}

ProcessGroup::~ProcessGroup() {
  try {
    impl_->shutdown();
  } catch (const std::exception& e) {
    ember::detail::log_warning(std::string("ProcessGroup: shutdown failed: ") + e.what());
  }
}

int ProcessGroup::rank() const { return impl_->config().rank; }
int ProcessGroup::size() const { return impl_->config().size; }
int ProcessGroup::local_rank() const { return impl_->config().local_rank; }
int ProcessGroup::local_size() const { return impl_->config().local_size; }
std::chrono::milliseconds ProcessGroup::timeout() const { return impl_->config().timeout; }
std::string ProcessGroup::backend() const { return impl_->config().backend; }
uint64_t ProcessGroup::sequence_number() const { return impl_->sequence_number(); }
bool ProcessGroup::is_aborted() const { return impl_->aborted(); }
void ProcessGroup::abort(const std::string& reason) {
  impl_->abort(reason.empty() ? "ProcessGroup::abort() on rank " + std::to_string(rank())
                              : reason + " (ProcessGroup::abort() on rank " + std::to_string(rank()) + ")");
}
void ProcessGroup::shutdown() { impl_->shutdown(); }

Device ProcessGroup::cuda_device() const {
  EMBER_CHECK(impl_->config().device >= 0, "ProcessGroup::cuda_device: rank ", rank(), " has no GPU for NCCL (",
              no_gpu_reason(), ")");
  return Device::cuda(impl_->config().device);
}

std::shared_ptr<Work> ProcessGroup::all_reduce_async(const Tensor& t, ReduceOp op) {
  GroupImpl& g = *impl_;
  g.check_usable("all_reduce");
  detail::check_tensor("all_reduce", t, "the tensor");
  detail::check_reduce_op("all_reduce", op, t.dtype());
  const Transport transport = route(g, "all_reduce", t.device());
  return issue(
      g, "all_reduce", transport, detail::describe(t) + ", " + detail::reduce_op_name(op), [] {},
      [&](detail::MpiBackend& b, uint64_t seq, std::string d) { return b.all_reduce(seq, std::move(d), t, op); },
      [&](detail::NcclBackend& b, uint64_t seq, std::string d) { return b.all_reduce(seq, std::move(d), t, op); });
}

void ProcessGroup::all_reduce(const Tensor& t, ReduceOp op) { all_reduce_async(t, op)->wait(); }

std::shared_ptr<Work> ProcessGroup::broadcast_async(const Tensor& t, int root) {
  GroupImpl& g = *impl_;
  g.check_usable("broadcast");
  detail::check_tensor("broadcast", t, "the tensor");
  detail::check_root("broadcast", root, size());
  const Transport transport = route(g, "broadcast", t.device());
  return issue(
      g, "broadcast", transport, detail::describe(t) + ", root " + std::to_string(root), [] {},
      [&](detail::MpiBackend& b, uint64_t seq, std::string d) { return b.broadcast(seq, std::move(d), t, root); },
      [&](detail::NcclBackend& b, uint64_t seq, std::string d) { return b.broadcast(seq, std::move(d), t, root); });
}

void ProcessGroup::broadcast(const Tensor& t, int root) { broadcast_async(t, root)->wait(); }

std::shared_ptr<Work> ProcessGroup::all_gather_async(std::vector<Tensor>& outputs, const Tensor& input) {
  GroupImpl& g = *impl_;
  g.check_usable("all_gather");
  detail::check_tensor("all_gather", input, "the input");
  const Transport transport = route(g, "all_gather", input.device());
  detail::prepare_all_gather(outputs, input, size());
  const std::vector<Tensor>& outs = outputs;
  return issue(
      g, "all_gather", transport, detail::describe(input), [&] { copy_bytes(outs[0], input); },
      [&](detail::MpiBackend& b, uint64_t seq, std::string d) { return b.all_gather(seq, std::move(d), outs, input); },
      [&](detail::NcclBackend& b, uint64_t seq, std::string d) {
        return b.all_gather(seq, std::move(d), outs, input);
      });
}

void ProcessGroup::all_gather(std::vector<Tensor>& outputs, const Tensor& input) {
  all_gather_async(outputs, input)->wait();
}

std::shared_ptr<Work> ProcessGroup::reduce_scatter_async(const Tensor& output, const std::vector<Tensor>& inputs,
                                                         ReduceOp op) {
  GroupImpl& g = *impl_;
  g.check_usable("reduce_scatter");
  detail::check_reduce_scatter(output, inputs, size());
  detail::check_reduce_op("reduce_scatter", op, output.dtype());
  const Transport transport = route(g, "reduce_scatter", output.device());
  return issue(
      g, "reduce_scatter", transport, detail::describe(output) + ", " + detail::reduce_op_name(op),
      [&] { copy_bytes(output, inputs[0]); },
      [&](detail::MpiBackend& b, uint64_t seq, std::string d) {
        return b.reduce_scatter(seq, std::move(d), output, inputs, op);
      },
      [&](detail::NcclBackend& b, uint64_t seq, std::string d) {
        return b.reduce_scatter(seq, std::move(d), output, inputs, op);
      });
}

void ProcessGroup::reduce_scatter(const Tensor& output, const std::vector<Tensor>& inputs, ReduceOp op) {
  reduce_scatter_async(output, inputs, op)->wait();
}

std::shared_ptr<Work> ProcessGroup::barrier_async() {
  GroupImpl& g = *impl_;
  g.check_usable("barrier");
  const Transport transport = g.mpi() != nullptr ? Transport::Mpi : Transport::Local;
  return issue(
      g, "barrier", transport, "", [] {},
      [&](detail::MpiBackend& b, uint64_t seq, std::string d) { return b.barrier(seq, std::move(d)); }, no_nccl);
}

void ProcessGroup::barrier() { barrier_async()->wait(); }

std::vector<std::string> ProcessGroup::all_gather_bytes(const std::string& mine) {
  GroupImpl& g = *impl_;
  g.check_usable("all_gather_bytes");
  const Transport transport = g.mpi() != nullptr ? Transport::Mpi : Transport::Local;
  std::shared_ptr<detail::BytesWork> bytes_work;
  std::shared_ptr<Work> work = issue(
      g, "all_gather_bytes", transport, "", [] {},
      [&](detail::MpiBackend& b, uint64_t seq, std::string d) {
        bytes_work = b.all_gather_bytes(seq, std::move(d), mine);
        return std::static_pointer_cast<Work>(bytes_work);
      },
      no_nccl);
  work->wait();
  if (!bytes_work) return {mine};
  return std::move(bytes_work->result);
}

// ---- init ---------------------------------------------------------------------------------------

std::shared_ptr<ProcessGroup> init_process_group(InitOptions options) {
  detail::GroupConfig config;
  config.backend = detail::parse_backend(options.backend());
  EMBER_CHECK(options.timeout().count() > 0, "init_process_group: the timeout must be positive, got ",
              options.timeout().count(), " ms");
  config.timeout = options.timeout();
  // GPU checks come before any MPI call, so that ranks which fail them all fail the same way, alone.
  const bool gpus = cuda::is_available();
  EMBER_CHECK(config.backend != "nccl" || gpus, "init_process_group: backend \"nccl\" needs a GPU, but ",
              no_gpu_reason(), "; use backend \"mpi\" (or \"auto\") for CPU tensors");
  EMBER_CHECK(options.device_id() >= -1, "init_process_group: device_id(", options.device_id(),
              ") is not a CUDA device index");
  if (options.device_id() >= 0)
    EMBER_CHECK(gpus && options.device_id() < cuda::device_count(), "init_process_group: device_id(",
                options.device_id(), ") but this process sees ", gpus ? cuda::device_count() : 0, " GPUs",
                gpus ? "" : std::string(" (") + no_gpu_reason() + ")");

  const detail::LaunchInfo launch = detail::detect_launcher();
  if (launch.launched) {
    const detail::MpiWorldInfo world = detail::mpi_world_init(launch);
    config.rank = world.rank;
    config.size = world.size;
    config.local_rank = world.local_rank;
    config.local_size = world.local_size;
  }
  if (options.device_id() >= 0)
    config.device = options.device_id();
  else if (gpus)
    config.device = config.local_rank % cuda::device_count();

  auto impl = std::make_shared<GroupImpl>(config);
  if (launch.launched) impl->set_mpi(detail::make_mpi_backend(*impl));
  detail::register_group(impl);
  return std::make_shared<ProcessGroup>(std::move(impl));
}

void destroy_process_group(const std::shared_ptr<ProcessGroup>& group) {
  EMBER_CHECK(group != nullptr, "destroy_process_group: the group is null");
  group->shutdown();
}

}  // namespace ember::distributed
