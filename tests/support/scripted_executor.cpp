// ScriptedExecutor: scripted tokens per sequence, fake logprobs, the asynchronous contract.
#include "tests/support/scripted_executor.h"

#include <thread>

namespace kl::test {

ScriptedExecutor::ScriptedExecutor(Script script, int32_t fallback, int32_t num_regular_tokens,
                                   int64_t num_pages, int64_t num_state_blocks,
                                   std::chrono::microseconds step_delay)
    : script_(std::move(script)),
      fallback_(fallback),
      num_regular_(num_regular_tokens),
      num_pages_(num_pages),
      num_blocks_(num_state_blocks),
      delay_(step_delay) {
  start_worker();
}

ScriptedExecutor::~ScriptedExecutor() {
  stop_worker();
}

std::vector<kernels::TokenLogprob> ScriptedExecutor::alternatives(int32_t token, float logprob,
                                                                  int k) const {
  // The token itself first, then neighbours, each less likely.
  std::vector<kernels::TokenLogprob> top;
  for (int j = 0; j < k; ++j)
    top.push_back({j == 0 ? token : (token + j) % num_regular_, logprob - static_cast<float>(j)});
  return top;
}

StepResult ScriptedExecutor::execute(const StepPlan& plan) {
  for (int64_t id : plan.finished_seqs) seqs_.erase(id);
  for (const SeqSampling& s : plan.new_seqs) {
    if (seqs_.count(s.seq_id)) continue;  // re-registered after a preemption: same script
    // A request's samples get consecutive seq ids and register within a step or two (n > 1
    // forks right after the prefill); a later request with the same prompt starts again at 0.
    Series& series = series_[s.prompt_tokens];
    const bool same_request =
        series.k >= 0 && s.seq_id == series.last_id + 1 && plan.step_id <= series.last_step + 2;
    series.k = same_request ? series.k + 1 : 0;
    series.last_id = s.seq_id;
    series.last_step = plan.step_id;
    const int k = series.k;
    SeqState st;
    st.prompt = s.prompt_tokens;
    st.tokens = script_(s.prompt_tokens, k);
    st.logprobs = s.params->logprobs;
    st.prompt_logprobs = s.params->prompt_logprobs;
    seqs_[s.seq_id] = std::move(st);
  }
  StepResult r;
  r.step_id = plan.step_id;
  for (const SeqStep& step : plan.seqs) {
    if (step.logits == LogitsMode::kNone) continue;
    const SeqState& st = seqs_.at(step.seq_id);
    SeqOutput o;
    o.seq_id = step.seq_id;
    const int64_t end = step.num_computed_tokens + static_cast<int64_t>(step.token_ids.size());
    if (step.sample) {
      const int64_t i = end - static_cast<int64_t>(st.prompt.size());
      o.sampled_token =
          i >= 0 && i < static_cast<int64_t>(st.tokens.size()) ? st.tokens[i] : fallback_;
      if (st.logprobs >= 0) {
        o.logprob = sampled_logprob(i);
        o.top_logprobs = alternatives(o.sampled_token, o.logprob, st.logprobs);
      }
    }
    if (step.logits == LogitsMode::kAll && st.prompt_logprobs >= 0) {
      for (size_t i = 0; i < step.token_ids.size(); ++i) {
        const int64_t pos = step.num_computed_tokens + static_cast<int64_t>(i);
        const int32_t next =
            i + 1 < step.token_ids.size() ? step.token_ids[i + 1] : step.next_prompt_token;
        std::vector<kernels::TokenLogprob> row;
        if (next >= 0) {
          row.push_back({next, prompt_logprob(pos)});
          for (auto& a : alternatives(next, prompt_logprob(pos) - 1.f, st.prompt_logprobs))
            row.push_back(a);
        }
        o.prompt_logprobs.push_back(std::move(row));
      }
    }
    r.outputs.push_back(std::move(o));
  }
  return r;
}

StepResult ScriptedExecutor::run_step(StepPlan plan, Clock::time_point) {
  if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
  const int64_t fatal_from = fatal_from_.load();
  if (fatal_from > 0 && ++executed_ >= fatal_from) {
    StepResult r;
    r.step_id = plan.step_id;
    r.ok = false;
    r.fatal = true;
    r.error = "CUDA error: an illegal memory access was encountered (scripted)";
    return r;
  }
  return execute(plan);
}

}  // namespace kl::test
