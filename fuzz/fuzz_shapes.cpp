// Fuzz target: shape logic of views and shape-changing ops on tiny CPU tensors: view and reshape (with -1),
// flatten, permute, transpose, slice, narrow, select, (un)squeeze, expand, split, contiguous, broadcasting
// add, matmul and cat (kernels/views.cpp, kernels/iter.cpp, kernels/matmul.cpp, kernels/join.cpp).
//
// The input is a little program: a starting shape, then ops with their arguments, each read from the bytes
// (reading past the end gives zeros). A reference model kept here tracks the tensor's logical content (its
// sizes and its row-major values; the start is 0, 1, 2, ...) and decides for each op whether it must throw
// and what it gives. After each op ember must agree: throw ember::Error exactly when the reference says so,
// else give the reference's sizes and values, and for the view ops alias the input with the strides and
// storage offset that the input's own strides imply. Sizes stay tiny (dims of 0..4 from the common cases,
// at most kMaxNumel elements); some argument bytes map to extreme values (INT64_MIN, INT64_MAX, 2^40, ...)
// to probe overflow in the checks; a result too large to materialise ends the program after its sizes
// have been checked.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "fuzz/fuzz_targets.h"
#include "kernels/ops.h"
#include "runtime/factory.h"
#include "runtime/tensor.h"

namespace {

using ember::Tensor;
using Shape = std::vector<int64_t>;

constexpr int64_t kMaxNumel = 4096;
constexpr int kMaxOps = 16;
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

// Findings, all fixed in ember, with reproducers in fuzz/regressions/shapes/: signed overflow in the shape
// checks themselves (narrow's start + length, slice's count and stride for a huge step, view's product of the
// known sizes, numel of an expand to huge sizes), and null + offset in TensorImpl::data() for an empty view at
// a storage offset over an empty storage. The reference below throws where PyTorch does (a numel past int64).

// An empty tensor whose non-zero sizes multiply past int64 (view of an empty tensor as [2^40, 2^40, 2^40, 0],
// say) gets contiguous strides that ember saturates at int64's maximum. PyTorch shares the problem (its
// strides wrap). The view ops' own arithmetic on them is checked (kernels/views.cpp: slice, select,
// unsqueeze), and so, since, are the element-wise iterator's and the reductions' dim coalescing
// (kernels/iter.cpp, kernels/reduce.cpp; ViewsTest.EmptyTensorsWithHugeSizesComputeAsEmpty runs them
// under UBSan). Other ops on such tensors are not audited, so programs still stop at such a tensor
// (extent_overflows() below). Programs also stop at any empty tensor: ops that are linear in a size of an
// empty tensor (unbind or split of [2^40, 0] into 2^40 views) run out of memory, legitimately but uselessly
// for fuzzing; a bound on the sizes such ops are asked for would let fuzzing go on past empty tensors.
bool extent_overflows(const std::vector<int64_t>& s) {
  __int128 p = 1;
  for (int64_t d : s) {
    p *= std::max<int64_t>(d, 1);
    if (p > kI64Max) return true;
  }
  return false;
}

// Whether the element count of `s` (sizes >= 0) exceeds int64; a zero size anywhere makes it 0.
bool numel_overflows(const std::vector<int64_t>& s) {
  __int128 p = 1;
  for (int64_t d : s)
    if (d == 0) return false;
  for (int64_t d : s) {
    p *= d;
    if (p > kI64Max) return true;
  }
  return false;
}

class Bytes {
 public:
  Bytes(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  uint8_t next() { return i_ < n_ ? p_[i_++] : 0; }
  bool done() const { return i_ >= n_; }

  // A size or index argument: mostly -2..5, sometimes an extreme.
  int64_t arg() {
    static const int64_t kExtremes[] = {kI64Min,     kI64Min + 1, -(int64_t{1} << 40), -1000, 1000,
                                        int64_t{1} << 31, int64_t{1} << 32, int64_t{1} << 40, int64_t{1} << 62,
                                        3037000500,  kI64Max - 1, kI64Max,  -3, 6, 7, 8};
    const uint8_t b = next();
    if (b >= 240) return kExtremes[b - 240];
    return static_cast<int64_t>(b % 8) - 2;
  }
  // A dim argument for a tensor of n dims: mostly in [-n-1, n], sometimes an extreme.
  int64_t dim(int64_t n) {
    const uint8_t b = next();
    if (b >= 248) return b & 1 ? kI64Max : kI64Min;
    return static_cast<int64_t>(b % static_cast<uint8_t>(2 * n + 3)) - (n + 1);
  }
  Shape shape(size_t max_dims) {
    Shape s(next() % (max_dims + 1));
    for (int64_t& d : s) d = arg();
    return s;
  }

 private:
  const uint8_t* p_;
  size_t n_, i_ = 0;
};

// Saturating product of sizes (negative sizes count as themselves; the callers check them first).
int64_t numel_of(const Shape& s) {
  __int128 n = 1;
  for (int64_t d : s) {
    n *= d;
    if (n > kI64Max) n = kI64Max;  // only sizes >= 0 reach here
  }
  return static_cast<int64_t>(n);
}

// base + i * stride; past int64 (only an empty tensor's saturated strides get there) the base, as ember keeps.
int64_t moved(int64_t base, int64_t i, int64_t stride) {
  const __int128 v = __int128{base} + __int128{i} * stride;
  return v > kI64Max || v < kI64Min ? base : static_cast<int64_t>(v);
}

Shape contiguous_strides_of(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    // Saturates, as ember does: only a shape with a zero size gets past int64 here, and its strides address
    // nothing.
    if (__builtin_mul_overflow(acc, std::max<int64_t>(s[i], 1), &acc)) acc = kI64Max;
  }
  return st;
}

std::string str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// PyTorch's maybe_wrap_dim: a 0-d tensor accepts dims 0 and -1.
std::optional<int64_t> wrap(int64_t d, int64_t ndim) {
  const int64_t n = std::max<int64_t>(ndim, 1);
  if (d < -n || d >= n) return std::nullopt;
  return d < 0 ? d + n : d;
}

// The reference: logical content (sizes + row-major values). values is empty when numel > kMaxNumel.
struct Ref {
  Shape sizes;
  std::vector<float> values;
  int64_t numel() const { return numel_of(sizes); }
  bool materialised() const { return numel() <= kMaxNumel; }

