// Internals of parallel/distributed.h shared by its backends (MPI, NCCL) and its tests; no MPI/NCCL headers.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "parallel/distributed.h"

namespace ember::distributed::detail {

using Clock = std::chrono::steady_clock;

// ---- routing and argument checks (pure functions, tested on the CPU) ---------------------------

// Where a collective runs: Local is a world of one without MPI (collectives are identities).
enum class Transport { Local, Mpi, Nccl };
const char* transport_name(Transport t);

// "auto", "nccl" or "mpi" (any case) -> the lower-case name; anything else throws.
std::string parse_backend(const std::string& name);
// The transport for a tensor on `device` under `backend` ("auto"/"nccl"/"mpi"); `has_mpi`: whether the
// world was launched (MPI initialised). Throws when the backend cannot take that device.
Transport choose_transport(const char* op, const std::string& backend, Device device, bool has_mpi);

const char* reduce_op_name(ReduceOp op);
// Defined, contiguous, on a CPU or CUDA device. `what` names the argument ("tensor", "outputs[2]").
void check_tensor(const char* op, const Tensor& t, const std::string& what);
// Avg on integer and bool dtypes is an error.
void check_reduce_op(const char* op, ReduceOp reduce, DType dtype);
void check_root(const char* op, int root, int size);
// Allocates `outputs` (size tensors like input) when empty, then checks count, shapes, dtypes, devices.
void prepare_all_gather(std::vector<Tensor>& outputs, const Tensor& input, int size);
void check_reduce_scatter(const Tensor& output, const std::vector<Tensor>& inputs, int size);
// When tensors[j] are the consecutive j-th pieces of one buffer (e.g. chunks of one contiguous
// tensor): the buffer's start, so a collective can use it directly; nullptr otherwise.
void* consecutive_base(const std::vector<Tensor>& tensors);

// "float32 [2, 3]".
std::string describe(const Tensor& t);
// "all_reduce (sequence number 3: float32 [2, 3], sum)".
std::string describe_collective(const std::string& collective, uint64_t seq, const std::string& detail);

// ---- launcher --------------------------------------------------------------------------------

struct LaunchInfo {
  bool launched = false;
  std::string launcher;  // "Open MPI (mpirun)", "PMIx (srun)", "Hydra (MPICH)", or empty
  // -1 when the launcher's environment does not say (MPI then tells).
  int rank = -1;
  int size = -1;
  int local_rank = -1;
  int local_size = -1;
};
using EnvGetter = std::function<const char*(const char*)>;
// Reads OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE} (mpirun), PMIX_RANK + SLURM_* (srun with PMIx),
// PMI_RANK/PMI_SIZE + MPI_LOCALRANKID/MPI_LOCALNRANKS (Hydra). Throws for malformed values.
LaunchInfo detect_launcher(const EnvGetter& env);
LaunchInfo detect_launcher();  // from the process environment

// ---- timeouts --------------------------------------------------------------------------------

// What a peer answered when asked where it is (Note [Finding the missing ranks], mpi_backend.cpp).
struct PeerStatus {
  int rank = -1;
  bool answered = false;
  uint64_t last_seq = 0;  // the last collective it issued on this group (0: none)
  std::string last_description;
  bool aborted = false;
  std::string abort_reason;
};

struct TimeoutReport {
  std::string description;  // describe_collective(...) of the collective that timed out
  uint64_t seq = 0;
  int rank = 0;
  int size = 1;
  std::string transport;  // "mpi" or "nccl"
  std::chrono::milliseconds timeout{0};
  std::chrono::milliseconds waited{0};
  bool peers_asked = false;  // false: no MPI to ask (world of one), or asking failed
  std::vector<PeerStatus> peers;
  // Collectives: a peer at `seq` whose description differs issued another collective (a mismatch).
  // Internal steps (the NCCL unique id's broadcast) have no number: `seq` is then the last collective
  // issued before them, peers below it did not arrive, and descriptions are not compared.
  bool compare_descriptions = true;
};
// "all_reduce (sequence number 7: float32 [4], sum) timed out on rank 0 of 3 (mpi) after waiting 2003 ms
// (timeout 2000 ms). Ranks that did not arrive: 2 (its last collective: ...). ..."
std::string timeout_message(const TimeoutReport& report);

// How long a timed-out rank waits for its peers' answers: a quarter of the timeout, within [0.2 s, 2 s].
std::chrono::milliseconds ask_peers_grace(std::chrono::milliseconds timeout);

// ---- works -------------------------------------------------------------------------------------

// A Work completed by another thread (the MPI worker) or at once (world of one).
class SignalWork : public Work {
 public:
  // `give_up_at`: a safety net only (the MPI worker enforces the timeout itself); past it wait() throws.
  SignalWork(std::string collective, uint64_t seq, std::string description, Clock::time_point give_up_at);
  void wait() override;
  bool is_completed() override;
  bool is_success() override;
  // The first outcome wins; later calls are ignored.
  void complete();
  void fail(const std::string& message);

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string error_;
  Clock::time_point give_up_at_;
};

// all_gather_bytes: the gathered strings, filled before complete().
class BytesWork final : public SignalWork {
 public:
  using SignalWork::SignalWork;
  std::vector<std::string> result;
};

// ---- backends ----------------------------------------------------------------------------------

class GroupImpl;

// CPU collectives of one group over its own MPI communicator, run by the group's worker thread.
class MpiBackend {
 public:
  virtual ~MpiBackend() = default;
  virtual std::shared_ptr<Work> all_reduce(uint64_t seq, std::string desc, const Tensor& t, ReduceOp op) = 0;
  virtual std::shared_ptr<Work> broadcast(uint64_t seq, std::string desc, const Tensor& t, int root) = 0;
  virtual std::shared_ptr<Work> all_gather(uint64_t seq, std::string desc, const std::vector<Tensor>& outputs,
                                           const Tensor& input) = 0;
  virtual std::shared_ptr<Work> reduce_scatter(uint64_t seq, std::string desc, const Tensor& output,
                                               const std::vector<Tensor>& inputs, ReduceOp op) = 0;
  virtual std::shared_ptr<Work> barrier(uint64_t seq, std::string desc) = 0;
  virtual std::shared_ptr<BytesWork> all_gather_bytes(uint64_t seq, std::string desc, std::string mine) = 0;
  // Not a numbered collective: `length` bytes from root to every rank (the NCCL unique id); blocks,
  // at most the group's timeout. `bytes` matters on root only.
  virtual std::string broadcast_bytes(const std::string& bytes, size_t length, int root, const std::string& why) = 0;
  // Where is every other rank? Bounded by ask_peers_grace (Note [Finding the missing ranks]).
  virtual std::vector<PeerStatus> ask_peers() = 0;
  // The group was aborted: fail what is queued, give up what is in flight. Called once.
  virtual void on_abort(const std::string& reason) = 0;
  // Finishes (each within its timeout) what is queued, stops the worker, frees the communicator.
  virtual void shutdown() = 0;
};

// CUDA collectives of one group over its NCCL communicator (parallel/cuda/nccl_process_group.cpp).
class NcclBackend {
 public:
  virtual ~NcclBackend() = default;
  virtual std::shared_ptr<Work> all_reduce(uint64_t seq, std::string desc, const Tensor& t, ReduceOp op) = 0;
  virtual std::shared_ptr<Work> broadcast(uint64_t seq, std::string desc, const Tensor& t, int root) = 0;
  virtual std::shared_ptr<Work> all_gather(uint64_t seq, std::string desc, const std::vector<Tensor>& outputs,
                                           const Tensor& input) = 0;
  virtual std::shared_ptr<Work> reduce_scatter(uint64_t seq, std::string desc, const Tensor& output,
                                               const std::vector<Tensor>& inputs, ReduceOp op) = 0;
  virtual void on_abort(const std::string& reason) = 0;
  virtual void shutdown() = 0;
};

struct MpiWorldInfo {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
};
// Initialises MPI on the first call (MPI_Init_thread, unless the program already did) and registers
// the exit hook; later calls return the same answer. Cross-checks `launch` against MPI.
MpiWorldInfo mpi_world_init(const LaunchInfo& launch);
// A backend on a new duplicate of MPI_COMM_WORLD (collective: every rank calls it), with its worker.
std::unique_ptr<MpiBackend> make_mpi_backend(GroupImpl& group);
// At exit, after every group was shut down: MPI_Finalize when ember initialised MPI (Note [MPI lifetime]).
void mpi_finalize_at_exit();
// Made on the first CUDA collective of a group; a CPU-only build throws.
std::shared_ptr<NcclBackend> make_nccl_backend(const std::shared_ptr<GroupImpl>& group);

// Registers (std::atexit) the hook that shuts down every live group, then finalises MPI. Called when
// MPI is initialised and again when the first NCCL communicator exists, so that the hook runs before
// the CUDA runtime's own exit handlers. The hook runs its work once.
void register_exit_hook();

// ---- the group -----------------------------------------------------------------------------------

struct GroupConfig {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  std::string backend = "auto";
  std::chrono::milliseconds timeout{300000};
  int device = -1;  // the CUDA device NCCL drives (-1: none)
};

class GroupImpl : public std::enable_shared_from_this<GroupImpl> {
 public:
  explicit GroupImpl(GroupConfig config);
  ~GroupImpl();
  GroupImpl(const GroupImpl&) = delete;
  GroupImpl& operator=(const GroupImpl&) = delete;

