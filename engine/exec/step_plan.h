// What one engine step asks of an executor (StepPlan) and what comes back (StepResult).
// Metadata only: ids of pages and state blocks, token ids, ranges; no pointers (principle 5).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
  std::vector<int32_t> token_ids;    // the tokens to compute (a decode step has one)
  int64_t num_computed_tokens = 0;   // tokens already in the caches before this step
  std::vector<int32_t> page_table;   // MLA pages covering every token up to the chunk's end
  int32_t state_block = -1;          // KDA state block of the sequence
  bool reset_state = false;          // zero the state block first (a sequence's first chunk)
  LogitsMode logits = LogitsMode::kNone;
};

// A state-block operation, applied before the step's compute, in order.
struct StateBlockOp {
  enum class Kind : uint8_t { kCopy, kReset };
  Kind kind = Kind::kCopy;
  int32_t src = -1;  // kCopy only
  int32_t dst = -1;
};

struct StepPlan {
  uint64_t step_id = 0;
  std::vector<StateBlockOp> block_ops;
  std::vector<SeqStep> seqs;
  std::vector<int64_t> finished_seqs;  // sequences that ended: the executor drops their state
};

struct SeqOutput {
  int64_t seq_id = 0;
  int32_t sampled_token = -1;   // -1 when the step had LogitsMode::kNone
  std::vector<float> logits;    // [rows, vocab] when requested (kLast: 1 row, kAll: chunk rows)
};

struct StepResult {
  uint64_t step_id = 0;
  std::vector<SeqOutput> outputs;  // one per SeqStep with logits != kNone, in plan order
  bool ok = true;
  std::string error;               // set when !ok: the step failed; its sequences' caches are
                                   // undefined and they must be ended or recomputed
};

}  // namespace kl
