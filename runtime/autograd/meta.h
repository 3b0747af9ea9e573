// AutogradMeta: the per-tensor autograd state (requires_grad, grad, grad_fn, hooks).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "runtime/tensor.h"

namespace ember::autograd {

class Node;

struct AutogradMeta {
  bool requires_grad = false;  // for leaves; a non-leaf requires grad through its grad_fn
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  // A leaf's AccumulateGrad node, shared by every graph that uses the leaf.
  std::weak_ptr<Node> grad_accumulator;
  // Hooks on a leaf's incoming gradient (a non-leaf's hooks live on its grad_fn) and after
  // accumulation. Handles index these vectors; removed hooks become empty functions.
  std::vector<Tensor::Hook> hooks;
  std::vector<Tensor::VoidHook> post_accumulate_hooks;
  bool retains_grad = false;
  // Guards grad and the hook lists: backward may accumulate from several device threads.
  std::mutex mutex;
};

}  // namespace ember::autograd
