// Scripted multi-sequence runs over an Executor (see golden_runner.h).
#include "tests/golden/golden_runner.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "engine/core/error.h"
#include "engine/exec/kv_layout.h"

namespace kl::test {

namespace {

struct SeqState {
  int64_t pos = 0;  // tokens scheduled so far (prompt + fed-back generated tokens)
  int decodes_left = 0;
  size_t chunk_index = 0;
  bool started = false;
  bool done = false;
  std::vector<int32_t> pages;
};

}  // namespace

std::vector<SeqRecord> run_scripted(Executor& exec, int64_t vocab,
                                    const std::vector<ScriptedSeq>& seqs, uint64_t page_seed,
                                    RunStats* stats) {
  std::vector<int32_t> free_pages(exec.num_pages());
  std::iota(free_pages.begin(), free_pages.end(), 0);
  std::shuffle(free_pages.begin(), free_pages.end(), std::mt19937_64(page_seed));
  KL_CHECK(static_cast<int64_t>(seqs.size()) <= exec.num_state_blocks(),
           "scripted run needs {} state blocks, executor has {}", seqs.size(),
           exec.num_state_blocks());

  std::vector<SeqState> st(seqs.size());
  std::vector<SeqRecord> rec(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i)
    st[i].decodes_left = std::max(seqs[i].num_generate - 1, 0);

  // Plans are built ahead from the script alone: decode inputs are kPrevSampledToken, so step
  // N+1 can be submitted before step N is collected (the pipelined contract of the executor).
  std::vector<StepPlan> plans;
  std::vector<int64_t> finished;  // reported to the executor in the following plan
  for (int step = 0;; ++step) {
    bool any_left = false;
    StepPlan plan;
    plan.step_id = static_cast<uint64_t>(step);
    plan.return_logits = true;
    plan.finished_seqs.swap(finished);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const ScriptedSeq& s = seqs[i];
      SeqState& q = st[i];
      if (q.done) continue;
      any_left = true;
      if (step < s.arrival_step) continue;
      SeqStep ss;
      ss.seq_id = static_cast<int64_t>(i);
      ss.num_computed_tokens = q.pos;
      ss.state_block = static_cast<int32_t>(i);
      ss.reset_state = !q.started;
      const int64_t prompt_len = static_cast<int64_t>(s.prompt.size());
      if (q.pos < prompt_len) {
        int64_t chunk = prompt_len - q.pos;
        if (!s.chunk_sizes.empty())
          chunk = std::min(chunk, s.chunk_sizes[q.chunk_index++ % s.chunk_sizes.size()]);
        ss.token_ids.assign(s.prompt.begin() + q.pos, s.prompt.begin() + q.pos + chunk);
        ss.logits = LogitsMode::kAll;
      } else {
        ss.token_ids = {kPrevSampledToken};
        ss.logits = LogitsMode::kLast;
        --q.decodes_left;
      }
      q.started = true;
      q.pos += static_cast<int64_t>(ss.token_ids.size());
      while (static_cast<int64_t>(q.pages.size()) * kPageSize < q.pos) {
        KL_CHECK(!free_pages.empty(), "scripted run ran out of pages");
        q.pages.push_back(free_pages.back());
        free_pages.pop_back();
      }
      ss.page_table = q.pages;
      if (q.pos >= prompt_len && q.decodes_left <= 0) {
        q.done = true;
        finished.push_back(ss.seq_id);
      }
      plan.seqs.push_back(std::move(ss));
    }
    if (!any_left) break;
    plans.push_back(std::move(plan));
  }

  size_t submitted = 0;
  for (size_t n = 0; n < plans.size(); ++n) {
    while (submitted < plans.size() && submitted <= n + 1) exec.submit(plans[submitted++]);
    StepResult r = exec.collect();
    KL_CHECK(r.ok, "step {} failed: {}", r.step_id, r.error);
    KL_CHECK(r.step_id == plans[n].step_id, "results out of order: got step {}, expected {}",
             r.step_id, plans[n].step_id);
    if (stats) {
      int64_t tokens = 0;
      for (const auto& ss : plans[n].seqs) tokens += static_cast<int64_t>(ss.token_ids.size());
      stats->num_steps += 1;
      stats->max_seqs_in_step = std::max<int>(stats->max_seqs_in_step, plans[n].seqs.size());
      stats->max_tokens_in_step = std::max<int>(stats->max_tokens_in_step, tokens);
    }
    for (const auto& ss : plans[n].seqs) rec[ss.seq_id].num_steps += 1;
    for (const SeqOutput& o : r.outputs) {
      SeqRecord& sr = rec[o.seq_id];
      const ScriptedSeq& s = seqs[o.seq_id];
      const int64_t prompt_len = static_cast<int64_t>(s.prompt.size());
      const int64_t have_prefill = static_cast<int64_t>(sr.prefill_logits.size()) / vocab;
      if (have_prefill < prompt_len) {
        sr.prefill_logits.insert(sr.prefill_logits.end(), o.logits.begin(), o.logits.end());
        if (static_cast<int64_t>(sr.prefill_logits.size()) / vocab < prompt_len) continue;
        // The prompt's last position chooses the first generated token.
        sr.decode_logits.insert(sr.decode_logits.end(), sr.prefill_logits.end() - vocab,
                                sr.prefill_logits.end());
      } else {
        sr.decode_logits.insert(sr.decode_logits.end(), o.logits.end() - vocab, o.logits.end());
      }
      sr.generated.push_back(o.sampled_token);
    }
  }
  return rec;
}

}  // namespace kl::test
