// DistributedSampler: PyTorch's per-rank shard of one seeded shuffle, padded to equal length, and the
// shuffled epoch order the DataLoader shares with it.
#pragma once

#include <cstdint>
#include <vector>

namespace ember::data {

// The order of `num_examples` examples in epoch `epoch` (0-based): 0..n-1 shuffled by a Fisher-Yates over
// mt19937_64 seeded from (seed, epoch) (fully specified by the standard, so every standard library and every
// rank gives the same order), or 0..n-1 when !shuffle. The DataLoader's own order of its (e+1)-th epoch.
std::vector<int64_t> epoch_permutation(int64_t num_examples, uint64_t seed, int64_t epoch, bool shuffle = true);

// Note [DistributedSampler]
// PyTorch's torch.utils.data.distributed.DistributedSampler. Every rank builds the same order of all examples
// (epoch_permutation with the same seed and epoch) and takes every num_replicas-th of it, starting at its rank:
//   drop_last = false: total_size = ceil(N / R) * R; the order is padded to total_size by repeating its first
//                      examples (cyclically, when R > N), so every rank gets size() = total_size / R indices;
//                      the padding, if any, is the last index of a shard (the last few when R > N);
//   drop_last = true:  the order is cut to floor(N / R) * R (the tail of the shuffled order is left out).
// Rank r's indices are order[r], order[r + R], order[r + 2R], ... . set_epoch(e) changes the shuffle; call it
// with the same e on every rank (a DataLoader that owns the sampler does it itself each epoch).
class DistributedSampler {
 public:
  // Throws ember::Error for num_examples < 0, num_replicas < 1, or a rank outside [0, num_replicas).
  DistributedSampler(int64_t num_examples, int64_t num_replicas, int64_t rank, bool shuffle = true,
                     uint64_t seed = 0, bool drop_last = false);

  // This rank's dataset indices for the current epoch, in the order to visit them (size() of them).
  std::vector<int64_t> indices() const;
  // Indices per rank: the same on every rank.
  int64_t size() const { return num_samples_; }
  // size() * num_replicas(): N plus the padding (drop_last = false) or N minus the dropped tail.
  int64_t total_size() const { return num_samples_ * num_replicas_; }
  // How many of this rank's indices (at the end of indices()) repeat an example that another position of
  // the epoch already holds: what an evaluation must not count twice. Zero with drop_last.
  int64_t num_padding() const;

  // The epoch that seeds the shuffle (default 0; non-negative).
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }

  int64_t num_examples() const { return num_examples_; }
  int64_t num_replicas() const { return num_replicas_; }
  int64_t rank() const { return rank_; }
  bool shuffle() const { return shuffle_; }
  uint64_t seed() const { return seed_; }
  bool drop_last() const { return drop_last_; }

 private:
  int64_t num_examples_, num_replicas_, rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t num_samples_ = 0;
  int64_t epoch_ = 0;
};

}  // namespace ember::data