  // Row-major index -> multi-index.
  Shape unravel(int64_t flat) const {
    Shape idx(sizes.size());
    for (size_t i = sizes.size(); i-- > 0;) {
      idx[i] = flat % sizes[i];
      flat /= sizes[i];
    }
    return idx;
  }
  int64_t ravel(const Shape& idx) const {
    int64_t flat = 0;
    for (size_t i = 0; i < sizes.size(); ++i) flat = flat * sizes[i] + idx[i];
    return flat;
  }
  float at(const Shape& idx) const { return values[static_cast<size_t>(ravel(idx))]; }
};

// Builds a Ref of `sizes` whose element at multi-index idx is f(idx).
template <class F>
Ref make_ref(Shape sizes, F&& f) {
  Ref r;
  r.sizes = std::move(sizes);
  if (!r.materialised()) return r;
  const int64_t n = r.numel();
  r.values.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r.values[static_cast<size_t>(i)] = f(r.unravel(i));
  return r;
}

Tensor make_tensor(const Ref& r) {
  return ember::from_host(r.values.data(), ember::kFloat32, r.sizes, ember::TensorOptions(ember::kFloat32));
}

// A second operand: the current sizes, mutated per dim by the input.
Shape derive_shape(Bytes& in, const Shape& base) {
  Shape s;
  const uint8_t lead = in.next();
  if (lead % 4 == 1 && !base.empty()) s.assign(base.begin() + 1, base.end());  // one dim fewer
  else if (lead % 4 == 2) s = Shape{static_cast<int64_t>(in.next() % 4)}, s.insert(s.end(), base.begin(), base.end());
  else s = base;
  for (int64_t& d : s) {
    const uint8_t b = in.next();
    if (b % 4 == 1) d = 1;
    else if (b % 4 == 2) d = b / 4 % 5;
  }
  return s;
}

Ref iota_ref(Shape sizes, float scale) {
  Ref r;
  r.sizes = std::move(sizes);
  if (!r.materialised()) return r;  // too large to hold: callers check materialised()
  r.values.resize(static_cast<size_t>(r.numel()));
  for (size_t i = 0; i < r.values.size(); ++i) r.values[i] = scale * static_cast<float>(i + 1);
  return r;
}

struct Program {
  Bytes in;
  Ref ref;
  Tensor t;
  std::string log;  // the ops so far, for the failure message
  bool stopped = false;

