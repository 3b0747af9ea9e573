// CPU kernels of cross entropy (fused log-softmax + NLL with label smoothing) and nll_loss, forward and backward.
#include "kernels/cpu/loss.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/loops.h"
#include "kernels/dispatch.h"
#include "kernels/shared/cast.h"

namespace ember::cpu {

namespace {

template <class T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

struct Layout {
  int64_t n, c, s;
  int64_t rows() const { return n * s; }
  // Offset of class 0 of row r = (i, k) and the stride between classes.
  int64_t row_base(int64_t r) const { return (r / s) * c * s + r % s; }
};

Layout layout_of(const Tensor& input) {
  const int64_t n = input.size(0), c = input.size(1);
  int64_t s = 1;
  for (int64_t d = 2; d < input.dim(); ++d) s *= input.size(d);
  return {n, c, s};
}

int64_t grain_rows(int64_t c) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, c)); }

template <class T>
void forward_typed(const Tensor& input, const Tensor& target, LossReduction reduction, int64_t ignore_index,
                   double smoothing, bool log_probs, const Tensor& out, const Tensor& lse_t, const Tensor& count_t) {
  using S = stat_t<T>;
  using Cm = compute_t<T>;
  const Layout L = layout_of(input);
  const T* x = static_cast<const T*>(input.raw_data());
  const int64_t* tgt = static_cast<const int64_t*>(target.raw_data());
  S* lse = log_probs ? nullptr : static_cast<S*>(lse_t.raw_data());
  const int64_t R = L.rows(), C = L.c, stride = L.s;
  std::vector<double> losses(static_cast<size_t>(R));
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  const double keep = 1.0 - smoothing, spread = C > 0 ? smoothing / static_cast<double>(C) : 0.0;

  parallel_for(R, grain_rows(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + L.row_base(r);
      const int64_t t = tgt[r];
      const bool ignored = t == ignore_index;
      const bool bad = !ignored && (t < 0 || t >= C);
      if (bad) {
        int64_t cur = first_bad.load(std::memory_order_relaxed);
        while (r < cur && !first_bad.compare_exchange_weak(cur, r, std::memory_order_relaxed)) {
        }
      }
      double loss = 0.0;
      if (log_probs) {
        if (!ignored && !bad) loss = -static_cast<double>(xr[t * stride]);
      } else {
        // Stable log-sum-exp: max first, then the shifted exponentials (in the compute type, summed
        // in double) and the plain sum for smoothing.
        Cm mx = -std::numeric_limits<Cm>::infinity();
        for (int64_t j = 0; j < C; ++j) mx = std::max(mx, static_cast<Cm>(xr[j * stride]));
        const Cm shift = std::isinf(mx) ? Cm(0) : mx;
        double se = 0.0, sx = 0.0;
        for (int64_t j = 0; j < C; ++j) {
          const Cm v = static_cast<Cm>(xr[j * stride]);
          se += static_cast<double>(std::exp(v - shift));
          sx += static_cast<double>(v);
        }
        const double l = static_cast<double>(shift) + std::log(se);
        lse[r] = static_cast<S>(l);
        if (!ignored && !bad) {
          // (1 - eps) * (lse - x_t) + eps / C * sum_j (lse - x_j)
          loss = l - keep * static_cast<double>(xr[t * stride]);
          if (smoothing != 0.0) loss -= spread * sx;
        }
      }
      losses[static_cast<size_t>(r)] = loss;
    }
  });

  const int64_t bad_row = first_bad.load();
  if (bad_row != std::numeric_limits<int64_t>::max()) {
    EMBER_THROW(log_probs ? "nll_loss" : "cross_entropy", ": target ", tgt[bad_row], " is out of bounds for ", C,
                " classes (expected a class index in [0, ", C, ") or ignore_index ", ignore_index, "; at target position ",
                bad_row, ")");
  }

  int64_t counted = 0;
  for (int64_t r = 0; r < R; ++r) counted += tgt[r] != ignore_index;
  *static_cast<S*>(count_t.raw_data()) = static_cast<S>(counted);
  T* o = static_cast<T*>(out.raw_data());
  if (reduction == LossReduction::None) {
    for (int64_t r = 0; r < R; ++r) o[r] = cast_value<T>(losses[static_cast<size_t>(r)]);
    return;
  }
  double total = 0.0;
  for (double v : losses) total += v;
  if (reduction == LossReduction::Mean) total /= static_cast<double>(counted);  // 0 / 0 = NaN, as PyTorch
  o[0] = cast_value<T>(total);
}

