// Drives an Executor through scripted schedules of several sequences (arrival step, prefill chunk
// sizes, decode steps) and records each sequence's prefill logits, decode logits and greedy
// tokens, so that the same case can be checked alone, batched, chunked and interleaved.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/exec/executor.h"

namespace kl::test {

struct ScriptedSeq {
  std::vector<int32_t> prompt;
  int num_generate = 0;
  int arrival_step = 0;              // first step the sequence takes part in
  std::vector<int64_t> chunk_sizes;  // prefill chunk sizes, cycled; empty = whole prompt at once
};

struct SeqRecord {
  std::vector<float> prefill_logits;  // [prompt_len, vocab]: logits at every prompt position
  std::vector<float> decode_logits;   // [num_generate, vocab]: the logits each token was chosen by
  std::vector<int32_t> generated;     // [num_generate]
  int num_steps = 0;                  // steps the sequence took part in
};

struct RunStats {
  int num_steps = 0;
  int max_seqs_in_step = 0;
  int max_tokens_in_step = 0;
};

// Runs all sequences to completion. Pages are handed out from a shuffled pool (seeded), so page
// tables are not contiguous; sequence i uses state block i. Decode steps name their input with
// kPrevSampledToken, which lets step N+1 be submitted before step N is collected. Throws kl::Error
// when a step fails.
std::vector<SeqRecord> run_scripted(Executor& exec, int64_t vocab,
                                    const std::vector<ScriptedSeq>& seqs, uint64_t page_seed,
                                    RunStats* stats = nullptr);

}  // namespace kl::test
