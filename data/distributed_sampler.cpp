// DistributedSampler and the seeded epoch permutation shared with the DataLoader.
#include "data/distributed_sampler.h"

#include <numeric>
#include <random>
#include <utility>

#include "runtime/error.h"

namespace ember::data {

std::vector<int64_t> epoch_permutation(int64_t num_examples, uint64_t seed, int64_t epoch, bool shuffle) {
  EMBER_CHECK(num_examples >= 0, "epoch_permutation: num_examples must be >= 0, got ", num_examples);
  std::vector<int64_t> order(static_cast<size_t>(num_examples));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle) return order;
  // Our own Fisher-Yates over mt19937_64 (fully specified by the standard), so the order is the same with
  // every standard library. The DataLoader numbered its epochs from 1 in this seed before epochs were
  // shared with the sampler: the +1 keeps its orders as they were.
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch + 1));
  for (size_t i = order.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

DistributedSampler::DistributedSampler(int64_t num_examples, int64_t num_replicas, int64_t rank, bool shuffle,
                                       uint64_t seed, bool drop_last)
    : num_examples_(num_examples), num_replicas_(num_replicas), rank_(rank), shuffle_(shuffle), seed_(seed),
      drop_last_(drop_last) {
  EMBER_CHECK(num_examples >= 0, "DistributedSampler: num_examples must be >= 0, got ", num_examples);
  EMBER_CHECK(num_replicas >= 1, "DistributedSampler: num_replicas must be at least 1, got ", num_replicas);
  EMBER_CHECK(rank >= 0 && rank < num_replicas, "DistributedSampler: rank ", rank,
              " is out of range for num_replicas ", num_replicas, " (expected 0 <= rank < ", num_replicas, ")");
  // PyTorch: ceil((N - R) / R) when drop_last and N % R != 0, which is floor(N / R); ceil(N / R) otherwise.
  num_samples_ = drop_last ? num_examples / num_replicas : (num_examples + num_replicas - 1) / num_replicas;
}

std::vector<int64_t> DistributedSampler::indices() const {
  const std::vector<int64_t> order = epoch_permutation(num_examples_, seed_, epoch_, shuffle_);
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(num_samples_));
  // Position p of the padded (or cut) order: order[p] below N, then order[0], order[1], ... cyclically.
  for (int64_t k = 0; k < num_samples_; ++k) {
    const int64_t p = rank_ + k * num_replicas_;
    mine.push_back(order[static_cast<size_t>(p % num_examples_)]);
  }
  return mine;
}

int64_t DistributedSampler::num_padding() const {
  if (drop_last_) return 0;
  const int64_t real = num_examples_ > rank_ ? (num_examples_ - rank_ + num_replicas_ - 1) / num_replicas_ : 0;
  return num_samples_ - real;
}

void DistributedSampler::set_epoch(int64_t epoch) {
  EMBER_CHECK(epoch >= 0, "DistributedSampler: set_epoch expects a non-negative epoch, got ", epoch);
  epoch_ = epoch;
}

}  // namespace ember::data
