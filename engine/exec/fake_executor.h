// A deterministic host-only executor for engine-loop tests and the scheduler overhead benchmark:
// it "samples" token = f(seq_id, position), optionally sleeps per step, and records when each
// step was submitted, started and finished (to prove the loop overlaps planning with execution).
#pragma once

#include <chrono>
#include <mutex>
#include <vector>

#include "engine/exec/threaded_executor.h"

namespace kl {

class FakeExecutor final : public ThreadedExecutor {
 public:
  struct StepTimes {
    uint64_t step_id = 0;
    Clock::time_point submitted, started, finished;
  };

  FakeExecutor(int64_t num_pages, int64_t num_state_blocks, std::chrono::microseconds step_delay,
               int32_t vocab = 1000, int32_t eos_every = 0);
  ~FakeExecutor() override;

  int64_t num_pages() const override { return num_pages_; }
  int64_t num_state_blocks() const override { return num_blocks_; }

  std::vector<StepTimes> timeline() const;
  // From the `n`-th executed step on (counted from 1), every step reports a fatal error, as the
  // CUDA executor does after a device fault. 0: never. Call before submitting.
  void set_fatal_from_step(int64_t n) { fatal_from_ = n; }
  // The token the fake samples for `seq_id` at `position` (the index of the token produced).
  int32_t token_at(int64_t seq_id, int64_t position) const;

 private:
  StepResult run_step(StepPlan plan, Clock::time_point submitted) override;

  const int64_t num_pages_, num_blocks_;
  const std::chrono::microseconds delay_;
  const int32_t vocab_, eos_every_;
  mutable std::mutex mu_;  // guards timeline_
  std::vector<StepTimes> timeline_;
  int64_t fatal_from_ = 0;
  int64_t executed_ = 0;  // worker thread only
};

}  // namespace kl
