// CPU fused optimizer updates: one vectorisable pass over all parameters, split across OpenMP threads.
#include "kernels/cpu/optim.h"

#include <algorithm>
#include <type_traits>

#include "kernels/cpu/loops.h"
#include "kernels/dispatch.h"
#include "kernels/shared/optim_math.h"

namespace ember::cpu {
namespace {

// Note [CPU fused optimizer loop]
// The parameters of one step are laid end to end as one range of elements and that range is split
// across threads (parallel_for), so one fork/join covers the whole step and small tensors (biases)
// share a thread's share with the big ones. Each thread walks the tensors overlapping its share
// and runs, per tensor, a loop whose flags (momentum, nesterov, amsgrad, ...) are compile-time
// constants: branch-free bodies that vectorise. GCC vectorises the Adam loop only when built with
// -fno-math-errno (otherwise sqrt keeps a scalar errno path in the loop); SGD always.
// Adam moves 28 bytes per float32 element; below this many elements in all, one thread does it.
constexpr int64_t kOptimGrain = 16384;

// Calls f(std::bool_constant<b>{}) so that a flag becomes a compile-time constant.
template <class F>
decltype(auto) with_bool(bool b, F&& f) {
  if (b) return f(std::true_type{});
  return f(std::false_type{});
}

// One tensor's share of the step: elements [begin, end) of entry `ref`.
struct Piece {
  int64_t numel;
  const void* ref;
  const void* hyper;
  void (*run)(const void* ref, const void* hyper, int64_t begin, int64_t end);
};

template <class T>
void sgd_range(const void* ref, const void* hyper, int64_t begin, int64_t end) {
  const auto& r = *static_cast<const SGDParamRef*>(ref);
  const auto& h = *static_cast<const SGDHyper*>(hyper);
  using C = compute_t<T>;
  // Local values: read through references (or, in an OpenMP-outlined body, pointers) they might
  // alias the stores to the parameter, and the loop would not vectorise.
  const auto s = optim_math::sgd_scalars<C>(h.lr, h.momentum, h.dampening, h.weight_decay);
  T* p = static_cast<T*>(r.param.raw_data());
  const T* g = static_cast<const T*>(r.grad.raw_data());
  // Without momentum the buffer is never touched; point it at the parameter so the loop stays uniform.
  T* buf = h.momentum != 0.0 ? static_cast<T*>(r.momentum_buffer.raw_data()) : p;
  with_bool(h.weight_decay != 0.0, [&](auto wd) {
    with_bool(h.momentum != 0.0, [&](auto mom) {
      with_bool(h.nesterov, [&](auto nest) {
        with_bool(h.maximize, [&](auto maxi) {
          with_bool(r.first_step, [&](auto first) {
            for (int64_t i = begin; i < end; ++i) {
              T unused{};
              T& b = mom() ? buf[i] : unused;
              optim_math::sgd_element<C>(p[i], g[i], b, s, wd(), mom(), nest(), maxi(), first());
            }
          });
        });
      });
    });
  });
}

template <class T>
void adam_range(const void* ref, const void* hyper, int64_t begin, int64_t end) {
  const auto& r = *static_cast<const AdamParamRef*>(ref);
  const auto& h = *static_cast<const AdamHyper*>(hyper);
  using C = compute_t<T>;
  const auto s = optim_math::adam_scalars<C>(h.lr, h.beta1, h.beta2, h.eps, h.weight_decay);
  const auto t = optim_math::adam_step_scalars<C>(h.lr, h.beta1, h.beta2, r.step);
  T* p = static_cast<T*>(r.param.raw_data());
  const T* g = static_cast<const T*>(r.grad.raw_data());
  T* m = static_cast<T*>(r.exp_avg.raw_data());
  T* v = static_cast<T*>(r.exp_avg_sq.raw_data());
  T* vmax = h.amsgrad ? static_cast<T*>(r.max_exp_avg_sq.raw_data()) : v;
  const bool decay = h.weight_decay != 0.0;
  with_bool(decay && !h.decoupled_weight_decay, [&](auto l2) {
    with_bool(decay && h.decoupled_weight_decay, [&](auto decoupled) {
      with_bool(h.amsgrad, [&](auto ams) {
        with_bool(h.maximize, [&](auto maxi) {
          for (int64_t i = begin; i < end; ++i) {
            T unused{};
            T& vm = ams() ? vmax[i] : unused;
            optim_math::adam_element<C>(p[i], g[i], m[i], v[i], vm, s, t, l2(), decoupled(), ams(), maxi());
          }
        });
      });
    });
  });
}

// Runs the pieces as one range of elements split across threads (Note [CPU fused optimizer loop]).
void run_pieces(const std::vector<Piece>& pieces) {
  std::vector<int64_t> starts;  // element offset of each piece in the concatenation
  starts.reserve(pieces.size() + 1);
  int64_t total = 0;
  for (const Piece& piece : pieces) {
    starts.push_back(total);
    total += piece.numel;
  }
  starts.push_back(total);
  parallel_for(total, kOptimGrain, [&](int64_t begin, int64_t end) {
    // The first piece that ends after `begin`.
    size_t k = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), begin) - starts.begin()) - 1;
    for (; k < pieces.size() && starts[k] < end; ++k) {
      const int64_t b = std::max(begin, starts[k]) - starts[k];
      const int64_t e = std::min(end, starts[k + 1]) - starts[k];
      if (b < e) pieces[k].run(pieces[k].ref, pieces[k].hyper, b, e);
    }
  });
}

}  // namespace

void fused_sgd_(const std::vector<SGDParamRef>& params, const std::vector<SGDHyper>& groups) {
  std::vector<Piece> pieces;
  pieces.reserve(params.size());
  for (const SGDParamRef& r : params)
    dispatch_floating_and_half(r.param.dtype(), "fused_sgd_", [&](auto tag) {
      using T = typename decltype(tag)::type;
      pieces.push_back({r.param.numel(), &r, &groups[static_cast<size_t>(r.group)], &sgd_range<T>});
    });
  run_pieces(pieces);
}

void fused_adam_(const std::vector<AdamParamRef>& params, const std::vector<AdamHyper>& groups) {
  std::vector<Piece> pieces;
  pieces.reserve(params.size());
  for (const AdamParamRef& r : params)
    dispatch_floating_and_half(r.param.dtype(), "fused_adam_", [&](auto tag) {
      using T = typename decltype(tag)::type;
      pieces.push_back({r.param.numel(), &r, &groups[static_cast<size_t>(r.group)], &adam_range<T>});
    });
  run_pieces(pieces);
}

}  // namespace ember::cpu
