// PyTorch-like printing of tensors, shapes and scalars.
#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "runtime/autograd/node.h"
#include "runtime/tensor.h"

namespace ember {

std::ostream& operator<<(std::ostream& os, IntArrayRef r) {
  os << '[';
  for (size_t i = 0; i < r.size(); ++i) os << (i ? ", " : "") << r[i];
  return os << ']';
}

std::ostream& operator<<(std::ostream& os, const DimVector& v) { return os << v.ref(); }

std::ostream& operator<<(std::ostream& os, const Scalar& s) {
  switch (s.kind()) {
    case Scalar::Kind::Double: return os << s.to_double();
    case Scalar::Kind::Int: return os << s.to_int();
    case Scalar::Kind::Bool: return os << (s.to<bool>() ? "true" : "false");
  }
  return os;
}

namespace {

constexpr int64_t kSummarizeThreshold = 1000;
constexpr int64_t kEdgeItems = 3;

// How every element is formatted, decided once from all values (as PyTorch's _Formatter).
struct Formatter {
  enum class Mode { Integer, IntegralFloat, Fixed, Scientific, Bool } mode = Mode::Fixed;
  int width = 1;

  std::string format(double v) const {
    std::ostringstream s;
    switch (mode) {
      case Mode::Bool: s << (v != 0 ? "True" : "False"); break;
      case Mode::Integer: s << static_cast<int64_t>(v); break;
      case Mode::IntegralFloat:
        if (std::isfinite(v))
          s << std::fixed << std::setprecision(0) << v << '.';
        else
          s << (std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
        break;
      case Mode::Fixed:
        if (std::isfinite(v))
          s << std::fixed << std::setprecision(4) << v;
        else
          s << (std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
        break;
      case Mode::Scientific:
        if (std::isfinite(v))
          s << std::scientific << std::setprecision(4) << v;
        else
          s << (std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
        break;
    }
    return s.str();
  }
};

Formatter make_formatter(const std::vector<double>& values, DType dtype) {
  Formatter f;
  if (dtype == kBool) {
    f.mode = Formatter::Mode::Bool;
  } else if (!is_floating_point(dtype)) {
    f.mode = Formatter::Mode::Integer;
  } else {
    bool all_int = true;
    double max_abs = 0, min_abs = INFINITY;
    for (double v : values) {
      if (!std::isfinite(v)) continue;
      if (v != std::nearbyint(v)) all_int = false;
      const double a = std::fabs(v);
      max_abs = std::max(max_abs, a);
      if (a > 0) min_abs = std::min(min_abs, a);
    }
    if (all_int) {
      f.mode = max_abs > 1e8 ? Formatter::Mode::Scientific : Formatter::Mode::IntegralFloat;
    } else if (max_abs > 1e8 || (min_abs < 1e-4) || (min_abs != INFINITY && max_abs / min_abs > 1000)) {
      f.mode = Formatter::Mode::Scientific;
    } else {
      f.mode = Formatter::Mode::Fixed;
    }
  }
  for (double v : values) f.width = std::max<int>(f.width, static_cast<int>(f.format(v).size()));
  return f;
}

// Indices shown along a dim of `size`: all, or the first and last kEdgeItems when summarising.
std::vector<int64_t> shown(int64_t size, bool summarize) {
  std::vector<int64_t> idx;
  if (!summarize || size <= 2 * kEdgeItems) {
    for (int64_t i = 0; i < size; ++i) idx.push_back(i);
  } else {
    for (int64_t i = 0; i < kEdgeItems; ++i) idx.push_back(i);
    idx.push_back(-1);  // the "..." marker
    for (int64_t i = size - kEdgeItems; i < size; ++i) idx.push_back(i);
  }
  return idx;
}

void print_rec(std::ostream& os, const std::vector<double>& values, IntArrayRef sizes, size_t dim, int64_t base,
               const Formatter& f, bool summarize, int indent) {
  int64_t stride = 1;
  for (size_t d = dim + 1; d < sizes.size(); ++d) stride *= sizes[d];
  os << '[';
  const auto idx = shown(sizes[dim], summarize);
  for (size_t k = 0; k < idx.size(); ++k) {
    const bool last_dim = dim + 1 == sizes.size();
    if (k > 0) {
      os << ',';
      if (last_dim) {
        os << ' ';
      } else {
        os << std::string(sizes.size() - dim - 1, '\n') << std::string(static_cast<size_t>(indent + 1), ' ');
      }
    }
    if (idx[k] < 0) {
      os << "...";
      continue;
    }
    if (last_dim) {
      const std::string s = f.format(values[static_cast<size_t>(base + idx[k])]);
      os << std::string(static_cast<size_t>(f.width) - s.size(), ' ') << s;
    } else {
      print_rec(os, values, sizes, dim + 1, base + idx[k] * stride, f, summarize, indent + 1);
    }
  }
  os << ']';
}

}  // namespace

std::string Tensor::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "[ undefined Tensor ]";
  NoGradGuard no_grad;
  const std::vector<double> values = t.to_vector<double>();
  const bool summarize = t.numel() > kSummarizeThreshold;
  std::vector<double> visible;
  if (summarize) {
    // Only the elements that will be shown decide the format.
    const std::vector<int64_t> sizes = t.sizes().vec();
    std::vector<int64_t> counter(sizes.size(), 0);
    for (size_t i = 0; i < values.size(); ++i) {
      int64_t rem = static_cast<int64_t>(i);
      bool vis = true;
      for (size_t d = sizes.size(); d-- > 0;) {
        const int64_t c = rem % sizes[d];
        rem /= sizes[d];
        if (sizes[d] > 2 * kEdgeItems && c >= kEdgeItems && c < sizes[d] - kEdgeItems) vis = false;
      }
      if (vis) visible.push_back(values[i]);
    }
  }
  const Formatter f = make_formatter(summarize ? visible : values, t.dtype());
  os << "tensor(";
  if (t.dim() == 0) {
    os << f.format(values[0]);
  } else {
    print_rec(os, values, t.sizes(), 0, 0, f, summarize, 7);
  }
  if (t.numel() == 0) os << ", size=" << t.sizes();
  os << ", device=" << t.device() << ", dtype=" << t.dtype();
  if (t.grad_fn()) {
    os << ", grad_fn=<" << t.grad_fn()->name() << ">";
  } else if (t.requires_grad()) {
    os << ", requires_grad=True";
  }
  return os << ')';
}

}  // namespace ember
