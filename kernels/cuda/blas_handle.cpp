// Per-(device, thread) cuBLAS/cuBLASLt handles and per-stream workspaces, with a teardown that is safe at process exit.
#include "kernels/cuda/blas_handle.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"

namespace ember::cuda {

namespace {

// Note [cuBLAS handle lifetime]
// Handles are per (thread, device): cuBLAS handles are not meant to be shared by threads that run
// concurrently, and per-thread handles need no locking. They live in a thread_local table and are
// destroyed when their thread exits: a worker thread that ends before the process does frees its
// handles and workspaces. At process exit the order of thread_local destructors, static destructors
// and the CUDA runtime's own teardown is not ours to choose (a worker joined by some static's
// destructor can outlive the driver), and cublasDestroy/cudaFree after the driver has shut down can
// crash. So exit is detected with an atexit handler, registered once the first handle exists (after
// the CUDA runtime registered its own teardown, hence run before it), and from then on destructors
// intentionally leak: the process is ending and the driver reclaims everything. The main thread's
// thread_locals are destroyed before any atexit handler runs, so they are still freed properly.
std::atomic<bool> g_process_exiting{false};
std::once_flag g_atexit_once;
void mark_process_exiting() { g_process_exiting.store(true, std::memory_order_release); }

// Workspace per stream. cublasSetStream resets the workspace to cuBLAS's default pool, and a
// workspace shared by two streams would be written by both at once, so each stream gets its own.
// 32 MiB is what cuBLAS recommends on Hopper (cuBLASLt kernels use it); 4 MiB before.
size_t workspace_bytes(int device) {
  int major = 0;
  EMBER_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 9 ? size_t{32} << 20 : size_t{4} << 20;
}

struct Workspace {
  void* stream = nullptr;
  void* data = nullptr;
  size_t bytes = 0;
};

// One device's handles and workspaces, for one thread.
class DeviceBlas {
 public:
  explicit DeviceBlas(int device) : device_(device) {
    DeviceGuard guard(device);
    EMBER_CUBLAS_CHECK(cublasCreate(&handle_));
    const cublasStatus_t lt = cublasLtCreate(&lt_handle_);
    if (lt != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(handle_);
      EMBER_CUBLAS_CHECK(lt);
    }
    std::call_once(g_atexit_once, [] { std::atexit(mark_process_exiting); });
  }
  ~DeviceBlas() {
    if (g_process_exiting.load(std::memory_order_acquire)) return;  // Note [cuBLAS handle lifetime]
    int previous = -1;
    if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
    EMBER_CUDA_WARN(cudaSetDevice(device_));
    if (cublasLtDestroy(lt_handle_) != CUBLAS_STATUS_SUCCESS) ::ember::detail::log_warning("cublasLtDestroy failed");
    if (cublasDestroy(handle_) != CUBLAS_STATUS_SUCCESS) ::ember::detail::log_warning("cublasDestroy failed");
    for (const Workspace& w : workspaces_) EMBER_CUDA_WARN(cudaFree(w.data));
    if (previous >= 0) EMBER_CUDA_WARN(cudaSetDevice(previous));
  }
  DeviceBlas(const DeviceBlas&) = delete;
  DeviceBlas& operator=(const DeviceBlas&) = delete;

  cublasHandle_t bind(const Stream& stream) {
    const Workspace& w = workspace(stream);
    EMBER_CUBLAS_CHECK(cublasSetStream(handle_, static_cast<cudaStream_t>(stream.handle())));
    EMBER_CUBLAS_CHECK(cublasSetWorkspace(handle_, w.data, w.bytes));
    return handle_;
  }
  cublasLtHandle_t lt() const { return lt_handle_; }

  const Workspace& workspace(const Stream& stream) {
    for (const Workspace& w : workspaces_)
      if (w.stream == stream.handle()) return w;
    Workspace w;
    w.stream = stream.handle();
    w.bytes = workspace_bytes(device_);
    DeviceGuard guard(device_);
    if (cudaMalloc(&w.data, w.bytes) != cudaSuccess) {
      // The caching allocator may hold the memory: hand its cache back and try once more.
      (void)cudaGetLastError();
      empty_cache(device_);
      EMBER_CUDA_CHECK(cudaMalloc(&w.data, w.bytes));
    }
    workspaces_.push_back(w);
    return workspaces_.back();
  }

 private:
  int device_;
  cublasHandle_t handle_ = nullptr;
  cublasLtHandle_t lt_handle_ = nullptr;
  std::vector<Workspace> workspaces_;
};

DeviceBlas& device_blas(int device) {
  thread_local std::vector<std::unique_ptr<DeviceBlas>> table;
  EMBER_ASSERT(device >= 0, "blas handle for device ", device);
  if (static_cast<size_t>(device) >= table.size()) table.resize(static_cast<size_t>(device) + 1);
  auto& slot = table[static_cast<size_t>(device)];
  if (!slot) slot = std::make_unique<DeviceBlas>(device);
  return *slot;
}

}  // namespace

cublasHandle_t blas_handle(const Stream& stream) { return device_blas(stream.device_index()).bind(stream); }

cublasLtHandle_t blaslt_handle(int device) { return device_blas(device).lt(); }

BlasWorkspace blas_workspace(const Stream& stream) {
  const Workspace& w = device_blas(stream.device_index()).workspace(stream);
  return {w.data, w.bytes};
}

}  // namespace ember::cuda
