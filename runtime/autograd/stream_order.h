// Which CUDA stream waits on which during backward: the decisions, kept apart from the engine so that
// CPU tests can check them with made-up streams (nothing here calls CUDA but apply_waits).
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "runtime/cuda/stream.h"

namespace ember::autograd {

// The stream a gradient was produced on; nullopt for a host tensor (or no gradient).
using MaybeStream = std::optional<cuda::Stream>;

// `waiter` must not start its next work before what is queued on `producer` so far has finished.
struct StreamWait {
  cuda::Stream waiter;
  cuda::Stream producer;
  bool operator==(const StreamWait& o) const { return waiter == o.waiter && producer == o.producer; }
};

// Note [Stream ordering in backward]
// PyTorch's rule (its InputBuffer), applied wherever a gradient crosses from the stream that made it
// to a stream that uses it:
//  - A node runs on the stream that was current when its forward ran (on its own device). Each input
//    gradient remembers the stream it was produced on: the producer node's stream, or for a gradient
//    on another device (a cross-device copy), the stream current for that device while the producer
//    ran; the root gradients (ones_like or the caller's) are made on the caller's current stream.
//  - Two gradients for the same input are summed on the consumer's stream when the consumer runs on
//    the gradients' device, else on the stream of the gradient that arrives; that stream first waits
//    for the producers of both operands (plan_accumulate).
//  - Before a node runs, its stream waits for the producer of every input gradient on its device
//    that came from another stream (plan_inputs).
//  - At the end of backward the caller's current stream of each device waits for every stream a node
//    ran on, so what backward left in .grad (and the reducer's sums) is ordered before whatever the
//    caller queues next, such as the optimizer step (plan_final).
// A wait is an event recorded on the producer and waited on by the waiter: no host synchronisation.

struct AccumulatePlan {
  MaybeStream on;                 // the stream the sum runs on (nullopt: host tensors)
  std::vector<StreamWait> waits;  // to apply before the sum
};
// `slot` holds a gradient (produced on slot_stream) and `incoming` (on incoming_stream) is added to it;
// both live on `device`; `consumer` is the stream the consuming node will run on (nullopt for a node
// on the host).
AccumulatePlan plan_accumulate(Device device, const MaybeStream& slot_stream, const MaybeStream& incoming_stream,
                               const MaybeStream& consumer);
// Waits before a node running on `consumer` uses input gradients produced on `ready` (deduplicated).
std::vector<StreamWait> plan_inputs(const MaybeStream& consumer, const std::vector<MaybeStream>& ready);
// Waits at the end of backward: caller_current(device index) is the caller's current stream there.
std::vector<StreamWait> plan_final(const std::vector<cuda::Stream>& used,
                                   const std::function<cuda::Stream(int)>& caller_current);

// Records an event on each producer and makes its waiter wait on it (CUDA).
void apply_waits(const std::vector<StreamWait>& waits);

}  // namespace ember::autograd
