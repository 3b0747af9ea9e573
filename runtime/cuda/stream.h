// CUDA streams and events per device, the per-thread current stream, and StreamGuard.
// Handles are opaque here (void*) so that this header needs no CUDA include.
#pragma once

#include <cstdint>

#include "runtime/device.h"

namespace ember::cuda {

class Stream {
 public:
  Stream() = default;  // cuda:0's default stream
  Stream(Device device, void* handle) : device_(device), handle_(handle) {}

  Device device() const { return device_; }
  int device_index() const { return device_.index(); }
  // The cudaStream_t (nullptr is the legacy default stream).
  void* handle() const { return handle_; }
  bool is_default() const { return handle_ == nullptr; }
  // Waits on the host for the stream's work.
  void synchronize() const;
  // Whether all work queued so far has finished.
  bool query() const;
  // Makes this stream wait (on the device) for the work queued so far on `other`.
  void wait(const Stream& other) const;

  bool operator==(const Stream& o) const { return device_ == o.device_ && handle_ == o.handle_; }
  bool operator!=(const Stream& o) const { return !(*this == o); }

 private:
  Device device_ = Device(DeviceType::CUDA, 0);
  void* handle_ = nullptr;
};

// The thread's current stream on `device` (-1: the current device). Starts as the default stream.
Stream current_stream(int device = -1);
Stream default_stream(int device = -1);
// A stream from a small per-device pool of non-blocking streams (created once, never destroyed
// before the process ends), round-robin.
Stream get_stream_from_pool(int device = -1, bool high_priority = false);
void set_current_stream(const Stream& stream);

// RAII: makes `stream` current on its device (and that device current) for the scope.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Stream previous_stream_;
  int previous_device_ = -1;
};

// A CUDA event (timing disabled unless asked). RAII; move-only.
class Event {
 public:
  explicit Event(bool enable_timing = false);
  ~Event();
  Event(Event&& o) noexcept;
  Event& operator=(Event&& o) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record(const Stream& stream);
  void record();  // on the current stream of the current device
  // Makes `stream` wait for this event (no host wait).
  void block(const Stream& stream) const;
  bool query() const;
  void synchronize() const;
  // Milliseconds between two recorded events (both need enable_timing).
  float elapsed_ms(const Event& end) const;
  bool is_recorded() const { return handle_ != nullptr && recorded_; }
  void* handle() const { return handle_; }

 private:
  void create(int device);
  void* handle_ = nullptr;
  int device_ = -1;
  bool enable_timing_ = false;
  bool recorded_ = false;
};

}  // namespace ember::cuda
