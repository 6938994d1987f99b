// ScriptedExecutor: an Executor for serving tests that makes each sequence emit a scripted token
// sequence (chosen by its prompt and the order in which the request's samples appear), with
// deterministic fake logprobs and prompt logprobs, running on its own thread like a real one.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <unordered_map>
#include <vector>

#include "engine/exec/threaded_executor.h"

namespace kl::test {

class ScriptedExecutor final : public ThreadedExecutor {
 public:
  // The tokens that sample `k` (0, 1, ... within one request) of a request with `prompt`
  // generates; past the end of the script it emits `fallback`. Requests with equal prompts and
  // n > 1 must not overlap in time.
  using Script = std::function<std::vector<int32_t>(const std::vector<int32_t>& prompt, int k)>;

  ScriptedExecutor(Script script, int32_t fallback, int32_t num_regular_tokens,
                   int64_t num_pages = 64, int64_t num_state_blocks = 16,
                   std::chrono::microseconds step_delay = std::chrono::microseconds(0));
  ~ScriptedExecutor() override;

  // From the `n`-th executed step on (counted from 1), every step reports a fatal error, as the
  // CUDA executor does after a device fault. 0: never.
  void set_fatal_from_step(int64_t n) { fatal_from_ = n; }

  int64_t num_pages() const override { return num_pages_; }
  int64_t num_state_blocks() const override { return num_blocks_; }

  // The fake logprob of the token sampled at generated position `i`, and of prompt position p.
  static float sampled_logprob(int64_t i) { return -0.5f - 0.125f * static_cast<float>(i); }
  static float prompt_logprob(int64_t p) { return -1.f - 0.0625f * static_cast<float>(p); }

 private:
  struct SeqState {
    std::vector<int32_t> prompt;
    std::vector<int32_t> tokens;  // the script
    int32_t logprobs = -1;
    int32_t prompt_logprobs = -1;
  };
  StepResult run_step(StepPlan plan, Clock::time_point submitted) override;
  StepResult execute(const StepPlan& plan);
  std::vector<kernels::TokenLogprob> alternatives(int32_t token, float logprob, int k) const;

  const Script script_;
  const int32_t fallback_, num_regular_;
  const int64_t num_pages_, num_blocks_;
  const std::chrono::microseconds delay_;
  struct Series {
    int64_t last_id = -1;
    uint64_t last_step = 0;
    int k = -1;
  };
  std::atomic<int64_t> fatal_from_{0};
  int64_t executed_ = 0;                           // executor thread only
  std::unordered_map<int64_t, SeqState> seqs_;     // executor thread only
  std::map<std::vector<int32_t>, Series> series_;  // per prompt: the latest request's samples
};

}  // namespace kl::test
