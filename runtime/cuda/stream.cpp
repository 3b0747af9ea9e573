// Streams, events, the per-thread current stream and the per-device stream pools (CUDA build).
#include "runtime/cuda/stream.h"

#include <cuda_runtime_api.h>

#include <array>
#include <atomic>
#include <mutex>
#include <utility>

#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/internal.h"
#include "runtime/error.h"

namespace ember::cuda {

namespace {

cudaStream_t native(const Stream& s) { return static_cast<cudaStream_t>(s.handle()); }

// The calling thread's current stream per device; nullptr is the legacy default stream, which is
// what zero-initialisation gives every thread to begin with.
thread_local std::array<cudaStream_t, kMaxCudaDevices> t_current_streams{};

// Note [Stream pools]
// As in PyTorch, each device has a small pool of non-blocking streams (one for normal and one for
// high priority) handed out round-robin, so code that wants "a side stream" does not create and
// destroy streams (both synchronise the device). The pools are created on first use, under
// call_once, and never destroyed: a stream may be referenced by work in flight until the process
// ends, and destroying streams from a static destructor would run after the CUDA runtime shut down.
// The table below is trivially destructible, so its own destruction at exit does nothing.
constexpr int kStreamsPerPool = 8;

struct DevicePools {
  std::once_flag created[2];
  std::array<cudaStream_t, kStreamsPerPool> streams[2] = {};
  std::atomic<unsigned> next[2] = {};
};

std::array<DevicePools, kMaxCudaDevices>& pools() {
  static std::array<DevicePools, kMaxCudaDevices> table;
  return table;
}

void create_pool(int device, bool high_priority, std::array<cudaStream_t, kStreamsPerPool>& out) {
  DeviceGuard guard(device);
  int least = 0;
  int greatest = 0;
  EMBER_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  // Lower numbers are higher priorities; the normal pool uses the default priority (0 == least).
  const int priority = high_priority ? greatest : least;
  std::array<cudaStream_t, kStreamsPerPool> created{};
  for (cudaStream_t& s : created) EMBER_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, priority));
  out = created;
}

}  // namespace

// ---- Stream -----------------------------------------------------------------------------------
// Every call runs under a guard for the stream's device: the legacy default stream (nullptr) means
// "the default stream of the current device", so without the guard it would name the wrong one.
// (DeviceGuard does nothing for a CPU device, hence the explicit check_device first.)

void Stream::synchronize() const {
  check_device(device_, "Stream::synchronize");
  DeviceGuard guard(device_);
  EMBER_CUDA_CHECK(cudaStreamSynchronize(native(*this)));
}

bool Stream::query() const {
  check_device(device_, "Stream::query");
  DeviceGuard guard(device_);
  const cudaError_t err = cudaStreamQuery(native(*this));
  if (err == cudaSuccess) return true;
  if (err == cudaErrorNotReady) {
    (void)cudaGetLastError();  // "not ready" is an answer, not an error: keep it out of later checks
    return false;
  }
  EMBER_CUDA_CHECK(err);
  return false;
}

void Stream::wait(const Stream& other) const {
  if (*this == other) return;
  Event event;
  event.record(other);
  event.block(*this);
}

// ---- current stream, pools ----------------------------------------------------------------------

Stream current_stream(int device) {
  const int index = detail::resolve_device(device, "current_stream");
  return Stream(Device::cuda(index), t_current_streams[index]);
}

Stream default_stream(int device) {
  const int index = detail::resolve_device(device, "default_stream");
  return Stream(Device::cuda(index), nullptr);
}

Stream get_stream_from_pool(int device, bool high_priority) {
  const int index = detail::resolve_device(device, "get_stream_from_pool");
  DevicePools& p = pools()[index];
  const int kind = high_priority ? 1 : 0;
  std::call_once(p.created[kind], [&] { create_pool(index, high_priority, p.streams[kind]); });
  const unsigned slot = p.next[kind].fetch_add(1, std::memory_order_relaxed) % kStreamsPerPool;
  return Stream(Device::cuda(index), p.streams[kind][slot]);
}

