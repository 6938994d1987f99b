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


void CpuExecutor::sample(const SeqStep& step, SeqOutput& out) {
  const int64_t V = config_.vocab_size;
  const int64_t rows = static_cast<int64_t>(out.logits.size()) / V;
  const SeqRegistry::Entry* e = registry_.find(step.seq_id);
  const float* last = out.logits.data() + (rows - 1) * V;
  if (!e) {  // unregistered (tests, benchmarks): greedy
    if (step.sample) kernels::greedy_ref(last, 1, V, &out.sampled_token);
    return;
  }
  const SamplingParams& sp = *e->reg.params;
  if (step.logits == LogitsMode::kAll && sp.prompt_logprobs >= 0)
    out.prompt_logprobs = prompt_logprobs_of(out.logits.data(), rows, V, step, sp.prompt_logprobs);
  if (!step.sample) return;
  kernels::SampleOutput s =
      kernels::sample_row_ref(last, V, SeqRegistry::row_params(*e), SeqRegistry::history(*e));
  out.sampled_token = s.token;
  out.logprob = s.logprob;
  out.top_logprobs = std::move(s.top);
}

StepResult CpuExecutor::execute(StepPlan plan, const ActivationSink& sink) {
  StepResult result;
  result.step_id = plan.step_id;
  try {
    registry_.begin_step(plan);
    for (const StateBlockOp& op : plan.block_ops) {
      if (op.kind == StateBlockOp::Kind::kCopy)
        caches_.copy_block(op.src, op.dst);
      else
        caches_.reset_block(op.dst);
    }
    for (const PageCopy& c : plan.page_copies) caches_.copy_page(c.src, c.dst);
    for (const SeqStep& s : plan.seqs)
      if (s.reset_state) caches_.reset_block(s.state_block);
    cpu_forward(config_, weights_, caches_, plan.seqs, result.outputs, sink);
    size_t out_index = 0;
    for (const SeqStep& s : plan.seqs) {
      if (s.logits == LogitsMode::kNone) continue;
      SeqOutput& o = result.outputs[out_index++];
      sample(s, o);
      if (s.sample) registry_.record(o.seq_id, o.sampled_token);
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
