// Reducer: sums the gradients of data-parallel replicas into the wrapped module's parameters, in buckets
// launched while backward is still running.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "parallel/comm/communicator.h"
#include "runtime/tensor.h"

namespace ember::parallel {

// Note [Reducer]
// Replica r's parameter p is replica_params[r][p]; replica 0 is the wrapped module itself, on
// devices[0]. Parameters are grouped into buckets in reverse registration order (backward produces
// the last layers' gradients first): the first bucket holds up to 1 MiB, the others up to 25 MiB,
// never mixing dtypes. Each parameter of each replica gets a post-accumulate-grad hook; when the
// hooks of every parameter of a bucket have fired on every active replica, the bucket's gradients are
// flattened per replica and all-reduced (NCCL on GPUs, host loops on logical CPU devices) while
// backward goes on with earlier layers, and replica 0's gradients receive the sum. A final callback
// queued on the engine reduces buckets whose parameters got no gradient (as zeros) and waits for
// nothing else: on GPUs the sums are ordered on the devices' streams before the optimizer's kernels.
// Replicas other than 0 start every backward with no gradient, so replica 0's .grad accumulates
// across steps exactly as single-device training would.
class Reducer : public std::enable_shared_from_this<Reducer> {
 public:
  static constexpr size_t kFirstBucketBytes = size_t{1} << 20;
  static constexpr size_t kBucketBytes = size_t{25} << 20;

  // Hooks are installed by create(); the reducer lives as long as its owner keeps it.
  static std::shared_ptr<Reducer> create(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices,
                                         size_t first_bucket_bytes = kFirstBucketBytes,
                                         size_t bucket_bytes = kBucketBytes);

  // Arms the reducer for the next backward, over the first `active` replicas.
  void prepare_for_backward(size_t active);
  size_t num_buckets() const { return buckets_.size(); }
  // Parameter indices of each bucket (for tests and diagnostics).
  std::vector<std::vector<size_t>> bucket_layout() const;
  // How many buckets were all-reduced from a hook (before backward finished) in the last backward.
  size_t buckets_reduced_early() const { return reduced_early_; }

 private:
  struct Bucket {
    std::vector<size_t> params;
    DType dtype = kFloat32;
    int64_t numel = 0;
    size_t ready = 0;  // (replica, param) hooks fired
    bool reduced = false;
  };
  Reducer(std::vector<std::vector<Tensor>> replica_params, std::vector<Device> devices);
  void build_buckets(size_t first_bucket_bytes, size_t bucket_bytes);
  void install_hooks();
  void on_grad_ready(size_t replica, size_t param);
  void reduce_bucket(Bucket& bucket);  // with mutex_ held
  void finalize();

  std::vector<std::vector<Tensor>> params_;  // [replica][param]
  std::vector<Device> devices_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // param -> bucket
  std::vector<std::vector<bool>> seen_;  // [replica][param]: hook fired this backward
  std::mutex mutex_;
  size_t active_ = 0;
  bool armed_ = false;
  bool finalize_queued_ = false;
  size_t reduced_early_ = 0;
};

}  // namespace ember::parallel
