// Fused optimizer updates: argument checks, the CPU/CUDA switch (one CUDA call per device and dtype).
#include "kernels/optim.h"

#include <utility>

#include "kernels/cpu/optim.h"
#include "kernels/cuda/optim.h"
#include "runtime/autograd/node.h"
#include "runtime/cuda/guard.h"

namespace ember {
namespace {

void check_operand(const char* op, size_t i, const Tensor& param, const Tensor& t, const char* what) {
  EMBER_CHECK(t.defined(), op, ": parameter ", i, ": ", what, " is undefined");
  EMBER_CHECK(t.sizes() == param.sizes(), op, ": parameter ", i, ": ", what, " has shape ", t.sizes(),
              " but the parameter has shape ", param.sizes());
  EMBER_CHECK(t.dtype() == param.dtype(), op, ": parameter ", i, ": ", what, " is ", t.dtype(),
              " but the parameter is ", param.dtype());
  EMBER_CHECK(t.device() == param.device(), op, ": parameter ", i, ": ", what, " is on ", t.device(),
              " but the parameter is on ", param.device());
  EMBER_CHECK(t.is_contiguous(), op, ": parameter ", i, ": ", what, " must be contiguous");
}

void check_param(const char* op, size_t i, const Tensor& param, int group, size_t ngroups) {
  EMBER_CHECK(param.defined(), op, ": parameter ", i, " is undefined");
  EMBER_CHECK(param.is_floating_point(), op, ": parameter ", i, " must be floating point, got ", param.dtype());
  EMBER_CHECK(param.is_contiguous(), op, ": parameter ", i, " must be contiguous");
  EMBER_CHECK(group >= 0 && static_cast<size_t>(group) < ngroups, op, ": parameter ", i, " names group ", group,
              " but there are ", ngroups, " groups");
}

// Splits entries by (device, dtype) in order of first appearance and calls run(bucket) for each.
template <class Ref, class F>
void for_each_bucket(const std::vector<Ref>& refs, F&& run) {
  std::vector<std::pair<std::pair<Device, DType>, std::vector<Ref>>> buckets;
  for (const Ref& r : refs) {
    const std::pair<Device, DType> key{r.param.device(), r.param.dtype()};
    auto it = buckets.begin();
    while (it != buckets.end() && it->first != key) ++it;
    if (it == buckets.end()) {
      buckets.emplace_back(key, std::vector<Ref>{});
      it = buckets.end() - 1;
    }
    it->second.push_back(r);
  }
  for (auto& [key, bucket] : buckets) run(key.first, bucket);
}

}  // namespace

void fused_sgd_(const std::vector<SGDParamRef>& params, const std::vector<SGDHyper>& groups) {
  constexpr const char* op = "fused_sgd_";
  bool any_cuda = false;
  for (size_t i = 0; i < params.size(); ++i) {
    const SGDParamRef& r = params[i];
    check_param(op, i, r.param, r.group, groups.size());
    check_operand(op, i, r.param, r.grad, "grad");
    if (groups[static_cast<size_t>(r.group)].momentum != 0.0)
      check_operand(op, i, r.param, r.momentum_buffer, "momentum_buffer");
    any_cuda = any_cuda || r.param.is_cuda();
  }
  if (params.empty()) return;
  if (!any_cuda) {
    cpu::fused_sgd_(params, groups);
  } else {
    for_each_bucket(params, [&](Device device, const std::vector<SGDParamRef>& bucket) {
      if (device.is_cuda()) {
        DeviceGuard guard(device);
        cuda::fused_sgd_(bucket, groups);
      } else {
        cpu::fused_sgd_(bucket, groups);
      }
    });
  }
  for (const SGDParamRef& r : params) {
    autograd::bump_version(r.param);
    if (groups[static_cast<size_t>(r.group)].momentum != 0.0) autograd::bump_version(r.momentum_buffer);
  }
}

void fused_adam_(const std::vector<AdamParamRef>& params, const std::vector<AdamHyper>& groups) {
  constexpr const char* op = "fused_adam_";
  bool any_cuda = false;
  for (size_t i = 0; i < params.size(); ++i) {
    const AdamParamRef& r = params[i];
    check_param(op, i, r.param, r.group, groups.size());
    check_operand(op, i, r.param, r.grad, "grad");
    check_operand(op, i, r.param, r.exp_avg, "exp_avg");
    check_operand(op, i, r.param, r.exp_avg_sq, "exp_avg_sq");
    if (groups[static_cast<size_t>(r.group)].amsgrad) check_operand(op, i, r.param, r.max_exp_avg_sq, "max_exp_avg_sq");
    EMBER_CHECK(r.step >= 1, op, ": parameter ", i, ": step must be at least 1 (the count including this step), got ",
                r.step);
    any_cuda = any_cuda || r.param.is_cuda();
  }
  if (params.empty()) return;
  if (!any_cuda) {
    cpu::fused_adam_(params, groups);
  } else {
    for_each_bucket(params, [&](Device device, const std::vector<AdamParamRef>& bucket) {
      if (device.is_cuda()) {
        DeviceGuard guard(device);
        cuda::fused_adam_(bucket, groups);
      } else {
        cpu::fused_adam_(bucket, groups);
      }
    });
  }
  for (const AdamParamRef& r : params) {
    autograd::bump_version(r.param);
    autograd::bump_version(r.exp_avg);
    autograd::bump_version(r.exp_avg_sq);
    if (groups[static_cast<size_t>(r.group)].amsgrad) autograd::bump_version(r.max_exp_avg_sq);
  }
}

}  // namespace ember
