// Storage: the memory behind one or more tensor views, with the version counter they share.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "runtime/allocator.h"

namespace ember {

class Storage {
 public:
  Storage(DataPtr data, size_t nbytes, bool pinned = false)
      : data_(std::move(data)), nbytes_(nbytes), pinned_(pinned) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_.get(); }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return data_.device(); }
  bool is_pinned() const { return pinned_; }
  const DataPtr& data_ptr() const { return data_; }

  // Bumped by every in-place write to any view of this storage. Autograd compares it with the
  // value saved at forward time to detect a tensor modified after backward needed it.
  uint32_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  DataPtr data_;
  size_t nbytes_;
  bool pinned_;
  std::atomic<uint32_t> version_{0};
};

using StoragePtr = std::shared_ptr<Storage>;

}  // namespace ember
