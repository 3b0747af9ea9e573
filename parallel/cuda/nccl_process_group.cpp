// NCCL side of process groups: a non-blocking NCCL communicator per group, its own stream, works polled to a deadline.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <thread>

#include "parallel/distributed/detail.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"
#include "runtime/factory.h"

namespace ember::distributed::detail {

using ::ember::detail::str_cat;

namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Float16: return ncclFloat16;
    case DType::BFloat16: return ncclBfloat16;
    case DType::Int64: return ncclInt64;
    case DType::Int32: return ncclInt32;
    case DType::UInt8: return ncclUint8;
    case DType::Bool: return ncclUint8;  // 0/1 bytes: or = max, and = min
  }
  EMBER_THROW("NCCL: no datatype for ", t);
}

ncclRedOp_t nccl_op(ReduceOp op, DType t) {
  if (t == DType::Bool) return op == ReduceOp::Min ? ncclMin : ncclMax;
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

std::string nccl_error_text(ncclResult_t rc, ncclComm_t comm) {
  const char* last = ncclGetLastError(comm);
  return str_cat(ncclGetErrorString(rc), " (NCCL code ", static_cast<int>(rc), ")",
                 last != nullptr && last[0] != '\0' ? str_cat(": ", last) : std::string());
}

std::once_flag g_exit_hook_once;

// DeviceGuard for paths that must not throw (abort, shutdown): failures are logged.
class QuietDeviceGuard {
 public:
  explicit QuietDeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device) EMBER_CUDA_WARN(cudaSetDevice(device));
  }
  ~QuietDeviceGuard() {
    if (previous_ >= 0) EMBER_CUDA_WARN(cudaSetDevice(previous_));
  }
  QuietDeviceGuard(const QuietDeviceGuard&) = delete;
  QuietDeviceGuard& operator=(const QuietDeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

class NcclBackendImpl;

// Note [NCCL works]
// A collective is queued on the group's communication stream after the caller's current stream (an
// event recorded there is waited on by the communication stream), and an end event is recorded after
// it. The tensors are marked as used by the communication stream (record_stream), so the caching
// allocator does not hand their memory out again before the collective finished, whatever the caller
// does with them; the work also holds them until it completes. wait() polls the end event and NCCL's
// asynchronous error state on the host until the deadline (issue time + timeout); on success it
// makes the caller's current stream wait for the end event (which has completed by then), so the
// caller's later work is ordered after the collective even on a stream it has not synchronised. On an
// NCCL error or at the deadline, the group is aborted (ncclCommAbort: NCCL's kernels exit and the
// communication stream drains) and wait() throws. A watchdog thread polls the works in flight every
// 100 ms, so a collective nobody waits for is still caught.
class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclBackendImpl> backend, std::string collective, uint64_t seq, std::string description,
           Clock::time_point issued, Clock::time_point deadline, std::vector<Tensor> keep)
      : Work(std::move(collective), seq, std::move(description)),
        backend_(std::move(backend)),
        issued_(issued),
        deadline_(deadline),
        keep_(std::move(keep)) {}

  void wait() override;
  bool is_completed() override;
  bool is_success() override;

  enum class State { Running, Done, Failed };
  // The recorded outcome, if any.
  State state() {
    std::lock_guard<std::mutex> lock(mutex_);
    return !done_ ? State::Running : error_.empty() ? State::Done : State::Failed;
  }
  // The first outcome wins.
  void finish(const std::string& error) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_) return;
    done_ = true;
    error_ = error;
    keep_.clear();  // record_stream protects the memory from here on
  }
  std::string error() {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
  }
  void keep(Tensor t) {
    std::lock_guard<std::mutex> lock(mutex_);
    keep_.push_back(std::move(t));
  }

  cuda::Event end;
  Clock::time_point issued() const { return issued_; }
  Clock::time_point deadline() const { return deadline_; }

 private:
  std::shared_ptr<NcclBackendImpl> backend_;
  Clock::time_point issued_;
  Clock::time_point deadline_;
  std::mutex mutex_;
  bool done_ = false;
  std::string error_;
  std::vector<Tensor> keep_;
};

