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
// communicators are cached process-wide (Communicator::get), so two threads (two reducers, or a user's
// parallel::all_reduce during a backward) can reach them at once; interleaved group calls from two
// threads hang NCCL, and two communicators over overlapping GPUs launching in different orders on
// different devices deadlock, hence one process-wide mutex around every launch. The watchdog's abort
// takes the same mutex, so ncclCommAbort never runs while another thread is inside an NCCL call on
// the communicator (NCCL frees the whole clique on the last abort).
//
// Note [Communication streams]
// Collectives run on the communicator's own high-priority stream per device, not on the caller's:
// each device's communication stream first waits (event) for what the caller queued so far on its
// current stream of that device (the tensors' producers), and the caller's current stream then waits
// for the collective, so work queued later (the optimizer, a copy to the host) sees its result. The
// tensors are recorded as used by the communication stream, so the caching allocator does not hand
// their memory out again before the collective has finished with it. Because the allocator keeps
// those stream handles for as long as the memory lives, the streams are never destroyed (as the stream
// pools'). Each collective's end events go to the watchdog (Note [Collective watchdog]), which aborts
// the communicators on an asynchronous NCCL error or past the timeout.
std::mutex& launch_mutex() {
  static std::mutex m;  // trivially destroyed at exit after every use: no CUDA or NCCL call in it
  return m;
}

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
      streams_.emplace_back(d, s);  // never destroyed: Note [Communication streams]
    }
    comms_.resize(ids.size());
    EMBER_NCCL_CHECK(ncclCommInitAll(comms_.data(), static_cast<int>(ids.size()), ids.data()));
  }
  ~NcclCommunicator() override {
    try {
      shutdown();
    } catch (const std::exception& e) {
      detail::log_warning(std::string("NCCL communicator: ") + e.what());
    }
    watchdog_.reset();  // joins its thread; nothing is in flight any more
  }

  void all_reduce(const std::vector<Tensor>& tensors) override {
    check_tensors("all_reduce", tensors);
    check_same_sizes("all_reduce", tensors);
    const ncclDataType_t dt = nccl_dtype("all_reduce", tensors[0].dtype());
    collective("all_reduce", tensors, [&](size_t i, cudaStream_t s) {
      const Tensor& t = tensors[i];
      EMBER_NCCL_CHECK(
          ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), dt, ncclSum, comms_[i], s));
    });
  }
  void broadcast(const std::vector<Tensor>& tensors, int root) override {
    check_tensors("broadcast", tensors);
    check_same_sizes("broadcast", tensors);
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
    check_same_sizes("reduce", tensors);
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
    check_same_sizes("all_gather", inputs);
    EMBER_CHECK(outputs[0].dtype() == inputs[0].dtype(), "all_gather: the outputs have dtype ", outputs[0].dtype(),
                " but the inputs ", inputs[0].dtype());
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
    check_usable("barrier");
    watchdog_->wait_all();
    for (const Device& d : devices()) cuda::current_stream(d.index()).synchronize();
  }
  void check() override { watchdog_->check(); }
  void set_timeout(std::chrono::milliseconds timeout) override { watchdog_->set_timeout(timeout); }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(launch_mutex());
      if (shut_down_) return;
      shut_down_ = true;  // no new collective from here on
    }
    // Let what is in flight finish, without holding the launch mutex: a hung collective is aborted by
    // the watchdog within the timeout, and its abort needs that mutex.
    std::string failure;
    try {
      watchdog_->wait_all();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    std::lock_guard<std::mutex> lock(launch_mutex());
    for (ncclComm_t& c : comms_) {
      if (c == nullptr) continue;  // aborted: ncclCommAbort freed it
      const ncclResult_t r = ncclCommDestroy(c);
      if (r != ncclSuccess) detail::log_warning(std::string("ncclCommDestroy: ") + ncclGetErrorString(r));
      c = nullptr;
    }
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
  // With launch_mutex() held, or before any collective.
  void check_usable(const char* op) const {
    EMBER_CHECK(!shut_down_, describe(op), ": the communicator was shut down (parallel::destroy_communicators)");
    watchdog_->check();
    EMBER_CHECK(!aborted_, describe(op), ": the communicator was aborted");
  }

  // Runs one grouped collective on the communication streams (Note [Communication streams]).
  // `tensors` are those the collective reads or writes, tensors[i % size()] on devices()[i % size()].
  template <class F>
  void collective(const char* op, const std::vector<Tensor>& tensors, F&& per_device) {
    const size_t n = size();
    // Everything that can fail for a reason of the caller's happens before NCCL is called: a collective
    // that was launched is always watched.
    for (size_t k = 0; k < tensors.size(); ++k) tensors[k].record_stream(streams_[k % n]);
    auto done = std::make_shared<std::vector<cuda::Event>>(n);
    std::lock_guard<std::mutex> lock(launch_mutex());
    check_usable(op);
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
    std::vector<ncclComm_t> comms = comms_;
    std::string what = describe(op);
    try {
      for (size_t i = 0; i < n; ++i) {
        (*done)[i].record(streams_[i]);
        (*done)[i].block(callers[i]);
      }
    } catch (const std::exception& e) {
      // The collective runs but cannot be followed: fail it through the watchdog (which aborts).
      const std::string error = e.what();
      watchdog_->watch(std::move(what), [error] { return CollectiveWatchdog::Poll{CollectiveWatchdog::State::Failed, error}; });
      throw;
    }
    watchdog_->watch(std::move(what), [done, comms]() {
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

  // Called once by the watchdog on a failure or timeout (holding no lock of its own): waits for any
  // launch in progress, then aborts; NCCL's kernels exit and the streams drain.
  void abort_comms() {
    std::lock_guard<std::mutex> lock(launch_mutex());
    aborted_ = true;
    for (ncclComm_t& c : comms_) {
      if (c == nullptr) continue;
      const ncclResult_t r = ncclCommAbort(c);
      if (r != ncclSuccess) detail::log_warning(std::string("ncclCommAbort: ") + ncclGetErrorString(r));
      c = nullptr;
    }
  }

  std::vector<ncclComm_t> comms_;      // guarded by launch_mutex()
  std::vector<cuda::Stream> streams_;  // one per device, never destroyed
  std::unique_ptr<CollectiveWatchdog> watchdog_;
  bool aborted_ = false;               // guarded by launch_mutex()
  bool shut_down_ = false;             // guarded by launch_mutex()
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(const std::vector<Device>& devices) {
  return std::make_shared<NcclCommunicator>(devices);
}

}  // namespace ember::parallel
