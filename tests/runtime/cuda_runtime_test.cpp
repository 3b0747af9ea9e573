// Tests of the CUDA runtime layer: availability and device checks, DeviceGuard, streams, events, the
// per-device caching allocators and pinned memory. *_NoGPU tests check the behaviour without a
// usable GPU (CPU-only build, or no driver/device); *_CUDA tests need a GPU and skip without one.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/allocator.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/memory.h"
#include "runtime/cuda/stream.h"
#include "runtime/error.h"

#if defined(EMBER_WITH_CUDA)
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <nccl.h>

#include "runtime/cuda/check.h"
#endif

namespace {

using ember::DataPtr;
using ember::Device;
using ember::DeviceGuard;
namespace cuda = ember::cuda;

constexpr size_t kMiB = size_t{1} << 20;

// The message of the ember::Error that `f` throws ("" and a test failure if it throws none).
std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const ember::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ember::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected ember::Error, nothing was thrown";
  return "";
}

#define EXPECT_ERROR_HAS(stmt, ...)                                                                              \
  do {                                                                                                           \
    const std::string msg_ = error_message([&] { stmt; });                                                       \
    const std::vector<std::string> words_{__VA_ARGS__}; /* owns the words: temporaries die here */               \
    for (const std::string& word_ : words_)                                                                      \
      EXPECT_NE(msg_.find(word_), std::string::npos) << "message: \"" << msg_ << "\" lacks \"" << word_ << "\""; \
  } while (0)

// Words that explain why CUDA cannot be used, in this build.
const char* no_gpu_words() {
  return cuda::is_compiled() ? "no CUDA device is available" : "ember was built without CUDA";
}

#define SKIP_WITH_GPU() \
  if (cuda::is_available()) GTEST_SKIP() << "a CUDA device is present; this test checks behaviour without one"
#define SKIP_WITHOUT_GPU() \
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device"

// ---- everywhere -------------------------------------------------------------------------------

TEST(CudaRuntime, StubReportsNoCuda) {
  if (cuda::is_compiled()) GTEST_SKIP() << "CUDA build";
  EXPECT_FALSE(cuda::is_available());
  EXPECT_EQ(cuda::device_count(), 0);
}

TEST(CudaRuntime, CheckDeviceRejectsCpuDevices) {
  EXPECT_ERROR_HAS(cuda::check_device(Device::cpu(0)), "cpu:0", "expected a CUDA device");
  EXPECT_ERROR_HAS(cuda::check_device(Device::cpu(3), "matmul"), "matmul: cpu:3", "expected a CUDA device");
}

TEST(CudaRuntime, DeviceGuardOnCpuDevicesIsANoOp) {
  DeviceGuard outer(Device::cpu(1));
  { DeviceGuard inner(Device::cpu(0)); }
  // Only checkable with a GPU: the current CUDA device did not change.
  if (cuda::is_available()) {
    const int before = cuda::current_device();
    { DeviceGuard g(Device::cpu(5)); }
    EXPECT_EQ(cuda::current_device(), before);
  }
}

TEST(CudaRuntime, EmptyCacheOfAllDevicesNeverThrows) {
  EXPECT_NO_THROW(cuda::empty_cache());
  EXPECT_NO_THROW(cuda::empty_cache(-1));
}

TEST(CudaRuntime, AllowTf32IsASetting) {
  const bool saved = cuda::allow_tf32();
  cuda::set_allow_tf32(true);
  EXPECT_TRUE(cuda::allow_tf32());
  cuda::set_allow_tf32(false);
  EXPECT_FALSE(cuda::allow_tf32());
  cuda::set_allow_tf32(saved);
}

TEST(CudaRuntime, UnrecordedEventIsComplete) {
  cuda::Event e;
  EXPECT_FALSE(e.is_recorded());
  EXPECT_EQ(e.handle(), nullptr);
  EXPECT_TRUE(e.query());
  EXPECT_NO_THROW(e.synchronize());
  cuda::Event moved(std::move(e));
  EXPECT_TRUE(moved.query());
  cuda::Event t1(true), t2(true);
  EXPECT_ERROR_HAS((void)t1.elapsed_ms(t2), "Event::elapsed_ms");
}