  const GroupConfig& config() const { return config_; }

  // Held while a collective is issued: sequence numbers follow the order of issue.
  std::mutex& issue_mutex() { return issue_mutex_; }
  // Under issue_mutex(): the next sequence number and the collective's description
  // (describe_collective), which is remembered for peers who ask where this rank is.
  std::pair<uint64_t, std::string> issue(const std::string& collective, const std::string& detail);
  uint64_t sequence_number() const { return seq_.load(); }
  // The last collective issued (0 and "" before the first).
  std::pair<uint64_t, std::string> last_issued() const;

  // Throws when the group was aborted (naming the first failure) or shut down.
  void check_usable(const char* op) const;
  bool aborted() const { return aborted_.load(); }
  std::string abort_reason() const;
  // The first reason wins; the backends fail their collectives in flight. Safe from any thread.
  void abort(const std::string& reason);
  void shutdown();

  MpiBackend* mpi() const { return mpi_.get(); }
  void set_mpi(std::unique_ptr<MpiBackend> mpi) { mpi_ = std::move(mpi); }
  // Under issue_mutex(): the NCCL backend, made on first use.
  NcclBackend& nccl();

 private:
  GroupConfig config_;
  std::mutex issue_mutex_;
  std::atomic<uint64_t> seq_{0};
  std::atomic<bool> aborted_{false};
  std::atomic<bool> shut_down_{false};
  mutable std::mutex state_mutex_;  // guards the fields below (and the transitions of the two flags)
  std::string last_description_;
  std::string abort_reason_;
  std::unique_ptr<MpiBackend> mpi_;    // set once, before the group is shared
  std::shared_ptr<NcclBackend> nccl_;  // set once, under state_mutex_
};

// Every live group, for the exit hook.
void register_group(const std::shared_ptr<GroupImpl>& group);

}  // namespace ember::distributed::detail
