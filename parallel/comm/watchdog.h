// CollectiveWatchdog: watches collectives in flight and fails them on an error or past a timeout.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace ember::parallel {

// Note [Collective watchdog]
// A collective queued on a GPU (NCCL) returns at once; if a peer never arrives, its kernels spin
// forever and so would any later synchronisation (tensor.cpu(), a stream wait). As PyTorch's c10d
// does, a watchdog thread polls each collective in flight: done (its end event completed), failed
// (NCCL reported an asynchronous error), or still running. Past the timeout or on a failure it calls
// `abort` once (ncclCommAbort: NCCL's kernels then exit and the streams drain) and keeps the error;
// every later call on the communicator rethrows it, and wait_all() throws it to the thread waiting.
// The polling itself is backend-free, so CPU tests drive it with made-up collectives.
class CollectiveWatchdog {
 public:
  enum class State { Running, Done, Failed };
  struct Poll {
    State state = State::Running;
    std::string error;  // for Failed: what the backend reported
  };
  using Poller = std::function<Poll()>;
  using Clock = std::chrono::steady_clock;

  // `abort(reason)` is called at most once, from the watchdog thread or from wait_all's caller.
  CollectiveWatchdog(std::chrono::milliseconds timeout, std::function<void(const std::string&)> abort);
  ~CollectiveWatchdog();  // stops the thread (collectives still in flight are no longer watched)
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // Starts watching a collective described by `what` (e.g. "all_reduce over cuda:0, cuda:1"). Throws the
  // stored failure if the communicator has failed before.
  void watch(std::string what, Poller poll);
  // Blocks until every collective watched so far is done; throws ember::Error on a failure or timeout.
  void wait_all();
  // Throws the stored failure, if any.
  void check() const;
  bool failed() const;
  size_t in_flight() const;
  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds timeout);

 private:
  struct Pending {
    std::string what;
    Poller poll;
    Clock::time_point start;
  };
  void run();
  // Polls the oldest collectives; returns false once a failure was recorded. Called with mutex_ held.
  bool poll_locked(std::unique_lock<std::mutex>& lock);
  void fail_locked(std::unique_lock<std::mutex>& lock, const std::string& message);

  std::chrono::milliseconds timeout_;
  std::function<void(const std::string&)> abort_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;       // new work, stop
  std::condition_variable done_cv_;  // progress, for wait_all
  std::deque<Pending> pending_;
  std::string failure_;
  bool aborting_ = false;  // the abort callback is running: waiters wait for it
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ember::parallel
