// DistributedDataParallel: PyTorch's DDP for C++, one process per GPU (or CPU), gradients averaged over a
// process group (NCCL for CUDA tensors, MPI for CPU ones) while backward runs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/holder.h"
#include "nn/module.h"
#include "parallel/distributed.h"
#include "parallel/reducer.h"
#include "runtime/autograd/grad_mode.h"

namespace ember::parallel {

class DDPOptions {
 public:
  // Bucket size in MiB (the first bucket is 1 MiB whatever this says, as in PyTorch).
  DDPOptions& bucket_cap_mb(double mb) {
    EMBER_CHECK(mb > 0, "DDPOptions: bucket_cap_mb must be positive, got ", mb);
    bucket_cap_mb_ = mb;
    return *this;
  }
  // Broadcast the module's buffers (batch-norm statistics) from rank 0 before each forward.
  DDPOptions& broadcast_buffers(bool on) {
    broadcast_buffers_ = on;
    return *this;
  }
  // Parameters that got no gradient in a backward are reduced as zeros instead of being an error.
  DDPOptions& find_unused_parameters(bool on) {
    find_unused_parameters_ = on;
    return *this;
  }
  // .grad tensors are views into the communication buckets (no copies, no allocation per step).
  DDPOptions& gradient_as_bucket_view(bool on) {
    gradient_as_bucket_view_ = on;
    return *this;
  }
  double bucket_cap_mb() const { return bucket_cap_mb_; }
  bool broadcast_buffers() const { return broadcast_buffers_; }
  bool find_unused_parameters() const { return find_unused_parameters_; }
  bool gradient_as_bucket_view() const { return gradient_as_bucket_view_; }

 private:
  double bucket_cap_mb_ = 25;
  bool broadcast_buffers_ = true;
  bool find_unused_parameters_ = false;
  bool gradient_as_bucket_view_ = true;
};

// One bucket of gradients, as a communication hook sees it (PyTorch's GradBucket).
class GradBucket {
 public:
  GradBucket(size_t index, Tensor buffer, std::vector<Tensor> parameters, bool is_last, int64_t divisor)
      : index_(index), buffer_(std::move(buffer)), parameters_(std::move(parameters)), is_last_(is_last),
        divisor_(divisor) {}
  size_t index() const { return index_; }
  // The flat gradients of this rank (parameters in bucket order); the hook leaves the average in it.
  const Tensor& buffer() const { return buffer_; }
  const std::vector<Tensor>& parameters() const { return parameters_; }
  bool is_last() const { return is_last_; }
  // How many ranks' gradients are averaged: the group's size, or fewer while some have joined.
  int64_t divisor() const { return divisor_; }

 private:
  size_t index_;
  Tensor buffer_;
  std::vector<Tensor> parameters_;
  bool is_last_;
  int64_t divisor_;
};

// A communication hook: starts reducing `bucket` over `group` and returns the function that finishes it
// (waits, decompresses); when that has run (or at once, if it returns nullptr), bucket.buffer() must
// hold the average of every rank's buffer.
using CommHook = std::function<std::function<void()>(distributed::ProcessGroup& group, const GradBucket& bucket)>;

// The default: divide by divisor(), all-reduce (sum) the bucket in place.
std::function<void()> allreduce_hook(distributed::ProcessGroup& group, const GradBucket& bucket);
// All-reduce in float16 / bfloat16 (half the bytes on the wire), then decompress into the gradients.
std::function<void()> fp16_compress(distributed::ProcessGroup& group, const GradBucket& bucket);
std::function<void()> bf16_compress(distributed::ProcessGroup& group, const GradBucket& bucket);

namespace detail {

// The part of DDP that does not depend on the module's type (parallel/ddp.cpp).
class DdpCore {
 public:
  DdpCore(nn::Module& module, std::shared_ptr<distributed::ProcessGroup> group, DDPOptions options);
  // Before each forward: the previous backward's unready parameters (an error), join bookkeeping, the
  // buffers' broadcast (training steps), and arming the reducer when grad mode is on.
  void before_forward();
  void set_require_sync(bool require);
  bool require_sync() const;
  void register_comm_hook(CommHook hook);
  // join(): begin on construction of the guard; end() shadows the others' steps until all have joined.
  void join_begin();
  void join_end();
  const Reducer& reducer() const { return *reducer_; }
  const std::shared_ptr<distributed::ProcessGroup>& process_group() const { return group_; }
  const DDPOptions& options() const { return options_; }

 private:
  void check_same_model_on_every_rank();
  void broadcast_state(bool parameters_too);
  // Takes part in one "who is still training" vote: returns how many ranks are (ranks that joined vote 0).
  int64_t count_active(bool active);

