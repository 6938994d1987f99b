// Sequence registration and sampling parameters, shared by the executors.
#include "engine/exec/seq_registry.h"

#include "engine/core/error.h"
#include "engine/exec/top_logprobs.h"

namespace kl {

void SeqRegistry::begin_step(StepPlan& plan) {
  // Sequences that ended (or were preempted) before this step; a resumed one may be registered
  // again just below.
  for (int64_t id : plan.finished_seqs) {
    last_sampled_.erase(id);
    entries_.erase(id);
  }
  for (SeqSampling& reg : plan.new_seqs) {
    KL_CHECK(reg.params != nullptr, "sequence {} registered without sampling parameters",
             reg.seq_id);
    Entry e;
    e.outputs = reg.output_tokens;
    e.reg = std::move(reg);
    entries_[e.reg.seq_id] = std::move(e);
  }
  for (SeqStep& s : plan.seqs) {
    for (int32_t& t : s.token_ids) {
      if (t != kPrevSampledToken) continue;
      auto it = last_sampled_.find(s.seq_id);
      KL_CHECK(it != last_sampled_.end(),
               "sequence {}: plan names the previous step's token but none was sampled", s.seq_id);
      t = it->second;
    }
  }
}

const SeqRegistry::Entry* SeqRegistry::find(int64_t seq_id) const {
  auto it = entries_.find(seq_id);
  return it == entries_.end() ? nullptr : &it->second;
}

kernels::SamplingRowParams SeqRegistry::row_params(const Entry& e) {
  const SamplingParams& sp = *e.reg.params;
  kernels::SamplingRowParams rp;
  rp.temperature = sp.temperature;
  rp.top_k = sp.top_k;
  rp.top_p = sp.top_p;
  rp.min_p = sp.min_p;
  rp.repetition_penalty = sp.repetition_penalty;
  rp.presence_penalty = sp.presence_penalty;
  rp.frequency_penalty = sp.frequency_penalty;
  rp.seed = e.reg.seed;
  rp.position = e.outputs.size();
  rp.num_logprobs = sp.logprobs;
  return rp;
}

kernels::SamplingHistory SeqRegistry::history(const Entry& e) {
  const SamplingParams& sp = *e.reg.params;
  kernels::SamplingHistory h;
  h.prompt_tokens = e.reg.prompt_tokens.data();
  h.num_prompt_tokens = static_cast<int64_t>(e.reg.prompt_tokens.size());
  h.output_tokens = e.outputs.data();
  h.num_output_tokens = static_cast<int64_t>(e.outputs.size());
  h.logit_bias = sp.logit_bias.data();
  h.num_logit_bias = static_cast<int64_t>(sp.logit_bias.size());
  if (static_cast<int64_t>(e.outputs.size()) < sp.min_tokens) {
    h.banned_tokens = e.reg.min_tokens_banned.data();
    h.num_banned_tokens = static_cast<int64_t>(e.reg.min_tokens_banned.size());
  }
  return h;
}

void SeqRegistry::record(int64_t seq_id, int32_t token) {
  last_sampled_[seq_id] = token;
  auto it = entries_.find(seq_id);
  if (it != entries_.end()) it->second.outputs.push_back(token);
}

std::vector<std::vector<kernels::TokenLogprob>> prompt_logprobs_of(const float* logits,
                                                                   int64_t rows, int64_t vocab,
                                                                   const SeqStep& step, int32_t k) {
  std::vector<std::vector<kernels::TokenLogprob>> out;
  std::vector<float> lp(vocab);
  for (int64_t r = 0; r < rows; ++r) {
    kernels::log_softmax_ref(logits + r * vocab, vocab, lp.data());
    const int32_t next = r + 1 < rows ? step.token_ids[r + 1] : step.next_prompt_token;
    out.push_back(next >= 0 ? top_logprobs_of(lp, k, next) : std::vector<kernels::TokenLogprob>{});
  }
  return out;
}

}  // namespace kl
