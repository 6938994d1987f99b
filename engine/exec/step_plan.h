// What one engine step asks of an executor (StepPlan) and what comes back (StepResult).
// Metadata only: ids of pages and state blocks, token ids, ranges; no pointers (principle 5).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/api/sampling_params.h"
#include "kernels/sampling/sampling.h"

namespace kl {

// Token id placeholder meaning "the token the executor sampled for this sequence in the previous
// step", so step N+1 can be planned before step N's tokens reach the host (principle 10).
inline constexpr int32_t kPrevSampledToken = -1;

enum class LogitsMode : uint8_t {
  kNone,  // no logits, nothing sampled (a prefill chunk that does not end the prompt)
  kLast,  // logits of the last token of the chunk; a token is sampled from them
  kAll,   // logits of every token of the chunk (prompt logprobs, tests); samples from the last
};

// One sequence's share of a step: compute tokens [num_computed_tokens, num_computed_tokens +
// token_ids.size()) of the sequence, reading/writing its MLA pages and its KDA state block.
struct SeqStep {
  int64_t seq_id = 0;
  std::vector<int32_t> token_ids;   // the tokens to compute (a decode step has one)
  int64_t num_computed_tokens = 0;  // tokens already in the caches before this step
  std::vector<int32_t> page_table;  // MLA pages covering every token up to the chunk's end
  int32_t state_block = -1;         // KDA state block of the sequence
  bool reset_state = false;         // zero the state block first (a sequence's first chunk)
  LogitsMode logits = LogitsMode::kNone;
  bool sample = true;  // with logits: sample a token from the chunk's last row
  // kAll with prompt logprobs: the prompt token that follows the chunk's last token (-1: none),
  // so every row's next-token logprob can be reported.
  int32_t next_prompt_token = -1;
};

// What the executor needs to sample a sequence, sent once when the sequence (re)enters it (vLLM's
// "new request data"); later steps refer to it by seq_id only.
struct SeqSampling {
  int64_t seq_id = 0;
  std::shared_ptr<const SamplingParams> params;
  uint64_t seed = 0;                       // the sequence's random stream
  std::vector<int32_t> prompt_tokens;      // repetition penalty
  std::vector<int32_t> output_tokens;      // generated before a recompute (penalties, positions)
  std::vector<int32_t> min_tokens_banned;  // EOS and stop ids, banned while below min_tokens
};

// A state-block operation, applied before the step's compute, in order.
struct StateBlockOp {
  enum class Kind : uint8_t { kCopy, kReset };
  Kind kind = Kind::kCopy;
  int32_t src = -1;  // kCopy only
  int32_t dst = -1;
};

// Copy of one MLA page (every MLA layer) before the step's compute: copy-on-write of a shared,
// partially filled page when a sequence forks.
struct PageCopy {
  int32_t src = -1;
  int32_t dst = -1;
};

struct StepPlan {
  uint64_t step_id = 0;
  std::vector<StateBlockOp> block_ops;
  std::vector<PageCopy> page_copies;
  std::vector<SeqSampling> new_seqs;  // registered before the compute
  std::vector<SeqStep> seqs;
  std::vector<int64_t> finished_seqs;  // ended or preempted before this step: dropped first
  bool return_logits = false;          // copy logits rows into SeqOutput (tests, debugging)
};

struct SeqOutput {
  int64_t seq_id = 0;
  int32_t sampled_token = -1;  // -1 when the step had LogitsMode::kNone
  std::vector<float> logits;   // [rows, vocab] (kLast: 1 row, kAll: chunk rows); tests only
  float logprob = 0.f;         // of the sampled token (when the sequence asked for logprobs)
  std::vector<kernels::TokenLogprob> top_logprobs;
  // kAll rows with prompt logprobs: row i holds the logprob of the token after row i's token
  // (first entry) and the top-k; the last row's is empty when next_prompt_token was -1.
  std::vector<std::vector<kernels::TokenLogprob>> prompt_logprobs;
};

struct StepResult {
  uint64_t step_id = 0;
  std::vector<SeqOutput> outputs;  // one per SeqStep with logits != kNone, in plan order
  bool ok = true;
  // The executor can run no further step (a CUDA error poisoned its context): the engine fails
  // every request and the process must exit.
  bool fatal = false;
  std::string error;  // set when !ok: the step failed; its sequences' caches are
                      // undefined and they must be ended or recomputed
};

}  // namespace kl
