// The autograd engine (Note [Engine] in engine.h): dependency counting, ready queues, device workers.
#include "runtime/autograd/engine.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"
#include "runtime/autograd/stream_order.h"
#include "runtime/factory.h"

namespace ember::autograd {

namespace {

std::atomic<NodeBoundaryHook> g_node_boundary_hook{nullptr};  // Note [Node boundary hook]

struct GraphTask;

// A node whose inputs are complete, with those inputs.
struct ReadyItem {
  std::shared_ptr<GraphTask> task;
  std::shared_ptr<Node> node;
  tensor_list inputs;
  std::vector<MaybeStream> ready;  // the stream each input was produced on (Note [Stream ordering in backward])
};

// The gradients gathered for one node's inputs, and where each was produced.
struct InputBuffer {
  tensor_list grads;
  std::vector<MaybeStream> ready;
};

class ReadyQueue {
 public:
  void push(ReadyItem item) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      items_.push_back(std::move(item));
    }
    cv_.notify_one();
  }
  // Blocks until an item is available or `stop` becomes true (returns false then).
  template <class Pred>
  bool pop(ReadyItem& out, Pred stop) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return !items_.empty() || stop(); });
    if (items_.empty()) return false;
    out = std::move(items_.front());
    items_.pop_front();
    return true;
  }
  void notify_all() {
    { std::lock_guard<std::mutex> lock(mutex_); }
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<ReadyItem> items_;
};

struct GraphTask {
  std::mutex mutex;
  bool retain_graph = false;
  Device home_device;  // nodes on this device run on the calling thread
  // Per node: remaining incoming edges, and the gradient buffer (one slot per node input).
  std::unordered_map<Node*, int> dependencies;
  std::unordered_map<Node*, InputBuffer> buffers;
  int outstanding = 0;  // nodes queued or running
  std::exception_ptr error;
  bool finished = false;
  // OpenMP threads for each thread running this task's CPU nodes (0: leave them as they are): see
  // Note [Backward over logical CPU devices].
  int cpu_omp_threads = 0;
  std::vector<cuda::Stream> used_streams;  // CUDA streams nodes ran on (synced with the caller's at the end)
  ReadyQueue local_queue;  // drained by the thread that called backward
  std::vector<std::function<void()>> final_callbacks;  // queue_callback(), run by the caller at the end

  // For grad(): edges whose gradient is captured instead of flowing on, and the nodes that must
  // run to reach them (empty: run everything, i.e. backward()).
  std::unordered_map<Node*, std::vector<std::pair<uint32_t, size_t>>> captures;  // node -> (input_nr, slot)
  std::unordered_set<Node*> needed;
  bool capture_mode = false;
  tensor_list captured;
};

// Worker threads for devices other than the caller's. Created on first use, joined at exit.
class DeviceWorkers {
 public:
  ~DeviceWorkers() {
    stopping_ = true;
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [id, worker] : workers_) worker->queue.notify_all();
    for (auto& [id, worker] : workers_)
      if (worker->thread.joinable()) worker->thread.join();
  }

  ReadyQueue& queue_for(Device device) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = workers_[device.flat_index()];
    if (!slot) {
      slot = std::make_unique<Worker>();
      Worker* w = slot.get();
      w->thread = std::thread([this, w, device] { run(w, device); });
    }
    return slot->queue;
  }

 private:
  struct Worker {
    ReadyQueue queue;
    std::thread thread;
  };
  void run(Worker* w, Device device);

  std::mutex mutex_;
  std::atomic<bool> stopping_{false};
  std::unordered_map<int, std::unique_ptr<Worker>> workers_;
};

// The graph task whose node this thread is running (for queue_callback).
thread_local GraphTask* current_task = nullptr;

struct CurrentTaskScope {
  explicit CurrentTaskScope(GraphTask* t) : previous(current_task) { current_task = t; }
  ~CurrentTaskScope() { current_task = previous; }
  GraphTask* previous;
};

DeviceWorkers& workers() {
  static DeviceWorkers instance;
  return instance;
}

