// Communicator: collectives over the devices of one process (NCCL for GPUs, host memory for cpu:N).
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "runtime/tensor.h"

namespace ember::parallel {

// Note [Communicators]
// A communicator spans an ordered list of devices, all CUDA or all CPU. Collectives take one tensor
// per device (tensors[i] on devices()[i], equal shapes and dtypes, contiguous) and work in place.
// On GPUs they are NCCL collectives launched as one NCCL group on the communicator's own streams,
// ordered after what the caller queued on each device's current stream and before what it queues
// next (Note [Communication streams] in parallel/cuda/nccl.cpp): they return without waiting, and a
// watchdog aborts the communicator on an NCCL error or when one does not finish within
// collective_timeout() (every later call then throws). On logical CPU devices, which share host
// memory, they are computed directly, in a fixed order, so results are deterministic.
class Communicator {
 public:
  virtual ~Communicator() = default;
  const std::vector<Device>& devices() const { return devices_; }
  size_t size() const { return devices_.size(); }

  // tensors[i] <- sum over j of tensors[j], for every i.
  virtual void all_reduce(const std::vector<Tensor>& tensors) = 0;
  // tensors[i] <- tensors[root], for every i.
  virtual void broadcast(const std::vector<Tensor>& tensors, int root) = 0;
  // tensors[root] <- sum over j of tensors[j] (the others are left unspecified).
  virtual void reduce(const std::vector<Tensor>& tensors, int root) = 0;
  // outputs[i] <- concatenation along dim 0 of inputs[0..n), for every i.
  virtual void all_gather(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) = 0;
  // Waits until the collectives issued so far have completed (no-op on the CPU); throws ember::Error
  // if one failed or timed out.
  virtual void barrier() = 0;
  // Throws ember::Error if a collective issued so far has failed or timed out (no waiting).
  virtual void check() {}
  // The time a collective may take before the communicator is aborted (NCCL).
  virtual void set_timeout(std::chrono::milliseconds /*timeout*/) {}
  // Releases the backend's resources (NCCL communicators, streams) after waiting, within the timeout,
  // for collectives in flight; later collectives throw. Idempotent.
  virtual void shutdown() {}

  // The communicator for `devices` (cached per device list: creating NCCL communicators is slow).
  // Throws for an empty list, duplicates, or a mix of CPU and CUDA devices.
  static std::shared_ptr<Communicator> get(const std::vector<Device>& devices);

  // The timeout of collectives on communicators made from now on, and on the cached ones (default
  // 300 s, or EMBER_COLLECTIVE_TIMEOUT_MS).
  static std::chrono::milliseconds collective_timeout();
  static void set_collective_timeout(std::chrono::milliseconds timeout);

 protected:
  explicit Communicator(std::vector<Device> devices) : devices_(std::move(devices)) {}
  // Checks the one-tensor-per-device contract; `op` names the collective in errors.
  void check_tensors(const char* op, const std::vector<Tensor>& tensors) const;
  static void check_same_sizes(const char* op, const std::vector<Tensor>& tensors);

 private:
  std::vector<Device> devices_;
};

// Shuts down and forgets every cached communicator. ember calls it at exit, before the CUDA runtime
// shuts down (never from a static destructor); call it earlier to free NCCL's resources.
void destroy_communicators();

// The in-process CPU implementation (logical devices cpu:0..cpu:N).
std::shared_ptr<Communicator> make_cpu_communicator(const std::vector<Device>& devices);
// The NCCL implementation (ncclCommInitAll over the GPUs); throws in a CPU-only build.
std::shared_ptr<Communicator> make_nccl_communicator(const std::vector<Device>& devices);

}  // namespace ember::parallel
