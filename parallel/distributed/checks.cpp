// Process groups: routing, argument checks, launcher detection and timeout messages (no MPI or NCCL here).
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "parallel/distributed/detail.h"
#include "runtime/factory.h"

namespace ember::distributed::detail {

using ::ember::detail::str_cat;

const char* transport_name(Transport t) {
  switch (t) {
    case Transport::Local: return "local";
    case Transport::Mpi: return "mpi";
    case Transport::Nccl: return "nccl";
  }
  return "?";
}

std::string parse_backend(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  EMBER_CHECK(lower == "auto" || lower == "nccl" || lower == "mpi", "init_process_group: unknown backend '", name,
              "'; expected \"auto\" (NCCL for CUDA tensors, MPI for CPU tensors), \"nccl\" or \"mpi\"");
  return lower;
}

Transport choose_transport(const char* op, const std::string& backend, Device device, bool has_mpi) {
  if (device.is_cuda()) {
    EMBER_CHECK(backend != "mpi", op, ": the tensor is on ", device,
                " but this process group's backend is \"mpi\", which takes CPU tensors only (ember does not assume a "
                "CUDA-aware MPI); use InitOptions().backend(\"auto\") or \"nccl\", or move the tensor to the CPU");
    return Transport::Nccl;
  }
  EMBER_CHECK(backend != "nccl", op, ": the tensor is on ", device,
              " but this process group's backend is \"nccl\", which takes CUDA tensors only; use "
              "InitOptions().backend(\"auto\") to send CPU tensors through MPI, or move the tensor to the GPU");
  return has_mpi ? Transport::Mpi : Transport::Local;
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

void check_tensor(const char* op, const Tensor& t, const std::string& what) {
  EMBER_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
  EMBER_CHECK(t.is_contiguous(), op, ": ", what, " (", describe(t), ", strides ", t.strides(),
              ") is not contiguous; collectives work in place on contiguous tensors (use .contiguous() and copy the "
              "result back)");
}

void check_reduce_op(const char* op, ReduceOp reduce, DType dtype) {
  EMBER_CHECK(reduce != ReduceOp::Avg || is_floating_point(dtype), op,
              ": ReduceOp::Avg needs a floating-point tensor, got ", dtype,
              " (as with NCCL's ncclAvg); use ReduceOp::Sum and divide");
}

void check_root(const char* op, int root, int size) {
  EMBER_CHECK(root >= 0 && root < size, op, ": root ", root, " is not a rank of this process group of ", size,
              " (ranks 0..", size - 1, ")");
}

namespace {

void check_like(const char* op, const Tensor& t, const std::string& what, const Tensor& ref, const char* ref_name) {
  check_tensor(op, t, what);
  EMBER_CHECK(t.dtype() == ref.dtype() && t.device() == ref.device() && t.sizes() == ref.sizes(), op, ": ", what,
              " is ", describe(t), " on ", t.device(), " but the ", ref_name, " is ", describe(ref), " on ",
              ref.device(), "; each must match the ", ref_name, "'s shape, dtype and device");
}

}  // namespace

void prepare_all_gather(std::vector<Tensor>& outputs, const Tensor& input, int size) {
  check_tensor("all_gather", input, "the input");
  if (outputs.empty()) {
    outputs.reserve(static_cast<size_t>(size));
    for (int j = 0; j < size; ++j) outputs.push_back(empty(input.sizes(), input.options()));
    return;
  }
  EMBER_CHECK(outputs.size() == static_cast<size_t>(size), "all_gather: got ", outputs.size(),
              " output tensors for a process group of ", size, " ranks; pass ", size,
              " tensors shaped like the input (", describe(input), "), or an empty vector to have them allocated");
  for (size_t j = 0; j < outputs.size(); ++j)
    check_like("all_gather", outputs[j], "outputs[" + std::to_string(j) + "]", input, "input");
}

void check_reduce_scatter(const Tensor& output, const std::vector<Tensor>& inputs, int size) {
  check_tensor("reduce_scatter", output, "the output");
  EMBER_CHECK(inputs.size() == static_cast<size_t>(size), "reduce_scatter: got ", inputs.size(),
              " input tensors for a process group of ", size,
              " ranks; pass one per rank, each shaped like the output (", describe(output), ")");
  for (size_t j = 0; j < inputs.size(); ++j)
    check_like("reduce_scatter", inputs[j], "inputs[" + std::to_string(j) + "]", output, "output");
}

void* consecutive_base(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return nullptr;
  const Tensor& first = tensors[0];
  const size_t nbytes = first.nbytes();
  char* base = static_cast<char*>(first.raw_data());
  for (size_t j = 0; j < tensors.size(); ++j) {
    const Tensor& t = tensors[j];
    if (!t.is_contiguous() || !t.is_alias_of(first) || t.nbytes() != nbytes ||
        static_cast<char*>(t.raw_data()) != base + j * nbytes)
      return nullptr;
  }
  return base;
}

std::string describe(const Tensor& t) { return str_cat(t.dtype(), " ", t.sizes()); }

std::string describe_collective(const std::string& collective, uint64_t seq, const std::string& detail) {
  return detail.empty() ? str_cat(collective, " (sequence number ", seq, ")")
                        : str_cat(collective, " (sequence number ", seq, ": ", detail, ")");
}

// ---- launcher ------------------------------------------------------------------------------------

namespace {

int env_int(const EnvGetter& env, const char* name) {
  const char* v = env(name);
  if (v == nullptr || *v == '\0') return -1;
  char* end = nullptr;
  const long value = std::strtol(v, &end, 10);
  EMBER_CHECK(*end == '\0' && value >= 0 && value < (1L << 30),
              "init_process_group: the launcher's environment variable ", name, "='", v,
              "' is not a non-negative integer");
  return static_cast<int>(value);
}

}  // namespace

LaunchInfo detect_launcher(const EnvGetter& env) {
  LaunchInfo info;
  if (env("OMPI_COMM_WORLD_SIZE") != nullptr) {
    info.launcher = "Open MPI (mpirun)";
    info.rank = env_int(env, "OMPI_COMM_WORLD_RANK");
    info.size = env_int(env, "OMPI_COMM_WORLD_SIZE");
    info.local_rank = env_int(env, "OMPI_COMM_WORLD_LOCAL_RANK");
    info.local_size = env_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE");
  } else if (env("PMIX_RANK") != nullptr) {
    info.launcher = "PMIx (srun --mpi=pmix)";
    info.rank = env_int(env, "PMIX_RANK");
    info.size = env_int(env, "SLURM_NTASKS");
    if (info.size < 0) info.size = env_int(env, "SLURM_NPROCS");
    info.local_rank = env_int(env, "SLURM_LOCALID");
    // SLURM_TASKS_PER_NODE is a compressed list ("2(x3),1"): MPI tells the local size instead.
  } else if (env("PMI_RANK") != nullptr) {
    info.launcher = "PMI (MPICH's Hydra, or srun --mpi=pmi2)";
    info.rank = env_int(env, "PMI_RANK");
    info.size = env_int(env, "PMI_SIZE");
    info.local_rank = env_int(env, "MPI_LOCALRANKID");
    info.local_size = env_int(env, "MPI_LOCALNRANKS");
  } else {
    return info;
  }
  info.launched = true;
  EMBER_CHECK(info.size != 0 && (info.size < 0 || info.rank < info.size), "init_process_group: ", info.launcher,
              " says rank ", info.rank, " of ", info.size, ", which is not a valid rank");
  EMBER_CHECK(info.local_rank < 0 || info.local_size < 0 || info.local_rank < info.local_size,
              "init_process_group: ", info.launcher, " says local rank ", info.local_rank, " of ", info.local_size,
              ", which is not a valid local rank");
  return info;
}

LaunchInfo detect_launcher() {
  return detect_launcher([](const char* name) { return std::getenv(name); });
}

// ---- timeouts ------------------------------------------------------------------------------------

std::chrono::milliseconds ask_peers_grace(std::chrono::milliseconds timeout) {
  return std::clamp(timeout / 4, std::chrono::milliseconds(200), std::chrono::milliseconds(2000));
}

namespace {

std::string shorten(const std::string& s, size_t max = 300) { return s.size() <= max ? s : s.substr(0, max) + "..."; }

std::string join_ranks(const std::vector<const PeerStatus*>& peers) {
  std::string out;
  for (const PeerStatus* p : peers) out += (out.empty() ? "" : ", ") + std::to_string(p->rank);
  return out;
}

}  // namespace

std::string timeout_message(const TimeoutReport& r) {
  std::ostringstream os;
  os << r.description << " timed out on rank " << r.rank << " of " << r.size << " (" << r.transport
     << "): not complete after waiting " << r.waited.count() << " ms (timeout " << r.timeout.count() << " ms).";
  if (r.size == 1) {
    os << " This is a world of one: no rank is missing; the collective itself did not finish.";
  } else if (!r.peers_asked) {
    os << " The other ranks could not be asked which collective they are at.";
  } else {
    std::vector<const PeerStatus*> missing, mismatched, aborted, silent;
    for (const PeerStatus& p : r.peers) {
      if (!p.answered)
        silent.push_back(&p);
      else if (p.aborted)
        aborted.push_back(&p);
      else if (p.last_seq < r.seq)
        missing.push_back(&p);
      else if (r.compare_descriptions && p.last_seq == r.seq && p.last_description != r.description)
        mismatched.push_back(&p);
    }
    if (!missing.empty()) {
      os << " Ranks that did not arrive: " << join_ranks(missing) << " (";
      for (size_t i = 0; i < missing.size(); ++i) {
        const PeerStatus& p = *missing[i];
        os << (i ? "; " : "") << "rank " << p.rank
           << "'s last collective: " << (p.last_seq == 0 ? std::string("none yet") : p.last_description);
      }
      os << ").";
    }
    if (!mismatched.empty()) {
      os << " Ranks that issued a different collective under the same sequence number (every rank must issue the "
            "same collectives in the same order): ";
      for (size_t i = 0; i < mismatched.size(); ++i)
        os << (i ? "; " : "") << "rank " << mismatched[i]->rank << " issued " << mismatched[i]->last_description;
      os << ".";
    }
    if (!aborted.empty()) {
      os << " Ranks whose process group was aborted: ";
      for (size_t i = 0; i < aborted.size(); ++i)
        os << (i ? "; " : "") << "rank " << aborted[i]->rank << " (" << shorten(aborted[i]->abort_reason) << ")";
      os << ".";
    }
    if (!silent.empty())
      os << " Ranks that did not answer when asked where they are: " << join_ranks(silent)
         << " (crashed, stuck without MPI progress, or their group was shut down).";
    if (missing.empty() && mismatched.empty() && aborted.empty() && silent.empty())
      os << " Every rank has issued it: the transport itself stalled (network, or a peer stuck inside the "
            "collective).";
  }
  os << " The process group is aborted: every later call on it throws.";
  return os.str();
}

}  // namespace ember::distributed::detail
