// Reducer: combines the gradients of data-parallel replicas (DataParallel's devices, or DDP's ranks) in
// buckets launched while backward is still running.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "parallel/comm/communicator.h"
#include "runtime/cuda/stream.h"
#include "runtime/tensor.h"

namespace ember::parallel {

// How one bucket is reduced: flats[r] is replica r's flat bucket (on its device; on a GPU, the stream
// that produced its gradients is current there while this runs). It reduces them in place, so that
// every flats[r] ends with the result, or starts doing so and returns a function that finishes the
// reduction (waits for it); it returns nullptr when nothing is left to do but stream ordering.
// DataParallel sums over the in-process communicator; DDP averages over a process group.
using BucketReduce = std::function<std::function<void()>(size_t bucket, const std::vector<Tensor>& flats)>;

struct ReducerOptions {
  size_t first_bucket_bytes = size_t{1} << 20;
  size_t bucket_bytes = size_t{25} << 20;
  // A parameter that got no gradient is reduced as zeros (true), or the buckets from the first such
  // parameter on are left unreduced and unready_parameters() names them (false: DDP's default).
  bool find_unused_parameters = true;
  // Whether a parameter whose gradient was undefined and stayed unused gets the reduced bucket slot as
  // its gradient (DDP: other ranks may have used it) or keeps none (DataParallel: no replica used it).
  bool grad_for_unused = false;
  // Reduce even over a single replica (DDP; tests drive NCCL on a one-GPU machine this way).
  bool always_communicate = false;
  // Whether each .grad is made a view of its bucket slot (no copies per step), or keeps a tensor of its
  // own that the reduced slot is copied back into (PyTorch's gradient_as_bucket_view=False).
  bool gradient_as_bucket_view = true;
};

// Note [Reducer]
// Replica r's parameter p is replica_params[r][p]; replica 0 is the wrapped module itself. Parameters
// are grouped into buckets in reverse registration order (backward produces the last layers'
// gradients first): the first bucket holds up to 1 MiB, the others up to bucket_bytes, never mixing
// dtypes. Each replica has one flat buffer per bucket, allocated once, and every parameter's .grad
// is made a view of its slot (PyTorch's gradient_as_bucket_view): AccumulateGrad then adds into the
// bucket in place, and nothing is flattened, unflattened or allocated per step. A gradient that is
// not the view (after zero_grad(set_to_none), or the first time) is copied into it once, by the hook.
// Each parameter of each replica gets a post-accumulate-grad hook; when every parameter of a bucket
// is ready on every active replica, the bucket is reduced (BucketReduce) while backward goes on with
// earlier layers. Buckets are launched in index order, as PyTorch's reducer does, so every rank
// issues its collectives in the same order. A final callback queued on the engine launches what is
// left (parameters that got no gradient count as zeros when find_unused_parameters), finishes the
// pending reductions and, on GPUs, orders the caller's current streams after them (Note [Stream
// ordering in backward]). Replicas other than 0 start every backward with no gradient, so replica 0's
// .grad accumulates across steps exactly as single-device training would. With require_sync off
// (DDP's no_sync) the hooks do nothing and gradients accumulate locally in the buckets.
class Reducer : public std::enable_shared_from_this<Reducer> {
 public:
  static constexpr size_t kFirstBucketBytes = size_t{1} << 20;
  static constexpr size_t kBucketBytes = size_t{25} << 20;

  // Hooks are installed by create(); the reducer lives as long as its owner keeps it.
  static std::shared_ptr<Reducer> create(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices,
                                         BucketReduce reduce, ReducerOptions options = {});
  // DataParallel's reducer: sums over the in-process communicator of `devices` (NCCL on GPUs).
  static std::shared_ptr<Reducer> create(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices,
                                         size_t first_bucket_bytes = kFirstBucketBytes,
                                         size_t bucket_bytes = kBucketBytes, bool always_communicate = false);

  // Arms the reducer for the next backward, over the first `active` replicas.
  void prepare_for_backward(size_t active);
  // Off: the next backward accumulates gradients locally, without communication (no_sync).
  void set_require_sync(bool require) { require_sync_ = require; }
  bool require_sync() const { return require_sync_; }
  // Parameters (indices) that got no gradient in the last synced backward while find_unused_parameters
  // was off; taken (cleared) by the call.
  std::vector<size_t> take_unready_parameters();
  // Reduces every bucket with this replica's buffers zeroed, in bucket order (a rank that has joined
  // shadows the others' backward: DDP's join()). One replica only.
  void reduce_zeros();

  size_t num_buckets() const { return buckets_.size(); }
  // Parameter indices of each bucket (for tests and diagnostics).
  std::vector<std::vector<size_t>> bucket_layout() const;
  const Tensor& bucket_buffer(size_t replica, size_t bucket) const { return buffers_[replica][bucket]; }
  // How many buckets were launched from a hook (before backward finished) in the last backward.
  size_t buckets_reduced_early() const { return reduced_early_; }
  // Seconds the last backward's final callback spent launching the buckets left and finishing the
  // reductions (waiting for them): the communication backward did not hide.
  double last_finalize_seconds() const { return finalize_seconds_; }

 private:
  struct Bucket {
    std::vector<size_t> params;
    DType dtype = kFloat32;
    int64_t numel = 0;
    size_t ready = 0;  // (replica, param) hooks fired
    bool launched = false;
  };
  Reducer(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices, BucketReduce reduce,
          ReducerOptions options);
  void build_buckets();
  void allocate_buffers();
  void install_hooks();
  void on_grad_ready(size_t replica, size_t param);
  bool is_view(size_t replica, size_t param) const;
  void launch_ready_buckets();  // with mutex_ held: launches complete buckets in index order
  void launch(size_t bucket);   // with mutex_ held
  void finalize();

  std::vector<std::vector<Tensor>> params_;  // [replica][param]
  std::vector<Device> devices_;
  BucketReduce reduce_;
  ReducerOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;              // param -> bucket
  std::vector<std::vector<Tensor>> buffers_;   // [replica][bucket]
  std::vector<std::vector<Tensor>> views_;     // [replica][param]: the slot of each parameter's gradient
  std::vector<std::vector<bool>> seen_;        // [replica][param]: hook fired this backward
  // [bucket][replica]: the streams the bucket's gradients were produced on this backward (GPUs).
  std::vector<std::vector<std::vector<cuda::Stream>>> ready_streams_;
  std::vector<std::function<void()>> pending_;  // finishing functions of launched buckets, in order
  std::vector<size_t> unready_;
  std::mutex mutex_;
  size_t active_ = 0;
  size_t next_bucket_ = 0;
  bool armed_ = false;
  bool require_sync_ = true;
  bool finalize_queued_ = false;
  size_t reduced_early_ = 0;
  double finalize_seconds_ = 0;
};

}  // namespace ember::parallel
