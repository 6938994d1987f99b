// The scheduler: one progress counter per sequence, a per-step token budget, decodes first, then
// running prefills, then admissions; preemption by recompute when pages run out.
#include "engine/sched/scheduler.h"

#include <algorithm>

#include "engine/core/error.h"

namespace kl {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "";
}

Scheduler::Scheduler(SchedulerConfig config, int64_t num_pages, int64_t num_state_blocks)
    : config_(std::move(config)), coord_(num_pages, num_state_blocks) {
  KL_CHECK(config_.max_num_batched_tokens >= 1, "max_num_batched_tokens must be >= 1");
  KL_CHECK(config_.max_num_seqs >= 1, "max_num_seqs must be >= 1");
  KL_CHECK(config_.max_model_len >= 2, "max_model_len must be >= 2");
}

bool Scheduler::before(const Sequence& a, const Sequence& b) const {
  if (config_.priority_policy && a.priority != b.priority) return a.priority < b.priority;
  if (a.arrival != b.arrival) return a.arrival < b.arrival;
  return a.index < b.index;
}

void Scheduler::insert_sorted(std::vector<Sequence*>& list, Sequence* s) const {
  auto pos = std::upper_bound(list.begin(), list.end(), s,
                              [&](const Sequence* a, const Sequence* b) { return before(*a, *b); });
  list.insert(pos, s);
}

void Scheduler::remove_from(std::vector<Sequence*>& list, const Sequence* s) {
  auto it = std::find(list.begin(), list.end(), s);
  if (it != list.end()) list.erase(it);
}

void Scheduler::add_request(int64_t request_id, std::vector<int32_t> prompt,
                            std::shared_ptr<const SamplingParams> params, uint64_t seed,
                            int priority) {
  KL_CHECK(params != nullptr, "request {} has no sampling parameters", request_id);
  KL_CHECK(!requests_.count(request_id), "request id {} is already in use", request_id);
  const int64_t len = static_cast<int64_t>(prompt.size());
  KL_CHECK(len >= 1, "the prompt is empty");
  KL_CHECK(len < config_.max_model_len,
           "This model's maximum context length is {} tokens. However, you requested {} tokens in "
           "the prompt (at least one must remain for the completion). Please reduce the length of "
           "the input.",
           config_.max_model_len, len);
  int64_t max_total = config_.max_model_len;
  if (params->max_tokens) max_total = std::min<int64_t>(max_total, len + *params->max_tokens);
  KL_CHECK(pages_for_tokens(max_total) <= coord_.pages().num_blocks(),
           "the request needs up to {} tokens of cache but the cache holds {} tokens", max_total,
           coord_.pages().num_blocks() * kPageSize);
  const int n = params->n;
  KL_CHECK(n <= coord_.state_blocks().num_blocks() && n <= config_.max_num_seqs,
           "n = {} exceeds the number of sequences the engine can run at once ({})", n,
           std::min<int64_t>(coord_.state_blocks().num_blocks(), config_.max_num_seqs));

  Request& req = requests_[request_id];
  const uint64_t arrival = next_arrival_++;
  // n > 1 over a prompt of 2+ tokens: one prefill, then forks (sample 0 carries them). A 1-token
  // prompt has nothing to share: its samples run independently.
  const bool share_prefill = n > 1 && len >= 2;
  for (int i = 0; i < (share_prefill ? 1 : n); ++i) {
    Sequence s;
    s.id = next_seq_id_++;
    s.request_id = request_id;
    s.index = i;
    s.params = params;
    s.priority = priority;
    s.arrival = arrival;
    s.seed = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i);
    s.tokens = prompt;
    s.num_prompt_tokens = len;
    s.max_total_tokens = max_total;
    s.num_forks_pending = share_prefill ? n - 1 : 0;
    req.seq_ids.push_back(s.id);
    const int64_t id = s.id;
    Sequence* stored = &seqs_.emplace(id, std::move(s)).first->second;
    insert_sorted(waiting_, stored);
  }
  req.num_unfinished = n;
}

const Sequence* Scheduler::find(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  return it == seqs_.end() ? nullptr : &it->second;
}

