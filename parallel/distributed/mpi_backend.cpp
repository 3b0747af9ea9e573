// MPI side of process groups: MPI's lifetime, and one worker thread per group running non-blocking collectives.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>
#include <thread>

#include "parallel/distributed/detail.h"
#include "runtime/autograd/engine.h"
#include "runtime/half.h"

namespace ember::distributed::detail {

using ::ember::detail::str_cat;

namespace {

// Note [MPI threads]
// MPI is initialised with MPI_Init_thread asking for MPI_THREAD_MULTIPLE (so that the program may also
// call MPI from its own threads); ember accepts MPI_THREAD_SERIALIZED, because every MPI call ember
// makes holds one process-wide mutex (EMBER_MPI_CHECK). The calls are all non-blocking (MPI_I*,
// MPI_Test, MPI_Iprobe), so the mutex is held for microseconds, and the worker threads of several
// groups interleave freely.

// Note [MPI lifetime]
// One process-wide state (g_world below). MPI_Init_thread runs on the first init_process_group under a
// launcher; a program that initialised MPI itself keeps that job (ember then never finalises, and the
// program must destroy its groups before its own MPI_Finalize). MPI_Finalize runs from the exit hook
// (Note [Exit hook], process_group.cpp) once every group was shut down, never from a destructor and
// never when a group is destroyed (MPI cannot be initialised twice). After a group was aborted, some
// non-blocking collectives stay pending forever: they are abandoned (their buffers kept alive until
// MPI is finalised). Open MPI's MPI_Finalize does not wait for them, but it does wait for every other
// rank to reach MPI_Finalize too (measured with Open MPI 4.1: a rank that timed out and a stalled rank
// that exits later both finalise cleanly, and mpirun returns 0). A rank that never gets there would
// hang the others at exit, so after an abort MPI_Finalize runs under a watchdog: if it has not
// returned within max(timeout of the aborted group, 5 s), the process prints why and ends with
// status 1 without finalising (mpirun then reports the job as failed and stops the remaining ranks).
struct World {
  std::mutex init_mutex;  // init, finalize, the fields below
  std::mutex call_mutex;  // every MPI call (Note [MPI threads])
  bool initialized = false;
  bool owns = false;  // ember called MPI_Init_thread, so ember finalises
  bool finalized = false;
  MpiWorldInfo info;
  MPI_Op half_ops[3] = {};  // user reductions over binary16 storage: sum, max, min
  MPI_Op bf16_ops[3] = {};
  bool any_abort = false;
  std::chrono::milliseconds longest_aborted_timeout{0};
  std::vector<std::shared_ptr<void>> abandoned;  // tasks with requests that will never complete
  // Note [MPI progress during backward]
  std::atomic<bool> live{false};      // MPI may be called (set under call_mutex)
  std::atomic<int> busy_workers{0};   // workers with collectives in flight
  MPI_Comm poke_comm = MPI_COMM_NULL;  // a copy of MPI_COMM_SELF that returns errors
};
World g_world;

class MpiError : public Error {
 public:
  using Error::Error;
};

[[noreturn]] void throw_mpi_error(int code, const char* expr, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  throw MpiError(str_cat("MPI error: ", std::string(text, static_cast<size_t>(length)), " (code ", code, ") in `", expr,
                         "` at ", file, ":", line));
}

}  // namespace

// A failed MPI call throws MpiError, after which the communicator is not trusted any more.
#define EMBER_MPI_CHECK(expr)                                          \
  do {                                                                 \
    int ember_mpi_rc_;                                                 \
    {                                                                  \
      std::lock_guard<std::mutex> ember_mpi_lock_(g_world.call_mutex); \
      ember_mpi_rc_ = (expr);                                          \
    }                                                                  \
    if (ember_mpi_rc_ != MPI_SUCCESS) [[unlikely]]                     \
      throw_mpi_error(ember_mpi_rc_, #expr, __FILE__, __LINE__);       \
  } while (0)

namespace {

// ---- dtypes and reductions -------------------------------------------------------------------------

// Note [Reductions over MPI]
// Float16 and BFloat16 travel as MPI_UINT16_T and reduce with user-defined MPI_Ops (MPI_Op_create,
// commutative) that convert each pair to float, combine, and round back with ember's conversions, so
// each partial result rounds to the dtype as NCCL's half reductions do. Bool travels as MPI_C_BOOL:
// Sum and Max are MPI_LOR, Min is MPI_LAND (PyTorch maps bool sum to max too). Avg is a Sum followed
// by a division by the group's size on the worker thread, in the dtype's arithmetic (float for the
// 16-bit types); integer and bool Avg are rejected before anything is sent. Max and Min propagate NaN.
struct SumF {
  float operator()(float a, float b) const { return a + b; }
};
struct MaxF {
  float operator()(float a, float b) const { return (a != a || a > b) ? a : b; }
};
struct MinF {
  float operator()(float a, float b) const { return (a != a || a < b) ? a : b; }
};

template <class T, class F>
void reduce_16bit(void* in, void* inout, int* len, MPI_Datatype* /*type*/) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  const F f;
  for (int i = 0; i < *len; ++i) b[i] = T(f(float(T::from_bits(a[i])), float(T::from_bits(b[i])))).bits;
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int64: return MPI_INT64_T;
    case DType::Int32: return MPI_INT32_T;
    case DType::Bool: return MPI_C_BOOL;
    case DType::UInt8: return MPI_UINT8_T;
    case DType::Float16:
    case DType::BFloat16: return MPI_UINT16_T;
  }
  EMBER_THROW("MPI: no datatype for ", t);
}

MPI_Op mpi_op(ReduceOp op, DType t) {
  const int index = op == ReduceOp::Max ? 1 : op == ReduceOp::Min ? 2 : 0;  // Avg sums, then divides
  if (t == DType::Bool) return op == ReduceOp::Min ? MPI_LAND : MPI_LOR;
  if (t == DType::Float16) return g_world.half_ops[index];
  if (t == DType::BFloat16) return g_world.bf16_ops[index];
  return index == 1 ? MPI_MAX : index == 2 ? MPI_MIN : MPI_SUM;
}

void divide_in_place(void* data, int64_t n, DType t, int divisor) {
  switch (t) {
    case DType::Float32: {
      auto* p = static_cast<float*>(data);
      for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<float>(divisor);
      return;
    }
    case DType::Float64: {
      auto* p = static_cast<double*>(data);
      for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<double>(divisor);
      return;
    }
    case DType::Float16: {
      auto* p = static_cast<Half*>(data);
      for (int64_t i = 0; i < n; ++i) p[i] = Half(float(p[i]) / static_cast<float>(divisor));
      return;
    }
    case DType::BFloat16: {
      auto* p = static_cast<BFloat16*>(data);
      for (int64_t i = 0; i < n; ++i) p[i] = BFloat16(float(p[i]) / static_cast<float>(divisor));
      return;
    }
    default: EMBER_ASSERT(false, "Avg on ", t, " passed the checks");
  }
}

// Note [Empty tensors]
// Collectives on empty tensors send nothing (some MPI implementations reject the null buffers of empty
// tensors). Shapes must agree across ranks, so every rank skips alike; the collective still takes its
// sequence number and completes in order with the others on the worker. NCCL does the same.

// MPI counts are ints: all_reduce and broadcast go in pieces of at most this many elements.
constexpr int64_t kMaxCount = int64_t{1} << 30;

int checked_count(const char* op, int64_t n) {
  EMBER_CHECK(n <= INT_MAX, op, ": ", n, " elements per rank is more than MPI's int counts allow (", INT_MAX, ")");
  return static_cast<int>(n);
}

// ---- tasks ------------------------------------------------------------------------------------------

using Requests = std::vector<MPI_Request>;
using Stage = std::function<void(MPI_Comm, Requests&)>;

// One collective on the worker: stages of non-blocking calls (a stage starts when the previous one's
// requests completed), then `finish` on the worker (copies out of staging buffers, Avg's division).
// The lambdas hold the tensors and staging buffers the requests use.
struct Task {
  std::shared_ptr<SignalWork> work;
  std::shared_ptr<BytesWork> bytes_work;  // all_gather_bytes only (== work)
  uint64_t seq = 0;                       // 0: an internal step (no sequence number)
  std::string description;
  Clock::time_point issued;
  Clock::time_point deadline;
  std::vector<Stage> stages;
  std::function<void()> finish;
  size_t next_stage = 0;
  Requests requests;
  bool all_stages_issued() const { return next_stage == stages.size(); }
};

// Wire format of the peer questions (Note [Finding the missing ranks]); plain bytes, same binary everywhere.
struct Query {
  uint64_t id = 0;
};
struct Reply {
  uint64_t id = 0;
  uint64_t last_seq = 0;
  int32_t aborted = 0;
  char last_description[256] = {};
  char abort_reason[512] = {};
};
constexpr int kQueryTag = 0x5e01;
constexpr int kReplyTag = 0x5e02;

void copy_text(char* dst, size_t capacity, const std::string& src) {
  const size_t n = std::min(capacity - 1, src.size());
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

constexpr std::chrono::milliseconds kIdlePoll{10};

// Spins briefly after progress, then sleeps with a growing pause (at most 250 us) while work is in flight.
class Backoff {
 public:
  void reset() { rounds_ = 0; }
  void pause() {
    if (rounds_ < 16)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(std::min(250, 8 << std::min(rounds_ - 16, 5))));
    ++rounds_;
  }

 private:
  int rounds_ = 0;
};

// Note [Finding the missing ranks]
// Nothing is sent per collective to support this: each rank only remembers the sequence number and
// description of the last collective it issued on the group (GroupImpl::issue). When a collective
// times out, the rank asks every peer (one MPI_Isend of 8 bytes per peer, on the group's communicator,
// whose point-to-point traffic never matches its collectives) and waits at most ask_peers_grace
// (timeout/4 within [0.2 s, 2 s]) for the answers. Each group's worker thread answers questions
// whenever it runs, also while idle (it polls MPI_Iprobe every 10 ms) and while its own collectives
// are stuck, so a rank whose main thread is busy elsewhere (computing, sleeping, stuck in a CUDA call)
// still says where it is. Peers whose last collective is older did not arrive; a peer at the same
// number with another description issued a different collective; a peer that does not answer has
// crashed, has no MPI progress, or shut its group down. Cost: one MPI_Iprobe per worker wake-up
// (every 10 ms while idle, every poll while collectives are in flight), and a mutex plus a string
// copy per issued collective.
class MpiBackendImpl final : public MpiBackend {
 public:
  MpiBackendImpl(GroupImpl& group, MPI_Comm comm) : group_(group), comm_(comm) {
    worker_ = std::thread([this] { run(); });
  }
  ~MpiBackendImpl() override {
    try {
      shutdown();
    } catch (const std::exception& e) {
      ::ember::detail::log_warning(std::string("ProcessGroup: MPI backend shutdown failed: ") + e.what());
    }
  }

