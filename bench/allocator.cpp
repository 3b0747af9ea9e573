// The allocators' fast paths (family "allocator"): a host allocation and free (the size-class cache
// behind cpu_allocate), a tensor's creation end to end, the CUDA caching allocator's bookkeeping (run on
// the CPU over a fake device-memory backend, so it is measured anywhere), and on a GPU the real one.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/timing.h"
#include "runtime/caching_allocator.h"

namespace ember::bench {
namespace {

// cpu_allocate + free of one block: the host cache serves large blocks, malloc the small ones.
void host_allocate(benchmark::State& state, size_t bytes) {
  { DataPtr warm = cpu_allocate(bytes); }
  for (auto _ : state) {
    DataPtr p = cpu_allocate(bytes);
    benchmark::DoNotOptimize(p.get());
  }
}

// empty(): what every op pays for its output (storage, tensor impl, allocation).
void empty_tensor(benchmark::State& state, int64_t numel, Device device) {
  skip_on_error(state, [&] {
    { Tensor warm = empty({numel}, device); }
    for (auto _ : state) {
      Tensor t = empty({numel}, device);
      benchmark::DoNotOptimize(t.raw_data());
    }
    if (device.is_cuda()) cuda::synchronize();
  });
}

// Device memory that is host memory, events that are always complete: only the allocator's own work
// (size rounding, best-fit search, splitting and merging blocks, stream bookkeeping) is left to time.
class HostBackend : public DeviceMemoryBackend {
 public:
  void* malloc(size_t nbytes) override { return std::malloc(nbytes); }
  void free(void* ptr) override { std::free(ptr); }
  std::pair<size_t, size_t> mem_get_info() override { return {size_t{64} << 30, size_t{80} << 30}; }
  EventHandle create_event() override { return reinterpret_cast<EventHandle>(++events_); }
  void destroy_event(EventHandle) override {}
  void record_event(EventHandle, StreamHandle) override {}
  bool query_event(EventHandle) override { return true; }
  void synchronize_event(EventHandle) override {}
  void synchronize_device() override {}

 private:
  uintptr_t events_ = 0;
};

// allocate + free of one block through CachingAllocator (the class behind CUDA tensors). `live` blocks of
// mixed sizes stay allocated meanwhile, so the pools have something to search.
void caching_allocator(benchmark::State& state, size_t bytes, int live) {
  CachingAllocator alloc(std::make_unique<HostBackend>(), "fake:0");
  StreamHandle stream = nullptr;
  std::vector<CachingAllocator::Block*> held;
  for (int i = 0; i < live; ++i) held.push_back(alloc.allocate(512 * static_cast<size_t>(1 + i % 37), stream));
  alloc.free(alloc.allocate(bytes, stream));
  const uint64_t mallocs0 = alloc.stats().num_device_mallocs;
  for (auto _ : state) {
    CachingAllocator::Block* b = alloc.allocate(bytes, stream);
    // By value: Google Benchmark 1.7's DoNotOptimize(T&) ("+m,r") let GCC -O1 with ASan hand free() a
    // stack address here (found by the ASan build); the const& overload only reads.
    benchmark::DoNotOptimize(static_cast<const void*>(b));
    alloc.free(b);
  }
  state.counters["device_mallocs"] = static_cast<double>(alloc.stats().num_device_mallocs - mallocs0);
  for (auto* b : held) alloc.free(b);
}

}  // namespace

void register_allocator() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("allocator/host_allocate_256B/cpu", host_allocate, size_t{256});
  RegisterBenchmark("allocator/host_allocate_64KiB/cpu", host_allocate, size_t{64} << 10);
  RegisterBenchmark("allocator/host_allocate_4MiB/cpu", host_allocate, size_t{4} << 20);
  RegisterBenchmark("allocator/empty_64/cpu", empty_tensor, int64_t{64}, Device::cpu());
  RegisterBenchmark("allocator/empty_1M/cpu", empty_tensor, int64_t{1} << 20, Device::cpu());
  RegisterBenchmark("allocator/caching_small_4KiB/fake_device", caching_allocator, size_t{4} << 10, 256);
  RegisterBenchmark("allocator/caching_large_16MiB/fake_device", caching_allocator, size_t{16} << 20, 256);
  if (!cuda::is_available()) return;
  // Host time per allocation from the real CUDA caching allocator (no cudaMalloc after the first).
  RegisterBenchmark("allocator/empty_64/cuda", empty_tensor, int64_t{64}, Device::cuda(0))->UseRealTime();
  RegisterBenchmark("allocator/empty_4M/cuda", empty_tensor, int64_t{4} << 20, Device::cuda(0))->UseRealTime();
}

}  // namespace ember::bench