void Scheduler::register_seq(Sequence& s, StepPlan& plan) {
  SeqSampling reg;
  reg.seq_id = s.id;
  reg.params = s.params;
  reg.seed = s.seed;
  reg.prompt_tokens.assign(s.tokens.begin(), s.tokens.begin() + s.num_prompt_tokens);
  reg.output_tokens.assign(s.tokens.begin() + s.num_prompt_tokens, s.tokens.end());
  reg.min_tokens_banned = s.params->stop_token_ids;
  if (!s.params->ignore_eos)
    reg.min_tokens_banned.insert(reg.min_tokens_banned.end(), config_.eos_token_ids.begin(),
                                 config_.eos_token_ids.end());
  plan.new_seqs.push_back(std::move(reg));
  s.registered = true;
  // A drop queued for the next plan would erase this registration: the executor replaces the
  // old state with this one anyway.
  finished_unreported_.erase(
      std::remove(finished_unreported_.begin(), finished_unreported_.end(), s.id),
      finished_unreported_.end());
}

void Scheduler::preempt(Sequence& s) {
  coord_.release(s.cache);
  s.status = SeqStatus::kWaiting;
  s.num_computed_tokens = 0;
  s.registered = false;  // re-registered (with its outputs so far) when it resumes
  ++s.num_preemptions;
  ++num_preemptions_;
  remove_from(running_, &s);
  insert_sorted(waiting_, &s);
  finished_unreported_.push_back(s.id);  // the executor drops its sampling state too
}

// Frees pages (or a state block) for `s` by preempting the lowest-priority running sequences not
// yet in this step's plan, `s` itself last. Returns false when `s` was preempted.
bool Scheduler::make_room(Sequence& s, int64_t tokens, const std::vector<int64_t>& in_plan) {
  while (!coord_.grow(s.cache, tokens)) {
    Sequence* victim = nullptr;
    for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
      if (*it == &s || std::find(in_plan.begin(), in_plan.end(), (*it)->id) != in_plan.end())
        continue;
      victim = *it;
      break;
    }
    if (!victim) {
      preempt(s);
      return false;
    }
    preempt(*victim);
  }
  return true;
}

bool Scheduler::fork_children(Sequence& parent, StepPlan& plan, std::vector<int64_t>& in_plan) {
  if (static_cast<int>(running_.size()) + parent.num_forks_pending > config_.max_num_seqs)
    return false;
  Request& req = requests_.at(parent.request_id);
  while (parent.num_forks_pending > 0) {
    Sequence child;
    if (!coord_.fork(parent.cache, parent.num_computed_tokens, child.cache, plan.page_copies,
                     plan.block_ops))
      return false;  // retried next step; what forked so far keeps running
    child.id = next_seq_id_++;
    child.request_id = parent.request_id;
    child.index = static_cast<int>(req.seq_ids.size());
    child.params = parent.params;
    child.priority = parent.priority;
    child.arrival = parent.arrival;
    child.seed = parent.seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(child.index);
    child.tokens = parent.tokens;
    child.num_prompt_tokens = parent.num_prompt_tokens;
    child.num_computed_tokens = parent.num_computed_tokens;
    child.max_total_tokens = parent.max_total_tokens;
    child.prompt_logprobs_done = true;  // reported once, by sample 0
    child.status = SeqStatus::kRunning;
    req.seq_ids.push_back(child.id);
    --parent.num_forks_pending;
    const int64_t id = child.id;
    insert_sorted(running_, &seqs_.emplace(id, std::move(child)).first->second);
    (void)in_plan;
  }
  return true;
}

