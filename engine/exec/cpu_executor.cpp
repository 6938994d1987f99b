// The CPU reference executor: a worker thread that applies cache ops, runs the forward pass and
// samples, one plan at a time in submit order.
#include "engine/exec/cpu_executor.h"

#include "engine/core/error.h"
#include "kernels/sampling/greedy.h"
#include "kernels/sampling/sampling.h"

namespace kl {

CpuExecutor::CpuExecutor(const ModelConfig& config, ModelWeights weights, int64_t num_pages,
                         int64_t num_state_blocks)
    : config_(config), weights_(std::move(weights)), caches_(config_, num_pages, num_state_blocks) {
  start_worker();
}

CpuExecutor::~CpuExecutor() {
  stop_worker();
}

StepResult CpuExecutor::run_now(const StepPlan& plan, const ActivationSink& sink) {
  return execute(plan, sink);
}

namespace {

std::vector<kernels::TokenLogprob> top_of(const std::vector<float>& logprobs, int32_t k,
                                          int32_t first_token) {
  std::vector<kernels::TokenLogprob> out;
  if (first_token >= 0) out.push_back({first_token, logprobs[first_token]});
  std::vector<int32_t> ids(logprobs.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  const size_t kk = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + kk, ids.end(), [&](int32_t a, int32_t b) {
    return logprobs[a] > logprobs[b] || (logprobs[a] == logprobs[b] && a < b);
  });
  for (size_t i = 0; i < kk; ++i) out.push_back({ids[i], logprobs[ids[i]]});
  return out;
}

}  // namespace

void CpuExecutor::sample(const SeqStep& step, SeqOutput& out) {
  const int64_t V = config_.vocab_size;
  const int64_t rows = static_cast<int64_t>(out.logits.size()) / V;
  auto it = seq_states_.find(step.seq_id);
  if (it == seq_states_.end()) {  // unregistered (tests, benchmarks): greedy
    if (step.sample)
      kernels::greedy_ref(out.logits.data() + (rows - 1) * V, 1, V, &out.sampled_token);
    return;
  }
  SeqState& st = it->second;
  const SamplingParams& sp = *st.reg.params;
  if (step.logits == LogitsMode::kAll && sp.prompt_logprobs >= 0) {
    std::vector<float> lp(V);
    for (int64_t r = 0; r < rows; ++r) {
      kernels::log_softmax_ref(out.logits.data() + r * V, V, lp.data());
      const int32_t next = r + 1 < rows ? step.token_ids[r + 1] : step.next_prompt_token;
      out.prompt_logprobs.push_back(next >= 0 ? top_of(lp, sp.prompt_logprobs, next)
                                              : std::vector<kernels::TokenLogprob>{});
    }
  }
  if (!step.sample) return;
  kernels::SamplingRowParams rp;
  rp.temperature = sp.temperature;
  rp.top_k = sp.top_k;
  rp.top_p = sp.top_p;
  rp.min_p = sp.min_p;
  rp.repetition_penalty = sp.repetition_penalty;
  rp.presence_penalty = sp.presence_penalty;
  rp.frequency_penalty = sp.frequency_penalty;
  rp.seed = st.reg.seed;
  rp.position = st.outputs.size();
  rp.num_logprobs = sp.logprobs;
  kernels::SamplingHistory h;
  h.prompt_tokens = st.reg.prompt_tokens.data();
  h.num_prompt_tokens = static_cast<int64_t>(st.reg.prompt_tokens.size());
  h.output_tokens = st.outputs.data();
  h.num_output_tokens = static_cast<int64_t>(st.outputs.size());
  h.logit_bias = sp.logit_bias.data();
  h.num_logit_bias = static_cast<int64_t>(sp.logit_bias.size());
  if (static_cast<int64_t>(st.outputs.size()) < sp.min_tokens) {
    h.banned_tokens = st.reg.min_tokens_banned.data();
    h.num_banned_tokens = static_cast<int64_t>(st.reg.min_tokens_banned.size());
  }
  kernels::SampleOutput s = kernels::sample_row_ref(out.logits.data() + (rows - 1) * V, V, rp, h);
  out.sampled_token = s.token;
  out.logprob = s.logprob;
  out.top_logprobs = std::move(s.top);
  st.outputs.push_back(s.token);
}

StepResult CpuExecutor::execute(StepPlan plan, const ActivationSink& sink) {
  StepResult result;
  result.step_id = plan.step_id;
  try {
    // Sequences that ended (or were preempted) before this step; a resumed one may be registered
    // again just below.
    for (int64_t id : plan.finished_seqs) {
      last_sampled_.erase(id);
      seq_states_.erase(id);
    }
    for (SeqSampling& reg : plan.new_seqs) {
      KL_CHECK(reg.params != nullptr, "sequence {} registered without sampling parameters",
               reg.seq_id);
      SeqState st;
      st.outputs = reg.output_tokens;
      st.reg = std::move(reg);
      seq_states_[st.reg.seq_id] = std::move(st);
    }
    for (const StateBlockOp& op : plan.block_ops) {
      if (op.kind == StateBlockOp::Kind::kCopy)
        caches_.copy_block(op.src, op.dst);
      else
        caches_.reset_block(op.dst);
    }
    for (const PageCopy& c : plan.page_copies) caches_.copy_page(c.src, c.dst);
    for (SeqStep& s : plan.seqs) {
      if (s.reset_state) caches_.reset_block(s.state_block);
      for (int32_t& t : s.token_ids) {
        if (t != kPrevSampledToken) continue;
        auto it = last_sampled_.find(s.seq_id);
        KL_CHECK(it != last_sampled_.end(),
                 "sequence {}: plan names the previous step's token but none was sampled",
                 s.seq_id);
        t = it->second;
      }
    }
    cpu_forward(config_, weights_, caches_, plan.seqs, result.outputs, sink);
    size_t out_index = 0;
    for (const SeqStep& s : plan.seqs) {
      if (s.logits == LogitsMode::kNone) continue;
      SeqOutput& o = result.outputs[out_index++];
      sample(s, o);
      if (s.sample) last_sampled_[o.seq_id] = o.sampled_token;
      if (!plan.return_logits) std::vector<float>().swap(o.logits);
    }
  } catch (const Error& e) {
    result.ok = false;
    result.error = e.what();
    result.outputs.clear();
  }
  return result;
}

}  // namespace kl
