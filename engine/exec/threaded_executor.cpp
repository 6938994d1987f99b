// ThreadedExecutor: a worker thread, an input queue of plans and an output queue of results.
#include "engine/exec/threaded_executor.h"

namespace kl {

ThreadedExecutor::~ThreadedExecutor() {
  stop_worker();
}

void ThreadedExecutor::start_worker() {
  worker_ = std::thread([this] { worker_loop(); });
}

void ThreadedExecutor::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void ThreadedExecutor::submit(StepPlan plan) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.emplace_back(std::move(plan), Clock::now());
  }
  cv_.notify_all();
}

StepResult ThreadedExecutor::collect() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !done_.empty(); });
  StepResult r = std::move(done_.front());
  done_.pop_front();
  return r;
}

void ThreadedExecutor::worker_loop() {
  for (;;) {
    std::pair<StepPlan, Clock::time_point> item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, and everything queued has run
      item = std::move(pending_.front());
      pending_.pop_front();
    }
    StepResult r = run_step(std::move(item.first), item.second);
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_.push_back(std::move(r));
    }
    cv_.notify_all();
  }
}

}  // namespace kl