// Note [Backward over logical CPU devices]
// Nodes on cpu:1 run on the engine's worker thread for cpu:1 while the caller runs those of cpu:0 (a
// DataParallel backward over logical CPU devices), and each would start an OpenMP team as large as the
// machine (and OpenBLAS, whose OpenMP build follows the calling thread's setting, threads its GEMMs as
// wide): k devices oversubscribe the cores k times, and the spinning teams made an MLP step over
// cpu:0,cpu:1 five times slower than on one device. So when a graph spans k > 1 CPU devices, every
// thread runs its CPU nodes with 1/k of the caller's OpenMP threads, as run_on_devices does for the
// forward (parallel/parallel.cpp).
class OmpThreadsScope {
 public:
  explicit OmpThreadsScope(int threads) : previous_(threads > 0 ? omp_get_max_threads() : 0) {
    if (threads > 0) omp_set_num_threads(threads);
  }
  ~OmpThreadsScope() {
    if (previous_ > 0) omp_set_num_threads(previous_);
  }
  OmpThreadsScope(const OmpThreadsScope&) = delete;
  OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

 private:
  int previous_;
};

// The stream a node runs on (nullopt for a node on the host).
MaybeStream stream_of(const Node& node) {
  if (!node.device().is_cuda()) return std::nullopt;
  return cuda::Stream(node.device(), node.stream());
}

// A gradient made on one stream and used on another: the caching allocator must not hand its memory to
// the producer's stream again before the user's work has run (PyTorch's InputBuffer records it too).
void record_use(const Tensor& t, const MaybeStream& produced, const cuda::Stream& user) {
  if (t.defined() && t.is_cuda() && produced && *produced != user && t.device() == user.device()) t.record_stream(user);
}

// Adds `grad` (produced on `ready`) into slot `i` of `buffer`, the inputs of `consumer`: summing
// gradients that reach the same input, on the stream Note [Stream ordering in backward] picks.
void accumulate_into(InputBuffer& buffer, const Node& consumer, size_t i, Tensor grad, const MaybeStream& ready) {
  if (!grad.defined()) return;
  if (!buffer.grads[i].defined()) {
    buffer.grads[i] = std::move(grad);
    buffer.ready[i] = ready;
    return;
  }
  const AccumulatePlan plan = plan_accumulate(grad.device(), buffer.ready[i], ready, stream_of(consumer));
  NoGradGuard no_grad;
  if (plan.on) {
    apply_waits(plan.waits);
    record_use(buffer.grads[i], buffer.ready[i], *plan.on);
    record_use(grad, ready, *plan.on);
    cuda::StreamGuard guard(*plan.on);
    buffer.grads[i] = buffer.grads[i] + grad;
  } else {
    buffer.grads[i] = buffer.grads[i] + grad;
  }
  buffer.ready[i] = plan.on;
}

// The stream `grad` was just produced on by the running thread (nullopt for host tensors).
MaybeStream produced_on(const Tensor& grad) {
  if (!grad.defined() || !grad.is_cuda()) return std::nullopt;
  return cuda::current_stream(grad.device().index());
}

void validate_output(const Node& node, size_t i, Tensor& grad, const InputMeta& meta) {
  if (!grad.defined()) return;
  if (grad.sizes() != meta.sizes.ref()) {
    // A gradient that is a broadcast of the expected shape is summed down (as PyTorch does).
    EMBER_CHECK(grad.numel() > 0 || product(meta.sizes) == 0, "autograd: function ", node.name(),
                " returned an invalid gradient at index ", i, ": got shape ", grad.sizes(), " but expected ",
                meta.sizes);
    grad = sum_to(grad, meta.sizes);
    EMBER_CHECK(grad.sizes() == meta.sizes.ref(), "autograd: function ", node.name(),
                " returned an invalid gradient at index ", i, ": got shape ", grad.sizes(), " but expected ",
                meta.sizes);
  }
  EMBER_CHECK(grad.dtype() == meta.dtype, "autograd: function ", node.name(), " returned a gradient of dtype ",
              grad.dtype(), " at index ", i, " but the input has dtype ", meta.dtype);
  if (grad.device() != meta.device) grad = grad.to(meta.device);
}

void dispatch_ready(const std::shared_ptr<GraphTask>& task, std::shared_ptr<Node> node, InputBuffer inputs);

