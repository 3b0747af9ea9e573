// CPU convolution through oneDNN: plans cached per geometry, scratch memory from ember's host allocator.
#include "kernels/cpu/onednn.h"

#include <omp.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/allocator.h"
#include "runtime/error.h"

namespace ember::cpu::onednn {

// Note [oneDNN convolution]
// oneDNN is the library LibTorch runs its CPU convolutions on. ember hands it float32 NCHW tensors
// as they are; oneDNN picks its own layouts (format_tag::any: blocked nChw16c activations and
// OIhw16i16o weights for its AVX-512/AVX2 JIT kernels) and reorders into and out of them, as
// LibTorch's own NCHW path does. Handing it NCHW as the primitive's own layout instead gets its GEMM
// implementation (gemm:jit): 10.8 ms for the CNN's second layer forward + backward against 5 ms with
// the blocked layouts and the reorders (2 cores, AVX-512).
//
// Plans. Building a primitive descriptor walks oneDNN's implementation list, and a reorder or
// convolution primitive may JIT-compile code: both cost far more than a small convolution, so one
// plan per (direction, geometry, bias, OpenMP thread count) is built once and kept in a map. A plan
// holds the convolution primitive, each operand's layouts (ember's and oneDNN's) with the reorder
// between them, and the scratchpad size. Plans are immutable once built and shared through
// shared_ptr, so DataParallel's worker threads can run one plan at the same time: every primitive
// uses scratchpad_mode::user, which oneDNN documents as thread-safe as long as each execution has
// its own scratchpad. Scratchpads and the buffers of reordered operands come from cpu_allocate,
// whose host cache (Note [Host memory cache]) hands the same blocks back step after step. A geometry
// oneDNN has no implementation for is cached as declined. The map is bounded: past kMaxPlans it is
// emptied (plans in flight live on through their shared_ptr).
//
// Threads. Debian's oneDNN uses the OpenMP runtime (DNNL_CPU_RUNTIME OMP, libgomp: the same pool as
// ember's loops and the OpenMP OpenBLAS), and a primitive splits its work for the thread count it
// was created with, so that count (omp_get_max_threads() at the call) is part of the key: a
// DataParallel worker that runs with fewer threads gets plans of its own. Inside an OpenMP parallel
// region oneDNN would run a plan made for N threads on one; those calls are declined (the im2col path
// runs them on the calling thread).
//
// What oneDNN does not take. float64 (oneDNN 2.6 has no f64 convolution), float16/bfloat16 (CPU
// convolution is float32/float64 only in ember), and whatever a primitive descriptor refuses. The
// im2col path serves those, and is the reference the tests compare this path with
// (kernels/cpu/conv.h: set_conv_algorithm, EMBER_CPU_CONV=im2col).
//
// Measured (bench_torch_compare, conv2d forward + backward of [64, 32, 14, 14] by [64, 32, 3, 3], 2 cores,
// medians of interleaved runs): 4.6 ms here, 7.3 ms LibTorch 1.13, 24.6 ms the im2col path with this
// VM's OpenBLAS (which takes the CPU for a Prescott; 9.4 ms with OPENBLAS_CORETYPE=SkylakeX).

namespace {

using dnnl::memory;
using tag = memory::format_tag;
constexpr size_t kMaxPlans = 1024;

enum class Direction : int64_t { kForward, kBackwardData, kBackwardWeights };

// The key: direction, geometry, bias, thread count.
struct Key {
  std::array<int64_t, 18> v{};
  bool operator==(const Key& o) const { return v == o.v; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 0xcbf29ce484222325ull;
    for (int64_t x : k.v) h = (h ^ static_cast<size_t>(x)) * 0x100000001b3ull;
    return h;
  }
};

// One operand of a plan: ember's layout, the primitive's, and the reorder between them (user -> inner
// for inputs, inner -> user for outputs) when they differ.
struct Operand {
  int arg = 0;
  bool output = false;
  memory::desc user, inner;
  std::optional<dnnl::reorder> reorder;
  memory::desc reorder_scratchpad;
};

struct Plan {
  dnnl::primitive primitive;
  memory::desc scratchpad;
  std::vector<Operand> operands;  // in the order the caller passes the tensors
  std::string impl;
};

// The process-wide engine and plan map. Deliberately never destroyed: oneDNN's own statics may be
// gone by the time ours would be, and a CPU engine holds no resource the OS does not reclaim.
struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::mutex mutex;
  std::unordered_map<Key, std::shared_ptr<const Plan>, KeyHash> plans;
};
Context& context() {
  static Context* ctx = new Context();
  return *ctx;
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

Operand make_operand(int arg, bool output, const memory::desc& user, const memory::desc& inner,
                     const dnnl::engine& eng) {
  Operand op;
  op.arg = arg;
  op.output = output;
  op.user = user;
  op.inner = inner;
  if (user != inner) {
    const dnnl::primitive_attr attr = user_scratchpad();
    dnnl::reorder::primitive_desc pd = output ? dnnl::reorder::primitive_desc(eng, inner, eng, user, attr)
                                              : dnnl::reorder::primitive_desc(eng, user, eng, inner, attr);
    op.reorder_scratchpad = pd.scratchpad_desc();
    op.reorder = dnnl::reorder(pd);
  }
  return op;
}

// Geometry in oneDNN's terms. ember's padding is symmetric; oneDNN checks
// dst = (src + pad_l + pad_r - extent) / stride + 1 with truncating division, which is ember's own
// output-size formula when pad_r = pad_l. oneDNN counts dilation from 0 (1 means one gap).
struct Shapes {
  memory::dims src, weights, bias, dst, strides, dilates, pad;
  bool grouped;
};
Shapes shapes_of(const Tensor& input, const Tensor& weight, const Tensor& out, const Conv2dParams& p) {
  Shapes s;
  const int64_t g = p.groups;
  s.grouped = g > 1;
  s.src = {input.size(0), input.size(1), input.size(2), input.size(3)};
  s.dst = {out.size(0), out.size(1), out.size(2), out.size(3)};
  if (s.grouped)
    s.weights = {g, weight.size(0) / g, weight.size(1), weight.size(2), weight.size(3)};
  else
    s.weights = {weight.size(0), weight.size(1), weight.size(2), weight.size(3)};
  s.bias = {weight.size(0)};
  s.strides = {p.stride[0], p.stride[1]};
  s.dilates = {p.dilation[0] - 1, p.dilation[1] - 1};
  s.pad = {p.padding[0], p.padding[1]};
  return s;
}

Key make_key(Direction d, const Tensor& input, const Tensor& weight, const Tensor& out, const Conv2dParams& p,
             bool bias, int threads) {
  Key k;
  k.v = {static_cast<int64_t>(d),
         input.size(0),
         input.size(1),
         input.size(2),
         input.size(3),
         weight.size(0),
         weight.size(2),
         weight.size(3),
         out.size(2),
         out.size(3),
         p.stride[0],
         p.stride[1],
         p.padding[0],
         p.padding[1],
         p.dilation[0],
         p.dilation[1],
         p.groups * 2 + (bias ? 1 : 0),
         threads};
  return k;
}

memory::desc plain(const memory::dims& d, tag t) { return memory::desc(d, memory::data_type::f32, t); }
memory::desc any(const memory::dims& d) { return memory::desc(d, memory::data_type::f32, tag::any); }

dnnl::convolution_forward::primitive_desc forward_pd(const Shapes& s, bool bias, const dnnl::engine& eng) {
  const memory::desc src = any(s.src), w = any(s.weights), dst = any(s.dst);
  const auto prop = dnnl::prop_kind::forward_training;
  const auto algo = dnnl::algorithm::convolution_direct;
  const dnnl::convolution_forward::desc d =
      bias ? dnnl::convolution_forward::desc(prop, algo, src, w, plain(s.bias, tag::x), dst, s.strides, s.dilates,
                                             s.pad, s.pad)
           : dnnl::convolution_forward::desc(prop, algo, src, w, dst, s.strides, s.dilates, s.pad, s.pad);
  return dnnl::convolution_forward::primitive_desc(d, user_scratchpad(), eng);
}

std::shared_ptr<const Plan> build_plan(Direction dir, const Shapes& s, bool bias, const dnnl::engine& eng) {
  const memory::desc user_src = plain(s.src, tag::nchw), user_dst = plain(s.dst, tag::nchw);
  const memory::desc user_w = plain(s.weights, s.grouped ? tag::goihw : tag::oihw);
  auto plan = std::make_shared<Plan>();
  const dnnl::convolution_forward::primitive_desc fwd = forward_pd(s, bias, eng);
  const auto algo = dnnl::algorithm::convolution_direct;
  switch (dir) {
    case Direction::kForward: {
      plan->primitive = dnnl::convolution_forward(fwd);
      plan->scratchpad = fwd.scratchpad_desc();
      plan->impl = fwd.impl_info_str();
      plan->operands.push_back(make_operand(DNNL_ARG_SRC, false, user_src, fwd.src_desc(), eng));
      plan->operands.push_back(make_operand(DNNL_ARG_WEIGHTS, false, user_w, fwd.weights_desc(), eng));
      if (bias)
        plan->operands.push_back(make_operand(DNNL_ARG_BIAS, false, plain(s.bias, tag::x), fwd.bias_desc(), eng));
      plan->operands.push_back(make_operand(DNNL_ARG_DST, true, user_dst, fwd.dst_desc(), eng));
      break;
    }
    case Direction::kBackwardData: {
      const dnnl::convolution_backward_data::desc d(algo, any(s.src), any(s.weights), any(s.dst), s.strides, s.dilates,
                                                    s.pad, s.pad);
      const dnnl::convolution_backward_data::primitive_desc pd(d, user_scratchpad(), eng, fwd);
      plan->primitive = dnnl::convolution_backward_data(pd);
      plan->scratchpad = pd.scratchpad_desc();
      plan->impl = pd.impl_info_str();
      plan->operands.push_back(make_operand(DNNL_ARG_DIFF_DST, false, user_dst, pd.diff_dst_desc(), eng));
      plan->operands.push_back(make_operand(DNNL_ARG_WEIGHTS, false, user_w, pd.weights_desc(), eng));
      plan->operands.push_back(make_operand(DNNL_ARG_DIFF_SRC, true, user_src, pd.diff_src_desc(), eng));
      break;
    }
    case Direction::kBackwardWeights: {
      const dnnl::convolution_backward_weights::desc d =
          bias ? dnnl::convolution_backward_weights::desc(algo, any(s.src), any(s.weights), plain(s.bias, tag::x),
                                                          any(s.dst), s.strides, s.dilates, s.pad, s.pad)
               : dnnl::convolution_backward_weights::desc(algo, any(s.src), any(s.weights), any(s.dst), s.strides,
                                                          s.dilates, s.pad, s.pad);
      const dnnl::convolution_backward_weights::primitive_desc pd(d, user_scratchpad(), eng, fwd);
      plan->primitive = dnnl::convolution_backward_weights(pd);
      plan->scratchpad = pd.scratchpad_desc();
      plan->impl = pd.impl_info_str();
      plan->operands.push_back(make_operand(DNNL_ARG_DIFF_DST, false, user_dst, pd.diff_dst_desc(), eng));
      plan->operands.push_back(make_operand(DNNL_ARG_SRC, false, user_src, pd.src_desc(), eng));
      plan->operands.push_back(make_operand(DNNL_ARG_DIFF_WEIGHTS, true, user_w, pd.diff_weights_desc(), eng));
      if (bias)
        plan->operands.push_back(
            make_operand(DNNL_ARG_DIFF_BIAS, true, plain(s.bias, tag::x), pd.diff_bias_desc(), eng));
      break;
    }
  }
  return plan;
}

thread_local std::string t_last_forward_impl;

// The plan for `key`, built on first use; null when oneDNN declines the geometry.
std::shared_ptr<const Plan> find_plan(const Key& key, Direction dir, const Shapes& s, bool bias) {
  Context& ctx = context();
  {
    std::lock_guard<std::mutex> lock(ctx.mutex);
    auto it = ctx.plans.find(key);
    if (it != ctx.plans.end()) return it->second;
  }
  // Built outside the lock (it may JIT-compile); a thread that races us builds an equal plan.
  std::shared_ptr<const Plan> plan;
  try {
    plan = build_plan(dir, s, bias, ctx.engine);
  } catch (const dnnl::error& e) {
    if (e.status != dnnl_unimplemented)
      EMBER_THROW("conv2d: oneDNN failed to set up a convolution (", e.what(), ", status ", e.status,
                  "); EMBER_CPU_CONV=im2col runs ember's own path instead");
  }
  std::lock_guard<std::mutex> lock(ctx.mutex);
  if (ctx.plans.size() >= kMaxPlans) ctx.plans.clear();
  return ctx.plans.emplace(key, std::move(plan)).first->second;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream s(context().engine);
  return s;
}

// Runs `plan` on the tensors' memory (in the plan's operand order; null for an operand to skip is not
// allowed). Operands whose layout differs go through a buffer from cpu_allocate and a reorder.
void execute(const Plan& plan, const std::vector<void*>& data) {
  EMBER_ASSERT(data.size() == plan.operands.size(), "oneDNN plan with ", plan.operands.size(), " operands got ",
               data.size());
  const dnnl::engine& eng = context().engine;
  dnnl::stream& s = thread_stream();
  std::unordered_map<int, memory> args;
  std::vector<DataPtr> buffers;  // freed (back to the host cache) when the call returns
  buffers.reserve(plan.operands.size() * 2 + 1);
  auto scratch_memory = [&](const memory::desc& md) {
    buffers.push_back(cpu_allocate(md.get_size()));
    return memory(md, eng, buffers.back().get());
  };
  std::vector<std::pair<const Operand*, std::pair<memory, memory>>> outputs;
  for (size_t i = 0; i < plan.operands.size(); ++i) {
    const Operand& op = plan.operands[i];
    memory user(op.user, eng, data[i]);
    if (!op.reorder) {
      args.emplace(op.arg, user);
      continue;
    }
    memory inner = scratch_memory(op.inner);
    args.emplace(op.arg, inner);
    if (op.output) {
      outputs.push_back({&op, {inner, user}});
      continue;
    }
    std::unordered_map<int, memory> rargs{{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, inner}};
    if (op.reorder_scratchpad.get_size() > 0) rargs.emplace(DNNL_ARG_SCRATCHPAD, scratch_memory(op.reorder_scratchpad));
    op.reorder->execute(s, rargs);
  }
  if (plan.scratchpad.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, scratch_memory(plan.scratchpad));
  plan.primitive.execute(s, args);
  for (auto& [op, mems] : outputs) {
    std::unordered_map<int, memory> rargs{{DNNL_ARG_FROM, mems.first}, {DNNL_ARG_TO, mems.second}};
    if (op->reorder_scratchpad.get_size() > 0)
      rargs.emplace(DNNL_ARG_SCRATCHPAD, scratch_memory(op->reorder_scratchpad));
    op->reorder->execute(s, rargs);
  }
  s.wait();
}

// Whether oneDNN may take this call at all (Note [oneDNN convolution]); the thread count it runs with.
bool usable(const Tensor& input, int& threads) {
  if (input.dtype() != kFloat32 || omp_in_parallel()) return false;
  threads = omp_get_max_threads();
  return true;
}

void run_or_throw(const Plan& plan, const std::vector<void*>& data) {
  try {
    execute(plan, data);
  } catch (const dnnl::error& e) {
    EMBER_THROW("conv2d: oneDNN failed to run a convolution (", plan.impl, ": ", e.what(), ", status ", e.status,
                "); EMBER_CPU_CONV=im2col runs ember's own path instead");
  }
}

}  // namespace

bool compiled() { return true; }

std::string version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

bool conv2d_forward(const Tensor& input, const Tensor& weight, const Tensor& bias, const Tensor& out,
                    const Conv2dParams& p) {
  t_last_forward_impl.clear();
  int threads = 0;
  if (!usable(input, threads)) return false;
  const bool has_bias = bias.defined();
  const Key key = make_key(Direction::kForward, input, weight, out, p, has_bias, threads);
  const std::shared_ptr<const Plan> plan =
      find_plan(key, Direction::kForward, shapes_of(input, weight, out, p), has_bias);
  t_last_forward_impl = plan ? plan->impl : std::string();
  if (!plan) return false;
  std::vector<void*> data{input.raw_data(), weight.raw_data()};
  if (has_bias) data.push_back(bias.raw_data());
  data.push_back(out.raw_data());
  run_or_throw(*plan, data);
  return true;
}

bool conv2d_backward(const Tensor& grad_output, const Tensor& input, const Tensor& weight, const Conv2dParams& p,
                     const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias) {
  int threads = 0;
  if (!usable(input, threads)) return false;
  const Shapes s = shapes_of(input, weight, grad_output, p);
  // Both plans are found before anything runs, so that a declined one leaves every output unwritten.
  std::shared_ptr<const Plan> data_plan, weights_plan;
  if (grad_input.defined()) {
    data_plan = find_plan(make_key(Direction::kBackwardData, input, weight, grad_output, p, false, threads),
                          Direction::kBackwardData, s, false);
    if (!data_plan) return false;
  }
  // The bias gradient rides along with the weight gradient; alone, it is a plain sum (below).
  const bool fused_bias = grad_bias.defined() && grad_weight.defined();
  if (grad_weight.defined()) {
    weights_plan = find_plan(make_key(Direction::kBackwardWeights, input, weight, grad_output, p, fused_bias, threads),
                             Direction::kBackwardWeights, s, fused_bias);
    if (!weights_plan) return false;
  }
  if (data_plan) run_or_throw(*data_plan, {grad_output.raw_data(), weight.raw_data(), grad_input.raw_data()});
  if (weights_plan) {
    std::vector<void*> data{grad_output.raw_data(), input.raw_data(), grad_weight.raw_data()};
    if (fused_bias) data.push_back(grad_bias.raw_data());
    run_or_throw(*weights_plan, data);
  }
  if (grad_bias.defined() && !fused_bias) {
    const float* gy = static_cast<const float*>(grad_output.raw_data());
    float* gb = static_cast<float*>(grad_bias.raw_data());
    const int64_t n = grad_output.size(0), c = grad_output.size(1), hw = grad_output.size(2) * grad_output.size(3);
    for (int64_t co = 0; co < c; ++co) {
      double acc = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < hw; ++j) acc += static_cast<double>(gy[(i * c + co) * hw + j]);
      gb[co] = static_cast<float>(acc);
    }
  }
  return true;
}

bool sgemm(bool trans_a, bool trans_b, int64_t n, int64_t m, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  // dnnl_sgemm is row-major (as cblas with CblasRowMajor) and safe to call from several threads at once;
  // inside an OpenMP parallel region it runs on the calling thread.
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', n, m, k, alpha, a, lda, b, ldb, beta,
                                      c, ldc);
  EMBER_CHECK(st == dnnl_success, "matmul: oneDNN's sgemm failed with status ", static_cast<int>(st), " for [", n,
              ", ", k, "] x [", k, ", ", m, "] (lda ", lda, ", ldb ", ldb, ", ldc ", ldc,
              "); EMBER_CPU_GEMM=openblas runs OpenBLAS instead");
  return true;
}

size_t cached_plans() {
  Context& ctx = context();
  std::lock_guard<std::mutex> lock(ctx.mutex);
  return ctx.plans.size();
}

void clear_cache() {
  Context& ctx = context();
  std::lock_guard<std::mutex> lock(ctx.mutex);
  ctx.plans.clear();
}

std::string last_forward_impl() { return t_last_forward_impl; }

}  // namespace ember::cpu::onednn
