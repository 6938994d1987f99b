// ThreadedExecutor: the asynchronous half of the Executor contract, shared by every host-side
// executor: submit() queues a plan and returns at once, a worker thread owned here runs the plans
// in order through run_step(), collect() hands the results back in submit order.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/exec/executor.h"

namespace kl {

class ThreadedExecutor : public Executor {
 public:
  using Clock = std::chrono::steady_clock;

  ThreadedExecutor() = default;
  ~ThreadedExecutor() override;  // stop_worker() must have run (in the derived destructor)
  ThreadedExecutor(const ThreadedExecutor&) = delete;
  ThreadedExecutor& operator=(const ThreadedExecutor&) = delete;

  void submit(StepPlan plan) final;
  StepResult collect() final;

 protected:
  // Runs one step on the worker thread; `submitted` is when submit() queued it.
  virtual StepResult run_step(StepPlan plan, Clock::time_point submitted) = 0;
  // Derived constructors call start_worker() once their members exist, and derived destructors
  // call stop_worker() before their members go away (the worker calls run_step()).
  void start_worker();
  void stop_worker();

 private:
  void worker_loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<StepPlan, Clock::time_point>> pending_;
  std::deque<StepResult> done_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace kl
