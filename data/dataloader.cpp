// DataLoader: epoch orders (whole or sharded), the prefetch thread, and host-to-device staging.
#include "data/dataloader.h"

#include <utility>

#include "kernels/ops.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/stream.h"

namespace ember::data {

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  EMBER_CHECK(dataset_ != nullptr, "DataLoader: the dataset is null");
  EMBER_CHECK(options_.batch_size() > 0, "DataLoader: batch_size must be positive, got ", options_.batch_size());
  EMBER_CHECK(options_.prefetch() >= 0, "DataLoader: prefetch must be >= 0, got ", options_.prefetch());
  if (options_.device().is_cuda()) cuda::check_device(options_.device(), "DataLoader");
  const int64_t n = dataset_->size();
  if (options_.sampler()) {
    EMBER_CHECK(options_.num_replicas() == 1 && options_.rank() == 0,
                "DataLoader: give either a sampler or num_replicas/rank, not both (num_replicas ",
                options_.num_replicas(), ", rank ", options_.rank(), ")");
    sampler_ = options_.sampler();
    EMBER_CHECK(sampler_->num_examples() == n, "DataLoader: the sampler is for ", sampler_->num_examples(),
                " examples but the dataset has ", n);
  } else if (options_.num_replicas() != 1 || options_.rank() != 0) {
    EMBER_CHECK(options_.num_replicas() >= 1, "DataLoader: num_replicas must be at least 1, got ",
                options_.num_replicas());
    EMBER_CHECK(options_.rank() >= 0 && options_.rank() < options_.num_replicas(), "DataLoader: rank ",
                options_.rank(), " is out of range for num_replicas ", options_.num_replicas(),
                " (expected 0 <= rank < ", options_.num_replicas(), ")");
    sampler_.emplace(n, options_.num_replicas(), options_.rank(), options_.shuffle(), options_.seed());
  }
  epoch_size_ = n;
  if (sampler_) epoch_size_ = sampler_->size() - (options_.even_shards() ? 0 : sampler_->num_padding());
}

DataLoader::~DataLoader() { stop_worker(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = epoch_size_, bs = options_.batch_size();
  return options_.drop_last() ? n / bs : (n + bs - 1) / bs;
}

void DataLoader::set_epoch(int64_t epoch) {
  EMBER_CHECK(epoch >= 0, "DataLoader: set_epoch expects a non-negative epoch, got ", epoch);
  epoch_ = epoch;  // start_epoch() increments it first
  resume_batch_ = 0;
}

StateValueMap DataLoader::state_dict() const {
  return {{"epoch", epoch_},
          {"batches", epoch_ == 0 ? int64_t{0} : next_batch_},
          {"seed", static_cast<int64_t>(options_.seed())},
          {"shuffle", options_.shuffle()},
          {"num_examples", epoch_size_},
          {"batch_size", options_.batch_size()},
          {"drop_last", options_.drop_last()},
          {"num_replicas", sampler_ ? sampler_->num_replicas() : int64_t{1}},
          {"rank", sampler_ ? sampler_->rank() : int64_t{0}}};
}

void DataLoader::load_state_dict(const StateValueMap& state) {
  StateReader r(state, "DataLoader::load_state_dict");
  const int64_t epoch = r.integer("epoch");
  const int64_t batches = r.integer("batches");
  const StateValueMap mine = state_dict();
  std::string mismatches;
  for (const char* key : {"seed", "shuffle", "num_examples", "batch_size", "drop_last", "num_replicas", "rank"}) {
    EMBER_CHECK(r.has(key), "DataLoader::load_state_dict: the entry '", key, "' is missing");
    r.skip(key);
    if (state.at(key) != mine.at(key))
      mismatches += ::ember::detail::str_cat("\n  ", key, " is ", state_value_str(state.at(key)), " in the state but ",
                                             state_value_str(mine.at(key)), " here");
  }
  r.finish("epoch, batches, seed, shuffle, num_examples, batch_size, drop_last, num_replicas and rank");
  EMBER_CHECK(mismatches.empty(),
              "DataLoader::load_state_dict: the state is of a loader that follows another data "
              "order:",
              mismatches);
  EMBER_CHECK(epoch >= 0 && batches >= 0 && batches <= num_batches(), "DataLoader::load_state_dict: epoch ", epoch,
              " and batches ", batches, " do not describe a position (an epoch has ", num_batches(), " batches)");
  stop_worker();
  if (epoch == 0 || batches == num_batches()) {
    epoch_ = epoch;
    resume_batch_ = 0;
  } else {
    epoch_ = epoch - 1;  // start_epoch() increments it first
    resume_batch_ = batches;
  }
  next_batch_ = 0;
}

// `epoch` counts from 1 (the epoch() after begin()); samplers and epoch_permutation count from 0.
std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) {
  if (!sampler_) return epoch_permutation(dataset_->size(), options_.seed(), epoch - 1, options_.shuffle());
  sampler_->set_epoch(epoch - 1);
  std::vector<int64_t> order = sampler_->indices();
  order.resize(static_cast<size_t>(epoch_size_));  // without the padding unless even_shards
  return order;
}

