// The autograd engine: runs the backward graph in dependency order, one worker thread per extra device.
#pragma once

#include <functional>
#include <vector>

#include "runtime/autograd/node.h"

namespace ember::autograd {

// Note [Engine]
// backward() counts, for every node reachable from the roots, how many edges lead into it, then
// runs nodes whose gradients are complete. Nodes on the root's device run on the calling thread;
// nodes on other devices (cuda:N, or logical cpu:N) run on that device's worker thread, so that
// the devices of a multi-device graph (DataParallel replicas) work in parallel. Gradients for the
// same node input are summed. Without retain_graph, every node that ran is released, and running
// it again is an error. Several threads may run backward on independent graphs at once.
void backward(const tensor_list& roots, const tensor_list& grad_roots, bool retain_graph);

// Runs `callback` on the thread that called backward, once every node of the running backward has
// run and before backward returns (PyTorch's Engine::queue_callback). Callable only from inside a
// backward pass (a hook or a node); the data-parallel reducer uses it to finish its all-reduces.
void queue_callback(std::function<void()> callback);

// Note [Node boundary hook]
// One process-wide function that the engine calls after each node it runs, on the thread that ran it
// (after the node's gradients were handed on, so after AccumulateGrad's hooks), while one is set. The
// MPI backend sets it to advance its collectives in flight from the threads that compute backward
// (Note [MPI progress during backward]). It must be cheap when it has nothing to do, and must not throw.
// nullptr removes it.
using NodeBoundaryHook = void (*)();
void set_node_boundary_hook(NodeBoundaryHook hook);

// Sum of gradients of `outputs` w.r.t. `inputs` without touching .grad (torch.autograd.grad).
tensor_list grad(const tensor_list& outputs, const tensor_list& inputs, const tensor_list& grad_outputs = {},
                 bool retain_graph = false, bool allow_unused = false);

}  // namespace ember::autograd