TEST(CudaRuntime, PageableMemoryIsNotPinned) {
  DataPtr p = ember::cpu_allocate(100, Device::cpu(2));
  EXPECT_FALSE(cuda::detail::is_pinned(p));
  EXPECT_FALSE(cuda::detail::is_pinned(DataPtr()));
}

// ---- without a usable GPU --------------------------------------------------------------------------

TEST(CudaRuntime, NotAvailable_NoGPU) {
  SKIP_WITH_GPU();
  EXPECT_FALSE(cuda::is_available());
  EXPECT_EQ(cuda::device_count(), 0);
  // Asking again gives the same answer and still does not throw (the count is cached).
  EXPECT_EQ(cuda::device_count(), 0);
}

TEST(CudaRuntime, CheckDeviceThrows_NoGPU) {
  SKIP_WITH_GPU();
  EXPECT_ERROR_HAS(cuda::check_device(Device::cuda(0)), "cuda:0", no_gpu_words());
  EXPECT_ERROR_HAS(cuda::check_device(Device::cuda(7)), "cuda:7", no_gpu_words());
  EXPECT_ERROR_HAS(cuda::check_device(Device("cuda:7"), "add"), "add: cuda:7", no_gpu_words());
  if (cuda::is_compiled()) {
    // The driver's own reason is part of the message.
    EXPECT_ERROR_HAS(cuda::check_device(Device::cuda(0)), "(cudaGetDeviceCount: ");
  } else {
    EXPECT_ERROR_HAS(cuda::check_device(Device::cuda(0)), "-DEMBER_CUDA=ON");
  }
}

TEST(CudaRuntime, DeviceGuardOnCudaThrows_NoGPU) {
  SKIP_WITH_GPU();
  EXPECT_ERROR_HAS(DeviceGuard g(Device::cuda(0)), "cuda:0", no_gpu_words());
  EXPECT_ERROR_HAS(DeviceGuard g(1), "cuda:1", no_gpu_words());
}

TEST(CudaRuntime, DeviceCallsThrow_NoGPU) {
  SKIP_WITH_GPU();
  EXPECT_ERROR_HAS(cuda::synchronize(), "synchronize", no_gpu_words());
  EXPECT_ERROR_HAS(cuda::synchronize(0), "synchronize", no_gpu_words());
  EXPECT_ERROR_HAS((void)cuda::current_device(), "current_device", no_gpu_words());
  EXPECT_ERROR_HAS(cuda::set_device(0), "set_device", no_gpu_words());
  EXPECT_ERROR_HAS((void)cuda::current_stream(), "current_stream", no_gpu_words());
  EXPECT_ERROR_HAS((void)cuda::default_stream(0), "default_stream", no_gpu_words());
  EXPECT_ERROR_HAS((void)cuda::get_stream_from_pool(), "get_stream_from_pool", no_gpu_words());
  EXPECT_ERROR_HAS(cuda::set_current_stream(cuda::Stream()), "set_current_stream", no_gpu_words());
  EXPECT_ERROR_HAS(cuda::StreamGuard g{cuda::Stream()}, "StreamGuard", no_gpu_words());
  EXPECT_ERROR_HAS(cuda::Stream().synchronize(), no_gpu_words());
  cuda::Event e;
  EXPECT_ERROR_HAS(e.record(), no_gpu_words());
  EXPECT_FALSE(e.is_recorded());
}