DataLoader::Job DataLoader::produce(int64_t batch_index) {
  const int64_t bs = options_.batch_size();
  const int64_t first = batch_index * bs;
  const int64_t count = std::min<int64_t>(bs, static_cast<int64_t>(order_.size()) - first);
  const std::vector<int64_t> indices(order_.begin() + first, order_.begin() + first + count);
  const Device device = options_.device();
  const bool pinned = device.is_cuda();

  std::vector<int64_t> dshape = dataset_->data_shape(), tshape = dataset_->target_shape();
  dshape.insert(dshape.begin(), count);
  tshape.insert(tshape.begin(), count);
  Job job;
  job.batch.data = empty(dshape, TensorOptions(dataset_->data_dtype()).pinned_memory(pinned));
  job.batch.target = empty(tshape, TensorOptions(dataset_->target_dtype()).pinned_memory(pinned));
  dataset_->fill_batch(indices, job.batch);
  if (device.is_cpu()) {
    if (device.index() != 0) {
      job.batch.data = job.batch.data.to(device);
      job.batch.target = job.batch.target.to(device);
    }
    return job;
  }
  // Copy on a side stream so that the copy overlaps the compute stream's work; the consumer's
  // stream waits for the event before using the batch.
  cuda::StreamGuard guard(cuda::get_stream_from_pool(device.index()));
  job.batch.data = job.batch.data.to(device, /*non_blocking=*/true);
  job.batch.target = job.batch.target.to(device, /*non_blocking=*/true);
  auto event = std::make_shared<cuda::Event>();
  event->record();
  job.copied = event;
  return job;
}

void DataLoader::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  stop_ = false;
  ready_.clear();
  error_ = nullptr;
}

void DataLoader::start_epoch() {
  stop_worker();
  ++epoch_;
  order_ = epoch_order(epoch_);
  next_batch_ = std::exchange(resume_batch_, 0);
  produced_ = 0;
  if (options_.prefetch() == 0) return;
  const int64_t total = num_batches();
  const int64_t first = next_batch_;
  worker_ = std::thread([this, first, total] {
    for (int64_t b = first; b < total; ++b) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || static_cast<int64_t>(ready_.size()) < options_.prefetch(); });
        if (stop_) return;
      }
      try {
        Job job = produce(b);
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.push_back(std::move(job));
        ++produced_;
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = std::current_exception();
        cv_.notify_all();
        return;
      }
      cv_.notify_all();
    }
  });
}

std::optional<Batch> DataLoader::next() {
  if (next_batch_ >= num_batches()) return std::nullopt;
  Job job;
  if (options_.prefetch() == 0) {
    job = produce(next_batch_);
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return !ready_.empty() || error_ != nullptr; });
    if (ready_.empty()) std::rethrow_exception(error_);
    job = std::move(ready_.front());
    ready_.pop_front();
    lock.unlock();
    cv_.notify_all();
  }
  ++next_batch_;
  if (job.copied) {
    const cuda::Stream stream = cuda::current_stream(options_.device().index());
    static_cast<cuda::Event*>(job.copied.get())->block(stream);
    // The compute stream now uses memory allocated on the side stream.
    job.batch.data.record_stream(stream);
    job.batch.target.record_stream(stream);
  }
  return std::move(job.batch);
}

DataLoader::Iterator DataLoader::begin() {
  start_epoch();
  return Iterator(this);
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  std::optional<Batch> b = loader_->next();
  if (b) {
    current_ = std::move(*b);
  } else {
    loader_ = nullptr;
    current_ = Batch();
  }
  return *this;
}

}  // namespace ember::data