  std::shared_ptr<Work> all_reduce(uint64_t seq, std::string desc, const Tensor& t, ReduceOp op) override {
    auto task = make_task("all_reduce", seq, std::move(desc));
    if (t.numel() == 0) return submit(std::move(task));  // Note [Empty tensors]
    const MPI_Datatype type = mpi_type(t.dtype());
    const MPI_Op mop = mpi_op(op, t.dtype());
    task->stages.push_back([t, type, mop](MPI_Comm comm, Requests& out) {
      char* data = static_cast<char*>(t.raw_data());
      for (int64_t off = 0; off < t.numel(); off += kMaxCount) {
        const int count = static_cast<int>(std::min(kMaxCount, t.numel() - off));
        out.emplace_back();
        EMBER_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data + off * static_cast<int64_t>(t.element_size()), count, type,
                                       mop, comm, &out.back()));
      }
    });
    if (op == ReduceOp::Avg) {
      const int size = group_.config().size;
      task->finish = [t, size] { divide_in_place(t.raw_data(), t.numel(), t.dtype(), size); };
    }
    return submit(std::move(task));
  }

  std::shared_ptr<Work> broadcast(uint64_t seq, std::string desc, const Tensor& t, int root) override {
    auto task = make_task("broadcast", seq, std::move(desc));
    if (t.numel() == 0) return submit(std::move(task));
    const MPI_Datatype type = mpi_type(t.dtype());
    task->stages.push_back([t, type, root](MPI_Comm comm, Requests& out) {
      char* data = static_cast<char*>(t.raw_data());
      for (int64_t off = 0; off < t.numel(); off += kMaxCount) {
        const int count = static_cast<int>(std::min(kMaxCount, t.numel() - off));
        out.emplace_back();
        EMBER_MPI_CHECK(
            MPI_Ibcast(data + off * static_cast<int64_t>(t.element_size()), count, type, root, comm, &out.back()));
      }
    });
    return submit(std::move(task));
  }

  std::shared_ptr<Work> all_gather(uint64_t seq, std::string desc, const std::vector<Tensor>& outputs,
                                   const Tensor& input) override {
    const int count = checked_count("all_gather", input.numel());
    auto task = make_task("all_gather", seq, std::move(desc));
    if (count == 0) return submit(std::move(task));
    const MPI_Datatype type = mpi_type(input.dtype());
    const size_t nbytes = input.nbytes();
    const int rank = group_.config().rank;
    char* base = static_cast<char*>(consecutive_base(outputs));
    const char* in = static_cast<const char*>(input.raw_data());
    const size_t total = nbytes * outputs.size();
    if (base != nullptr && in == base + static_cast<size_t>(rank) * nbytes) {
      // In place: the input is this rank's piece of the output buffer.
      task->stages.push_back([outputs, input, base, count, type](MPI_Comm comm, Requests& out) {
        out.emplace_back();
        EMBER_MPI_CHECK(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, base, count, type, comm, &out.back()));
      });
    } else if (base != nullptr && (in + nbytes <= base || in >= base + total)) {
      task->stages.push_back([outputs, input, base, count, type](MPI_Comm comm, Requests& out) {
        out.emplace_back();
        EMBER_MPI_CHECK(MPI_Iallgather(input.raw_data(), count, type, base, count, type, comm, &out.back()));
      });
    } else {
      auto staging = std::make_shared<std::vector<char>>(total);
      task->stages.push_back([input, staging, count, type](MPI_Comm comm, Requests& out) {
        out.emplace_back();
        EMBER_MPI_CHECK(MPI_Iallgather(input.raw_data(), count, type, staging->data(), count, type, comm, &out.back()));
      });
      task->finish = [outputs, staging, nbytes] {
        for (size_t j = 0; j < outputs.size(); ++j)
          std::memcpy(outputs[j].raw_data(), staging->data() + j * nbytes, nbytes);
      };
    }
    return submit(std::move(task));
  }

  std::shared_ptr<Work> reduce_scatter(uint64_t seq, std::string desc, const Tensor& output,
                                       const std::vector<Tensor>& inputs, ReduceOp op) override {
    const int count = checked_count("reduce_scatter", output.numel());
    auto task = make_task("reduce_scatter", seq, std::move(desc));
    if (count == 0) return submit(std::move(task));
    const MPI_Datatype type = mpi_type(output.dtype());
    const MPI_Op mop = mpi_op(op, output.dtype());
    const size_t nbytes = output.nbytes();
    auto staging = std::make_shared<std::vector<char>>(nbytes * inputs.size());
    // The inputs are packed when the collective starts (the caller must not change them before wait()).
    task->stages.push_back([output, inputs, staging, nbytes, count, type, mop](MPI_Comm comm, Requests& out) {
      for (size_t j = 0; j < inputs.size(); ++j)
        std::memcpy(staging->data() + j * nbytes, inputs[j].raw_data(), nbytes);
      out.emplace_back();
      EMBER_MPI_CHECK(
          MPI_Ireduce_scatter_block(staging->data(), output.raw_data(), count, type, mop, comm, &out.back()));
    });
    if (op == ReduceOp::Avg) {
      const int size = group_.config().size;
      task->finish = [output, size] { divide_in_place(output.raw_data(), output.numel(), output.dtype(), size); };
    }
    return submit(std::move(task));
  }

  std::shared_ptr<Work> barrier(uint64_t seq, std::string desc) override {
    auto task = make_task("barrier", seq, std::move(desc));
    task->stages.push_back([](MPI_Comm comm, Requests& out) {
      out.emplace_back();
      EMBER_MPI_CHECK(MPI_Ibarrier(comm, &out.back()));
    });
    return submit(std::move(task));
  }

  std::shared_ptr<BytesWork> all_gather_bytes(uint64_t seq, std::string desc, std::string mine) override {
    auto task = make_task("all_gather_bytes", seq, std::move(desc), /*bytes=*/true);
    struct State {
      std::string mine;
      int64_t length = 0;
      std::vector<int64_t> lengths;
      std::vector<int> counts, displs;
      std::string all;
    };
    auto s = std::make_shared<State>();
    s->mine = std::move(mine);
    s->length = static_cast<int64_t>(s->mine.size());
    s->lengths.resize(static_cast<size_t>(group_.config().size));
    task->stages.push_back([s](MPI_Comm comm, Requests& out) {
      out.emplace_back();
      EMBER_MPI_CHECK(MPI_Iallgather(&s->length, 1, MPI_INT64_T, s->lengths.data(), 1, MPI_INT64_T, comm, &out.back()));
    });
    task->stages.push_back([s](MPI_Comm comm, Requests& out) {
      // Every rank sees the same lengths, so every rank fails this check alike (nothing sent yet).
      int64_t total = 0;
      for (int64_t n : s->lengths) total += n;
      EMBER_CHECK(total <= INT_MAX, "all_gather_bytes: ", total, " bytes in all is more than MPI's int counts allow");
      s->counts.clear();
      s->displs.clear();
      int64_t offset = 0;
      for (int64_t n : s->lengths) {
        s->counts.push_back(static_cast<int>(n));
        s->displs.push_back(static_cast<int>(offset));
        offset += n;
      }
      s->all.resize(static_cast<size_t>(total));
      out.emplace_back();
      EMBER_MPI_CHECK(MPI_Iallgatherv(s->mine.data(), static_cast<int>(s->length), MPI_BYTE, s->all.data(),
                                      s->counts.data(), s->displs.data(), MPI_BYTE, comm, &out.back()));
    });
    BytesWork* result = task->bytes_work.get();
    task->finish = [s, result] {
      result->result.clear();
      for (size_t j = 0; j < s->counts.size(); ++j)
        result->result.push_back(s->all.substr(static_cast<size_t>(s->displs[j]), static_cast<size_t>(s->counts[j])));
    };
    std::shared_ptr<BytesWork> work = task->bytes_work;
    submit(std::move(task));
    return work;
  }

  std::string broadcast_bytes(const std::string& bytes, size_t length, int root, const std::string& why) override {
    const int rank = group_.config().rank;
    EMBER_ASSERT(rank != root || bytes.size() == length, "broadcast_bytes: root has ", bytes.size(), " bytes, not ",
                 length);
    auto buffer = std::make_shared<std::string>(rank == root ? bytes : std::string(length, '\0'));
    auto task = make_task("internal", 0, why);
    task->stages.push_back([buffer, root](MPI_Comm comm, Requests& out) {
      out.emplace_back();
      EMBER_MPI_CHECK(MPI_Ibcast(buffer->data(), static_cast<int>(buffer->size()), MPI_BYTE, root, comm, &out.back()));
    });
    submit(std::move(task))->wait();
    return *buffer;
  }

  std::vector<PeerStatus> ask_peers() override {
    auto request = std::make_shared<AskRequest>();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (worker_done_) return {};
      asks_.push_back(request);
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> lock(mutex_);
    ask_cv_.wait_for(lock, ask_peers_grace(group_.config().timeout) + std::chrono::seconds(2),
                     [&] { return request->done; });
    return request->done ? request->result : std::vector<PeerStatus>{};
  }

  void on_abort(const std::string& reason) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (aborted_) return;
      aborted_ = true;
      abort_pending_ = true;
      abort_reason_ = reason;
    }
    {
      std::lock_guard<std::mutex> lock(g_world.init_mutex);
      g_world.any_abort = true;
      g_world.longest_aborted_timeout = std::max(g_world.longest_aborted_timeout, group_.config().timeout);
    }
    cv_.notify_all();
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    std::lock_guard<std::mutex> lock(g_world.init_mutex);
    if (g_world.finalized) return;
    // Answers still being sent are freed (point-to-point requests may be); their buffers are kept.
    for (Outgoing& o : outgoing_) {
      if (o.request != MPI_REQUEST_NULL) {
        std::lock_guard<std::mutex> call(g_world.call_mutex);
        MPI_Request_free(&o.request);
      }
      g_world.abandoned.push_back(o.buffer);
    }
    outgoing_.clear();
    // A communicator with collectives left pending by an abort is not freed (freeing waits for them).
    if (!comm_abandoned_ && comm_ != MPI_COMM_NULL) {
      std::lock_guard<std::mutex> call(g_world.call_mutex);
      MPI_Comm_free(&comm_);
    }
  }

 private:
  struct AskRequest {
    bool done = false;
    std::vector<PeerStatus> result;
  };
  struct Outgoing {
    std::shared_ptr<std::vector<char>> buffer;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  std::unique_ptr<Task> make_task(const char* collective, uint64_t seq, std::string desc, bool bytes = false) {
    auto task = std::make_unique<Task>();
    task->seq = seq;
    task->issued = Clock::now();
    task->deadline = task->issued + group_.config().timeout;
    const auto give_up = task->deadline + ask_peers_grace(group_.config().timeout) + std::chrono::seconds(30);
    if (bytes) {
      task->bytes_work = std::make_shared<BytesWork>(collective, seq, desc, give_up);
      task->work = task->bytes_work;
    } else {
      task->work = std::make_shared<SignalWork>(collective, seq, desc, give_up);
    }
    task->description = std::move(desc);
    return task;
  }

  std::shared_ptr<SignalWork> submit(std::unique_ptr<Task> task) {
    std::shared_ptr<SignalWork> work = task->work;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (aborted_)
        EMBER_THROW(task->description, ": this process group (rank ", group_.config().rank,
                    ") was aborted earlier, by: ", abort_reason_);
      EMBER_CHECK(!stopping_, task->description, ": this process group was shut down");
      queue_.push_back(std::move(task));
    }
    cv_.notify_all();
    return work;
  }

  // ---- the worker ----

  void run() {
    Backoff backoff;
    // Whether this worker counts in g_world.busy_workers (Note [MPI progress during backward]).
    struct Busy {
      bool counted = false;
      void set(bool busy) {
        if (busy == counted) return;
        counted = busy;
        g_world.busy_workers.fetch_add(busy ? 1 : -1, std::memory_order_relaxed);
      }
      ~Busy() { set(false); }
    } busy;
    while (true) {
      std::vector<std::unique_ptr<Task>> to_start, to_fail;
      std::vector<std::shared_ptr<AskRequest>> asks;
      std::string abort_reason;
      bool abort_now = false;
      bool stop = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (in_flight_.empty() && queue_.empty() && asks_.empty() && !abort_pending_ && !stopping_)
          cv_.wait_for(lock, kIdlePoll);
        if (abort_pending_) {
          abort_pending_ = false;
          abort_now = true;
          abort_reason = abort_reason_;
          for (auto& t : queue_) to_fail.push_back(std::move(t));
          queue_.clear();
        }
        // Collectives start in the order issued; one with stages still to issue (all_gather_bytes,
        // whose second call depends on the first's result) holds back the next, so that every rank
        // starts the same collectives in the same order on the communicator.
        bool held =
            std::any_of(in_flight_.begin(), in_flight_.end(), [](const auto& t) { return !t->all_stages_issued(); });
        while (!aborted_ && !held && !queue_.empty()) {
          to_start.push_back(std::move(queue_.front()));
          queue_.pop_front();
          held = to_start.back()->stages.size() > 1;
        }
        asks.swap(asks_);
        stop = stopping_ && queue_.empty() && in_flight_.empty() && to_start.empty();
      }
      try {
        if (abort_now) give_up_everything(abort_reason, to_fail);
        for (auto& t : to_start) start(std::move(t));
        const bool progressed = progress();
        check_deadlines();
        serve_queries();
        for (auto& a : asks) answer_ask(*a);
        if (stop) break;
        if (progressed) backoff.reset();
        busy.set(!in_flight_.empty());
        if (!in_flight_.empty()) backoff.pause();
      } catch (const std::exception& e) {
        // A failing MPI call outside a collective (probe, answer): the communicator is not trusted.
        const std::string message =
            str_cat("MPI failure in the worker of process group rank ", group_.config().rank, ": ", e.what());
        group_.abort(message);
        for (auto& t : to_start)
          if (t) t->work->fail(str_cat(t->description, " was not started: ", message));
        for (auto& t : to_fail)
          if (t) t->work->fail(str_cat(t->description, " was not started: ", message));
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    worker_done_ = true;
    for (auto& a : asks_) a->done = true;
    asks_.clear();
    ask_cv_.notify_all();
  }

  void start(std::unique_ptr<Task> task) {
    if (task->stages.empty()) {  // nothing to send (Note [Empty tensors])
      finish(*task);
      return;
    }
    if (issue_stage(*task)) in_flight_.push_back(std::move(task));
  }

  void finish(Task& t) {
    try {
      if (t.finish) t.finish();
      t.work->complete();
    } catch (const std::exception& e) {
      t.work->fail(str_cat(t.description, ": ", e.what()));
    }
  }

  // Issues the task's next stage; false when it failed (the task is then finished or abandoned).
  bool issue_stage(Task& t) {
    Stage& stage = t.stages[t.next_stage++];
    try {
      stage(comm_, t.requests);
      return true;
    } catch (const MpiError& e) {
      fail_and_abort(t, str_cat(t.description, " failed on rank ", group_.config().rank, ": ", e.what()));
      return false;
    } catch (const std::exception& e) {
      // Checks that every rank fails alike, before anything was sent: the group stays usable.
      t.work->fail(str_cat(t.description, ": ", e.what()));
      return false;
    }
  }

  // The group is aborted before the work fails, so that whoever waits for it sees an aborted group.
  // on_abort only flags the abort: the in-flight tasks are given up on the next round, after the work
  // got its own message here.
  void fail_and_abort(Task& t, const std::string& message) {
    group_.abort(message);
    t.work->fail(message);
    // Requests may be pending: the task's buffers must outlive them.
    if (!t.requests.empty()) comm_abandoned_ = true;
  }

  // Tests the requests of every task in flight; runs the next stages and the finishes.
  bool progress() {
    bool progressed = false;
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      Task& t = **it;
      int done = 1;
      if (!t.requests.empty()) {
        try {
          EMBER_MPI_CHECK(
              MPI_Testall(static_cast<int>(t.requests.size()), t.requests.data(), &done, MPI_STATUSES_IGNORE));
        } catch (const MpiError& e) {
          fail_and_abort(t, str_cat(t.description, " failed on rank ", group_.config().rank, ": ", e.what()));
          ++it;  // kept until the abort gives it up
          continue;
        }
      }
      if (!done) {
        ++it;
        continue;
      }
      progressed = true;
      t.requests.clear();
      if (!t.all_stages_issued()) {
        if (issue_stage(t)) {
          ++it;
        } else if (t.requests.empty()) {
          it = in_flight_.erase(it);
        } else {
          ++it;
        }
        continue;
      }
      finish(t);
      it = in_flight_.erase(it);
    }
    return progressed;
  }

  void check_deadlines() {
    if (aborted_) return;
    const auto now = Clock::now();
    for (auto& task : in_flight_) {
      if (now < task->deadline) continue;
      on_timeout(*task, now);
      return;
    }
  }

  void on_timeout(Task& t, Clock::time_point now) {
    const GroupConfig& c = group_.config();
    TimeoutReport r;
    r.description = t.description;
    r.rank = c.rank;
    r.size = c.size;
    r.transport = "mpi";
    r.timeout = c.timeout;
    r.waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - t.issued);
    if (t.seq == 0) {
      r.seq = group_.sequence_number();
      r.compare_descriptions = false;
    } else {
      r.seq = t.seq;
    }
    r.peers = ask_peers_now();
    r.peers_asked = c.size == 1 || !r.peers.empty();
    const std::string message = timeout_message(r);
    comm_abandoned_ = true;
    group_.abort(message);  // first, as in fail_and_abort
    t.work->fail(message);
  }

  // Fails what was queued, abandons what is in flight (its requests will never complete).
  void give_up_everything(const std::string& reason, std::vector<std::unique_ptr<Task>>& queued) {
    for (auto& t : queued)
      t->work->fail(str_cat(t->description, " was not started: the process group was aborted, by: ", reason));
    for (auto& t : in_flight_) {
      t->work->fail(str_cat(t->description, " was in flight when the process group was aborted, by: ", reason));
      if (!t->requests.empty()) comm_abandoned_ = true;
    }
    std::lock_guard<std::mutex> lock(g_world.init_mutex);
    for (auto& t : in_flight_) g_world.abandoned.push_back(std::shared_ptr<Task>(std::move(t)));
    in_flight_.clear();
  }

  // Answers the questions peers sent (Note [Finding the missing ranks]).
  void serve_queries() {
    for (int i = 0; i < 16; ++i) {
      int flag = 0;
      MPI_Status status;
      EMBER_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, comm_, &flag, &status));
      if (!flag) break;
      Query q;
      EMBER_MPI_CHECK(MPI_Recv(&q, sizeof(q), MPI_BYTE, status.MPI_SOURCE, kQueryTag, comm_, MPI_STATUS_IGNORE));
      Reply reply;
      reply.id = q.id;
      const auto [seq, description] = group_.last_issued();
      reply.last_seq = seq;
      copy_text(reply.last_description, sizeof(reply.last_description), description);
      reply.aborted = group_.aborted() ? 1 : 0;
      if (reply.aborted) copy_text(reply.abort_reason, sizeof(reply.abort_reason), group_.abort_reason());
      Outgoing o;
      o.buffer = std::make_shared<std::vector<char>>(sizeof(Reply));
      std::memcpy(o.buffer->data(), &reply, sizeof(Reply));
      EMBER_MPI_CHECK(
          MPI_Isend(o.buffer->data(), sizeof(Reply), MPI_BYTE, status.MPI_SOURCE, kReplyTag, comm_, &o.request));
      outgoing_.push_back(std::move(o));
    }
    for (auto it = outgoing_.begin(); it != outgoing_.end();) {
      int flag = 0;
      EMBER_MPI_CHECK(MPI_Test(&it->request, &flag, MPI_STATUS_IGNORE));
      it = flag ? outgoing_.erase(it) : std::next(it);
    }
  }

  void answer_ask(AskRequest& a) {
    std::vector<PeerStatus> result;
    try {
      result = ask_peers_now();
    } catch (const std::exception& e) {
      ::ember::detail::log_warning(std::string("ProcessGroup: asking the peers failed: ") + e.what());
    }
    std::lock_guard<std::mutex> lock(mutex_);
    a.result = std::move(result);
    a.done = true;
    ask_cv_.notify_all();
  }

  // On the worker: one question to every peer, answers collected for ask_peers_grace.
  std::vector<PeerStatus> ask_peers_now() {
    const int size = group_.config().size;
    const int rank = group_.config().rank;
    if (size == 1) return {};
    auto query = std::make_shared<std::vector<char>>(sizeof(Query));
    Query q;
    q.id = (static_cast<uint64_t>(rank) << 40) | ++query_counter_;
    std::memcpy(query->data(), &q, sizeof(q));
    std::vector<Reply> replies(static_cast<size_t>(size));
    std::vector<MPI_Request> receives(static_cast<size_t>(size), MPI_REQUEST_NULL);
    std::vector<bool> received(static_cast<size_t>(size), false);
    for (int p = 0; p < size; ++p) {
      if (p == rank) continue;
      EMBER_MPI_CHECK(MPI_Irecv(&replies[p], sizeof(Reply), MPI_BYTE, p, kReplyTag, comm_, &receives[p]));
      Outgoing o;
      o.buffer = query;
      EMBER_MPI_CHECK(MPI_Isend(query->data(), sizeof(Query), MPI_BYTE, p, kQueryTag, comm_, &o.request));
      outgoing_.push_back(std::move(o));
    }
    const auto deadline = Clock::now() + ask_peers_grace(group_.config().timeout);
    int pending = size - 1;
    while (pending > 0 && Clock::now() < deadline) {
      for (int p = 0; p < size; ++p) {
        if (receives[p] == MPI_REQUEST_NULL) continue;
        int flag = 0;
        EMBER_MPI_CHECK(MPI_Test(&receives[p], &flag, MPI_STATUS_IGNORE));
        if (flag) {
          received[p] = true;
          --pending;
        }
      }
      serve_queries();
      if (pending > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (int p = 0; p < size; ++p) {
      if (receives[p] == MPI_REQUEST_NULL) continue;
      MPI_Status status;
      int cancelled = 0;
      EMBER_MPI_CHECK(MPI_Cancel(&receives[p]));
      EMBER_MPI_CHECK(MPI_Wait(&receives[p], &status));
      EMBER_MPI_CHECK(MPI_Test_cancelled(&status, &cancelled));
      if (!cancelled) received[p] = true;
    }
    std::vector<PeerStatus> peers;
    for (int p = 0; p < size; ++p) {
      if (p == rank) continue;
      PeerStatus s;
      s.rank = p;
      const Reply& r = replies[p];
      s.answered = received[p] && r.id == q.id;
      if (s.answered) {
        s.last_seq = r.last_seq;
        s.last_description = std::string(r.last_description, strnlen(r.last_description, sizeof(r.last_description)));
        s.aborted = r.aborted != 0;
        s.abort_reason = std::string(r.abort_reason, strnlen(r.abort_reason, sizeof(r.abort_reason)));
      }
      peers.push_back(std::move(s));
    }
    return peers;
  }

  GroupImpl& group_;
  MPI_Comm comm_;
  std::thread worker_;

  std::mutex mutex_;  // guards the fields up to ask_cv_
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Task>> queue_;
  std::vector<std::shared_ptr<AskRequest>> asks_;
  bool stopping_ = false;
  std::atomic<bool> aborted_{false};  // written under mutex_, read without it by the worker
  bool abort_pending_ = false;
  bool worker_done_ = false;
  std::string abort_reason_;
  std::condition_variable ask_cv_;

  // The worker's own (and shutdown's, after the join).
  std::vector<std::unique_ptr<Task>> in_flight_;
  std::deque<Outgoing> outgoing_;
  uint64_t query_counter_ = 0;
  bool comm_abandoned_ = false;
};

// Runs MPI_Finalize; if `bound` is positive and it has not returned by then, ends the process.
void finalize_with_watchdog(std::chrono::milliseconds bound) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog;
  if (bound.count() > 0) {
    watchdog = std::thread([&] {
      std::unique_lock<std::mutex> lock(m);
      if (cv.wait_for(lock, bound, [&] { return done; })) return;
      std::fprintf(stderr,
                   "[ember] MPI_Finalize did not return within %lld ms after a process group was aborted (a peer "
                   "rank is stuck or gone); exiting with status 1 without finalising MPI\n",
                   static_cast<long long>(bound.count()));
      std::fflush(stderr);
      std::_Exit(1);
    });
  }
  MPI_Finalize();
  {
    std::lock_guard<std::mutex> lock(m);
    done = true;
  }
  cv.notify_all();
  if (watchdog.joinable()) watchdog.join();
}

