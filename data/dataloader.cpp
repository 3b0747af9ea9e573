// DataLoader: epoch orders, the prefetch thread, and host-to-device staging.
#include "data/dataloader.h"

#include <numeric>
#include <random>

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
}

DataLoader::~DataLoader() { stop_worker(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = dataset_->size(), bs = options_.batch_size();
  return options_.drop_last() ? n / bs : (n + bs - 1) / bs;
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(dataset_->size()));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!options_.shuffle()) return order;
  // Our own Fisher-Yates over mt19937_64 (fully specified by the standard), so the order is the
  // same with every standard library.
  std::mt19937_64 rng(options_.seed() * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch));
  for (size_t i = order.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

DataLoader::Job DataLoader::produce(int64_t batch_index) {
  const int64_t bs = options_.batch_size();
  const int64_t first = batch_index * bs;
  const int64_t count = std::min<int64_t>(bs, dataset_->size() - first);
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
  next_batch_ = 0;
  produced_ = 0;
  if (options_.prefetch() == 0) return;
  const int64_t total = num_batches();
  worker_ = std::thread([this, total] {
    for (int64_t b = 0; b < total; ++b) {
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