template <class T>
void backward_typed(const Tensor& grad, const Tensor& input, const Tensor& target, const Tensor& lse_t,
                    const Tensor& count_t, LossReduction reduction, int64_t ignore_index, double smoothing,
                    bool log_probs, const Tensor& grad_input) {
  using S = stat_t<T>;
  using Cm = compute_t<T>;
  const Layout L = layout_of(input);
  const T* x = static_cast<const T*>(input.raw_data());
  const int64_t* tgt = static_cast<const int64_t*>(target.raw_data());
  const S* lse = log_probs ? nullptr : static_cast<const S*>(lse_t.raw_data());
  const T* g = static_cast<const T*>(grad.raw_data());
  T* gi = static_cast<T*>(grad_input.raw_data());
  const int64_t R = L.rows(), C = L.c, stride = L.s;
  double scale_all = 0.0;
  if (reduction != LossReduction::None) {
    scale_all = static_cast<double>(g[0]);
    if (reduction == LossReduction::Mean) scale_all /= static_cast<double>(*static_cast<const S*>(count_t.raw_data()));
  }
  const Cm keep = static_cast<Cm>(1.0 - smoothing), spread = static_cast<Cm>(C > 0 ? smoothing / C : 0.0);

  parallel_for(R, grain_rows(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t base = L.row_base(r);
      const T* xr = x + base;
      T* out = gi + base;
      const int64_t t = tgt[r];
      const bool valid = t != ignore_index && t >= 0 && t < C;
      if (!valid) {
        for (int64_t j = 0; j < C; ++j) out[j * stride] = T(0);
        continue;
      }
      const Cm scale = static_cast<Cm>(reduction == LossReduction::None ? static_cast<double>(g[r]) : scale_all);
      if (log_probs) {
        for (int64_t j = 0; j < C; ++j) out[j * stride] = T(0);
        out[t * stride] = cast_value<T>(-scale);
      } else {
        // softmax_j - (1 - eps) [j == t] - eps / C
        const Cm l = static_cast<Cm>(lse[r]);
        for (int64_t j = 0; j < C; ++j) {
          const Cm p = std::exp(static_cast<Cm>(xr[j * stride]) - l);
          out[j * stride] = cast_value<T>(scale * (p - spread - (j == t ? keep : Cm(0))));
        }
      }
    }
  });
}

}  // namespace

void class_loss_forward(const Tensor& input, const Tensor& target, LossReduction reduction, int64_t ignore_index,
                        double smoothing, bool log_probs, const Tensor& out, const Tensor& lse, const Tensor& count) {
  dispatch_floating_and_half(input.dtype(), log_probs ? "nll_loss" : "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_typed<T>(input, target, reduction, ignore_index, smoothing, log_probs, out, lse, count);
  });
}

void class_loss_backward(const Tensor& grad, const Tensor& input, const Tensor& target, const Tensor& lse,
                         const Tensor& count, LossReduction reduction, int64_t ignore_index, double smoothing,
                         bool log_probs, const Tensor& grad_input) {
  dispatch_floating_and_half(input.dtype(), log_probs ? "nll_loss_backward" : "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_typed<T>(grad, input, target, lse, count, reduction, ignore_index, smoothing, log_probs, grad_input);
  });
}

}  // namespace ember::cpu
