// FakeDeviceMemory: a scripted in-process "device" (capacity, fake addresses, events whose completion
// the test controls) and the DeviceMemoryBackend that lets CachingAllocator run on it in CPU tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "runtime/caching_allocator.h"

namespace ember::test {

struct FakeDeviceCounters {
  uint64_t mallocs = 0;         // successful malloc calls
  uint64_t failed_mallocs = 0;  // malloc calls answered with nullptr (over capacity)
  uint64_t frees = 0;
  uint64_t device_syncs = 0;
  uint64_t events_created = 0;
  uint64_t events_destroyed = 0;
  uint64_t event_records = 0;
  uint64_t event_syncs = 0;
  uint64_t bad_calls = 0;  // free of an unknown pointer, use of an unknown event, malloc(0)
};

// The fake device. Addresses are integers that nothing dereferences: 512-aligned, distinct, and with
// a gap between segments so that no two segments are ever adjacent. An event recorded on a stream
// marked busy stays incomplete until the stream is released, the event or the device is
// synchronized, or complete_all_events() is called; on an idle stream it completes at once.
// Thread-safe. It must outlive the backends it makes (declare it before the allocator).
class FakeDeviceMemory {
 public:
  explicit FakeDeviceMemory(size_t capacity) : capacity_(capacity) {}

  std::unique_ptr<DeviceMemoryBackend> make_backend();

  // --- control ---
  void set_capacity(size_t capacity) {
    std::lock_guard<std::mutex> lock(mu_);
    capacity_ = capacity;
  }
  void set_stream_busy(StreamHandle stream, bool busy) {
    std::lock_guard<std::mutex> lock(mu_);
    if (busy) {
      busy_streams_.insert(stream);
      return;
    }
    busy_streams_.erase(stream);
    for (auto& [handle, ev] : events_) {
      if (ev.stream == stream) ev.complete = true;
    }
  }
  void complete_all_events() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [handle, ev] : events_) ev.complete = true;
  }

  // --- observation ---
  FakeDeviceCounters counters() const {
    std::lock_guard<std::mutex> lock(mu_);
    return counters_;
  }
  size_t used() const {
    std::lock_guard<std::mutex> lock(mu_);
    return used_;
  }
  size_t capacity() const {
    std::lock_guard<std::mutex> lock(mu_);
    return capacity_;
  }
  // Live segments: address -> size.
  std::map<uintptr_t, size_t> live_segments() const {
    std::lock_guard<std::mutex> lock(mu_);
    return segments_;
  }
  size_t num_live_segments() const {
    std::lock_guard<std::mutex> lock(mu_);
    return segments_.size();
  }
  bool is_live_segment(const void* ptr) const {
    std::lock_guard<std::mutex> lock(mu_);
    return segments_.count(reinterpret_cast<uintptr_t>(ptr)) == 1;
  }
  // Created and not yet destroyed.
  size_t live_events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }
  // Live and not yet complete.
  size_t incomplete_events() const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const auto& [handle, ev] : events_) n += ev.complete ? 0 : 1;
    return n;
  }

  // --- the backend operations ---
  void* malloc(size_t nbytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (nbytes == 0) {
      ++counters_.bad_calls;
      return nullptr;
    }
    if (nbytes > capacity_ || used_ > capacity_ - nbytes) {
      ++counters_.failed_mallocs;
      return nullptr;
    }
    uintptr_t addr = next_addr_;
    next_addr_ += (nbytes + kAlign - 1) / kAlign * kAlign + kAlign;
    segments_.emplace(addr, nbytes);
    used_ += nbytes;
    ++counters_.mallocs;
    return reinterpret_cast<void*>(addr);
  }
  void free(void* ptr) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = segments_.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == segments_.end()) {
      ++counters_.bad_calls;
      return;
    }
    used_ -= it->second;
    segments_.erase(it);
    ++counters_.frees;
  }
  std::pair<size_t, size_t> mem_get_info() {
    std::lock_guard<std::mutex> lock(mu_);
    return {capacity_ > used_ ? capacity_ - used_ : 0, capacity_};
  }
  EventHandle create_event() {
    std::lock_guard<std::mutex> lock(mu_);
    next_event_ += 16;
    EventHandle handle = reinterpret_cast<EventHandle>(next_event_);
    events_.emplace(handle, Event{});
    ++counters_.events_created;
    return handle;
  }
  void destroy_event(EventHandle event) {
    std::lock_guard<std::mutex> lock(mu_);
    if (events_.erase(event) == 0) {
      ++counters_.bad_calls;
      return;
    }
    ++counters_.events_destroyed;
  }
  void record_event(EventHandle event, StreamHandle stream) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = events_.find(event);
    if (it == events_.end()) {
      ++counters_.bad_calls;
      return;
    }
    it->second.stream = stream;
    it->second.complete = busy_streams_.count(stream) == 0;
    ++counters_.event_records;
  }
  bool query_event(EventHandle event) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = events_.find(event);
    if (it == events_.end()) {
      ++counters_.bad_calls;
      return true;
    }
    return it->second.complete;
  }
  void synchronize_event(EventHandle event) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = events_.find(event);
    if (it == events_.end()) {
      ++counters_.bad_calls;
      return;
    }
    it->second.complete = true;
    ++counters_.event_syncs;
  }
  void synchronize_device() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [handle, ev] : events_) ev.complete = true;
    ++counters_.device_syncs;
  }

 private:
  static constexpr uintptr_t kAlign = 512;
  struct Event {
    StreamHandle stream = nullptr;
    bool complete = true;  // like a CUDA event that was never recorded
  };

  mutable std::mutex mu_;
  size_t capacity_;
  size_t used_ = 0;
  uintptr_t next_addr_ = uintptr_t{1} << 32;
  uintptr_t next_event_ = 0x100;
  std::map<uintptr_t, size_t> segments_;
  std::unordered_map<EventHandle, Event> events_;
  std::set<StreamHandle> busy_streams_;
  FakeDeviceCounters counters_;
};

class FakeDeviceMemoryBackend final : public DeviceMemoryBackend {
 public:
  explicit FakeDeviceMemoryBackend(FakeDeviceMemory& device) : device_(device) {}
  void* malloc(size_t nbytes) override { return device_.malloc(nbytes); }
  void free(void* ptr) override { device_.free(ptr); }
  std::pair<size_t, size_t> mem_get_info() override { return device_.mem_get_info(); }
  EventHandle create_event() override { return device_.create_event(); }
  void destroy_event(EventHandle event) override { device_.destroy_event(event); }
  void record_event(EventHandle event, StreamHandle stream) override { device_.record_event(event, stream); }
  bool query_event(EventHandle event) override { return device_.query_event(event); }
  void synchronize_event(EventHandle event) override { device_.synchronize_event(event); }
  void synchronize_device() override { device_.synchronize_device(); }

 private:
  FakeDeviceMemory& device_;
};

inline std::unique_ptr<DeviceMemoryBackend> FakeDeviceMemory::make_backend() {
  return std::make_unique<FakeDeviceMemoryBackend>(*this);
}

// Distinct fake stream handles (nullptr, the default stream, is a valid stream too).
inline StreamHandle fake_stream(int i) { return reinterpret_cast<StreamHandle>(uintptr_t{0x5000} + 16 * i); }

}  // namespace ember::test
