// CollectiveWatchdog (Note [Collective watchdog]): a polling thread, timeouts, one abort.
#include "parallel/comm/watchdog.h"

#include <utility>

#include "runtime/error.h"

namespace ember::parallel {

namespace {
constexpr std::chrono::milliseconds kPollPeriod{1};
}

CollectiveWatchdog::CollectiveWatchdog(std::chrono::milliseconds timeout, std::function<void(const std::string&)> abort)
    : timeout_(timeout), abort_(std::move(abort)) {
  EMBER_CHECK(timeout.count() > 0, "collective timeout must be positive, got ", timeout.count(), " ms");
  thread_ = std::thread([this] { run(); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CollectiveWatchdog::set_timeout(std::chrono::milliseconds timeout) {
  EMBER_CHECK(timeout.count() > 0, "collective timeout must be positive, got ", timeout.count(), " ms");
  std::lock_guard<std::mutex> lock(mutex_);
  timeout_ = timeout;
}

void CollectiveWatchdog::watch(std::string what, Poller poll) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!failure_.empty()) EMBER_THROW(failure_);
    pending_.push_back(Pending{std::move(what), std::move(poll), Clock::now()});
  }
  cv_.notify_all();
}

void CollectiveWatchdog::check() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failure_.empty()) EMBER_THROW(failure_);
}

bool CollectiveWatchdog::failed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return !failure_.empty();
}

size_t CollectiveWatchdog::in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pending_.size();
}

void CollectiveWatchdog::fail_locked(std::unique_lock<std::mutex>& lock, const std::string& message) {
  failure_ = message;
  aborting_ = true;
  pending_.clear();
  auto abort = std::move(abort_);
  abort_ = nullptr;
  // Waiters are woken after the abort, so that when wait_all() throws the communicator is already
  // aborted. No thread may wait while holding what the abort needs (the NCCL launch mutex): barrier()
  // and shutdown() wait without it.
  lock.unlock();
  if (abort) {
    try {
      abort(message);
    } catch (...) {
      // Already failing; the stored message says what happened.
    }
  }
  lock.lock();
  aborting_ = false;
  done_cv_.notify_all();
}

bool CollectiveWatchdog::poll_locked(std::unique_lock<std::mutex>& lock) {
  const auto now = Clock::now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    Poll p;
    try {
      p = it->poll();
    } catch (const std::exception& e) {
      p = Poll{State::Failed, e.what()};
    }
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - it->start);
    if (p.state == State::Done) {
      it = pending_.erase(it);
      continue;
    }
    if (p.state == State::Failed) {
      fail_locked(lock, detail::str_cat(it->what, " failed after ", waited.count(), " ms: ", p.error,
                               "; the communicator was aborted and cannot be used again"));
      return false;
    }
    if (waited > timeout_) {
      fail_locked(lock, detail::str_cat(it->what, " did not complete within the timeout of ", timeout_.count(),
                               " ms (waited ", waited.count(), " ms: a peer stalled, crashed or issued other "
                               "collectives); the communicator was aborted and cannot be used again"));
      return false;
    }
    ++it;
  }
  done_cv_.notify_all();
  return true;
}

void CollectiveWatchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    if (pending_.empty() || !failure_.empty()) {
      cv_.wait(lock, [&] { return stopping_ || (!pending_.empty() && failure_.empty()); });
      continue;
    }
    poll_locked(lock);
    if (!pending_.empty()) cv_.wait_for(lock, kPollPeriod, [&] { return stopping_; });
  }
}

void CollectiveWatchdog::wait_all() {
  std::unique_lock<std::mutex> lock(mutex_);
  done_cv_.wait(lock, [&] { return !aborting_ && (pending_.empty() || !failure_.empty()); });
  if (!failure_.empty()) EMBER_THROW(failure_);
}

}  // namespace ember::parallel
