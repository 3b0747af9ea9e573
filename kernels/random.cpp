// Random ops: rand, randn, randint, randperm, uniform_, normal_, bernoulli_ (Note [Random streams]).
#include "kernels/shared/random.h"

#include <algorithm>
#include <numeric>

#include "kernels/cpu/loops.h"
#include "kernels/cuda/copy.h"
#include "kernels/dispatch.h"
#include "kernels/ops.h"
#include "kernels/shared/cast.h"
#include "runtime/autograd/node.h"
#include "runtime/cuda/cuda.h"
#include "runtime/random.h"

namespace ember {

namespace {

// Fills contiguous `n` elements of T from per-block values produced by make(counter, block_values).
template <class T, class V, int PerBlock, class Make>
void cpu_fill_blocks(T* out, int64_t n, uint64_t offset, Make make) {
  const int64_t blocks = (n + PerBlock - 1) / PerBlock;
  cpu::parallel_for(blocks, 4096, [&](int64_t b0, int64_t b1) {
    V vals[PerBlock];
    for (int64_t b = b0; b < b1; ++b) {
      make(offset + static_cast<uint64_t>(b), vals);
      const int64_t base = b * PerBlock;
      const int64_t count = std::min<int64_t>(PerBlock, n - base);
      for (int64_t k = 0; k < count; ++k) out[base + k] = cast_value<T>(vals[k]);
    }
  });
}

// Runs `fill(contiguous_target)` on `self`, through a temporary when self is not contiguous.
template <class F>
Tensor& fill_contiguous(const char* op, Tensor& self, F fill) {
  autograd::check_inplace(op, self);
  if (self.numel() > 0) {
    if (self.is_contiguous()) {
      fill(self);
    } else {
      NoGradGuard no_grad;
      Tensor tmp = empty(self.sizes(), self.options());
      fill(tmp);
      self.copy_(tmp);
    }
  }
  autograd::bump_version(self);
  autograd::rebase_history_overwritten(self);
  return self;
}

uint64_t blocks_for(int64_t n, int per_block) { return static_cast<uint64_t>((n + per_block - 1) / per_block); }

}  // namespace

Tensor& uniform_(Tensor& self, double from, double to) {
  EMBER_CHECK(from <= to, "uniform_: expects from <= to, got from=", from, " to=", to);
  return fill_contiguous("uniform_", self, [&](const Tensor& t) {
    dispatch_floating_and_half(t.dtype(), "uniform_", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using C = compute_t<T>;
      const int per = rnd::per_block<C>();
      const auto reserved = default_generator(t.device()).reserve(blocks_for(t.numel(), per));
      const auto seed = reserved.first, offset = reserved.second;  // plain names: lambdas capture them
      if (t.is_cuda()) {
        cuda::uniform_(t, from, to, seed, offset);
        return;
      }
      const C lo = static_cast<C>(from), range = static_cast<C>(to - from);
      auto make = [&](uint64_t counter, C* v) {
        rnd::uniform_block<C>(seed, counter, v);
        for (int k = 0; k < rnd::per_block<C>(); ++k) {
          const C x = lo + range * v[k];
          v[k] = x < static_cast<C>(to) || range == 0 ? x : lo;  // keep `to` excluded after rounding
        }
      };
      if constexpr (sizeof(C) == 8)
        cpu_fill_blocks<T, C, 2>(static_cast<T*>(t.raw_data()), t.numel(), offset, make);
      else
        cpu_fill_blocks<T, C, 4>(static_cast<T*>(t.raw_data()), t.numel(), offset, make);
    });
  });
}

Tensor& normal_(Tensor& self, double mean, double std) {
  EMBER_CHECK(std >= 0, "normal_: expects std >= 0, got ", std);
  return fill_contiguous("normal_", self, [&](const Tensor& t) {
    dispatch_floating_and_half(t.dtype(), "normal_", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using C = compute_t<T>;
      const int per = rnd::per_block<C>();
      const auto reserved = default_generator(t.device()).reserve(blocks_for(t.numel(), per));
      const auto seed = reserved.first, offset = reserved.second;  // plain names: lambdas capture them
      if (t.is_cuda()) {
        cuda::normal_(t, mean, std, seed, offset);
        return;
      }
      const C m = static_cast<C>(mean), s = static_cast<C>(std);
      auto make = [&](uint64_t counter, C* v) {
        rnd::normal_block<C>(seed, counter, v);
        for (int k = 0; k < rnd::per_block<C>(); ++k) v[k] = m + s * v[k];
      };
      if constexpr (sizeof(C) == 8)
        cpu_fill_blocks<T, C, 2>(static_cast<T*>(t.raw_data()), t.numel(), offset, make);
      else
        cpu_fill_blocks<T, C, 4>(static_cast<T*>(t.raw_data()), t.numel(), offset, make);
    });
  });
}