// Runs one node and hands its gradients on. Errors end the task.
void execute(const std::shared_ptr<GraphTask>& task, const std::shared_ptr<Node>& node, tensor_list inputs,
             const std::vector<MaybeStream>& ready) {
  try {
    bool skip;
    {
      std::lock_guard<std::mutex> lock(task->mutex);
      skip = task->error != nullptr;
    }
    if (!skip) {
      tensor_list outputs;
      std::vector<MaybeStream> outputs_ready;
      const auto& edges = node->next_edges();
      {
        CurrentTaskScope scope(task.get());
        NoGradGuard no_grad;
        DeviceGuard device_guard(node->device());
        OmpThreadsScope omp_share(node->device().is_cpu() ? task->cpu_omp_threads : 0);
        const MaybeStream stream = stream_of(*node);
        std::optional<cuda::StreamGuard> stream_guard;
        if (stream) {
          stream_guard.emplace(*stream);
          apply_waits(plan_inputs(stream, ready));
          for (size_t i = 0; i < inputs.size() && i < ready.size(); ++i) record_use(inputs[i], ready[i], *stream);
          std::lock_guard<std::mutex> lock(task->mutex);
          if (std::find(task->used_streams.begin(), task->used_streams.end(), *stream) == task->used_streams.end())
            task->used_streams.push_back(*stream);
        }
        if (node->has_pre_hooks()) node->run_pre_hooks(inputs);
        if (node->released())
          EMBER_THROW("autograd: trying to backward through the graph a second time (node ", node->name(),
                      "): its saved tensors were freed by the first backward; pass retain_graph=true to the "
                      "first backward() if you need to call it twice");
        outputs = node->apply(std::move(inputs));
        if (!task->retain_graph && !node->is_accumulate_grad()) node->mark_released();
        EMBER_CHECK(outputs.size() == edges.size(), "autograd: function ", node->name(), " returned ",
                    outputs.size(), " gradients but has ", edges.size(), " inputs");
        // Still under the node's stream: a move to another device is ordered after the producer, and each
        // gradient's stream is the one current for its device while this node ran.
        outputs_ready.resize(outputs.size());
        for (size_t i = 0; i < edges.size(); ++i) {
          const Edge& e = edges[i];
          if (!e.valid()) continue;
          validate_output(*node, i, outputs[i], e.fn->input_meta()[e.input_nr]);
          outputs_ready[i] = produced_on(outputs[i]);
        }
      }
      // Hand gradients on; collect nodes that became ready.
      std::vector<std::pair<std::shared_ptr<Node>, InputBuffer>> now_ready;
      {
        std::lock_guard<std::mutex> lock(task->mutex);
        for (size_t i = 0; i < edges.size(); ++i) {
          const Edge& e = edges[i];
          if (!e.valid()) continue;
          auto dep = task->dependencies.find(e.fn.get());
          if (dep == task->dependencies.end()) continue;  // not part of this task (grad(): pruned)
          auto& buffer = task->buffers[e.fn.get()];
          if (buffer.grads.empty()) {
            buffer.grads.resize(e.fn->num_inputs());
            buffer.ready.resize(e.fn->num_inputs());
          }
          accumulate_into(buffer, *e.fn, e.input_nr, std::move(outputs[i]), outputs_ready[i]);
          if (--dep->second == 0) {
            now_ready.emplace_back(e.fn, std::move(buffer));
            task->buffers.erase(e.fn.get());
          }
        }
      }
      for (auto& [next, next_inputs] : now_ready) dispatch_ready(task, std::move(next), std::move(next_inputs));
      if (const NodeBoundaryHook hook = g_node_boundary_hook.load(std::memory_order_acquire)) hook();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(task->mutex);
    if (!task->error) task->error = std::current_exception();
  }
  bool done;
  {
    std::lock_guard<std::mutex> lock(task->mutex);
    done = --task->outstanding == 0;
    if (done) task->finished = true;
  }
  if (done) task->local_queue.notify_all();
}

// A node's inputs are complete: capture what grad() asked for, then queue it on its device.
void dispatch_ready(const std::shared_ptr<GraphTask>& task, std::shared_ptr<Node> node, InputBuffer inputs) {
  if (task->capture_mode) {
    std::lock_guard<std::mutex> lock(task->mutex);
    auto c = task->captures.find(node.get());
    if (c != task->captures.end())
      for (auto [input_nr, slot] : c->second) {
        task->captured[slot] = inputs.grads[input_nr];
        const MaybeStream& r = inputs.ready[input_nr];
        if (r && std::find(task->used_streams.begin(), task->used_streams.end(), *r) == task->used_streams.end())
          task->used_streams.push_back(*r);  // grad() returns it to the caller: order it before the caller's stream
      }
    if (!task->needed.count(node.get())) return;
  }
  {
    std::lock_guard<std::mutex> lock(task->mutex);
    ++task->outstanding;
  }
  ReadyItem item{task, std::move(node), std::move(inputs.grads), std::move(inputs.ready)};
  if (item.node->device() == task->home_device) {
    task->local_queue.push(std::move(item));
  } else {
    workers().queue_for(item.node->device()).push(std::move(item));
  }
}

void DeviceWorkers::run(Worker* w, Device device) {
  if (device.is_cuda()) {
    // The worker's current device is its own for its lifetime.
    try {
      cuda::set_device(device.index());
    } catch (...) {
    }
  }
  while (true) {
    ReadyItem item;
    if (!w->queue.pop(item, [this] { return stopping_.load(); })) return;
    execute(item.task, item.node, std::move(item.inputs), item.ready);
  }
}

// Counts incoming edges of every node reachable from `roots`, and sets the task's OpenMP share.
void compute_dependencies(GraphTask& task, const std::vector<Node*>& roots) {
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  std::vector<bool> cpu_seen;  // by logical CPU index
  int cpu_devices = 0;
  for (Node* r : roots)
    if (seen.insert(r).second) stack.push_back(r);
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (n->device().is_cpu()) {
      const auto index = static_cast<size_t>(n->device().index());
      if (index >= cpu_seen.size()) cpu_seen.resize(index + 1);
      if (!cpu_seen[index]) {
        cpu_seen[index] = true;
        ++cpu_devices;
      }
    }
    task.dependencies.try_emplace(n, 0);
    for (const Edge& e : n->next_edges()) {
      if (!e.valid()) continue;
      ++task.dependencies[e.fn.get()];
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }
  if (cpu_devices > 1) task.cpu_omp_threads = std::max(1, omp_get_max_threads() / cpu_devices);
}

// Marks the nodes from which a captured edge can be reached (grad()): only they need to run.
void compute_needed(GraphTask& task, const std::vector<Node*>& roots) {
  std::unordered_map<Node*, bool> memo;
  std::function<bool(Node*)> visit = [&](Node* n) -> bool {
    auto it = memo.find(n);
    if (it != memo.end()) return it->second;
    memo[n] = false;  // cycles cannot occur; this just guards re-entry
    bool need = false;
    for (const Edge& e : n->next_edges()) {
      if (!e.valid()) continue;
      const bool captured_here = task.captures.count(e.fn.get()) > 0;
      const bool downstream = visit(e.fn.get());
      need = need || captured_here || downstream;
    }
    memo[n] = need;
    if (need) task.needed.insert(n);
    return need;
  };
  for (Node* r : roots) visit(r);
}

tensor_list run_backward(const tensor_list& roots, const tensor_list& grad_roots, bool retain_graph,
                         const tensor_list* inputs, bool allow_unused) {
  EMBER_CHECK(!roots.empty(), "backward: no tensors given");
  EMBER_CHECK(grad_roots.empty() || grad_roots.size() == roots.size(), "backward: got ", roots.size(),
              " tensors but ", grad_roots.size(), " gradients");
  auto task = std::make_shared<GraphTask>();
  task->retain_graph = retain_graph;
  task->home_device = roots[0].device();

  // Root edges and their gradients.
  std::vector<Edge> root_edges;
  tensor_list root_grads;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    EMBER_CHECK(r.defined(), "backward: tensor ", i, " is undefined");
    EMBER_CHECK(r.requires_grad(), "backward: element ", i,
                " of tensors does not require grad and does not have a grad_fn (it was not computed from a tensor "
                "with requires_grad_(), or grad mode was off)");
    Tensor g = grad_roots.empty() ? Tensor() : grad_roots[i];
    if (!g.defined()) {
      EMBER_CHECK(r.numel() == 1, "backward: grad can be implicitly created only for scalar outputs; the tensor has "
                  "shape ", r.sizes(), ", so pass a gradient of that shape");
      g = ones_like(r);
    } else {
      EMBER_CHECK(g.sizes() == r.sizes(), "backward: the gradient has shape ", g.sizes(), " but the tensor has shape ",
                  r.sizes());
      EMBER_CHECK(g.dtype() == r.dtype(), "backward: the gradient has dtype ", g.dtype(), " but the tensor has dtype ",
                  r.dtype());
      EMBER_CHECK(g.device() == r.device(), "backward: the gradient is on ", g.device(), " but the tensor is on ",
                  r.device());
    }
    root_edges.push_back(gradient_edge(r));
    root_grads.push_back(g.detach());
  }

  if (inputs) {
    task->capture_mode = true;
    task->captured.resize(inputs->size());
    for (size_t i = 0; i < inputs->size(); ++i) {
      const Tensor& in = (*inputs)[i];
      EMBER_CHECK(in.defined() && in.requires_grad(), "grad: input ", i, " does not require grad");
      Edge e = gradient_edge(in);
      task->captures[e.fn.get()].emplace_back(e.input_nr, i);
    }
  }

  // A synthetic root node whose next edges are the roots': the graph then has one entry point.
  struct GraphRoot final : Node {
    tensor_list grads;
    std::string name() const override { return "GraphRoot"; }
    tensor_list apply(tensor_list&&) override { return grads; }
  };
  auto root = std::make_shared<GraphRoot>();
  root->grads = root_grads;
  root->mutable_next_edges() = root_edges;
  root->set_device(task->home_device);

  compute_dependencies(*task, {root.get()});
  if (task->capture_mode) {
    compute_needed(*task, {root.get()});
    task->needed.insert(root.get());  // runs even when no input is reachable (then all are unused)
  }
  // The caller runs nodes of the home device; keep the caller's current device/stream meaning.
  dispatch_ready(task, root, InputBuffer{});

  // Drain the local queue until the whole task is finished.
  while (true) {
    ReadyItem item;
    const bool got = task->local_queue.pop(item, [&] {
      std::lock_guard<std::mutex> lock(task->mutex);
      return task->finished;
    });
    if (!got) break;
    execute(item.task, item.node, std::move(item.inputs), item.ready);
  }
  {
    std::lock_guard<std::mutex> lock(task->mutex);
    if (task->error) std::rethrow_exception(task->error);
  }
  // What backward produced is ordered before the caller's current streams (and so before the final
  // callbacks' work, which the caller's thread queues on them).
  apply_waits(plan_final(task->used_streams, [](int device) { return cuda::current_stream(device); }));
  // Final callbacks may queue further callbacks.
  while (true) {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard<std::mutex> lock(task->mutex);
      callbacks.swap(task->final_callbacks);
    }
    if (callbacks.empty()) break;
    CurrentTaskScope scope(task.get());
    for (auto& cb : callbacks) cb();
  }
  if (inputs && !allow_unused) {
    for (size_t i = 0; i < task->captured.size(); ++i)
      EMBER_CHECK(task->captured[i].defined(), "grad: input ", i,
                  " was not used in the graph (pass allow_unused=true to get an undefined gradient)");
  }
  return task->captured;
}

}  // namespace

void set_node_boundary_hook(NodeBoundaryHook hook) { g_node_boundary_hook.store(hook, std::memory_order_release); }

void queue_callback(std::function<void()> callback) {
  GraphTask* task = current_task;
  EMBER_CHECK(task != nullptr, "queue_callback: called outside of a backward pass");
  std::lock_guard<std::mutex> lock(task->mutex);
  task->final_callbacks.push_back(std::move(callback));
}

void backward(const tensor_list& roots, const tensor_list& grad_roots, bool retain_graph) {
  run_backward(roots, grad_roots, retain_graph, nullptr, false);
}

tensor_list grad(const tensor_list& outputs, const tensor_list& inputs, const tensor_list& grad_outputs,
                 bool retain_graph, bool allow_unused) {
  return run_backward(outputs, grad_outputs, retain_graph, &inputs, allow_unused);
}

}  // namespace ember::autograd