// Adds the next chunk of `s` to the plan if the budget and caches allow. Returns false when `s`
// cannot take part in this step (it may have been preempted).
bool Scheduler::schedule_chunk(Sequence& s, int64_t& budget, StepPlan& plan,
                               std::vector<int64_t>& in_plan) {
  int64_t remaining = s.num_tokens() - s.num_computed_tokens;
  if (s.num_forks_pending > 0)
    remaining = std::min(remaining, s.fork_point() - s.num_computed_tokens);
  const int64_t chunk = std::min(remaining, budget);
  if (chunk <= 0) return false;
  if (!make_room(s, s.num_computed_tokens + chunk, in_plan)) return false;

  SeqStep step;
  step.seq_id = s.id;
  step.num_computed_tokens = s.num_computed_tokens;
  step.state_block = s.cache.state_block;
  step.reset_state = s.num_computed_tokens == 0;
  step.page_table = s.cache.pages;
  const int64_t end = s.num_computed_tokens + chunk;
  for (int64_t pos = s.num_computed_tokens; pos < end; ++pos)
    step.token_ids.push_back(pos < static_cast<int64_t>(s.tokens.size()) ? s.tokens[pos]
                                                                         : kPrevSampledToken);
  step.sample = end == s.num_tokens() && s.num_forks_pending == 0;
  const bool want_prompt_lp = s.params->prompt_logprobs >= 0 && !s.prompt_logprobs_done &&
                              s.num_computed_tokens < s.num_prompt_tokens;
  if (want_prompt_lp) {
    step.logits = LogitsMode::kAll;
    step.next_prompt_token = end < s.num_prompt_tokens ? s.tokens[end] : -1;
    if (end >= s.num_prompt_tokens) s.prompt_logprobs_done = true;
  } else {
    step.logits = step.sample ? LogitsMode::kLast : LogitsMode::kNone;
  }
  if (!s.registered) register_seq(s, plan);
  if (step.sample) ++s.num_pending;
  s.num_computed_tokens = end;
  budget -= chunk;
  in_plan.push_back(s.id);
  plan.seqs.push_back(std::move(step));
  return true;
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  plan.step_id = next_step_++;
  plan.finished_seqs.swap(finished_unreported_);
  int64_t budget = config_.max_num_batched_tokens;
  std::vector<int64_t> in_plan;
  const int64_t preemptions_before = num_preemptions_;

  // 1. Running sequences in priority order, decodes (one token to compute) before prefill
  //    chunks. n > 1 parents fork once their shared prefix is scheduled; the children decode
  //    their last prompt token in the same step (they join the second pass).
  std::vector<Sequence*> order = running_;  // preemption edits running_ while we walk
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < order.size() && budget > 0; ++i) {
      Sequence& s = *order[i];
      if (s.status != SeqStatus::kRunning) continue;  // preempted earlier in this step
      const bool decode = s.num_tokens() - s.num_computed_tokens == 1;
      if (decode != (pass == 0)) continue;
      if (s.num_forks_pending > 0 && s.num_computed_tokens == s.fork_point()) {
        const std::vector<Sequence*> before_fork = running_;
        if (!fork_children(s, plan, in_plan)) continue;
        for (Sequence* c : running_)
          if (std::find(before_fork.begin(), before_fork.end(), c) == before_fork.end())
            order.push_back(c);
      }
      schedule_chunk(s, budget, plan, in_plan);
    }
  }

  // 2. Admissions in priority order while budget, sequences and caches allow. A sequence whose
  //    sample is still in flight (preempted meanwhile) waits until its token is known. Nothing is
  //    admitted in a step that had to preempt (it would only thrash).
  const bool preempted = num_preemptions_ != preemptions_before;
  while (!preempted && budget > 0 && !waiting_.empty() &&
         static_cast<int>(running_.size()) < config_.max_num_seqs) {
    Sequence& s = *waiting_.front();
    if (s.num_pending > 0) break;
    int64_t first = std::min(s.num_tokens(), budget);
    if (s.num_forks_pending > 0) first = std::min(first, std::max<int64_t>(s.fork_point(), 1));
    if (s.num_forks_pending > 0 &&
        (static_cast<int>(running_.size()) + 1 + s.num_forks_pending > config_.max_num_seqs ||
         coord_.state_blocks().num_free() < 1 + s.num_forks_pending))
      break;  // a group is admitted only when all its samples can run
    if (!coord_.admit(s.cache, first)) break;
    waiting_.erase(waiting_.begin());
    s.status = SeqStatus::kRunning;
    insert_sorted(running_, &s);
    if (!schedule_chunk(s, budget, plan, in_plan)) break;
  }
  // A plan with nothing to run is not submitted: keep its executor drops for the next one.
  if (plan.seqs.empty() && plan.block_ops.empty() && plan.page_copies.empty() &&
      plan.new_seqs.empty() && !plan.finished_seqs.empty()) {
    finished_unreported_.insert(finished_unreported_.begin(), plan.finished_seqs.begin(),
                                plan.finished_seqs.end());
    plan.finished_seqs.clear();
  }
  if (config_.check_invariants) check_invariants();
  return plan;
}

bool Scheduler::stop_token(const Sequence& s, int32_t token) const {
  // The first min_tokens tokens never stop the sequence (the sampler also bans EOS/stop ids).
  if (s.num_generated() <= s.params->min_tokens) return false;
  const auto& stops = s.params->stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) return true;
  if (s.params->ignore_eos) return false;
  const auto& eos = config_.eos_token_ids;
  return std::find(eos.begin(), eos.end(), token) != eos.end();
}

SeqEvent Scheduler::event_of(const Sequence& s) const {
  SeqEvent e;
  e.request_id = s.request_id;
  e.index = s.index;
  e.seq_id = s.id;
  e.num_prompt_tokens = s.num_prompt_tokens;
  e.num_generated = s.num_generated();
  return e;
}

