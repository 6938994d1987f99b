// A sequence as the scheduler sees it: one token stream of a request (a request with n > 1 has
// n sequences), its progress counters (principle 3) and the caches it holds.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/api/sampling_params.h"
#include "engine/cache/cache_coordinator.h"

namespace kl {

enum class SeqStatus : uint8_t { kWaiting, kRunning, kFinished };
enum class FinishReason : uint8_t { kNone, kStop, kLength, kAbort, kError };

const char* finish_reason_name(FinishReason r);  // "stop", "length", "abort", "error"

struct Sequence {
  int64_t id = 0;
  int64_t request_id = 0;
  int index = 0;  // sample index within the request
  std::shared_ptr<const SamplingParams> params;
  int priority = 0;      // lower runs first (vLLM's convention)
  uint64_t arrival = 0;  // admission order of the request
  uint64_t seed = 0;     // random stream of this sample

  std::vector<int32_t> tokens;  // prompt, then generated tokens known on the host
  int64_t num_prompt_tokens = 0;
  int64_t num_computed_tokens = 0;  // tokens whose caches are (or are being) written
  int num_pending = 0;              // sampled in steps still in flight
  int64_t max_total_tokens = 0;     // prompt + max_tokens, capped by max_model_len

  SeqStatus status = SeqStatus::kWaiting;
  FinishReason finish = FinishReason::kNone;
  SeqCache cache;
  bool registered = false;  // the executor holds its sampling state
  bool prompt_logprobs_done = false;
  int num_preemptions = 0;
  // n > 1: the first sample computes the prompt but its last token, then forks this many.
  int num_forks_pending = 0;

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()) + num_pending; }
  int64_t num_generated() const { return static_cast<int64_t>(tokens.size()) - num_prompt_tokens; }
  int64_t fork_point() const { return num_prompt_tokens - 1; }
};

}  // namespace kl