  [[noreturn]] void mismatch(int line, const std::string& what) {
    ember_fuzz::fail(__FILE__, line, what + "\n  program: " + log);
  }
#define SHAPES_EXPECT(cond, what)                                                  \
  do {                                                                             \
    if (!(cond)) mismatch(__LINE__, std::string("expected ") + #cond + ": " + (what)); \
  } while (0)

  // Runs op (which returns the new tensor) and checks it against `want` (nullopt: must throw).
  // Returns false when the program should stop.
  template <class Op>
  bool apply(const std::string& name, const std::optional<Ref>& want, Op&& op) {
    log += name + "; ";
    Tensor out;
    const bool ok = ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { out = op(); });
    SHAPES_EXPECT(ok == want.has_value(),
                  name + " on " + str(ref.sizes) + ": ember " + (ok ? "gave " + str(out.sizes().vec()) : "threw") +
                      ", the reference " + (want ? "gives " + str(want->sizes) : std::string("throws")));
    if (!ok) return true;
    SHAPES_EXPECT(out.sizes().vec() == want->sizes,
                  name + ": sizes " + str(out.sizes().vec()) + ", expected " + str(want->sizes));
    SHAPES_EXPECT(out.numel() == want->numel(), name + ": numel");
    // Too large to look at, or empty (open finding below): the program ends here; its sizes were right.
    if (!want->materialised() || want->numel() == 0 || extent_overflows(want->sizes)) {
      t = out;
      ref = *want;
      stopped = true;
      return false;
    }
    const std::vector<float> got = out.to_vector<float>();
    SHAPES_EXPECT(got.size() == want->values.size(), name + ": element count");
    for (size_t i = 0; i < got.size(); ++i) {
      const float w = want->values[i];
      SHAPES_EXPECT(std::fabs(got[i] - w) <= 1e-5f * std::max(1.0f, std::fabs(w)),
                    name + ": element " + std::to_string(i) + " is " + std::to_string(got[i]) + ", expected " +
                        std::to_string(w));
    }
    t = out;
    ref = *want;
    return true;
  }

  // For a view op: out aliases in, with these strides and storage offset.
  // unit_dims_free: the stride of a size-1 dim may be anything (view and reshape keep what they had).
  void expect_view(const std::string& name, const Tensor& in, const Tensor& out, Shape strides, int64_t offset,
                   bool unit_dims_free = false) {
    SHAPES_EXPECT(out.is_alias_of(in), name + ": not a view of its input");
    if (out.numel() == 0) return;  // an empty view addresses nothing: its strides and offset are free
    if (unit_dims_free)
      for (size_t i = 0; i < strides.size() && i < static_cast<size_t>(out.dim()); ++i)
        if (out.size(static_cast<int64_t>(i)) == 1) strides[i] = out.stride(static_cast<int64_t>(i));
    SHAPES_EXPECT(out.strides().vec() == strides,
                  name + ": strides " + str(out.strides().vec()) + ", expected " + str(strides));
    SHAPES_EXPECT(out.storage_offset() == offset, name + ": storage offset " + std::to_string(out.storage_offset()) +
                                                      ", expected " + std::to_string(offset));
  }

  // ---- the reference of each op ----------------------------------------------------------------------------

