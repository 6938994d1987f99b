// FakeExecutor: scripted tokens, configurable step time, a timeline of every step.
#include "engine/exec/fake_executor.h"

#include <thread>

namespace kl {

FakeExecutor::FakeExecutor(int64_t num_pages, int64_t num_state_blocks,
                           std::chrono::microseconds step_delay, int32_t vocab, int32_t eos_every)
    : num_pages_(num_pages),
      num_blocks_(num_state_blocks),
      delay_(step_delay),
      vocab_(vocab),
      eos_every_(eos_every) {
  start_worker();
}

FakeExecutor::~FakeExecutor() {
  stop_worker();
}

int32_t FakeExecutor::token_at(int64_t seq_id, int64_t position) const {
  // EOS (id 2) every `eos_every_` positions when asked; ids 3.. otherwise.
  if (eos_every_ > 0 && (position + seq_id) % eos_every_ == eos_every_ - 1) return 2;
  return static_cast<int32_t>(3 + (seq_id * 7919 + position * 104729) % (vocab_ - 3));
}

std::vector<FakeExecutor::StepTimes> FakeExecutor::timeline() const {
  std::lock_guard<std::mutex> lock(mu_);
  return timeline_;
}

StepResult FakeExecutor::run_step(StepPlan plan, Clock::time_point submitted) {
  StepTimes t;
  t.step_id = plan.step_id;
  t.submitted = submitted;
  t.started = Clock::now();
  if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
  StepResult r;
  r.step_id = plan.step_id;
  if (fatal_from_ > 0 && ++executed_ >= fatal_from_) {
    r.ok = false;
    r.fatal = true;
    r.error = "CUDA error: an illegal memory access was encountered (fake)";
    return r;
  }
  for (const SeqStep& s : plan.seqs) {
    if (s.logits == LogitsMode::kNone) continue;
    SeqOutput o;
    o.seq_id = s.seq_id;
    const int64_t end = s.num_computed_tokens + static_cast<int64_t>(s.token_ids.size());
    o.sampled_token = s.sample ? token_at(s.seq_id, end) : -1;
    r.outputs.push_back(std::move(o));
  }
  t.finished = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  timeline_.push_back(t);
  return r;
}

}  // namespace kl
