// Multi-process collectives (PyTorch's c10d ProcessGroup): MPI for CPU tensors, NCCL for CUDA tensors.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/tensor.h"

namespace ember::distributed {

namespace detail {
class GroupImpl;
}

// Bool tensors: Sum and Max are a logical or, Min a logical and; Avg is an error for bool and integer
// dtypes (as NCCL's ncclAvg, which only exists for floating types).
enum class ReduceOp { Sum, Avg, Max, Min };

// Note [Process groups]
// One process per rank, started by a launcher (`mpirun -np N`, or `srun` with PMIx); without one,
// init_process_group makes a world of one without touching MPI, where every collective is an exact
// identity. A group routes each collective by the tensor's device and the group's backend:
//   backend "auto" (default): CPU tensors -> MPI, CUDA tensors -> NCCL;
//   backend "mpi": CPU tensors only;  backend "nccl": CUDA tensors only.
// barrier() and all_gather_bytes() always use MPI (an identity in a world of one).
// Every rank must issue the same collectives in the same order (per group), with equal shapes and
// dtypes; argument errors a rank can see alone (shapes, dtypes, roots, devices) throw at the call,
// before any communication and without using a sequence number.
// Sequence numbers: the k-th collective issued on a group (any backend) has sequence number k, from 1.
// Timeouts: a collective that has not completed `timeout` after it was issued fails on every rank that
// waits for it, with an ember::Error naming the collective, its sequence number, the ranks that had
// not issued it (asked over MPI when the timeout fires) and the time waited; the group is then
// aborted and every later call on it throws at once with that first message.
// Threads: every method may be called from any thread; issuing a collective is atomic (the sequence
// number and the order of collectives are assigned under one mutex), but the order in which two
// threads issue collectives is theirs to make identical on every rank.

// The handle of an asynchronous collective (c10d's Work).
class Work {
 public:
  virtual ~Work();
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;

  // Blocks until the collective finished; throws ember::Error if it failed, timed out, or the group
  // was aborted before it finished. Calling it again returns (or throws the same error) at once.
  // CUDA (NCCL) works: the calling thread waits on the host for the collective's end event on the
  // group's communication stream (polling it together with NCCL's asynchronous error state, until
  // the timeout), then makes the caller's current stream of the group's device wait for that event,
  // so what the caller queues next on that stream sees the results.
  virtual void wait() = 0;
  // Non-blocking: whether the collective has finished (successfully or not).
  virtual bool is_completed() = 0;
  // Finished without an error (false while still running).
  virtual bool is_success() = 0;

  // "all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier", "all_gather_bytes".
  const std::string& collective() const { return collective_; }
  uint64_t sequence_number() const { return sequence_number_; }
  // e.g. "all_reduce (sequence number 3: float32 [2, 3], sum)".
  const std::string& description() const { return description_; }

 protected:
  Work(std::string collective, uint64_t sequence_number, std::string description);

 private:
  std::string collective_;
  uint64_t sequence_number_ = 0;
  std::string description_;
};

class InitOptions {
 public:
  // "auto" (default), "nccl" or "mpi" (Note [Process groups]).
  InitOptions& backend(std::string b) {
    backend_ = std::move(b);
    return *this;
  }
  const std::string& backend() const { return backend_; }
  // How long a collective may take (default 300 s; std::chrono::seconds converts).
  InitOptions& timeout(std::chrono::milliseconds t) {
    timeout_ = t;
    return *this;
  }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // The GPU this process drives with NCCL (default -1: local_rank % cuda::device_count()).
  InitOptions& device_id(int cuda_index) {
    device_id_ = cuda_index;
    return *this;
  }
  int device_id() const { return device_id_; }

 private:
  std::string backend_ = "auto";
  std::chrono::milliseconds timeout_ = std::chrono::seconds(300);
  int device_id_ = -1;
};

class ProcessGroup {
 public:
  // Made by init_process_group.
  explicit ProcessGroup(std::shared_ptr<detail::GroupImpl> impl);
  // shutdown().
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int size() const;
  // Rank and number of ranks on this node.
  int local_rank() const;
  int local_size() const;
  std::chrono::milliseconds timeout() const;
  // As configured: "auto", "nccl" or "mpi".
  std::string backend() const;
  // The GPU NCCL drives for this process; throws when there is none (no GPU, or a CPU-only build).
  Device cuda_device() const;

  // In place on t: every rank gets the reduction over ranks.
  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum);
  std::shared_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum);
  // In place on t: every rank gets root's t.
  void broadcast(const Tensor& t, int root = 0);
  std::shared_ptr<Work> broadcast_async(const Tensor& t, int root = 0);
  // outputs[j] <- input of rank j. outputs: size() tensors shaped like input (same dtype, device,
  // contiguous); when empty, they are allocated (at the call, so an async caller has them at once).
  void all_gather(std::vector<Tensor>& outputs, const Tensor& input);
  std::shared_ptr<Work> all_gather_async(std::vector<Tensor>& outputs, const Tensor& input);
  // output <- reduction over ranks of their inputs[rank()]. inputs: size() tensors shaped like output.
  void reduce_scatter(const Tensor& output, const std::vector<Tensor>& inputs, ReduceOp op = ReduceOp::Sum);
  std::shared_ptr<Work> reduce_scatter_async(const Tensor& output, const std::vector<Tensor>& inputs,
                                             ReduceOp op = ReduceOp::Sum);
  // Returns once every rank has called it (MPI; does not wait for GPU work).
  void barrier();
  std::shared_ptr<Work> barrier_async();
  // Every rank's bytes, indexed by rank (PyTorch's all_gather_object), e.g. for DDP's check that all
  // ranks hold the same parameters. Lengths may differ per rank.
  std::vector<std::string> all_gather_bytes(const std::string& mine);

  // Collectives issued on this group so far (= the sequence number of the last one).
  uint64_t sequence_number() const;
  bool is_aborted() const;
  // Aborts the group locally: collectives in flight fail with `reason`, every later call throws.
  // Other ranks learn of it through their own timeouts (their message says this rank aborted).
  void abort(const std::string& reason);
  // Waits (each at most its timeout) for the collectives in flight, then releases the MPI
  // communicator, the NCCL communicator and the worker threads; later calls throw. Idempotent.
  void shutdown();

 private:
  std::shared_ptr<detail::GroupImpl> impl_;
};

// A group over all ranks of the job. Each call makes a new group (its own MPI communicator, worker
// thread and, on first use, NCCL communicator) over the same world: every rank must call it the same
// number of times, in the same order. MPI is initialised by the first call under a launcher and
// finalised at exit (Note [MPI lifetime] in parallel/distributed/mpi_backend.cpp).
std::shared_ptr<ProcessGroup> init_process_group(InitOptions options = {});
// group->shutdown() (PyTorch's name).
void destroy_process_group(const std::shared_ptr<ProcessGroup>& group);

}  // namespace ember::distributed
