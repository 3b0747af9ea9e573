// Generator bookkeeping and the per-device generator table.
#include "runtime/random.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include "runtime/cuda/cuda.h"
#include "runtime/error.h"
#include "runtime/factory.h"

namespace ember {

void Generator::manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(mutex_);
  seed_ = seed;
  offset_ = 0;
}

uint64_t Generator::seed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return seed_;
}

uint64_t Generator::offset() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return offset_;
}

void Generator::set_offset(uint64_t offset) {
  std::lock_guard<std::mutex> lock(mutex_);
  offset_ = offset;
}

std::pair<uint64_t, uint64_t> Generator::reserve(uint64_t blocks) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t first = offset_;
  offset_ += blocks;
  return {seed_, first};
}

namespace {
constexpr int64_t kStateBytes = 16;

void put_u64(uint8_t* dst, uint64_t v) {
  for (int i = 0; i < 8; ++i) dst[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_u64(const uint8_t* src) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{src[i]} << (8 * i);
  return v;
}
}  // namespace

Tensor Generator::get_state() const {
  uint64_t seed, offset;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    seed = seed_;
    offset = offset_;
  }
  Tensor out = empty({kStateBytes}, kUInt8);
  auto* bytes = static_cast<uint8_t*>(out.raw_data());
  put_u64(bytes, seed);
  put_u64(bytes + 8, offset);
  return out;
}

void Generator::set_state(const Tensor& state) {
  EMBER_CHECK(state.defined(), "Generator::set_state: the state is an undefined tensor");
  EMBER_CHECK(state.dtype() == kUInt8 && state.numel() == kStateBytes,
              "Generator::set_state: expected a uint8 tensor of ", kStateBytes,
              " bytes (seed and offset, as get_state() returns), got ", state.dtype(), " of shape ", state.sizes());
  const Tensor host = state.cpu().contiguous();
  const auto* bytes = static_cast<const uint8_t*>(host.raw_data());
  std::lock_guard<std::mutex> lock(mutex_);
  seed_ = get_u64(bytes);
  offset_ = get_u64(bytes + 8);
}

namespace {
struct Generators {
  Generator cpu;
  std::array<std::unique_ptr<Generator>, kMaxCudaDevices> cuda;
  std::once_flag once[kMaxCudaDevices];
  uint64_t seed = Generator::kDefaultSeed;
  std::mutex mutex;
};
Generators& generators() {
  static Generators g;
  return g;
}
}  // namespace

Generator& default_generator(Device device) {
  Generators& g = generators();
  if (device.is_cpu()) return g.cpu;
  const int i = device.index();
  std::call_once(g.once[i], [&] {
    std::lock_guard<std::mutex> lock(g.mutex);
    g.cuda[i] = std::make_unique<Generator>(g.seed);
  });
  return *g.cuda[i];
}

void manual_seed(uint64_t seed) {
  Generators& g = generators();
  g.cpu.manual_seed(seed);
  std::lock_guard<std::mutex> lock(g.mutex);
  g.seed = seed;
  for (auto& gen : g.cuda)
    if (gen) gen->manual_seed(seed);
}

Tensor get_rng_state() { return default_generator(Device::cpu()).get_state(); }
void set_rng_state(const Tensor& state) { default_generator(Device::cpu()).set_state(state); }

RngStates get_all_rng_states() {
  RngStates out;
  out.cpu = get_rng_state();
  out.cuda = cuda::get_rng_state_all();
  return out;
}

void set_all_rng_states(const RngStates& states) {
  // Checked before anything is set.
  const int n = std::min<int>(static_cast<int>(states.cuda.size()), cuda::is_available() ? cuda::device_count() : 0);
  Generator probe;
  if (states.cpu.defined()) probe.set_state(states.cpu);
  for (int i = 0; i < n; ++i) probe.set_state(states.cuda[static_cast<size_t>(i)]);
  if (states.cpu.defined()) set_rng_state(states.cpu);
  for (int i = 0; i < n; ++i) cuda::set_rng_state(states.cuda[static_cast<size_t>(i)], i);
}

namespace cuda {
namespace {
int checked_device(int device, const char* op) {
  if (device < 0) device = current_device();
  check_device(Device::cuda(device), op);
  return device;
}
}  // namespace

Tensor get_rng_state(int device) {
  return default_generator(Device::cuda(checked_device(device, "cuda::get_rng_state"))).get_state();
}

void set_rng_state(const Tensor& state, int device) {
  default_generator(Device::cuda(checked_device(device, "cuda::set_rng_state"))).set_state(state);
}

std::vector<Tensor> get_rng_state_all() {
  std::vector<Tensor> out;
  if (!is_available()) return out;
  for (int i = 0; i < device_count(); ++i) out.push_back(get_rng_state(i));
  return out;
}

void set_rng_state_all(const std::vector<Tensor>& states) {
  const int n = is_available() ? device_count() : 0;
  EMBER_CHECK(static_cast<int>(states.size()) == n, "cuda::set_rng_state_all: got ", states.size(), " state(s) for ", n,
              " visible GPU(s)");
  for (int i = 0; i < n; ++i) set_rng_state(states[static_cast<size_t>(i)], i);
}
}  // namespace cuda

}  // namespace ember