// Note [MPI progress during backward]
// Open MPI (like MPICH) advances non-blocking collectives only inside MPI calls: libnbc's schedules and the
// shared-memory transport's rendezvous (a large message is a handshake, then a single copy) each move one
// step per call to the progress engine, on each of the ranks. The worker thread makes those calls, but
// while backward computes, each rank's cores are busy with it, and the worker, once it has slept, waits for
// the scheduler to give it a core: traced here (2 ranks on 2 cores, the CNN's 1.6 MB first bucket, issued
// about 11 ms before backward ends), it ran MPI_Testall 2 to 15 times in the 2 to 18 ms (median 7.5) the
// all-reduce took, and 10 of 46 outlasted backward. So the threads that compute also advance MPI: in the
// same trace with them, 1.8 to 8 ms (median 5.0), none past the end of backward. (The step time did not
// move measurably in 6 runs each: this host's noise is larger; bench/README.md.) After each node of
// backward (Note [Node boundary hook]), while some worker has collectives in flight and at most every
// kPokeInterval per thread, the engine's thread calls MPI_Iprobe on a private copy of MPI_COMM_SELF, which
// runs the progress engine for every pending request of the process (the completion is still found, and
// reported, by the worker). It takes the MPI call mutex only if free (never waits for the worker), and does
// nothing once MPI is being finalised. The copying a rendezvous does then runs on the computing thread:
// that work had to take a core from backward either way.
constexpr std::chrono::microseconds kPokeInterval{50};

