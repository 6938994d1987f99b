// A deterministic host-only executor for engine-loop tests and the scheduler overhead benchmark:
// it "samples" token = f(seq_id, position), optionally sleeps per step, and records when each
// step was submitted, started and finished (to prove the loop overlaps planning with execution).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/exec/executor.h"

namespace kl {

class FakeExecutor final : public Executor {
 public:
  using Clock = std::chrono::steady_clock;
  struct StepTimes {
    uint64_t step_id = 0;
    Clock::time_point submitted, started, finished;
  };

  FakeExecutor(int64_t num_pages, int64_t num_state_blocks, std::chrono::microseconds step_delay,
               int32_t vocab = 1000, int32_t eos_every = 0);
  ~FakeExecutor() override;

  void submit(StepPlan plan) override;
  StepResult collect() override;
  int64_t num_pages() const override { return num_pages_; }
  int64_t num_state_blocks() const override { return num_blocks_; }

  std::vector<StepTimes> timeline() const;
  // The token the fake samples for `seq_id` at `position` (the index of the token produced).
  int32_t token_at(int64_t seq_id, int64_t position) const;

 private:
  void run();

  const int64_t num_pages_, num_blocks_;
  const std::chrono::microseconds delay_;
  const int32_t vocab_, eos_every_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<StepPlan, Clock::time_point>> pending_;
  std::deque<StepResult> done_;
  std::vector<StepTimes> timeline_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kl
