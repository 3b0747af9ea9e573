// NCCL communicator for the GPUs of one process: ncclCommInitAll, grouped collectives on communication
// streams, a watchdog that aborts on errors and timeouts, and explicit destruction.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <memory>
#include <mutex>

#include "parallel/comm/communicator.h"
#include "parallel/comm/watchdog.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"

namespace ember::parallel {

namespace {

ncclDataType_t nccl_dtype(const char* op, DType t) {
  switch (t) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Float16: return ncclFloat16;
    case DType::BFloat16: return ncclBfloat16;
    case DType::Int64: return ncclInt64;
    case DType::Int32: return ncclInt32;
    case DType::UInt8: return ncclUint8;
    case DType::Bool: break;
  }
  EMBER_THROW(op, ": NCCL collectives do not support dtype ", t);
}

// Note [NCCL groups]
// One process drives every GPU, so each collective is one ncclGroupStart/End around a call per
// device: NCCL then launches them together instead of deadlocking on the first device's call. The
// communicator is cached process-wide (Communicator::get), so two threads (two reducers, or a user's
// parallel::all_reduce during a backward) can reach it at once; interleaved group calls from two
// threads hang NCCL, hence the mutex around each group.
//
// Note [Communication streams]
// Collectives run on the communicator's own high-priority stream per device, not on the caller's:
// each device's communication stream first waits (event) for what the caller queued so far on its
// current stream of that device (the tensors' producers), and the caller's current stream then waits
// for the collective, so work queued later (the optimizer, a copy to the host) sees its result. The
// tensors are recorded as used by the communication stream, so the caching allocator does not hand
// their memory out again before the collective has finished with it. Each collective's end events
// go to the watchdog (Note [Collective watchdog]), which aborts the communicators on an asynchronous
// NCCL error or past the timeout.
class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(std::vector<Device> devices)
      : Communicator(std::move(devices)),
        // Communicator::get sets the configured timeout right after construction.
        watchdog_(std::make_unique<CollectiveWatchdog>(std::chrono::seconds(300),
                                                       [this](const std::string&) { abort_comms(); })) {
    std::vector<int> ids;
    for (const Device& d : this->devices()) {
      cuda::check_device(d, "NCCL communicator");
      ids.push_back(d.index());
    }
    for (const Device& d : this->devices()) {
      DeviceGuard guard(d);
      int least = 0, greatest = 0;
      EMBER_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
      cudaStream_t s = nullptr;
      EMBER_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, greatest));
      streams_.emplace_back(d, s);
    }
    comms_.resize(ids.size());
    try {
      EMBER_NCCL_CHECK(ncclCommInitAll(comms_.data(), static_cast<int>(ids.size()), ids.data()));
    } catch (...) {
      destroy_streams();
      throw;
    }
  }
  ~NcclCommunicator() override {
    try {
      shutdown();
    } catch (const std::exception& e) {
      detail::log_warning(std::string("NCCL communicator: ") + e.what());
    }
  }

  void all_reduce(const std::vector<Tensor>& tensors) override {
    check_tensors("all_reduce", tensors);
    const ncclDataType_t dt = nccl_dtype("all_reduce", tensors[0].dtype());
    collective("all_reduce", tensors, [&](size_t i, cudaStream_t s) {
      const Tensor& t = tensors[i];
      EMBER_NCCL_CHECK(
          ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), dt, ncclSum, comms_[i], s));
    });
  }
  void broadcast(const std::vector<Tensor>& tensors, int root) override {
    check_tensors("broadcast", tensors);
    check_root("broadcast", root);
    const ncclDataType_t dt = nccl_dtype("broadcast", tensors[0].dtype());
    collective("broadcast", tensors, [&](size_t i, cudaStream_t s) {
      const Tensor& t = tensors[i];
      EMBER_NCCL_CHECK(
          ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), dt, root, comms_[i], s));
    });
  }
  void reduce(const std::vector<Tensor>& tensors, int root) override {
    check_tensors("reduce", tensors);
    check_root("reduce", root);
    const ncclDataType_t dt = nccl_dtype("reduce", tensors[0].dtype());
    collective("reduce", tensors, [&](size_t i, cudaStream_t s) {
      const Tensor& t = tensors[i];
      EMBER_NCCL_CHECK(
          ncclReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), dt, ncclSum, root, comms_[i], s));
    });
  }
  void all_gather(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) override {
    check_tensors("all_gather", inputs);
    check_tensors("all_gather", outputs);
    const ncclDataType_t dt = nccl_dtype("all_gather", inputs[0].dtype());
    for (size_t i = 0; i < outputs.size(); ++i)
      EMBER_CHECK(outputs[i].numel() == inputs[i].numel() * static_cast<int64_t>(size()), "all_gather: output ", i,
                  " holds ", outputs[i].numel(), " elements; expected ", inputs[i].numel() * static_cast<int64_t>(size()));
    std::vector<Tensor> used = inputs;
    used.insert(used.end(), outputs.begin(), outputs.end());
    collective("all_gather", used, [&](size_t i, cudaStream_t s) {
      EMBER_NCCL_CHECK(ncclAllGather(inputs[i].raw_data(), outputs[i].raw_data(),
                                     static_cast<size_t>(inputs[i].numel()), dt, comms_[i], s));
    });
  }
  void barrier() override {
    watchdog_->wait_all();
    for (const Device& d : devices()) cuda::current_stream(d.index()).synchronize();
  }
  void set_timeout(std::chrono::milliseconds timeout) override { watchdog_->set_timeout(timeout); }
  void shutdown() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shut_down_) return;
    shut_down_ = true;
    // Let what is in flight finish (bounded by the timeout: the watchdog aborts a hung collective), then
    // stop watching before the communicators go.
    std::string failure;
    try {
      watchdog_->wait_all();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    watchdog_.reset();
    for (ncclComm_t& c : comms_) {
      if (c == nullptr) continue;
      if (aborted_) {
        // ncclCommAbort already freed it.
      } else {
        const ncclResult_t r = ncclCommDestroy(c);
        if (r != ncclSuccess) detail::log_warning(std::string("ncclCommDestroy: ") + ncclGetErrorString(r));
      }
      c = nullptr;
    }
    destroy_streams();
    if (!failure.empty()) detail::log_warning("NCCL communicator shut down after a failure: " + failure);
  }

 private:
  void check_root(const char* op, int root) const {
    EMBER_CHECK(root >= 0 && root < static_cast<int>(size()), op, ": root ", root, " is out of range for ", size(),
                " devices");
  }
  std::string describe(const char* op) const {
    std::string s = std::string("NCCL ") + op + " over ";
    for (size_t i = 0; i < size(); ++i) s += (i ? ", " : "") + devices()[i].str();
    return s;
  }

  // Runs one grouped collective on the communication streams (Note [Communication streams]).
  // `tensors` are those the collective reads or writes, tensors[i % size()] on devices()[i % size()].
  template <class F>
  void collective(const char* op, const std::vector<Tensor>& tensors, F&& per_device) {
    std::lock_guard<std::mutex> lock(mutex_);
    EMBER_CHECK(!shut_down_, describe(op), ": the communicator was shut down (parallel::destroy_communicators)");
    watchdog_->check();
    const size_t n = size();
    std::vector<cuda::Stream> callers;
    for (size_t i = 0; i < n; ++i) {
      callers.push_back(cuda::current_stream(devices()[i].index()));
      streams_[i].wait(callers[i]);
    }
    EMBER_NCCL_CHECK(ncclGroupStart());
    try {
      for (size_t i = 0; i < n; ++i) {
        DeviceGuard guard(devices()[i]);
        per_device(i, static_cast<cudaStream_t>(streams_[i].handle()));
      }
    } catch (...) {
      (void)ncclGroupEnd();
      throw;
    }
    EMBER_NCCL_CHECK(ncclGroupEnd());
    auto done = std::make_shared<std::vector<cuda::Event>>(n);
    for (size_t i = 0; i < n; ++i) {
      (*done)[i].record(streams_[i]);
      (*done)[i].block(callers[i]);
    }
    for (size_t k = 0; k < tensors.size(); ++k) tensors[k].record_stream(streams_[k % n]);
    std::vector<ncclComm_t> comms = comms_;
    watchdog_->watch(describe(op), [done, comms]() {
      for (ncclComm_t c : comms) {
        ncclResult_t async = ncclSuccess;
        const ncclResult_t r = ncclCommGetAsyncError(c, &async);
        if (r != ncclSuccess) return CollectiveWatchdog::Poll{CollectiveWatchdog::State::Failed, ncclGetErrorString(r)};
        if (async != ncclSuccess && async != ncclInProgress)
          return CollectiveWatchdog::Poll{CollectiveWatchdog::State::Failed,
                                          std::string("asynchronous NCCL error: ") + ncclGetErrorString(async)};
      }
      for (const cuda::Event& e : *done)
        if (!e.query()) return CollectiveWatchdog::Poll{};
      return CollectiveWatchdog::Poll{CollectiveWatchdog::State::Done, {}};
    });
  }

  // Called once by the watchdog on a failure or timeout: NCCL's kernels exit, the streams drain.
  void abort_comms() {
    aborted_ = true;
    for (ncclComm_t c : comms_) {
      if (c == nullptr) continue;
      const ncclResult_t r = ncclCommAbort(c);
      if (r != ncclSuccess) detail::log_warning(std::string("ncclCommAbort: ") + ncclGetErrorString(r));
    }
  }

  void destroy_streams() {
    for (const cuda::Stream& s : streams_) {
      DeviceGuard guard(s.device());
      const cudaError_t e = cudaStreamDestroy(static_cast<cudaStream_t>(s.handle()));
      if (e != cudaSuccess) detail::log_warning(std::string("cudaStreamDestroy: ") + cudaGetErrorString(e));
    }
    streams_.clear();
  }

  std::mutex mutex_;
  std::vector<ncclComm_t> comms_;
  std::vector<cuda::Stream> streams_;
  std::unique_ptr<CollectiveWatchdog> watchdog_;
  std::atomic<bool> aborted_{false};
  bool shut_down_ = false;
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(const std::vector<Device>& devices) {
  return std::make_shared<NcclCommunicator>(devices);
}

}  // namespace ember::parallel