void set_current_stream(const Stream& stream) {
  check_device(stream.device(), "set_current_stream");
  t_current_streams[stream.device_index()] = native(stream);
}

// ---- StreamGuard --------------------------------------------------------------------------------

StreamGuard::StreamGuard(const Stream& stream) {
  check_device(stream.device(), "StreamGuard");
  const int previous_device = current_device();
  previous_stream_ = current_stream(stream.device_index());
  if (previous_device != stream.device_index()) EMBER_CUDA_CHECK(cudaSetDevice(stream.device_index()));
  // Set last: nothing below can throw, so a failed constructor leaves the thread's state untouched.
  previous_device_ = previous_device;
  t_current_streams[stream.device_index()] = native(stream);
}

StreamGuard::~StreamGuard() {
  t_current_streams[previous_stream_.device_index()] = native(previous_stream_);
  if (previous_device_ >= 0 && previous_device_ != previous_stream_.device_index()) {
    EMBER_CUDA_WARN(cudaSetDevice(previous_device_));
  }
}

// ---- Event --------------------------------------------------------------------------------------
// The CUDA event is created on first record, on the device of that stream (an event can only be
// recorded on streams of the device it was created on), as PyTorch's CUDAEvent does.

Event::Event(bool enable_timing) : enable_timing_(enable_timing) {}

Event::~Event() {
  if (handle_ != nullptr) EMBER_CUDA_WARN(cudaEventDestroy(static_cast<cudaEvent_t>(handle_)));
}

Event::Event(Event&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)),
      device_(std::exchange(o.device_, -1)),
      enable_timing_(o.enable_timing_),
      recorded_(std::exchange(o.recorded_, false)) {}

Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    if (handle_ != nullptr) EMBER_CUDA_WARN(cudaEventDestroy(static_cast<cudaEvent_t>(handle_)));
    handle_ = std::exchange(o.handle_, nullptr);
    device_ = std::exchange(o.device_, -1);
    enable_timing_ = o.enable_timing_;
    recorded_ = std::exchange(o.recorded_, false);
  }
  return *this;
}

void Event::create(int device) {
  DeviceGuard guard(device);
  cudaEvent_t event = nullptr;
  EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&event, enable_timing_ ? cudaEventDefault : cudaEventDisableTiming));
  handle_ = event;
  device_ = device;
}

void Event::record(const Stream& stream) {
  check_device(stream.device(), "Event::record");
  if (handle_ == nullptr) {
    create(stream.device_index());
  } else {
    EMBER_CHECK(device_ == stream.device_index(), "Event::record: the event belongs to cuda:", device_,
                " but the stream is on ", stream.device(), "; record it on a stream of cuda:", device_);
  }
  DeviceGuard guard(stream.device());
  EMBER_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(handle_), native(stream)));
  recorded_ = true;
}

void Event::record() { record(current_stream()); }

void Event::block(const Stream& stream) const {
  if (!is_recorded()) return;  // nothing to wait for, as in PyTorch
  check_device(stream.device(), "Event::block");
  DeviceGuard guard(stream.device());
  EMBER_CUDA_CHECK(cudaStreamWaitEvent(native(stream), static_cast<cudaEvent_t>(handle_), 0));
}

bool Event::query() const {
  if (!is_recorded()) return true;
  const cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(handle_));
  if (err == cudaSuccess) return true;
  if (err == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  EMBER_CUDA_CHECK(err);
  return false;
}

void Event::synchronize() const {
  if (!is_recorded()) return;
  EMBER_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_)));
}

float Event::elapsed_ms(const Event& end) const {
  EMBER_CHECK(enable_timing_ && end.enable_timing_,
              "Event::elapsed_ms: both events must be created with enable_timing=true");
  EMBER_CHECK(is_recorded() && end.is_recorded(),
              "Event::elapsed_ms: both events must be recorded before measuring the time between them");
  float ms = 0.0f;
  EMBER_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(handle_), static_cast<cudaEvent_t>(end.handle_)));
  return ms;
}

}  // namespace ember::cuda
