// FakeExecutor: scripted tokens, configurable step time, a timeline of every step.
#include "engine/exec/fake_executor.h"

namespace kl {

FakeExecutor::FakeExecutor(int64_t num_pages, int64_t num_state_blocks,
                           std::chrono::microseconds step_delay, int32_t vocab, int32_t eos_every)
    : num_pages_(num_pages),
      num_blocks_(num_state_blocks),
      delay_(step_delay),
      vocab_(vocab),
      eos_every_(eos_every),
      thread_([this] { run(); }) {}

FakeExecutor::~FakeExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int32_t FakeExecutor::token_at(int64_t seq_id, int64_t position) const {
  // EOS (id 2) every `eos_every_` positions when asked; ids 3.. otherwise.
  if (eos_every_ > 0 && (position + seq_id) % eos_every_ == eos_every_ - 1) return 2;
  return static_cast<int32_t>(3 + (seq_id * 7919 + position * 104729) % (vocab_ - 3));
}

void FakeExecutor::submit(StepPlan plan) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.emplace_back(std::move(plan), Clock::now());
  }
  cv_.notify_all();
}

StepResult FakeExecutor::collect() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !done_.empty(); });
  StepResult r = std::move(done_.front());
  done_.pop_front();
  return r;
}

std::vector<FakeExecutor::StepTimes> FakeExecutor::timeline() const {
  std::lock_guard<std::mutex> lock(mu_);
  return timeline_;
}

void FakeExecutor::run() {
  for (;;) {
    std::pair<StepPlan, Clock::time_point> item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !pending_.empty(); });
      if (pending_.empty()) return;
      item = std::move(pending_.front());
      pending_.pop_front();
    }
    StepTimes t;
    t.step_id = item.first.step_id;
    t.submitted = item.second;
    t.started = Clock::now();
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    StepResult r;
    r.step_id = item.first.step_id;
    for (const SeqStep& s : item.first.seqs) {
      if (s.logits == LogitsMode::kNone) continue;
      SeqOutput o;
      o.seq_id = s.seq_id;
      const int64_t end = s.num_computed_tokens + static_cast<int64_t>(s.token_ids.size());
      o.sampled_token = s.sample ? token_at(s.seq_id, end) : -1;
      r.outputs.push_back(std::move(o));
    }
    t.finished = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      timeline_.push_back(t);
      done_.push_back(std::move(r));
    }
    cv_.notify_all();
  }
}

}  // namespace kl