void Scheduler::finish(Sequence& s, FinishReason reason, std::vector<SeqEvent>* events) {
  coord_.release(s.cache);
  if (s.status == SeqStatus::kRunning)
    remove_from(running_, &s);
  else if (s.status == SeqStatus::kWaiting)
    remove_from(waiting_, &s);
  s.status = SeqStatus::kFinished;
  s.finish = reason;
  if (s.registered) finished_unreported_.push_back(s.id);
  if (events) {
    SeqEvent e = event_of(s);
    e.finish = reason;
    events->push_back(std::move(e));
  }
  auto req = requests_.find(s.request_id);
  if (req != requests_.end()) {
    // Forks not created yet count as finished with their parent.
    req->second.num_unfinished -= 1 + s.num_forks_pending;
    s.num_forks_pending = 0;
    if (req->second.num_unfinished <= 0) requests_.erase(req);
  }
  seqs_.erase(s.id);
}

bool Scheduler::abort_request(int64_t request_id, std::vector<SeqEvent>& events) {
  auto req = requests_.find(request_id);
  if (req == requests_.end()) return false;
  const std::vector<int64_t> ids = req->second.seq_ids;
  for (int64_t id : ids) {
    auto it = seqs_.find(id);
    if (it != seqs_.end()) finish(it->second, FinishReason::kAbort, &events);
  }
  return true;
}

std::vector<SeqEvent> Scheduler::update(const StepPlan& plan, const StepResult& result) {
  std::vector<SeqEvent> events;
  if (!result.ok) {
    // The step's caches are undefined: every sequence in it ends with the error.
    for (const SeqStep& st : plan.seqs) {
      auto it = seqs_.find(st.seq_id);
      if (it == seqs_.end()) continue;
      finish(it->second, FinishReason::kError, &events);
      events.back().error = result.error;
    }
    return events;
  }
  size_t out = 0;
  for (const SeqStep& st : plan.seqs) {
    if (st.logits == LogitsMode::kNone) continue;
    KL_CHECK(out < result.outputs.size() && result.outputs[out].seq_id == st.seq_id,
             "step {}: outputs do not match the plan", plan.step_id);
    const SeqOutput& o = result.outputs[out++];
    auto it = seqs_.find(st.seq_id);
    if (it == seqs_.end()) continue;  // finished or aborted meanwhile: discard
    Sequence& s = it->second;
    SeqEvent e = event_of(s);
    e.prompt_logprobs = o.prompt_logprobs;
    if (st.sample) {
      --s.num_pending;
      s.tokens.push_back(o.sampled_token);
      e.token = o.sampled_token;
      e.logprob = o.logprob;
      e.top_logprobs = o.top_logprobs;
      e.num_generated = s.num_generated();
      if (stop_token(s, o.sampled_token))
        e.finish = FinishReason::kStop;
      else if (static_cast<int64_t>(s.tokens.size()) >= s.max_total_tokens)
        e.finish = FinishReason::kLength;
    }
    events.push_back(std::move(e));
    if (events.back().finish != FinishReason::kNone) finish(s, events.back().finish, nullptr);
  }
  if (config_.check_invariants) check_invariants();
  return events;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats st;
  st.num_running = static_cast<int>(running_.size());
  st.num_waiting = static_cast<int>(waiting_.size());
  st.num_preemptions = num_preemptions_;
  st.num_free_pages = coord_.pages().num_free();
  st.num_pages = coord_.pages().num_blocks();
  st.num_free_state_blocks = coord_.state_blocks().num_free();
  st.num_state_blocks = coord_.state_blocks().num_blocks();
  return st;
}

void Scheduler::check_invariants() const {
  std::vector<const SeqCache*> owners;
  for (const auto& [id, s] : seqs_) {
    KL_CHECK(s.status != SeqStatus::kFinished, "finished sequence {} still listed", id);
    const bool running = s.status == SeqStatus::kRunning;
    KL_CHECK(running == (std::count(running_.begin(), running_.end(), &s) == 1),
             "sequence {} running state disagrees with the running list", id);
    KL_CHECK(running || s.cache.empty(), "waiting sequence {} holds caches", id);
    KL_CHECK(!running || s.cache.state_block >= 0, "running sequence {} has no state block", id);
    KL_CHECK(
        !running || static_cast<int64_t>(s.cache.pages.size()) * kPageSize >= s.num_computed_tokens,
        "sequence {} computed {} tokens but holds {} pages", id, s.num_computed_tokens,
        s.cache.pages.size());
    owners.push_back(&s.cache);
  }
  KL_CHECK(running_.size() + waiting_.size() == seqs_.size(),
           "{} running + {} waiting != {} live sequences", running_.size(), waiting_.size(),
           seqs_.size());
  coord_.check_invariants(owners);
}

}  // namespace kl