  // view/reshape: the target shape with one -1 inferred, or nullopt.
  std::optional<Shape> infer(const Shape& s) const {
    int infer_at = -1;
    __int128 known = 1;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == -1) {
        if (infer_at >= 0) return std::nullopt;
        infer_at = static_cast<int>(i);
      } else if (s[i] < 0) {
        return std::nullopt;
      } else {
        known *= s[i];
        if (known > kI64Max) known = __int128{kI64Max} + 1;  // larger than any numel; stays > 0
      }
    }
    const int64_t n = ref.numel();
    Shape out = s;
    if (infer_at >= 0) {
      if (known == 0 || n % static_cast<int64_t>(std::min<__int128>(known, kI64Max)) != 0 || known > kI64Max)
        return std::nullopt;
      out[static_cast<size_t>(infer_at)] = n / static_cast<int64_t>(known);
    } else if (known != n) {
      return std::nullopt;
    }
    return out;
  }

  void op_view(bool reshape) {
    const Shape s = in.shape(5);
    const std::optional<Shape> shape = infer(s);
    std::optional<Ref> want;
    if (shape) want = Ref{*shape, ref.values};
    const bool contiguous = t.is_contiguous();
    const Tensor before = t;
    const std::string name = std::string(reshape ? "reshape" : "view") + "(" + str(s) + ")";
    if (!reshape && shape && !contiguous) {
      // A view of a non-contiguous tensor may or may not be possible; either answer is fine, but a view
      // that succeeds must be right.
      log += name + " [non-contiguous]; ";
      Tensor out;
      if (!ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { out = before.view(s); })) return;
      const size_t mark = log.size();
      apply(name, want, [&] { return out; });
      log.resize(mark);
      SHAPES_EXPECT(out.is_alias_of(before), name + ": not a view");
      return;
    }
    apply(name, want, [&] { return reshape ? before.reshape(s) : before.view(s); });
    if (want && contiguous)
      expect_view(name, before, t, contiguous_strides_of(*shape), before.storage_offset(), true);
  }

  void op_flatten() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    const int64_t a = in.dim(n), b = in.dim(n);
    std::optional<Ref> want;
    if (n == 0) {
      if (true) want = Ref{{1}, ref.values};  // ember (as PyTorch) flattens a 0-d tensor to [1] for any dims
    } else {
      const auto s = wrap(a, n), e = wrap(b, n);
      if (s && e && *s <= *e) {
        Shape out(ref.sizes.begin(), ref.sizes.begin() + *s);
        int64_t m = 1;
        for (int64_t d = *s; d <= *e; ++d) m *= ref.sizes[d];
        out.push_back(m);
        out.insert(out.end(), ref.sizes.begin() + *e + 1, ref.sizes.end());
        want = Ref{out, ref.values};
      }
    }
    const Tensor before = t;
    apply("flatten(" + std::to_string(a) + ", " + std::to_string(b) + ")", want, [&] { return before.flatten(a, b); });
  }

  // The reference of r.permute(perm): dim i of the result is dim perm[i] of r.
  Ref permuted(const Ref& r, const Shape& perm) {
    Shape sizes;
    for (int64_t d : perm) sizes.push_back(r.sizes[d]);
    return make_ref(sizes, [&](const Shape& idx) {
      Shape from(idx.size());
      for (size_t i = 0; i < idx.size(); ++i) from[perm[i]] = idx[i];
      return r.at(from);
    });
  }

  void op_permute() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    Shape dims(in.next() % 6);
    for (int64_t& d : dims) d = in.dim(n);
    std::optional<Ref> want;
    Shape src;
    if (static_cast<int64_t>(dims.size()) == n) {
      std::vector<bool> seen(static_cast<size_t>(n), false);
      bool ok = true;
      for (int64_t d : dims) {
        const auto w = wrap(d, n);
        if (!w || seen[static_cast<size_t>(*w)]) {
          ok = false;
          break;
        }
        seen[static_cast<size_t>(*w)] = true;
        src.push_back(*w);
      }
      if (ok) want = permuted(ref, src);
    }
    const Tensor before = t;
    const std::string name = "permute(" + str(dims) + ")";
    apply(name, want, [&] { return before.permute(dims); });
    if (want) {
      Shape strides;
      for (int64_t d : src) strides.push_back(before.stride(d));
      expect_view(name, before, t, strides, before.storage_offset());
    }
  }

  void op_transpose() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    const int64_t a = in.dim(n), b = in.dim(n);
    const auto wa = wrap(a, n), wb = wrap(b, n);
    std::optional<Ref> want;
    Shape perm(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) perm[i] = i;
    if (wa && wb) {
      if (n > 0) std::swap(perm[*wa], perm[*wb]);
      want = permuted(ref, perm);
    }
    const Tensor before = t;
    const std::string name = "transpose(" + std::to_string(a) + ", " + std::to_string(b) + ")";
    apply(name, want, [&] { return before.transpose(a, b); });
    if (want) {
      Shape strides;
      for (int64_t d : perm) strides.push_back(before.stride(d));
      expect_view(name, before, t, strides, before.storage_offset());
    }
  }

  // slice(d, start, end, step) with Python's clamping; shared by narrow.
  std::optional<Ref> slice_ref(int64_t d, int64_t start, int64_t end, int64_t step) const {
    const int64_t size = ref.sizes[d];
    __int128 s = start, e = end;
    if (s < 0) s += size;
    if (e < 0) e += size;
    s = std::clamp<__int128>(s, 0, size);
    e = std::clamp<__int128>(e, s, size);
    Shape sizes = ref.sizes;
    sizes[d] = static_cast<int64_t>((e - s + step - 1) / step);
    const Ref& r = ref;
    const int64_t first = static_cast<int64_t>(s);
    return make_ref(sizes, [&](Shape idx) {
      idx[d] = first + idx[d] * step;
      return r.at(idx);
    });
  }

  void op_slice() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    const int64_t dim = in.dim(n), start = in.arg(), end = in.arg();
    int64_t step = in.arg();
    if (step == -2) step = 1;  // mostly positive steps
    std::optional<Ref> want;
    const auto d = wrap(dim, n);
    int64_t first = 0;
    if (n > 0 && d && step > 0) {
      want = slice_ref(*d, start, end, step);
      __int128 s = start;
      if (s < 0) s += ref.sizes[*d];
      first = static_cast<int64_t>(std::clamp<__int128>(s, 0, ref.sizes[*d]));
    }
    const Tensor before = t;
    const std::string name = "slice(" + std::to_string(dim) + ", " + std::to_string(start) + ", " +
                             std::to_string(end) + ", " + std::to_string(step) + ")";
    apply(name, want, [&] { return before.slice(dim, start, end, step); });
    if (want) {
      Shape strides = before.strides().vec();
      // One element or none keeps the input's stride (ember's rule, kernels/views.cpp); a stride times a huge
      // step that does not fit leaves only the sizes and values checked.
      if (want->sizes[*d] <= 1 || !__builtin_mul_overflow(strides[*d], step, &strides[*d]))
        expect_view(name, before, t, strides, moved(before.storage_offset(), first, before.stride(*d)));
    }
  }

  void op_narrow() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    const int64_t dim = in.dim(n), start = in.arg(), length = in.arg();
    std::optional<Ref> want;
    const auto d = wrap(dim, n);
    __int128 s = start;
    if (n > 0 && d) {
      const int64_t size = ref.sizes[*d];
      if (s < 0) s += size;
      if (s >= 0 && length >= 0 && s + length <= size)
        want = slice_ref(*d, static_cast<int64_t>(s), static_cast<int64_t>(s + length), 1);
    }
    const Tensor before = t;
    const std::string name = "narrow(" + std::to_string(dim) + ", " + std::to_string(start) + ", " +
                             std::to_string(length) + ")";
    apply(name, want, [&] { return before.narrow(dim, start, length); });
    if (want) expect_view(name, before, t, before.strides().vec(),
                          moved(before.storage_offset(), static_cast<int64_t>(s), before.stride(*d)));
  }

  void op_select() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    const int64_t dim = in.dim(n), index = in.arg();
    std::optional<Ref> want;
    const auto d = wrap(dim, n);
    int64_t i = index;
    if (n > 0 && d && index >= -ref.sizes[*d] && index < ref.sizes[*d]) {
      if (i < 0) i += ref.sizes[*d];
      Shape sizes = ref.sizes;
      sizes.erase(sizes.begin() + *d);
      const Ref& r = ref;
      want = make_ref(sizes, [&](Shape idx) {
        idx.insert(idx.begin() + *d, i);
        return r.at(idx);
      });
    }
    const Tensor before = t;
    const std::string name = "select(" + std::to_string(dim) + ", " + std::to_string(index) + ")";
    apply(name, want, [&] { return before.select(dim, index); });
    if (want) {
      Shape strides = before.strides().vec();
      strides.erase(strides.begin() + *d);
      expect_view(name, before, t, strides, moved(before.storage_offset(), i, before.stride(*d)));
    }
  }

  void op_unsqueeze() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    const int64_t dim = in.dim(n + 1);
    std::optional<Ref> want;
    const auto d = wrap(dim, n + 1);
    if (d) {
      Shape sizes = ref.sizes;
      sizes.insert(sizes.begin() + *d, 1);
      want = Ref{sizes, ref.values};
    }
    const Tensor before = t;
    const std::string name = "unsqueeze(" + std::to_string(dim) + ")";
    apply(name, want, [&] { return before.unsqueeze(dim); });
    if (want) {
      Shape strides = before.strides().vec();
      int64_t inserted = 1;  // size * stride, or (an empty tensor's saturated strides) anything
      if (*d < n && __builtin_mul_overflow(before.size(*d), before.stride(*d), &inserted)) inserted = 1;
      strides.insert(strides.begin() + *d, inserted);
      expect_view(name, before, t, strides, before.storage_offset());
    }
  }

  void op_squeeze() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    const bool all = in.next() % 2 == 0;
    const int64_t dim = all ? 0 : in.dim(n);
    std::optional<Ref> want;
    std::vector<bool> drop(static_cast<size_t>(n), false);
    const auto d = wrap(dim, n);
    if (all || d) {
      for (int64_t i = 0; i < n; ++i) drop[i] = ref.sizes[i] == 1 && (all || i == *d);
      Shape sizes;
      for (int64_t i = 0; i < n; ++i)
        if (!drop[i]) sizes.push_back(ref.sizes[i]);
      want = Ref{sizes, ref.values};
    }
    const Tensor before = t;
    const std::string name = all ? std::string("squeeze()") : "squeeze(" + std::to_string(dim) + ")";
    apply(name, want, [&] { return all ? before.squeeze() : before.squeeze(dim); });
    if (want) {
      Shape strides;
      for (int64_t i = 0; i < n; ++i)
        if (!drop[i]) strides.push_back(before.stride(i));
      expect_view(name, before, t, strides, before.storage_offset());
    }
  }

  void op_expand() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    Shape s(static_cast<size_t>(n) + in.next() % 3);
    for (int64_t& d : s) d = in.arg();
    const int64_t m = static_cast<int64_t>(s.size());
    std::optional<Ref> want;
    Shape sizes(s.size()), strides(s.size());
    bool ok = true;
    for (int64_t i = 0; i < m && ok; ++i) {
      const int64_t ti = i - (m - n);
      if (ti < 0) {
        ok = s[i] >= 0;
        sizes[i] = s[i];
        strides[i] = 0;
      } else if (s[i] == -1 || s[i] == ref.sizes[ti]) {
        sizes[i] = ref.sizes[ti];
        strides[i] = t.stride(ti);
      } else {
        ok = ref.sizes[ti] == 1 && s[i] >= 0;
        sizes[i] = s[i];
        strides[i] = 0;
      }
    }
    if (ok && numel_overflows(sizes)) ok = false;  // PyTorch: "numel: integer multiplication overflow"
    if (ok) {
      const Ref& r = ref;
      want = make_ref(sizes, [&](const Shape& idx) {
        Shape from(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) from[i] = r.sizes[i] == 1 ? 0 : idx[i + (m - n)];
        return r.at(from);
      });
    }
    const Tensor before = t;
    const std::string name = "expand(" + str(s) + ")";
    apply(name, want, [&] { return before.expand(s); });
    if (want && want->materialised()) expect_view(name, before, t, strides, before.storage_offset());
  }

  void op_split() {
    const int64_t n = static_cast<int64_t>(ref.sizes.size());
    const int64_t size_arg = in.arg(), dim = in.dim(n);
    const uint8_t pick = in.next();
    std::optional<Ref> want;
    const auto d = wrap(dim, n);
    int64_t count = 0;
    if (n > 0 && d) {
      const int64_t size = ref.sizes[*d];
      if (size_arg > 0 || (size_arg == 0 && size == 0)) {
        count = size == 0 ? 1 : (size + std::min(size_arg, size) - 1) / std::min(size_arg, size);
        if (size_arg > size) count = size == 0 ? 1 : 1;
        const int64_t k = pick % count;
        const int64_t start = size == 0 ? 0 : k * size_arg;
        const int64_t len = size == 0 ? 0 : std::min(size_arg, size - start);
        want = slice_ref(*d, start, start + len, 1);
      }
    }
    const Tensor before = t;
    const std::string name = "split(" + std::to_string(size_arg) + ", " + std::to_string(dim) + ")[" +
                             std::to_string(pick) + " % count]";
    apply(name, want, [&] {
      std::vector<Tensor> parts = before.split(size_arg, dim);
      SHAPES_EXPECT(static_cast<int64_t>(parts.size()) == count,
                    name + ": " + std::to_string(parts.size()) + " pieces, expected " + std::to_string(count));
      return parts[pick % parts.size()];
    });
  }

  void op_contiguous() {
    const Tensor before = t;
    apply("contiguous()", ref, [&] { return before.contiguous(); });
    SHAPES_EXPECT(t.is_contiguous(), "contiguous() gave a non-contiguous tensor");
  }

  void op_add() {
    const Shape other = derive_shape(in, ref.sizes);
    const bool swap = in.next() % 2;
    const Ref b = iota_ref(other, 1000.0f);
    if (!b.materialised()) return;
    // Broadcast shapes: align from the right; sizes must match or one be 1.
    const size_t m = std::max(ref.sizes.size(), other.size());
    Shape sizes(m);
    bool ok = true;
    for (size_t i = 0; i < m; ++i) {
      const int64_t x = i < m - ref.sizes.size() ? 1 : ref.sizes[i - (m - ref.sizes.size())];
      const int64_t y = i < m - other.size() ? 1 : other[i - (m - other.size())];
      ok = ok && (x == y || x == 1 || y == 1);
      sizes[i] = x == 1 ? y : x;
    }
    std::optional<Ref> want;
    if (ok && numel_of(sizes) > kMaxNumel) return;  // a broadcast result too large to allocate: not asked for
    if (ok) {
      const Ref& a = ref;
      want = make_ref(sizes, [&](const Shape& idx) {
        auto pick = [&](const Ref& r) {
          Shape from(r.sizes.size());
          for (size_t i = 0; i < from.size(); ++i) from[i] = r.sizes[i] == 1 ? 0 : idx[i + (m - r.sizes.size())];
          return r.at(from);
        };
        return pick(a) + pick(b);
      });
    }
    const Tensor before = t;
    const Tensor bt = make_tensor(b);
    apply(std::string(swap ? "other.add(t)" : "t.add(other)") + " with other " + str(other), want,
          [&] { return swap ? bt.add(before) : before.add(bt); });
  }

  void op_matmul() {
    const Shape& a = ref.sizes;
    const int64_t na = static_cast<int64_t>(a.size());
    // b: 0-d, 1-d [k] or [..batch.., k, m]; k mostly matching.
    const uint8_t kind = in.next();
    const int64_t k = na > 0 ? a.back() : 0;
    const int64_t kb = kind & 0x80 ? in.next() % 4 : k;
    Shape b;
    if (kind % 8 == 0) {
      b = {};
    } else if (kind % 8 <= 2) {
      b = {kb};
    } else {
      const Shape batch = derive_shape(in, na > 2 ? Shape(a.begin(), a.end() - 2) : Shape{});
      b = batch;
      b.push_back(kb);
      b.push_back(in.next() % 4);
    }
    const bool swap = kind & 0x40;  // b @ a instead
    const Shape& l = swap ? b : a;
    const Shape& r = swap ? a : b;
    const Ref rb = iota_ref(b, 0.5f);
    if (!rb.materialised()) return;
    const Ref& L = swap ? rb : ref;
    const Ref& R = swap ? ref : rb;

    std::optional<Ref> want;
    const size_t nl = l.size(), nr = r.size();
    if (nl >= 1 && nr >= 1 && l.back() == (nr == 1 ? r[0] : r[nr - 2])) {
      const int64_t kk = l.back();
      // Promote 1-d operands, broadcast the batch dims, drop the promoted dims at the end.
      const Shape l2 = nl == 1 ? Shape{1, l[0]} : l;
      const Shape r2 = nr == 1 ? Shape{r[0], 1} : r;
      const Shape lb(l2.begin(), l2.end() - 2), rbt(r2.begin(), r2.end() - 2);
      const size_t m = std::max(lb.size(), rbt.size());
      Shape batch(m);
      bool ok = true;
      for (size_t i = 0; i < m; ++i) {
        const int64_t x = i < m - lb.size() ? 1 : lb[i - (m - lb.size())];
        const int64_t y = i < m - rbt.size() ? 1 : rbt[i - (m - rbt.size())];
        ok = ok && (x == y || x == 1 || y == 1);
        batch[i] = x == 1 ? y : x;
      }
      if (ok) {
        Shape sizes = batch;
        if (nl >= 2) sizes.push_back(l2[l2.size() - 2]);
        if (nr >= 2) sizes.push_back(r2.back());
        // Broadcast batch dims of expanded operands can ask for a product far larger than either: ember would
        // allocate it (as PyTorch would), so such products are not asked for.
        if (numel_of(sizes) > kMaxNumel) return;
        want = make_ref(sizes, [&](const Shape& idx) {
          // idx -> batch index, row i, column j.
          const Shape bi(idx.begin(), idx.begin() + static_cast<int64_t>(m));
          const int64_t i = nl >= 2 ? idx[m] : 0;
          const int64_t j = nr >= 2 ? idx.back() : 0;
          auto element = [&](const Ref& x, const Shape& shape2, size_t nx, int64_t row, int64_t col) {
            const size_t nb = shape2.size() - 2;
            Shape from;
            for (size_t q = 0; q < nb; ++q) from.push_back(shape2[q] == 1 ? 0 : bi[q + (m - nb)]);
            if (nx == 1) from.push_back(shape2[0] == 1 ? col : row);  // [1, k] uses col, [k, 1] uses row
            else from.push_back(row), from.push_back(col);
            return x.at(from);
          };
          double acc = 0;
          for (int64_t q = 0; q < kk; ++q) acc += double(element(L, l2, nl, i, q)) * element(R, r2, nr, q, j);
          return static_cast<float>(acc);
        });
      }
    }
    const Tensor at = t;
    const Tensor bt = make_tensor(rb);
    apply(std::string(swap ? "other.matmul(t)" : "t.matmul(other)") + " with other " + str(b), want,
          [&] { return swap ? bt.matmul(at) : at.matmul(bt); });
  }

  void op_cat() {
    const int64_t dim = in.arg();
    std::vector<Ref> parts{ref};
    size_t cur = 0;  // where the current tensor stands in parts
    const int extra = in.next() % 3;
    for (int e = 0; e < extra; ++e) {
      const uint8_t how = in.next();
      Shape s = ref.sizes;
      if (how % 4 == 0) s = {0};  // PyTorch's legacy empty tensor, skipped whatever its rank
      else if (how % 4 == 1 && !s.empty()) s[in.next() % s.size()] = in.next() % 4;
      else if (how % 4 == 2) s = derive_shape(in, s);
      const Ref p = iota_ref(s, 100.0f * static_cast<float>(e + 1));
      if (!p.materialised()) return;
      if (in.next() % 2) parts.insert(parts.begin(), p), ++cur;
      else parts.push_back(p);
    }
    auto legacy = [](const Ref& r) { return r.sizes.size() == 1 && r.sizes[0] == 0; };
    std::optional<Ref> want;
    const Ref* first = nullptr;
    for (const Ref& p : parts)
      if (!legacy(p) && !first) first = &p;
    if (!first) {
      if (wrap(dim, 1)) want = Ref{{0}, {}};
    } else {
      const int64_t n = static_cast<int64_t>(first->sizes.size());
      const auto d = wrap(dim, n);
      bool ok = n > 0 && d.has_value();
      int64_t total = 0;
      for (const Ref& p : parts) {
        if (!ok || legacy(p)) continue;
        ok = static_cast<int64_t>(p.sizes.size()) == n;
        for (int64_t q = 0; ok && q < n; ++q) ok = q == *d || p.sizes[q] == first->sizes[q];
        if (ok) total += p.sizes[*d];
      }
      if (ok) {
        Shape sizes = first->sizes;
        sizes[*d] = total;
        want = make_ref(sizes, [&](Shape idx) {
          for (const Ref& p : parts) {
            if (legacy(p)) continue;
            if (idx[*d] < p.sizes[*d]) return p.at(idx);
            idx[*d] -= p.sizes[*d];
          }
          return -1.0f;  // unreachable
        });
      }
    }
    std::string name = "cat({";
    for (const Ref& p : parts) name += str(p.sizes) + " ";
    name += "}, " + std::to_string(dim) + ")";
    std::vector<Tensor> tensors;
    // The current tensor (possibly a strided view) takes part where its reference stands.
    for (size_t i = 0; i < parts.size(); ++i) tensors.push_back(i == cur ? t : make_tensor(parts[i]));
    apply(name, want, [&] { return ember::cat(tensors, dim); });
  }

  void run() {
    // The start: up to 4 dims of 0..3, values 0, 1, 2, ...
    Shape sizes(in.next() % 5);
    for (int64_t& d : sizes) d = in.next() % 4;
    ref = iota_ref(sizes, 1.0f);
    t = make_tensor(ref);
    log = "start " + str(sizes) + "; ";
    for (int i = 0; i < kMaxOps && !in.done(); ++i) {
      const size_t before = log.size();
      switch (in.next() % 14) {
        case 0: op_view(false); break;
        case 1: op_view(true); break;
        case 2: op_flatten(); break;
        case 3: op_permute(); break;
        case 4: op_transpose(); break;
        case 5: op_slice(); break;
        case 6: op_narrow(); break;
        case 7: op_select(); break;
        case 8: op_unsqueeze(); break;
        case 9: op_squeeze(); break;
        case 10: op_expand(); break;
        case 11: op_split(); break;
        case 12: op_add(); break;
        case 13: in.next() % 2 ? op_matmul() : op_cat(); break;
      }
      (void)before;
      if (stopped || ref.sizes.size() > 12) break;
    }
  }
#undef SHAPES_EXPECT
};

}  // namespace

int ember_fuzz_shapes(const uint8_t* data, size_t size) {
  Program p{Bytes(data, size), {}, {}, {}, false};
  ember_fuzz::expect_only_ember_errors(__FILE__, __LINE__, [&] { p.run(); });
  return 0;
}