Tensor& bernoulli_(Tensor& self, double p) {
  EMBER_CHECK(p >= 0 && p <= 1, "bernoulli_: expects 0 <= p <= 1, got ", p);
  return fill_contiguous("bernoulli_", self, [&](const Tensor& t) {
    const auto reserved = default_generator(t.device()).reserve(blocks_for(t.numel(), 4));
    const auto seed = reserved.first, offset = reserved.second;  // plain names: lambdas capture them
    if (t.is_cuda()) {
      cuda::bernoulli_(t, p, seed, offset);
      return;
    }
    const float pf = static_cast<float>(p);
    dispatch_all(t.dtype(), "bernoulli_", [&](auto tag) {
      using T = typename decltype(tag)::type;
      cpu_fill_blocks<T, float, 4>(static_cast<T*>(t.raw_data()), t.numel(), offset, [&](uint64_t counter, float* v) {
        rnd::uniform_block<float>(seed, counter, v);
        for (int k = 0; k < 4; ++k) v[k] = v[k] < pf ? 1.0f : 0.0f;
      });
    });
  });
}

Tensor rand(IntArrayRef sizes, const TensorOptions& options) {
  Tensor t = empty(sizes, options.requires_grad(false));
  uniform_(t, 0.0, 1.0);
  if (options.requires_grad()) t.requires_grad_(true);
  return t;
}

Tensor randn(IntArrayRef sizes, const TensorOptions& options) {
  Tensor t = empty(sizes, options.requires_grad(false));
  normal_(t, 0.0, 1.0);
  if (options.requires_grad()) t.requires_grad_(true);
  return t;
}

Tensor randint(int64_t high, IntArrayRef sizes, const TensorOptions& options) {
  return randint(0, high, sizes, options);
}

Tensor randint(int64_t low, int64_t high, IntArrayRef sizes, const TensorOptions& options) {
  EMBER_CHECK(low < high, "randint: expects low < high, got low=", low, " high=", high);
  Tensor t = empty(sizes, options.dtype_or(kInt64));
  if (t.numel() == 0) return t;
  const auto reserved = default_generator(t.device()).reserve(blocks_for(t.numel(), 2));
  const auto seed = reserved.first, offset = reserved.second;  // plain names: lambdas capture them
  if (t.is_cuda()) {
    if (t.dtype() == kInt64) {
      cuda::randint_(t, low, high, seed, offset);
      return t;
    }
    Tensor wide = empty(sizes, TensorOptions(kInt64).device(t.device()));
    cuda::randint_(wide, low, high, seed, offset);
    return t.copy_(wide);
  }
  dispatch_numeric(t.dtype(), "randint", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu_fill_blocks<T, int64_t, 2>(static_cast<T*>(t.raw_data()), t.numel(), offset, [&](uint64_t counter, int64_t* v) {
      rnd::randint_block(seed, counter, low, high, v);
    });
  });
  return t;
}

Tensor randperm(int64_t n, const TensorOptions& options) {
  EMBER_CHECK(n >= 0, "randperm: n must be non-negative, got ", n);
  // Fisher-Yates on the host driven by the target device's generator; then one copy.
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (n > 1) {
    const auto reserved = default_generator(options.device()).reserve(blocks_for(n, 2));
    const auto seed = reserved.first, offset = reserved.second;  // plain names: lambdas capture them
    for (int64_t i = n - 1; i > 0; --i) {
      int64_t r[2];
      const int64_t k = n - 1 - i;  // draw index
      rnd::randint_block(seed, offset + static_cast<uint64_t>(k / 2), 0, i + 1, r);
      std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(r[k % 2])]);
    }
  }
  return tensor(perm, options.dtype_or(kInt64));
}

Tensor& Tensor::uniform_(double from, double to) { return ember::uniform_(*this, from, to); }
Tensor& Tensor::normal_(double mean, double std) { return ember::normal_(*this, mean, std); }
Tensor& Tensor::bernoulli_(double p) { return ember::bernoulli_(*this, p); }

}  // namespace ember
