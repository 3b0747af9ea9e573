// DataLoader: seeded shuffling, batching, per-rank shards for multi-process training, a background prefetch
// thread, and (for CUDA) pinned host buffers with non_blocking copies on a side stream so that loading
// overlaps compute.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "data/distributed_sampler.h"
#include "nn/optim/state_dict.h"
#include "nn/options.h"

namespace ember::data {

struct DataLoaderOptions {
  DataLoaderOptions(int64_t batch_size = 64) : batch_size_(batch_size) {}  // NOLINT
  EMBER_ARG(int64_t, batch_size);
  EMBER_ARG(bool, shuffle) = true;
  EMBER_ARG(bool, drop_last) = false;
  // Shuffling uses its own generator seeded by (seed, epoch): reproducible, independent of manual_seed.
  EMBER_ARG(uint64_t, seed) = 0;
  // Where batches are delivered (a CUDA device: pinned staging + non_blocking copies).
  EMBER_ARG(Device, device) = Device::cpu();
  // Batches prepared ahead by the background thread (0: load on the calling thread).
  EMBER_ARG(int, prefetch) = 2;
  // Multi-process training (Note [DistributedSampler]): rank `rank` of `num_replicas` takes its shard of each
  // epoch's order, which is the same shuffle on every rank (same seed, same epoch), padded so that every rank
  // gets the same number of examples and of batches: `.num_replicas(pg->size()).rank(pg->rank())`.
  EMBER_ARG(int64_t, num_replicas) = 1;
  EMBER_ARG(int64_t, rank) = 0;
  // false (evaluation): no padding; every example lies on exactly one rank, and shards (and batch counts)
  // may differ by one example. drop_last still only drops a short last batch.
  EMBER_ARG(bool, even_shards) = true;
  // A sampler of one's own instead of num_replicas/rank (PyTorch's drop_last = true, another seed): the loader
  // keeps a copy and sets its epoch at every epoch; its shuffle and seed replace the loader's.
  EMBER_ARG(std::optional<DistributedSampler>, sampler);
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Per epoch, on this rank (the shard's batches and examples when sharded; the same on every rank with even
  // shards).
  int64_t num_batches() const;
  int64_t num_examples() const { return epoch_size_; }
  const DataLoaderOptions& options() const { return options_; }
  // Epochs started so far (each begin() starts one, reshuffling).
  int64_t epoch() const { return epoch_; }
  // The next begin() starts epoch `epoch` (0-based, as DistributedSampler::set_epoch; epoch() is then
  // epoch + 1), e.g. when resuming; later begin()s go on from there. Without it, the k-th begin() starts
  // epoch k - 1.
  void set_epoch(int64_t epoch);

  // The data order, for a training checkpoint (Note [Training checkpoints]; torchdata's StatefulDataLoader
  // does the same): "epoch" (epochs started) and "batches" (batches of that epoch handed out, the one the
  // loop body holds included: a state taken in the body after its step resumes with the next batch) say
  // where the loader is; "seed", "shuffle", "num_examples", "batch_size", "drop_last", "num_replicas" and
  // "rank" which order it follows (each epoch's order is a function of seed and epoch).
  StateValueMap state_dict() const;
  // Goes on from a state_dict(): the next begin() continues the epoch the state was taken in from its next
  // batch, or starts the following epoch when that one was finished. Throws ember::Error, changing nothing,
  // when the state is of a loader that follows another order (each differing entry is named).
  void load_state_dict(const StateValueMap& state);
  // The sampler that shards this loader's epochs, set to the latest epoch started (nullptr when not sharded).
  const DistributedSampler* sampler() const { return sampler_ ? &*sampler_ : nullptr; }

  class Iterator {
   public:
    using value_type = Batch;
    Iterator() = default;
    const Batch& operator*() const { return current_; }
    const Batch* operator->() const { return &current_; }
    Iterator& operator++();
    bool operator==(const Iterator& o) const { return loader_ == o.loader_; }
    bool operator!=(const Iterator& o) const { return !(*this == o); }

   private:
    friend class DataLoader;
    explicit Iterator(DataLoader* loader) : loader_(loader) { ++*this; }
    DataLoader* loader_ = nullptr;  // null: end
    Batch current_;
  };

  // Starts a new epoch (stopping an unfinished one).
  Iterator begin();
  Iterator end() { return Iterator(); }

 private:
  // A prepared batch; on CUDA, `copied` is recorded on the side stream after its copies.
  struct Job {
    Batch batch;
    std::shared_ptr<void> copied;  // cuda::Event, type-erased so this header needs no CUDA types
  };
  void start_epoch();
  void stop_worker();
  std::optional<Batch> next();
  Job produce(int64_t batch_index);  // host batch (pinned for CUDA), moved to the device
  std::vector<int64_t> epoch_order(int64_t epoch);  // also sets the sampler's epoch

  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  std::optional<DistributedSampler> sampler_;
  int64_t epoch_size_ = 0;  // examples per epoch (this rank's)
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  int64_t next_batch_ = 0;  // next batch index handed out by next()
  int64_t resume_batch_ = 0;  // where the next epoch starts (load_state_dict in the middle of an epoch)

  // Background producer state.
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  int64_t produced_ = 0;
};

}  // namespace ember::data