void poke_progress() noexcept {
  if (g_world.busy_workers.load(std::memory_order_relaxed) == 0) return;
  thread_local Clock::time_point last;
  const Clock::time_point now = Clock::now();
  if (now - last < kPokeInterval) return;
  last = now;
  std::unique_lock<std::mutex> lock(g_world.call_mutex, std::try_to_lock);
  if (!lock.owns_lock() || !g_world.live.load(std::memory_order_relaxed)) return;
  int flag = 0;
  // A failure here is not this thread's to report: the worker's own calls on the group's communicator
  // fail too and abort the group with the error.
  (void)MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, g_world.poke_comm, &flag, MPI_STATUS_IGNORE);
}

}  // namespace

// ---- world --------------------------------------------------------------------------------------

MpiWorldInfo mpi_world_init(const LaunchInfo& launch) {
  std::lock_guard<std::mutex> lock(g_world.init_mutex);
  if (g_world.initialized) return g_world.info;
  int finalized = 0;
  MPI_Finalized(&finalized);
  EMBER_CHECK(!finalized, "init_process_group: MPI was already finalised in this process");
  int already = 0;
  MPI_Initialized(&already);
  int provided = 0;
  if (!already) {
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    EMBER_CHECK(rc == MPI_SUCCESS, "init_process_group: MPI_Init_thread failed (code ", rc, ") under ",
                launch.launcher);
    g_world.owns = true;
  } else {
    MPI_Query_thread(&provided);
  }
  EMBER_CHECK(provided >= MPI_THREAD_SERIALIZED, "init_process_group: MPI provides thread level ", provided,
              " but ember's process groups need MPI_THREAD_SERIALIZED (", MPI_THREAD_SERIALIZED,
              ") or higher; initialise MPI with MPI_Init_thread(..., MPI_THREAD_MULTIPLE, ...)");
  MpiWorldInfo info;
  MPI_Comm_rank(MPI_COMM_WORLD, &info.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &info.size);
  EMBER_CHECK((launch.rank < 0 || launch.rank == info.rank) && (launch.size < 0 || launch.size == info.size),
              "init_process_group: ", launch.launcher, " says rank ", launch.rank, " of ", launch.size,
              " but MPI says rank ", info.rank, " of ", info.size,
              "; was the program started by the launcher of another MPI than the one ember was built with?");
  if (launch.local_rank >= 0 && launch.local_size > 0) {
    info.local_rank = launch.local_rank;
    info.local_size = launch.local_size;
  } else {
    MPI_Comm node = MPI_COMM_NULL;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info.rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &info.local_rank);
    MPI_Comm_size(node, &info.local_size);
    MPI_Comm_free(&node);
  }
  MPI_Op_create(&reduce_16bit<Half, SumF>, 1, &g_world.half_ops[0]);
  MPI_Op_create(&reduce_16bit<Half, MaxF>, 1, &g_world.half_ops[1]);
  MPI_Op_create(&reduce_16bit<Half, MinF>, 1, &g_world.half_ops[2]);
  MPI_Op_create(&reduce_16bit<BFloat16, SumF>, 1, &g_world.bf16_ops[0]);
  MPI_Op_create(&reduce_16bit<BFloat16, MaxF>, 1, &g_world.bf16_ops[1]);
  MPI_Op_create(&reduce_16bit<BFloat16, MinF>, 1, &g_world.bf16_ops[2]);
  g_world.info = info;
  EMBER_CHECK(MPI_Comm_dup(MPI_COMM_SELF, &g_world.poke_comm) == MPI_SUCCESS &&
                  MPI_Comm_set_errhandler(g_world.poke_comm, MPI_ERRORS_RETURN) == MPI_SUCCESS,
              "init_process_group: could not duplicate MPI_COMM_SELF");
  g_world.initialized = true;
  g_world.live.store(true);
  autograd::set_node_boundary_hook(&poke_progress);
  register_exit_hook();
  return info;
}