TEST(CudaRuntime, MemoryCallsThrow_NoGPU) {
  SKIP_WITH_GPU();
  EXPECT_ERROR_HAS((void)cuda::memory_allocated(), "memory_allocated", no_gpu_words());
  EXPECT_ERROR_HAS((void)cuda::memory_reserved(0), "memory_reserved", no_gpu_words());
  EXPECT_ERROR_HAS((void)cuda::max_memory_allocated(), "max_memory_allocated", no_gpu_words());
  EXPECT_ERROR_HAS((void)cuda::num_device_mallocs(), "num_device_mallocs", no_gpu_words());
  EXPECT_ERROR_HAS(cuda::set_memory_limit(kMiB), "set_memory_limit", no_gpu_words());
  EXPECT_ERROR_HAS((void)cuda::memory_summary(), "memory_summary", no_gpu_words());
  EXPECT_ERROR_HAS(cuda::empty_cache(0), "empty_cache", no_gpu_words());
  // Even an empty CUDA allocation names the device it cannot be made on.
  EXPECT_ERROR_HAS((void)cuda::detail::allocate(Device::cuda(0), 0), "cuda:0", no_gpu_words());
  EXPECT_ERROR_HAS((void)cuda::detail::allocate(Device::cuda(2), 64), "cuda:2", no_gpu_words());
  EXPECT_ERROR_HAS((void)ember::allocate_bytes(Device::cuda(0), 64), "cuda:0", no_gpu_words());
}

TEST(CudaRuntime, PinMemoryThrows_NoGPU) {
  SKIP_WITH_GPU();
  const char* why = cuda::is_compiled() ? "needs a CUDA device" : "ember was built without CUDA";
  EXPECT_ERROR_HAS((void)cuda::detail::allocate_pinned(64, Device::cpu()), "pin_memory", why);
  EXPECT_ERROR_HAS((void)ember::pinned_allocate(64), "pin_memory", why);
  EXPECT_ERROR_HAS((void)ember::allocate_bytes(Device::cpu(1), 64, /*pinned=*/true), "pin_memory", why);
  // Pageable memory has no use to record; that needs no GPU.
  DataPtr p = ember::cpu_allocate(64);
  EXPECT_NO_THROW(cuda::detail::record_pinned_use(p, cuda::Stream()));
}

// ---- with a GPU --------------------------------------------------------------------------------------

#if defined(EMBER_WITH_CUDA)

