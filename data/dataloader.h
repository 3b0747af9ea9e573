// DataLoader: seeded shuffling, batching, a background prefetch thread, and (for CUDA) pinned host
// buffers with non_blocking copies on a side stream so that loading overlaps compute.
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
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t num_batches() const;
  int64_t num_examples() const { return dataset_->size(); }
  const DataLoaderOptions& options() const { return options_; }
  // Epochs started so far (each begin() starts one, reshuffling).
  int64_t epoch() const { return epoch_; }

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
  std::vector<int64_t> epoch_order(int64_t epoch) const;

  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  int64_t next_batch_ = 0;  // next batch index handed out by next()

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