std::unique_ptr<MpiBackend> make_mpi_backend(GroupImpl& group) {
  {
    std::lock_guard<std::mutex> lock(g_world.init_mutex);
    EMBER_ASSERT(g_world.initialized && !g_world.finalized, "make_mpi_backend before MPI was initialised");
  }
  // Non-blocking, polled against the timeout: a rank that never calls init_process_group is reported.
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Request request = MPI_REQUEST_NULL;
  EMBER_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &comm, &request));
  const auto start = Clock::now();
  const auto deadline = start + group.config().timeout;
  Backoff backoff;
  while (true) {
    int done = 0;
    EMBER_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) break;
    EMBER_CHECK(Clock::now() < deadline, "init_process_group: rank ", group.config().rank, " of ", group.config().size,
                " waited ", std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count(),
                " ms (the timeout) for the other ranks to call init_process_group too; every rank must call it the "
                "same number of times");
    backoff.pause();
  }
  EMBER_MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  return std::make_unique<MpiBackendImpl>(group, comm);
}

void mpi_finalize_at_exit() {
  std::lock_guard<std::mutex> lock(g_world.init_mutex);
  if (!g_world.initialized || g_world.finalized) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  // The program's own MPI: finalising it is the program's job (abandoned buffers live until static
  // destruction; ember's allocators are never destroyed, so freeing them then is safe).
  autograd::set_node_boundary_hook(nullptr);
  {
    std::lock_guard<std::mutex> call(g_world.call_mutex);
    g_world.live.store(false);
  }
  if (!g_world.owns || finalized) return;
  if (g_world.poke_comm != MPI_COMM_NULL && MPI_Comm_free(&g_world.poke_comm) != MPI_SUCCESS)
    ::ember::detail::log_warning("MPI: freeing the progress communicator failed; finalising anyway");
  const std::chrono::milliseconds bound =
      g_world.any_abort ? std::max(g_world.longest_aborted_timeout, std::chrono::milliseconds(5000))
                        : std::chrono::milliseconds(0);
  finalize_with_watchdog(bound);
  g_world.finalized = true;
  g_world.abandoned.clear();  // MPI is gone: nothing writes into these buffers any more
}

}  // namespace ember::distributed::detail