class NcclBackendImpl final : public NcclBackend, public std::enable_shared_from_this<NcclBackendImpl> {
 public:
  explicit NcclBackendImpl(const std::shared_ptr<GroupImpl>& group)
      : group_(group), config_(group->config()), device_(group->config().device) {}

  ~NcclBackendImpl() override {
    try {
      shutdown();
    } catch (const std::exception& e) {
      ::ember::detail::log_warning(std::string("ProcessGroup: NCCL backend shutdown failed: ") + e.what());
    }
  }

  // Note [NCCL communicator creation]
  // Rank 0 makes the ncclUniqueId and the group's MPI worker broadcasts it (an internal step, ordered
  // with the group's MPI collectives and bounded by the timeout); a world of one makes it locally, so a
  // single GPU runs the whole NCCL path (nranks 1). ncclCommInitRankConfig with config.blocking = 0
  // returns at once; its completion is polled with ncclCommGetAsyncError against the timeout, and a
  // communicator that does not come up in time is aborted. Made on the group's first CUDA collective,
  // as PyTorch does without device_id, so CPU-only programs never touch a GPU.
  void init() {
    EMBER_CHECK(device_ >= 0, "ProcessGroup (rank ", config_.rank, "): no GPU for NCCL");
    cuda::check_device(Device::cuda(device_), "ProcessGroup (NCCL)");
    DeviceGuard guard(device_);
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    if (config_.rank == 0) EMBER_NCCL_CHECK(ncclGetUniqueId(&id));
    if (config_.size > 1) {
      std::shared_ptr<GroupImpl> group = group_.lock();
      EMBER_ASSERT(group != nullptr && group->mpi() != nullptr, "NCCL over several ranks without MPI");
      const std::string mine(reinterpret_cast<const char*>(&id), config_.rank == 0 ? sizeof(id) : 0);
      const std::string got = group->mpi()->broadcast_bytes(
          mine, sizeof(id), 0,
          str_cat("the broadcast of NCCL's unique id (creating the NCCL communicator on cuda:", device_,
                  " after sequence number ", group->sequence_number(), ")"));
      std::memcpy(&id, got.data(), sizeof(id));
    }
    int least = 0, greatest = 0;
    EMBER_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    EMBER_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));

    const auto start = Clock::now();
    std::string failure;
    {
      std::lock_guard<std::mutex> lock(comm_mutex_);
      ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
      config.blocking = 0;
      config.commName = "ember process group";
      const ncclResult_t rc = ncclCommInitRankConfig(&comm_, config_.size, id, config_.rank, &config);
      if (rc != ncclSuccess && rc != ncclInProgress) {
        failure = str_cat("creating the NCCL communicator failed: ", nccl_error_text(rc, comm_));
      } else {
        failure = wait_ready_locked(start + config_.timeout, "creating the NCCL communicator");
      }
      if (!failure.empty() && comm_ != nullptr) {
        const ncclResult_t abort_rc = ncclCommAbort(comm_);
        if (abort_rc != ncclSuccess)
          ::ember::detail::log_warning(str_cat("ncclCommAbort failed: ", ncclGetErrorString(abort_rc)));
        comm_ = nullptr;
      }
      comm_dead_ = !failure.empty();
    }
    if (!failure.empty()) {
      const std::string message =
          str_cat("ProcessGroup rank ", config_.rank, " of ", config_.size, " on cuda:", device_, ": ", failure);
      if (auto group = group_.lock()) group->abort(message);
      EMBER_THROW(message);
    }
    std::call_once(g_exit_hook_once, [] { register_exit_hook(); });
    watchdog_ = std::thread([this] { watch(); });
  }

  std::shared_ptr<Work> all_reduce(uint64_t seq, std::string desc, const Tensor& t, ReduceOp op) override {
    const ncclDataType_t type = nccl_type(t.dtype());
    const ncclRedOp_t rop = nccl_op(op, t.dtype());
    return launch("all_reduce", seq, std::move(desc), {t}, [&](ncclComm_t comm, cudaStream_t s, NcclWork&) {
      if (t.numel() == 0) return ncclSuccess;
      return ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), type, rop, comm, s);
    });
  }

  std::shared_ptr<Work> broadcast(uint64_t seq, std::string desc, const Tensor& t, int root) override {
    const ncclDataType_t type = nccl_type(t.dtype());
    return launch("broadcast", seq, std::move(desc), {t}, [&](ncclComm_t comm, cudaStream_t s, NcclWork&) {
      if (t.numel() == 0) return ncclSuccess;
      return ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), type, root, comm, s);
    });
  }

  std::shared_ptr<Work> all_gather(uint64_t seq, std::string desc, const std::vector<Tensor>& outputs,
                                   const Tensor& input) override {
    const ncclDataType_t type = nccl_type(input.dtype());
    std::vector<Tensor> used(outputs);
    used.push_back(input);
    const size_t n = static_cast<size_t>(input.numel());
    const size_t nbytes = input.nbytes();
    const size_t total = nbytes * outputs.size();
    char* base = static_cast<char*>(consecutive_base(outputs));
    const char* in = static_cast<const char*>(input.raw_data());
    const bool in_place = base != nullptr && in == base + static_cast<size_t>(config_.rank) * nbytes;
    const bool direct = base != nullptr && (in_place || in + nbytes <= base || in >= base + total);
    char* staging = nullptr;
    return launch(
        "all_gather", seq, std::move(desc), std::move(used),
        [&](ncclComm_t comm, cudaStream_t s, NcclWork& work) {
          if (n == 0) return ncclSuccess;
          if (direct) return ncclAllGather(in, base, n, type, comm, s);
          // Outputs in separate buffers: gather into one, then copy the pieces out (same stream).
          Tensor flat = empty({static_cast<int64_t>(n * outputs.size())}, input.options());
          work.keep(flat);
          staging = static_cast<char*>(flat.raw_data());
          return ncclAllGather(in, staging, n, type, comm, s);
        },
        [&](cudaStream_t s) {
          if (staging == nullptr) return;
          for (size_t j = 0; j < outputs.size(); ++j)
            EMBER_CUDA_CHECK(
                cudaMemcpyAsync(outputs[j].raw_data(), staging + j * nbytes, nbytes, cudaMemcpyDeviceToDevice, s));
        });
  }

  std::shared_ptr<Work> reduce_scatter(uint64_t seq, std::string desc, const Tensor& output,
                                       const std::vector<Tensor>& inputs, ReduceOp op) override {
    const ncclDataType_t type = nccl_type(output.dtype());
    const ncclRedOp_t rop = nccl_op(op, output.dtype());
    std::vector<Tensor> used(inputs);
    used.push_back(output);
    const size_t n = static_cast<size_t>(output.numel());
    const size_t nbytes = output.nbytes();
    const size_t total = nbytes * inputs.size();
    const char* base = static_cast<const char*>(consecutive_base(inputs));
    char* out = static_cast<char*>(output.raw_data());
    const bool in_place = base != nullptr && out == base + static_cast<size_t>(config_.rank) * nbytes;
    const bool direct = base != nullptr && (in_place || out + nbytes <= base || out >= base + total);
    return launch(
        "reduce_scatter", seq, std::move(desc), std::move(used), [&](ncclComm_t comm, cudaStream_t s, NcclWork& work) {
          if (n == 0) return ncclSuccess;
          if (direct) return ncclReduceScatter(base, out, n, type, rop, comm, s);
          Tensor flat = empty({static_cast<int64_t>(n * inputs.size())}, output.options());
          work.keep(flat);
          char* staging = static_cast<char*>(flat.raw_data());
          for (size_t j = 0; j < inputs.size(); ++j)
            EMBER_CUDA_CHECK(
                cudaMemcpyAsync(staging + j * nbytes, inputs[j].raw_data(), nbytes, cudaMemcpyDeviceToDevice, s));
          return ncclReduceScatter(staging, out, n, type, rop, comm, s);
        });
  }

  void on_abort(const std::string& reason) override {
    {
      std::lock_guard<std::mutex> lock(works_mutex_);
      if (failure_.empty()) failure_ = reason;
      for (const auto& w : outstanding_) {
        if (w->state() != NcclWork::State::Running) continue;
        // Finished before the abort: a success. Otherwise it fails with the reason.
        if (w.get() == culprit_)
          w->finish(reason);
        else if (event_done(*w))
          w->finish("");
        else
          w->finish(str_cat(w->description(), " was in flight when the process group was aborted, by: ", reason));
      }
      outstanding_.clear();
    }
    abort_comm();
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(works_mutex_);
      if (shut_down_) return;
      shut_down_ = true;
    }
    stop_watchdog();
    // Let the collectives in flight finish (each until its deadline; a timeout aborts the group).
    std::vector<std::shared_ptr<NcclWork>> works;
    {
      std::lock_guard<std::mutex> lock(works_mutex_);
      works = outstanding_;
    }
    for (const auto& w : works) {
      try {
        while (poll(*w, /*detect_timeouts=*/true) == NcclWork::State::Running)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
      } catch (const std::exception& e) {
        ::ember::detail::log_warning(std::string("ProcessGroup: NCCL shutdown: ") + e.what());
      }
    }
    {
      std::lock_guard<std::mutex> lock(works_mutex_);
      outstanding_.clear();
    }
    // Nothing is in flight any more, so ncclCommAbort only frees local resources; unlike
    // ncclCommFinalize/Destroy it never waits for peers (PyTorch's shutdown does the same).
    abort_comm();
    // The communication stream is never destroyed: the caching allocator keeps its handle (record_stream)
    // for as long as the tensors a collective used live, and would record events on a destroyed stream.
  }

  // The work's outcome, polled once: Done when its end event completed; Failed on an NCCL error or
  // (with detect_timeouts) past its deadline, after aborting the group.
  NcclWork::State poll(NcclWork& w, bool detect_timeouts) {
    const NcclWork::State recorded = w.state();
    if (recorded != NcclWork::State::Running) return recorded;
    std::string error;
    if (event_done(w, &error)) {
      w.finish("");
      return w.state();
    }
    if (!error.empty()) {
      fail_work(w, error);
      return NcclWork::State::Failed;
    }
    ncclResult_t async = ncclSuccess;
    {
      std::lock_guard<std::mutex> lock(comm_mutex_);
      if (comm_ != nullptr && !comm_dead_ && ncclCommGetAsyncError(comm_, &async) != ncclSuccess) async = ncclSuccess;
      if (async != ncclSuccess && async != ncclInProgress)
        error = str_cat(w.description(), " failed on rank ", config_.rank, " of ", config_.size,
                        " (nccl, cuda:", device_, "): ", nccl_error_text(async, comm_));
    }
    if (!error.empty()) {
      fail_work(w, error);
      return NcclWork::State::Failed;
    }
    if (detect_timeouts && Clock::now() >= w.deadline()) {
      on_timeout(w);
      return w.state();
    }
    return NcclWork::State::Running;
  }

  int device() const { return device_; }

 private:
  // `body` makes the NCCL call (and may queue work before it); `after` queues work behind it, once
  // NCCL has really put it on the stream (a non-blocking communicator may still be enqueuing it when
  // the call returns ncclInProgress).
  using Body = std::function<ncclResult_t(ncclComm_t, cudaStream_t, NcclWork&)>;
  using After = std::function<void(cudaStream_t)>;

  std::shared_ptr<Work> launch(const char* collective, uint64_t seq, std::string desc, std::vector<Tensor> used,
                               const Body& body, const After& after = nullptr) {
    throw_if_failed(desc);
    sweep();
    throw_if_failed(desc);
    DeviceGuard guard(device_);
    const cuda::Stream caller = cuda::current_stream(device_);
    const cuda::Stream comm_stream(Device::cuda(device_), stream_);
    cuda::Event ready;
    ready.record(caller);
    ready.block(comm_stream);
    const auto issued = Clock::now();
    auto work =
        std::make_shared<NcclWork>(shared_from_this(), collective, seq, desc, issued, issued + config_.timeout, used);
    std::string failure;
    {
      std::lock_guard<std::mutex> lock(comm_mutex_);
      EMBER_CHECK(comm_ != nullptr && !comm_dead_, desc, ": the NCCL communicator of this process group is gone");
      // Staging buffers made by the body belong to the communication stream.
      cuda::StreamGuard stream_guard(comm_stream);
      ncclResult_t rc = ncclSuccess;
      try {
        rc = body(comm_, stream_, *work);
      } catch (const std::exception& e) {
        failure = str_cat(desc, " could not be queued on rank ", config_.rank, ": ", e.what());
      }
      if (failure.empty() && rc != ncclSuccess && rc != ncclInProgress)
        failure = str_cat(desc, " could not be queued on rank ", config_.rank, ": ", nccl_error_text(rc, comm_));
      if (failure.empty()) failure = wait_ready_locked(work->deadline(), desc);
      if (failure.empty()) {
        try {
          if (after) after(stream_);
          for (const Tensor& t : used) t.record_stream(comm_stream);
          work->end.record(comm_stream);
        } catch (const std::exception& e) {
          failure = str_cat(desc, " could not be queued on rank ", config_.rank, ": ", e.what());
        }
      }
      if (failure.empty()) {
        // Registered before the communicator can be aborted by anyone else (on_abort takes works_mutex_
        // and only then comm_mutex_), so an abort always sees this work.
        std::lock_guard<std::mutex> works_lock(works_mutex_);
        outstanding_.push_back(work);
      }
    }
    if (!failure.empty()) {
      // This rank is out of step with its peers now: the group cannot go on.
      work->finish(failure);
      fail(failure);
      EMBER_THROW(failure);
    }
    return work;
  }

  // Non-blocking communicators may leave a call "in progress" until it is enqueued: poll until done.
  // Returns an error message, or "" when the communicator is ready. Called with comm_mutex_ held.
  std::string wait_ready_locked(Clock::time_point deadline, const std::string& what) {
    while (true) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
      if (rc != ncclSuccess) return str_cat(what, ": ncclCommGetAsyncError failed: ", nccl_error_text(rc, comm_));
      if (state == ncclSuccess) return "";
      if (state != ncclInProgress) return str_cat(what, " failed: ", nccl_error_text(state, comm_));
      if (Clock::now() >= deadline) {
        std::string peers;
        if (auto group = group_.lock(); group != nullptr && group->mpi() != nullptr) {
          TimeoutReport r;
          r.description = what;
          r.seq = group->sequence_number();
          r.compare_descriptions = false;
          r.rank = config_.rank;
          r.size = config_.size;
          r.transport = "nccl";
          r.timeout = config_.timeout;
          r.waited = config_.timeout;
          r.peers = group->mpi()->ask_peers();
          r.peers_asked = !r.peers.empty();
          return timeout_message(r);
        }
        return str_cat(what, " did not complete within the timeout of ", config_.timeout.count(), " ms");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  // Whether w's end event completed; a failing query (a CUDA error) counts as not done and says why.
  bool event_done(NcclWork& w, std::string* error = nullptr) {
    try {
      return w.end.query();
    } catch (const std::exception& e) {
      if (error != nullptr) *error = str_cat(w.description(), " failed on rank ", config_.rank, ": ", e.what());
      return false;
    }
  }

  void throw_if_failed(const std::string& desc) {
    std::lock_guard<std::mutex> lock(works_mutex_);
    if (!failure_.empty())
      EMBER_THROW(desc, ": this process group (rank ", config_.rank, ") was aborted earlier, by: ", failure_);
    EMBER_CHECK(!shut_down_, desc, ": this process group was shut down");
  }

  void on_timeout(NcclWork& w) {
    bool expected = false;
    if (!diagnosing_.compare_exchange_strong(expected, true)) {
      // Another thread is reporting a timeout; it aborts the group, which fails this work too.
      while (w.state() == NcclWork::State::Running && !comm_dead_.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      w.finish(str_cat(w.description(), " was in flight when the process group was aborted, by: ", failure_text()));
      return;
    }
    TimeoutReport r;
    r.description = w.description();
    r.seq = w.sequence_number();
    r.rank = config_.rank;
    r.size = config_.size;
    r.transport = str_cat("nccl, cuda:", device_);
    r.timeout = config_.timeout;
    r.waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - w.issued());
    if (config_.size > 1) {
      if (auto group = group_.lock(); group != nullptr && group->mpi() != nullptr) r.peers = group->mpi()->ask_peers();
    }
    r.peers_asked = config_.size == 1 || !r.peers.empty();
    fail_work(w, timeout_message(r));
  }

  // Aborts the group because of `w`; `w` fails with `message` itself, the other works in flight with
  // "aborted, by: message". The group is aborted first, so that a thread woken by w's failure finds it
  // aborted.
  void fail_work(NcclWork& w, const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(works_mutex_);
      culprit_ = &w;
    }
    fail(message);
    w.finish(message);  // when the group was aborted before, for another reason
  }

  std::string failure_text() {
    std::lock_guard<std::mutex> lock(works_mutex_);
    return failure_;
  }

  // Aborts the whole group (which calls on_abort here).
  void fail(const std::string& message) {
    if (auto group = group_.lock())
      group->abort(message);
    else
      on_abort(message);
  }

  void abort_comm() {
    std::lock_guard<std::mutex> lock(comm_mutex_);
    if (comm_ == nullptr || comm_dead_) return;
    QuietDeviceGuard guard(device_);
    const ncclResult_t rc = ncclCommAbort(comm_);
    if (rc != ncclSuccess) ::ember::detail::log_warning(str_cat("ncclCommAbort failed: ", ncclGetErrorString(rc)));
    comm_ = nullptr;
    comm_dead_ = true;
  }

  // Polls every work in flight; forgets the finished ones.
  void sweep() {
    std::vector<std::shared_ptr<NcclWork>> works;
    {
      std::lock_guard<std::mutex> lock(works_mutex_);
      works = outstanding_;
    }
    for (const auto& w : works) {
      try {
        poll(*w, /*detect_timeouts=*/true);
      } catch (const std::exception& e) {
        ::ember::detail::log_warning(std::string("ProcessGroup: NCCL watchdog: ") + e.what());
      }
    }
    std::lock_guard<std::mutex> lock(works_mutex_);
    std::erase_if(outstanding_, [](const auto& w) { return w->state() != NcclWork::State::Running; });
  }

  void watch() {
    EMBER_CUDA_WARN(cudaSetDevice(device_));  // this thread's own device: the events live there
    std::unique_lock<std::mutex> lock(watchdog_mutex_);
    while (!stop_watchdog_) {
      watchdog_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_watchdog_; });
      if (stop_watchdog_) break;
      lock.unlock();
      sweep();
      lock.lock();
    }
  }

  void stop_watchdog() {
    {
      std::lock_guard<std::mutex> lock(watchdog_mutex_);
      stop_watchdog_ = true;
    }
    watchdog_cv_.notify_all();
    if (!watchdog_.joinable()) return;
    if (watchdog_.get_id() == std::this_thread::get_id())
      watchdog_.detach();  // shut down from its own sweep
    else
      watchdog_.join();
  }

  std::weak_ptr<GroupImpl> group_;
  GroupConfig config_;
  int device_;
  cudaStream_t stream_ = nullptr;

  std::mutex comm_mutex_;  // every call on comm_
  ncclComm_t comm_ = nullptr;
  std::atomic<bool> comm_dead_{false};

  std::mutex works_mutex_;
  std::vector<std::shared_ptr<NcclWork>> outstanding_;
  std::string failure_;
  NcclWork* culprit_ = nullptr;  // the work whose failure aborted the group (compared, never used)
  bool shut_down_ = false;
  std::atomic<bool> diagnosing_{false};

  std::mutex watchdog_mutex_;
  std::condition_variable watchdog_cv_;
  bool stop_watchdog_ = false;
  std::thread watchdog_;
};

void NcclWork::wait() {
  DeviceGuard guard(backend_->device());
  int rounds = 0;
  while (true) {
    const State s = backend_->poll(*this, /*detect_timeouts=*/true);
    if (s == State::Done) break;
    if (s == State::Failed) EMBER_THROW(error());
    if (rounds < 64)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(std::min(200, 4 << std::min(rounds - 64, 6))));
    ++rounds;
  }
  end.block(cuda::current_stream(backend_->device()));
}

bool NcclWork::is_completed() {
  QuietDeviceGuard guard(backend_->device());
  return backend_->poll(*this, /*detect_timeouts=*/false) != State::Running;
}

bool NcclWork::is_success() {
  QuietDeviceGuard guard(backend_->device());
  return backend_->poll(*this, /*detect_timeouts=*/false) == State::Done;
}

}  // namespace

std::shared_ptr<NcclBackend> make_nccl_backend(const std::shared_ptr<GroupImpl>& group) {
  auto backend = std::make_shared<NcclBackendImpl>(group);
  backend->init();
  return backend;
}

}  // namespace ember::distributed::detail