// Keeps a stream busy until released (or destroyed), with a host function that waits on a flag:
// lets tests observe "work still running" without writing a kernel. RAII so that a failing test
// never leaves a stream blocked forever.
class StreamGate {
 public:
  explicit StreamGate(const cuda::Stream& stream) {
    DeviceGuard guard(stream.device());
    launched_ =
        cudaLaunchHostFunc(static_cast<cudaStream_t>(stream.handle()), &StreamGate::wait, &state_) == cudaSuccess;
    EXPECT_TRUE(launched_);
  }
  // Waits for the host function to return: it reads state_, which dies with this object.
  ~StreamGate() {
    open();
    while (launched_ && !state_.done.load()) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;
  void open() { state_.open.store(true); }

 private:
  struct State {
    std::atomic<bool> open{false};
    std::atomic<bool> done{false};
  };
  static void CUDART_CB wait(void* p) {
    auto* state = static_cast<State*>(p);
    while (!state->open.load()) std::this_thread::sleep_for(std::chrono::microseconds(50));
    state->done.store(true);
  }
  State state_;
  bool launched_ = false;
};

void CUDART_CB set_flag(void* flag) { static_cast<std::atomic<bool>*>(flag)->store(true); }

// The check macros only format status codes: no GPU needed.
TEST(CudaRuntime, CheckMacrosReportLibraryErrors) {
  EXPECT_ERROR_HAS(EMBER_CUDA_CHECK(cudaErrorInvalidValue), "CUDA error: ", cudaGetErrorString(cudaErrorInvalidValue),
                   "(cudaErrorInvalidValue)", "in `cudaErrorInvalidValue`", "cuda_runtime_test.cpp:");
  EXPECT_ERROR_HAS(EMBER_CUDA_CHECK(cudaErrorIllegalAddress), "CUDA_LAUNCH_BLOCKING=1");
  EXPECT_NO_THROW(EMBER_CUDA_CHECK(cudaSuccess));
  EXPECT_NO_THROW(EMBER_CUDA_WARN(cudaErrorInvalidValue));  // logs, never throws
  EXPECT_ERROR_HAS(EMBER_CUBLAS_CHECK(CUBLAS_STATUS_NOT_INITIALIZED),
                   "cuBLAS error: ", cublasGetStatusString(CUBLAS_STATUS_NOT_INITIALIZED),
                   "CUBLAS_STATUS_NOT_INITIALIZED");
  EXPECT_NO_THROW(EMBER_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
  EXPECT_ERROR_HAS(EMBER_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM),
                   "cuDNN error: ", cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM");
  EXPECT_NO_THROW(EMBER_CUDNN_CHECK(CUDNN_STATUS_SUCCESS));
  EXPECT_ERROR_HAS(EMBER_NCCL_CHECK(ncclInvalidArgument), "NCCL error: ", ncclGetErrorString(ncclInvalidArgument),
                   "ncclInvalidArgument");
  EXPECT_NO_THROW(EMBER_NCCL_CHECK(ncclSuccess));
}

TEST(CudaRuntime, DeviceCountAndCheck_CUDA) {
  SKIP_WITHOUT_GPU();
  const int n = cuda::device_count();
  EXPECT_TRUE(cuda::is_compiled());
  EXPECT_GE(n, 1);
  for (int d = 0; d < n; ++d) EXPECT_NO_THROW(cuda::check_device(Device::cuda(d)));
  if (n < ember::kMaxCudaDevices) {
    EXPECT_ERROR_HAS(cuda::check_device(Device::cuda(n)), ("cuda:" + std::to_string(n)).c_str(), "out of range",
                     ("this machine has " + std::to_string(n) + " CUDA device(s)").c_str());
    EXPECT_ERROR_HAS(DeviceGuard g(n), "out of range");
    EXPECT_ERROR_HAS((void)cuda::memory_allocated(n), "memory_allocated", "out of range");
  }
  EXPECT_ERROR_HAS((void)cuda::memory_allocated(-2), "memory_allocated", "invalid CUDA device index -2");
}

TEST(CudaRuntime, DeviceGuardRestores_CUDA) {
  SKIP_WITHOUT_GPU();
  const int n = cuda::device_count();
  cuda::set_device(0);
  {
    DeviceGuard g(0);
    EXPECT_EQ(cuda::current_device(), 0);
  }
  EXPECT_EQ(cuda::current_device(), 0);
  if (n >= 2) {
    {
      DeviceGuard g1(Device::cuda(1));
      EXPECT_EQ(cuda::current_device(), 1);
      {
        DeviceGuard g0(Device::cuda(0));
        EXPECT_EQ(cuda::current_device(), 0);
      }
      EXPECT_EQ(cuda::current_device(), 1);
    }
    EXPECT_EQ(cuda::current_device(), 0);
  }
  // A failed guard changes nothing.
  if (n < ember::kMaxCudaDevices) {
    EXPECT_THROW(DeviceGuard g(n), ember::Error);
  }
  EXPECT_EQ(cuda::current_device(), 0);
  EXPECT_NO_THROW(cuda::synchronize());
  EXPECT_NO_THROW(cuda::synchronize(0));
}

TEST(CudaRuntime, StreamPool_CUDA) {
  SKIP_WITHOUT_GPU();
  // A fresh thread starts on the default stream of every device.
  std::thread([] {
    EXPECT_EQ(cuda::current_stream(0), cuda::default_stream(0));
    EXPECT_TRUE(cuda::current_stream(0).is_default());
  }).join();

  std::vector<cuda::Stream> pool;
  for (int i = 0; i < 8; ++i) pool.push_back(cuda::get_stream_from_pool(0));
  std::set<void*> handles;
  for (const cuda::Stream& s : pool) {
    EXPECT_FALSE(s.is_default());
    EXPECT_EQ(s.device(), Device::cuda(0));
    handles.insert(s.handle());
  }
  EXPECT_EQ(handles.size(), 8u);  // eight distinct streams, then round-robin
  const cuda::Stream again = cuda::get_stream_from_pool(0);
  EXPECT_TRUE(handles.count(again.handle()) == 1);

  const cuda::Stream high = cuda::get_stream_from_pool(0, /*high_priority=*/true);
  EXPECT_FALSE(high.is_default());
  EXPECT_EQ(handles.count(high.handle()), 0u);
  int priority = 0;
  ASSERT_EQ(cudaStreamGetPriority(static_cast<cudaStream_t>(high.handle()), &priority), cudaSuccess);
  int least = 0, greatest = 0;
  ASSERT_EQ(cudaDeviceGetStreamPriorityRange(&least, &greatest), cudaSuccess);
  EXPECT_EQ(priority, greatest);
  unsigned flags = 0;
  ASSERT_EQ(cudaStreamGetFlags(static_cast<cudaStream_t>(again.handle()), &flags), cudaSuccess);
  EXPECT_EQ(flags & cudaStreamNonBlocking, static_cast<unsigned>(cudaStreamNonBlocking));
}

TEST(CudaRuntime, CurrentStreamIsPerThreadAndGuarded_CUDA) {
  SKIP_WITHOUT_GPU();
  const cuda::Stream side = cuda::get_stream_from_pool(0);
  const cuda::Stream before = cuda::current_stream(0);
  {
    cuda::StreamGuard guard(side);
    EXPECT_EQ(cuda::current_stream(0), side);
    EXPECT_EQ(cuda::current_stream(), side);  // the guard also made cuda:0 current
    std::thread([&] { EXPECT_EQ(cuda::current_stream(0), cuda::default_stream(0)); }).join();
  }
  EXPECT_EQ(cuda::current_stream(0), before);

  if (cuda::device_count() >= 2) {
    cuda::set_device(0);
    const cuda::Stream on1 = cuda::get_stream_from_pool(1);
    {
      cuda::StreamGuard guard(on1);
      EXPECT_EQ(cuda::current_device(), 1);
      EXPECT_EQ(cuda::current_stream(), on1);
    }
    EXPECT_EQ(cuda::current_device(), 0);
    EXPECT_EQ(cuda::current_stream(1), cuda::default_stream(1));
  }
}

TEST(CudaRuntime, StreamsAndEvents_CUDA) {
  SKIP_WITHOUT_GPU();
  const cuda::Stream s = cuda::get_stream_from_pool(0);
  const cuda::Stream t = cuda::get_stream_from_pool(0, /*high_priority=*/true);
  cuda::Event done;
  std::atomic<bool> ran{false};
  {
    StreamGate gate(s);
    done.record(s);
    EXPECT_TRUE(done.is_recorded());
    EXPECT_FALSE(s.query());
    EXPECT_FALSE(done.query());
    // t waits for s on the device: its host function cannot run before the gate opens.
    t.wait(s);
    ASSERT_EQ(cudaLaunchHostFunc(static_cast<cudaStream_t>(t.handle()), &set_flag, &ran), cudaSuccess);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(ran.load());
    EXPECT_FALSE(t.query());
    gate.open();
    done.synchronize();
    t.synchronize();
  }
  EXPECT_TRUE(done.query());
  EXPECT_TRUE(s.query());
  EXPECT_TRUE(ran.load());

  // block(): the same ordering through an event.
  std::atomic<bool> ran2{false};
  {
    StreamGate gate(s);
    cuda::Event e;
    e.record(s);
    e.block(t);
    ASSERT_EQ(cudaLaunchHostFunc(static_cast<cudaStream_t>(t.handle()), &set_flag, &ran2), cudaSuccess);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(ran2.load());
    gate.open();
    t.synchronize();
  }
  EXPECT_TRUE(ran2.load());

  cuda::Event moved = std::move(done);
  EXPECT_TRUE(moved.is_recorded());
  EXPECT_FALSE(done.is_recorded());  // NOLINT(bugprone-use-after-move): moved-from state is specified

  // Timing.
  cuda::Event start(/*enable_timing=*/true), stop(/*enable_timing=*/true);
  start.record(s);
  stop.record(s);
  stop.synchronize();
  EXPECT_GE(start.elapsed_ms(stop), 0.0f);
  cuda::Event untimed;
  untimed.record(s);
  untimed.synchronize();
  EXPECT_ERROR_HAS((void)untimed.elapsed_ms(stop), "enable_timing");
}

TEST(CudaRuntime, AllocateAndStats_CUDA) {
  SKIP_WITHOUT_GPU();
  const Device dev = Device::cuda(0);
  cuda::set_device(0);
  const size_t base = cuda::memory_allocated(0);
  EXPECT_EQ(cuda::memory_allocated(), cuda::memory_allocated(0));  // -1: the current device

  DataPtr empty = cuda::detail::allocate(dev, 0);
  EXPECT_FALSE(empty);
  EXPECT_EQ(empty.device(), dev);

  {
    DataPtr p = cuda::detail::allocate(dev, 1000);
    ASSERT_TRUE(p);
    EXPECT_EQ(p.device(), dev);
    EXPECT_EQ(cuda::memory_allocated(0), base + 1024);  // rounded to 512-byte blocks
    EXPECT_GE(cuda::memory_reserved(0), cuda::memory_allocated(0));
    EXPECT_GE(cuda::max_memory_allocated(0), base + 1024);
    // The memory is real device memory.
    std::vector<unsigned char> host(1000, 0);
    ASSERT_EQ(cudaMemset(p.get(), 0xAB, 1000), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(host.data(), p.get(), 1000, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(host[0], 0xAB);
    EXPECT_EQ(host[999], 0xAB);
    cudaPointerAttributes attr{};
    ASSERT_EQ(cudaPointerGetAttributes(&attr, p.get()), cudaSuccess);
    EXPECT_EQ(attr.type, cudaMemoryTypeDevice);
    EXPECT_EQ(attr.device, 0);
  }
  EXPECT_EQ(cuda::memory_allocated(0), base);

  // After one warm-up round, the same sizes never reach cudaMalloc again.
  const std::vector<size_t> sizes = {1000, 4096, 700 * 1024, 5 * kMiB, 30 * kMiB};
  auto round = [&] {
    std::vector<DataPtr> live;
    for (size_t n : sizes) live.push_back(ember::allocate_bytes(dev, n));
    live.erase(live.begin() + 1);  // free some out of order
    live.push_back(ember::allocate_bytes(dev, 4096));
  };
  round();
  const uint64_t mallocs = cuda::num_device_mallocs(0);
  for (int i = 0; i < 20; ++i) round();
  EXPECT_EQ(cuda::num_device_mallocs(0), mallocs);
  EXPECT_EQ(cuda::memory_allocated(0), base);

  cuda::reset_peak_memory_stats(0);
  EXPECT_EQ(cuda::max_memory_allocated(0), cuda::memory_allocated(0));
  EXPECT_EQ(cuda::max_memory_reserved(0), cuda::memory_reserved(0));

  // empty_cache returns the free segments: the 30 MiB one among them.
  const uint64_t frees = cuda::num_device_frees(0);
  const size_t reserved = cuda::memory_reserved(0);
  cuda::empty_cache(0);
  EXPECT_GT(cuda::num_device_frees(0), frees);
  EXPECT_LE(cuda::memory_reserved(0), reserved - 30 * kMiB);
  EXPECT_NO_THROW(cuda::empty_cache());

  const std::string summary = cuda::memory_summary(0);
  EXPECT_NE(summary.find("cuda:0"), std::string::npos) << summary;
  EXPECT_NE(summary.find("reserved"), std::string::npos) << summary;
  EXPECT_NE(summary.find("free of"), std::string::npos) << summary;
}

TEST(CudaRuntime, MemoryLimit_CUDA) {
  SKIP_WITHOUT_GPU();
  cuda::empty_cache(0);
  const size_t reserved = cuda::memory_reserved(0);
  cuda::set_memory_limit(reserved + 64 * kMiB, 0);
  {
    DataPtr ok = cuda::detail::allocate(Device::cuda(0), 32 * kMiB);
    EXPECT_TRUE(ok);
    EXPECT_ERROR_HAS((void)cuda::detail::allocate(Device::cuda(0), 128 * kMiB), "cuda:0");
  }
  cuda::set_memory_limit(0, 0);
  EXPECT_TRUE(cuda::detail::allocate(Device::cuda(0), 128 * kMiB));
}

TEST(CudaRuntime, RecordStreamDefersReuse_CUDA) {
  SKIP_WITHOUT_GPU();
  const Device dev = Device::cuda(0);
  cuda::empty_cache(0);  // no cached blocks from earlier tests: the best fit below is predictable
  const cuda::Stream side = cuda::get_stream_from_pool(0);
  cuda::StreamGuard on_default(cuda::default_stream(0));
  DataPtr keep = cuda::detail::allocate(dev, 1000);  // so that the segment is not one free block
  void* first = nullptr;
  {
    StreamGate gate(side);
    DataPtr p = cuda::detail::allocate(dev, 1000);
    first = p.get();
    cuda::detail::record_stream(p, side);
    p.reset();  // side is still busy: the block must not be handed out again
    DataPtr q = cuda::detail::allocate(dev, 1000);
    EXPECT_NE(q.get(), first);
    gate.open();
    side.synchronize();
  }
  DataPtr r = cuda::detail::allocate(dev, 1000);
  EXPECT_EQ(r.get(), first);  // side finished: the block is back and the best fit

  // Misuse.
  DataPtr host = ember::cpu_allocate(64);
  EXPECT_ERROR_HAS(cuda::detail::record_stream(host, side), "record_stream", "caching allocator");
  if (cuda::device_count() >= 2) {
    EXPECT_ERROR_HAS(cuda::detail::record_stream(r, cuda::get_stream_from_pool(1)), "record_stream", "cuda:1",
                     "cuda:0");
  }
  EXPECT_NO_THROW(cuda::detail::record_stream(DataPtr(), side));
}

TEST(CudaRuntime, PinnedMemory_CUDA) {
  SKIP_WITHOUT_GPU();
  const Device cpu1 = Device::cpu(1);
  void* first = nullptr;
  {
    DataPtr a = cuda::detail::allocate_pinned(1000, cpu1);
    ASSERT_TRUE(a);
    EXPECT_EQ(a.device(), cpu1);
    EXPECT_TRUE(cuda::detail::is_pinned(a));
    EXPECT_TRUE(ember::is_pinned_ptr(a));
    std::memset(a.get(), 7, 1000);
    cudaPointerAttributes attr{};
    ASSERT_EQ(cudaPointerGetAttributes(&attr, a.get()), cudaSuccess);
    EXPECT_EQ(attr.type, cudaMemoryTypeHost);
    first = a.get();
  }
  {
    DataPtr b = cuda::detail::allocate_pinned(900, Device::cpu());  // same size class: reused
    EXPECT_EQ(b.get(), first);
  }

  DataPtr empty = cuda::detail::allocate_pinned(0, cpu1);
  EXPECT_FALSE(empty);
  EXPECT_EQ(empty.device(), cpu1);
  EXPECT_ERROR_HAS((void)cuda::detail::allocate_pinned(16, Device::cuda(0)), "pin_memory", "cuda:0");

  // A block used by a copy still in flight is not reused until the copy's stream is done.
  const cuda::Stream s = cuda::get_stream_from_pool(0);
  DataPtr device = cuda::detail::allocate(Device::cuda(0), 1000);
  void* second = nullptr;
  {
    StreamGate gate(s);
    DataPtr c = cuda::detail::allocate_pinned(1000, cpu1);
    EXPECT_EQ(c.get(), first);
    ASSERT_EQ(
        cudaMemcpyAsync(device.get(), c.get(), 1000, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(s.handle())),
        cudaSuccess);
    cuda::detail::record_pinned_use(c, s);
    c.reset();
    DataPtr d = cuda::detail::allocate_pinned(1000, cpu1);
    EXPECT_NE(d.get(), first);
    second = d.get();
    gate.open();
    s.synchronize();
  }
  std::set<void*> reused;
  DataPtr e = cuda::detail::allocate_pinned(1000, cpu1);
  DataPtr f = cuda::detail::allocate_pinned(1000, cpu1);
  reused.insert(e.get());
  reused.insert(f.get());
  EXPECT_EQ(reused, (std::set<void*>{first, second}));  // both came back, no new cudaHostAlloc needed

  std::vector<unsigned char> check(1000, 0);
  ASSERT_EQ(cudaMemcpy(check.data(), device.get(), 1000, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(check[0], 7);
  EXPECT_EQ(check[999], 7);
}

#endif  // EMBER_WITH_CUDA

}  // namespace
