// The CPU reference executor: a worker thread that applies state-block ops, runs the forward
// pass and samples greedily, one plan at a time in submit order.
#include "engine/exec/cpu_executor.h"

#include "engine/core/error.h"
#include "kernels/sampling/greedy.h"

namespace kl {

CpuExecutor::CpuExecutor(const ModelConfig& config, ModelWeights weights, int64_t num_pages,
                         int64_t num_state_blocks)
    : config_(config),
      weights_(std::move(weights)),
      caches_(config_, num_pages, num_state_blocks),
      worker_([this] { worker_loop(); }) {}

CpuExecutor::~CpuExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void CpuExecutor::submit(StepPlan plan) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(std::move(plan));
  }
  cv_.notify_all();
}

StepResult CpuExecutor::collect() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !done_.empty(); });
  StepResult r = std::move(done_.front());
  done_.pop_front();
  return r;
}

StepResult CpuExecutor::run_now(const StepPlan& plan, const ActivationSink& sink) {
  return execute(plan, sink);
}

void CpuExecutor::worker_loop() {
  for (;;) {
    StepPlan plan;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stop_ and drained
      plan = std::move(pending_.front());
      pending_.pop_front();
    }
    StepResult r = execute(std::move(plan), {});
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_.push_back(std::move(r));
    }
    cv_.notify_all();
  }
}

StepResult CpuExecutor::execute(StepPlan plan, const ActivationSink& sink) {
  StepResult result;
  result.step_id = plan.step_id;
  try {
    for (const StateBlockOp& op : plan.block_ops) {
      if (op.kind == StateBlockOp::Kind::kCopy)
        caches_.copy_block(op.src, op.dst);
      else
        caches_.reset_block(op.dst);
    }
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
    for (SeqOutput& o : result.outputs) {
      const int64_t rows = static_cast<int64_t>(o.logits.size()) / config_.vocab_size;
      kernels::greedy_ref(o.logits.data() + (rows - 1) * config_.vocab_size, 1, config_.vocab_size,
                          &o.sampled_token);
      last_sampled_[o.seq_id] = o.sampled_token;
    }
    for (int64_t id : plan.finished_seqs) last_sampled_.erase(id);
  } catch (const Error& e) {
    result.ok = false;
    result.error = e.what();
    result.outputs.clear();
  }
  return result;
}

}  // namespace kl
