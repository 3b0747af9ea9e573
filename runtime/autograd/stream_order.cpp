// The stream-ordering decisions of backward (Note [Stream ordering in backward]).
#include "runtime/autograd/stream_order.h"

#include <algorithm>

namespace ember::autograd {

namespace {

void add_wait(std::vector<StreamWait>& waits, const cuda::Stream& waiter, const MaybeStream& producer) {
  if (!producer || *producer == waiter || producer->device() != waiter.device()) return;
  const StreamWait w{waiter, *producer};
  if (std::find(waits.begin(), waits.end(), w) == waits.end()) waits.push_back(w);
}

}  // namespace

AccumulatePlan plan_accumulate(Device device, const MaybeStream& slot_stream, const MaybeStream& incoming_stream,
                               const MaybeStream& consumer) {
  AccumulatePlan plan;
  if (!device.is_cuda()) return plan;
  if (consumer && consumer->device() == device)
    plan.on = consumer;
  else if (incoming_stream && incoming_stream->device() == device)
    plan.on = incoming_stream;
  else if (slot_stream && slot_stream->device() == device)
    plan.on = slot_stream;
  else
    return plan;  // neither operand says where it was made: nothing to order against
  add_wait(plan.waits, *plan.on, slot_stream);
  add_wait(plan.waits, *plan.on, incoming_stream);
  return plan;
}

std::vector<StreamWait> plan_inputs(const MaybeStream& consumer, const std::vector<MaybeStream>& ready) {
  std::vector<StreamWait> waits;
  if (!consumer) return waits;
  for (const MaybeStream& r : ready) add_wait(waits, *consumer, r);
  return waits;
}

std::vector<StreamWait> plan_final(const std::vector<cuda::Stream>& used,
                                   const std::function<cuda::Stream(int)>& caller_current) {
  std::vector<StreamWait> waits;
  for (const cuda::Stream& s : used) add_wait(waits, caller_current(s.device_index()), s);
  return waits;
}

void apply_waits(const std::vector<StreamWait>& waits) {
  for (const StreamWait& w : waits) w.waiter.wait(w.producer);
}

}  // namespace ember::autograd
