// The pure parts of process groups: routing, launcher detection, timeout messages, buffer layout checks.
#include "parallel/distributed/detail.h"

#include <map>

#include "tests/distributed/dist_testing.h"

namespace ember::distributed::detail {
namespace {

TEST(DistributedDetail, ParseBackend) {
  EXPECT_EQ(parse_backend("auto"), "auto");
  EXPECT_EQ(parse_backend("NCCL"), "nccl");
  EXPECT_EQ(parse_backend("Mpi"), "mpi");
  EXPECT_EMBER_ERROR(parse_backend("gloo"), "unknown backend 'gloo'");
  EXPECT_EMBER_ERROR(parse_backend(""), "unknown backend ''");
}

TEST(DistributedDetail, ChooseTransport) {
  const Device cpu = Device::cpu(), cpu3 = Device::cpu(3), gpu = Device::cuda(0);
  EXPECT_EQ(choose_transport("all_reduce", "auto", cpu, true), Transport::Mpi);
  EXPECT_EQ(choose_transport("all_reduce", "auto", cpu3, true), Transport::Mpi);
  EXPECT_EQ(choose_transport("all_reduce", "auto", cpu, false), Transport::Local);
  EXPECT_EQ(choose_transport("all_reduce", "auto", gpu, true), Transport::Nccl);
  EXPECT_EQ(choose_transport("all_reduce", "auto", gpu, false), Transport::Nccl) << "a single GPU still uses NCCL";
  EXPECT_EQ(choose_transport("all_reduce", "nccl", gpu, true), Transport::Nccl);
  EXPECT_EQ(choose_transport("all_reduce", "mpi", cpu, true), Transport::Mpi);
  EXPECT_EQ(choose_transport("all_reduce", "mpi", cpu, false), Transport::Local);
  EXPECT_EMBER_ERROR(choose_transport("broadcast", "mpi", gpu, true), "broadcast", "cuda:0", "\"mpi\"",
                     "CPU tensors only");
  EXPECT_EMBER_ERROR(choose_transport("all_gather", "nccl", cpu, true), "all_gather", "cpu:0", "\"nccl\"",
                     "CUDA tensors only");
  EXPECT_STREQ(transport_name(Transport::Nccl), "nccl");
}

TEST(DistributedDetail, DetectLauncher) {
  auto env_of = [](std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  };
  LaunchInfo none = detect_launcher(env_of({}));
  EXPECT_FALSE(none.launched);

  LaunchInfo ompi = detect_launcher(env_of({{"OMPI_COMM_WORLD_RANK", "2"},
                                            {"OMPI_COMM_WORLD_SIZE", "4"},
                                            {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                            {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                            {"PMIX_RANK", "2"}}));
  EXPECT_TRUE(ompi.launched);
  EXPECT_THAT(ompi.launcher, ::testing::HasSubstr("Open MPI"));
  EXPECT_EQ(ompi.rank, 2);
  EXPECT_EQ(ompi.size, 4);
  EXPECT_EQ(ompi.local_rank, 0);
  EXPECT_EQ(ompi.local_size, 2);

  LaunchInfo srun = detect_launcher(env_of({{"PMIX_RANK", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}}));
  EXPECT_TRUE(srun.launched);
  EXPECT_THAT(srun.launcher, ::testing::HasSubstr("PMIx"));
  EXPECT_EQ(srun.rank, 5);
  EXPECT_EQ(srun.size, 8);
  EXPECT_EQ(srun.local_rank, 1);
  EXPECT_EQ(srun.local_size, -1) << "MPI tells the local size";

  LaunchInfo hydra = detect_launcher(
      env_of({{"PMI_RANK", "1"}, {"PMI_SIZE", "3"}, {"MPI_LOCALRANKID", "1"}, {"MPI_LOCALNRANKS", "3"}}));
  EXPECT_TRUE(hydra.launched);
  EXPECT_EQ(hydra.size, 3);
  EXPECT_EQ(hydra.local_size, 3);

  EXPECT_EMBER_ERROR(detect_launcher(env_of({{"OMPI_COMM_WORLD_SIZE", "four"}, {"OMPI_COMM_WORLD_RANK", "0"}})),
                     "OMPI_COMM_WORLD_SIZE='four'");
  EXPECT_EMBER_ERROR(detect_launcher(env_of({{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "2"}})),
                     "rank 2 of 2");
}

PeerStatus peer(int rank, uint64_t last_seq, std::string desc, bool answered = true) {
  PeerStatus p;
  p.rank = rank;
  p.answered = answered;
  p.last_seq = last_seq;
  p.last_description = std::move(desc);
  return p;
}

TimeoutReport report(int size) {
  TimeoutReport r;
  r.description = describe_collective("all_reduce", 7, "float32 [4], sum");
  r.seq = 7;
  r.rank = 0;
  r.size = size;
  r.transport = "mpi";
  r.timeout = std::chrono::milliseconds(2000);
  r.waited = std::chrono::milliseconds(2004);
  r.peers_asked = true;
  return r;
}

TEST(DistributedDetail, TimeoutMessageNamesTheMissingRanks) {
  TimeoutReport r = report(4);
  r.peers.push_back(peer(1, 7, r.description));
  r.peers.push_back(peer(2, 6, describe_collective("barrier", 6, "")));
  r.peers.push_back(peer(3, 0, ""));
  const std::string m = timeout_message(r);
  EXPECT_THAT(m, ::testing::HasSubstr("all_reduce (sequence number 7: float32 [4], sum) timed out on rank 0 of 4"));
  EXPECT_THAT(m, ::testing::HasSubstr("waiting 2004 ms (timeout 2000 ms)"));
  EXPECT_THAT(m, ::testing::HasSubstr("Ranks that did not arrive: 2, 3"));
  EXPECT_THAT(m, ::testing::HasSubstr("rank 2's last collective: barrier (sequence number 6)"));
  EXPECT_THAT(m, ::testing::HasSubstr("rank 3's last collective: none yet"));
  EXPECT_THAT(m, ::testing::HasSubstr("aborted"));
  EXPECT_THAT(m, ::testing::Not(::testing::HasSubstr("rank 1")));
}

TEST(DistributedDetail, TimeoutMessageNamesMismatchedAbortedAndSilentRanks) {
  TimeoutReport r = report(4);
  r.peers.push_back(peer(1, 7, describe_collective("broadcast", 7, "float32 [4], root 0")));
  PeerStatus aborted = peer(2, 5, "x");
  aborted.aborted = true;
  aborted.abort_reason = "barrier (sequence number 5) timed out";
  r.peers.push_back(aborted);
  r.peers.push_back(peer(3, 0, "", /*answered=*/false));
  const std::string m = timeout_message(r);
  EXPECT_THAT(m, ::testing::HasSubstr("rank 1 issued broadcast (sequence number 7: float32 [4], root 0)"));
  EXPECT_THAT(m, ::testing::HasSubstr("Ranks whose process group was aborted: rank 2 (barrier (sequence number 5)"));
  EXPECT_THAT(m, ::testing::HasSubstr("did not answer when asked where they are: 3"));
  EXPECT_THAT(m, ::testing::Not(::testing::HasSubstr("did not arrive")));
}

TEST(DistributedDetail, TimeoutMessageOtherCases) {
  TimeoutReport all_there = report(3);
  all_there.peers.push_back(peer(1, 7, all_there.description));
  all_there.peers.push_back(peer(2, 8, "later"));  // ahead: it arrived
  EXPECT_THAT(timeout_message(all_there), ::testing::HasSubstr("Every rank has issued it"));

  TimeoutReport one = report(1);
  EXPECT_THAT(timeout_message(one), ::testing::HasSubstr("world of one"));

  TimeoutReport unasked = report(2);
  unasked.peers_asked = false;
  EXPECT_THAT(timeout_message(unasked), ::testing::HasSubstr("could not be asked"));

  // An internal step: peers at the last collective are not a mismatch.
  TimeoutReport internal = report(3);
  internal.description = "the broadcast of NCCL's unique id";
  internal.compare_descriptions = false;
  internal.peers.push_back(peer(1, 7, "all_reduce (sequence number 7: ...)"));
  internal.peers.push_back(peer(2, 6, "barrier (sequence number 6)"));
  const std::string m = timeout_message(internal);
  EXPECT_THAT(m, ::testing::HasSubstr("Ranks that did not arrive: 2 ("));
  EXPECT_THAT(m, ::testing::Not(::testing::HasSubstr("different collective")));
}

TEST(DistributedDetail, AskPeersGrace) {
  using std::chrono::milliseconds;
  EXPECT_EQ(ask_peers_grace(milliseconds(100)), milliseconds(200));
  EXPECT_EQ(ask_peers_grace(milliseconds(2000)), milliseconds(500));
  EXPECT_EQ(ask_peers_grace(std::chrono::seconds(300)), milliseconds(2000));
}

TEST(DistributedDetail, ConsecutiveBase) {
  Tensor big = zeros({3, 4});
  std::vector<Tensor> rows{big[0], big[1], big[2]};
  EXPECT_EQ(consecutive_base(rows), big.raw_data());
  std::vector<Tensor> swapped{big[1], big[0], big[2]};
  EXPECT_EQ(consecutive_base(swapped), nullptr);
  std::vector<Tensor> separate{zeros({4}), zeros({4})};
  EXPECT_EQ(consecutive_base(separate), nullptr);
  std::vector<Tensor> columns{big.select(1, 0), big.select(1, 1)};
  EXPECT_EQ(consecutive_base(columns), nullptr);
  EXPECT_EQ(consecutive_base({}), nullptr);
}

TEST(DistributedDetail, Describe) {
  EXPECT_EQ(describe(zeros({2, 3}, kBFloat16)), "bfloat16 [2, 3]");
  EXPECT_EQ(describe_collective("barrier", 3, ""), "barrier (sequence number 3)");
  EXPECT_EQ(describe_collective("all_reduce", 12, "int64 [5], max"), "all_reduce (sequence number 12: int64 [5], max)");
}

}  // namespace
}  // namespace ember::distributed::detail
