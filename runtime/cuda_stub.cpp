// The CUDA runtime entry points of a CPU-only build: no GPU is available, and every call that needs
// one throws ember::Error saying so (cuda.h, stream.h, guard.h and memory.h stay free of #ifdefs).
#include <atomic>
#include <string>

#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/memory.h"
#include "runtime/cuda/stream.h"
#include "runtime/error.h"

namespace ember {

namespace {

[[noreturn]] void no_cuda(const std::string& what) {
  EMBER_THROW(what,
              ": ember was built without CUDA (configure with -DEMBER_CUDA=ON on a machine with the CUDA "
              "toolkit)");
}

// Matches the CUDA build's messages: "<op>: <device>: ..." (the op is optional).
[[noreturn]] void bad_device(Device device, const char* op) {
  const std::string prefix = op != nullptr && op[0] != '\0' ? detail::str_cat(op, ": ", device) : device.str();
  if (!device.is_cuda()) EMBER_THROW(prefix, ": expected a CUDA device");
  no_cuda(prefix);
}

std::atomic<bool> g_allow_tf32{false};

}  // namespace

namespace cuda {

bool is_compiled() { return false; }
bool is_available() { return false; }
int device_count() { return 0; }
void synchronize(int /*device*/) { no_cuda("synchronize"); }
int current_device() { no_cuda("current_device"); }
DeviceProperties get_device_properties(int /*device*/) { no_cuda("get_device_properties"); }
void set_device(int /*device*/) { no_cuda("set_device"); }
void check_device(Device device, const char* op) { bad_device(device, op); }

// empty_cache(-1) frees what the allocators of initialised devices cache; here there are none.
void empty_cache(int device) {
  if (device != -1) no_cuda("empty_cache");
}
size_t memory_allocated(int /*device*/) { no_cuda("memory_allocated"); }
size_t memory_reserved(int /*device*/) { no_cuda("memory_reserved"); }
size_t max_memory_allocated(int /*device*/) { no_cuda("max_memory_allocated"); }
size_t max_memory_reserved(int /*device*/) { no_cuda("max_memory_reserved"); }
void reset_peak_memory_stats(int /*device*/) { no_cuda("reset_peak_memory_stats"); }
uint64_t num_device_mallocs(int /*device*/) { no_cuda("num_device_mallocs"); }
uint64_t num_device_frees(int /*device*/) { no_cuda("num_device_frees"); }
void set_memory_limit(size_t /*bytes*/, int /*device*/) { no_cuda("set_memory_limit"); }
std::string memory_summary(int /*device*/) { no_cuda("memory_summary"); }

// A setting, not a GPU call: kept so that code configuring it runs unchanged on either build.
void set_allow_tf32(bool allow) { g_allow_tf32.store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

void Stream::synchronize() const { no_cuda("Stream::synchronize"); }
bool Stream::query() const { no_cuda("Stream::query"); }
void Stream::wait(const Stream& /*other*/) const { no_cuda("Stream::wait"); }
Stream current_stream(int /*device*/) { no_cuda("current_stream"); }
Stream default_stream(int /*device*/) { no_cuda("default_stream"); }
Stream get_stream_from_pool(int /*device*/, bool /*high_priority*/) { no_cuda("get_stream_from_pool"); }
void set_current_stream(const Stream& /*stream*/) { no_cuda("set_current_stream"); }

StreamGuard::StreamGuard(const Stream& /*stream*/) { no_cuda("StreamGuard"); }
StreamGuard::~StreamGuard() = default;

// Events behave as in the CUDA build until they would touch a GPU: one that was never recorded is
// complete, and waiting on it does nothing.
Event::Event(bool enable_timing) : enable_timing_(enable_timing) {}
Event::~Event() = default;
Event::Event(Event&& o) noexcept : enable_timing_(o.enable_timing_) {}
Event& Event::operator=(Event&& o) noexcept {
  enable_timing_ = o.enable_timing_;
  return *this;
}
void Event::create(int /*device*/) { no_cuda("Event::record"); }
void Event::record(const Stream& /*stream*/) { no_cuda("Event::record"); }
void Event::record() { no_cuda("Event::record"); }
void Event::block(const Stream& /*stream*/) const {}
bool Event::query() const { return true; }
void Event::synchronize() const {}
float Event::elapsed_ms(const Event& /*end*/) const { no_cuda("Event::elapsed_ms"); }

namespace detail {

DataPtr allocate(Device device, size_t /*nbytes*/) { bad_device(device, nullptr); }
void record_stream(const DataPtr& /*ptr*/, const Stream& /*stream*/) { no_cuda("record_stream"); }
DataPtr allocate_pinned(size_t /*nbytes*/, Device /*cpu_device*/) { no_cuda("pin_memory"); }
bool is_pinned(const DataPtr& /*ptr*/) { return false; }
// Nothing can be pinned here, so there is never a use to record (as for pageable memory with CUDA).
void record_pinned_use(const DataPtr& /*ptr*/, const Stream& /*stream*/) {}
CachingAllocator& device_allocator(int /*device*/) { no_cuda("device_allocator"); }

}  // namespace detail
}  // namespace cuda

DeviceGuard::DeviceGuard(Device device) {
  if (device.is_cuda()) bad_device(device, nullptr);
}
DeviceGuard::~DeviceGuard() = default;

}  // namespace ember
