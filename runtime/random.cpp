// Generator bookkeeping and the per-device generator table.
#include "runtime/random.h"

#include <array>
#include <memory>

#include "runtime/error.h"

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

}  // namespace ember
