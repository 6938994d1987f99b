// What an executor remembers of its sequences between steps: how each samples (registered by a
// plan's new_seqs), what it has generated (penalties, positions of the random stream) and the token
// it sampled last (resolves kPrevSampledToken). Shared by the CPU and CUDA executors.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "engine/exec/step_plan.h"
#include "kernels/sampling/sampling.h"

namespace kl {

class SeqRegistry {
 public:
  struct Entry {
    SeqSampling reg;
    std::vector<int32_t> outputs;
  };

  // Drops plan.finished_seqs, registers plan.new_seqs (moved out of the plan) and replaces every
  // kPrevSampledToken in plan.seqs by the sequence's last sampled token (kl::Error if none).
  void begin_step(StepPlan& plan);

  // nullptr for an unregistered sequence (tests, benchmarks: sampled greedily).
  const Entry* find(int64_t seq_id) const;

  // The row parameters and penalty history of e's next sample (views into e).
  static kernels::SamplingRowParams row_params(const Entry& e);
  static kernels::SamplingHistory history(const Entry& e);

  // Records a sampled token (the sequence's next kPrevSampledToken; appended to its outputs when
  // registered).
  void record(int64_t seq_id, int32_t token);

 private:
  std::unordered_map<int64_t, int32_t> last_sampled_;
  std::unordered_map<int64_t, Entry> entries_;
};

// Prompt logprobs of a kAll chunk from its logits rows [rows, vocab]: row r holds the entry of the
// token that follows row r's token (the next chunk token, or step.next_prompt_token for the last
// row; empty when that is -1) followed by the top `k`.
std::vector<std::vector<kernels::TokenLogprob>> prompt_logprobs_of(const float* logits,
                                                                   int64_t rows, int64_t vocab,
                                                                   const SeqStep& step, int32_t k);

}  // namespace kl