  nn::Module& module_;
  std::shared_ptr<distributed::ProcessGroup> group_;
  DDPOptions options_;
  std::vector<std::string> param_names_;  // of the parameters the reducer covers, in its order
  std::vector<Tensor> buffers_;
  std::shared_ptr<Reducer> reducer_;
  std::vector<std::vector<Tensor>> bucket_params_;  // the parameters of each bucket, in bucket order
  CommHook hook_;
  Device device_;
  int64_t divisor_ = 1;
  bool joinable_ = false;
};

}  // namespace detail

// Note [DistributedDataParallel]
// As PyTorch's DDP (api.md): at construction the ranks' parameter names, shapes and dtypes are compared
// (an error names the first difference and the ranks) and the module's state is broadcast from rank 0.
// Every training forward (grad mode on, outside no_sync) broadcasts the buffers from rank 0
// (broadcast_buffers), and every forward with grad mode on arms the reducer; backward's
// hooks reduce buckets over the group while it runs (Note [Reducer]; the comm hook divides by the
// number of ranks and all-reduces, on the NCCL communication stream or MPI's worker thread), and the
// step waits only for what is left at its end. One replica per process: the reducer's gradients are
// views into its buckets. no_sync() skips communication (gradients accumulate locally and the next
// synced backward averages them); join() lets ranks with fewer batches shadow the others' collectives
// with zeros, the average then taken over the ranks still training.
template <class T>
class DistributedDataParallelImpl : public nn::Module {
 public:
  DistributedDataParallelImpl(std::shared_ptr<T> module, std::shared_ptr<distributed::ProcessGroup> group,
                              DDPOptions options = {})
      : nn::Module("DistributedDataParallel"), module_(std::move(module)) {
    EMBER_CHECK(module_ != nullptr, "DistributedDataParallel: the module is null");
    EMBER_CHECK(group != nullptr, "DistributedDataParallel: the process group is null");
    register_module("module", module_);
    core_ = std::make_unique<detail::DdpCore>(*module_, std::move(group), options);
  }

  template <class... Args>
  auto forward(Args&&... args) {
    core_->before_forward();
    return module_->forward(std::forward<Args>(args)...);
  }

  std::shared_ptr<T> module() const { return module_; }
  const std::shared_ptr<distributed::ProcessGroup>& process_group() const { return core_->process_group(); }
  const Reducer& reducer() const { return core_->reducer(); }
  void register_comm_hook(CommHook hook) { core_->register_comm_hook(std::move(hook)); }

  // RAII: backward passes inside the scope accumulate gradients locally, without communication.
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(detail::DdpCore& core) : core_(&core), previous_(core.require_sync()) {
      core.set_require_sync(false);
    }
    ~NoSyncGuard() {
      if (core_) core_->set_require_sync(previous_);
    }
    NoSyncGuard(NoSyncGuard&& o) noexcept : core_(std::exchange(o.core_, nullptr)), previous_(o.previous_) {}
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(NoSyncGuard&&) = delete;

   private:
    detail::DdpCore* core_;
    bool previous_;
  };
  NoSyncGuard no_sync() { return NoSyncGuard(*core_); }

  // RAII (PyTorch's Join): every rank opens it before its training loop; when a rank's loop ends, the
  // guard's destructor keeps taking part in the other ranks' steps (buffers, gradient buckets, with
  // zeros) until every rank has finished. A collective failure there throws from the destructor
  // (unless an exception is already propagating: then the guard only leaves).
  class JoinGuard {
   public:
    explicit JoinGuard(detail::DdpCore& core) : core_(&core), exceptions_(std::uncaught_exceptions()) {
      core.join_begin();
    }
    ~JoinGuard() noexcept(false) {
      if (!core_) return;
      detail::DdpCore* core = std::exchange(core_, nullptr);
      if (std::uncaught_exceptions() > exceptions_) return;
      core->join_end();
    }
    JoinGuard(JoinGuard&& o) noexcept : core_(std::exchange(o.core_, nullptr)), exceptions_(o.exceptions_) {}
    JoinGuard(const JoinGuard&) = delete;
    JoinGuard& operator=(const JoinGuard&) = delete;
    JoinGuard& operator=(JoinGuard&&) = delete;

   private:
    detail::DdpCore* core_;
    int exceptions_;
  };
  JoinGuard join() { return JoinGuard(*core_); }

 private:
  std::shared_ptr<T> module_;
  std::unique_ptr<detail::DdpCore> core_;
};

// The holder: `parallel::DistributedDataParallel<NetImpl> ddp(net, pg, DDPOptions()); ddp->forward(x);`.
template <class T>
class DistributedDataParallel : public nn::ModuleHolder<DistributedDataParallelImpl<T>> {
  using Base = nn::ModuleHolder<DistributedDataParallelImpl<T>>;

 public:
  DistributedDataParallel(const nn::ModuleHolder<T>& module, std::shared_ptr<distributed::ProcessGroup> group,
                          DDPOptions options = {})
      : DistributedDataParallel(module.ptr(), std::move(group), std::move(options)) {}
  DistributedDataParallel(std::shared_ptr<T> module, std::shared_ptr<distributed::ProcessGroup> group,
                          DDPOptions options = {})
      : Base(std::make_shared<DistributedDataParallelImpl<T>>(std::move(module), std::move(group),
                                                              std::move(options))) {}
};

}  // namespace ember::parallel
