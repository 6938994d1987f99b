// The scheduler (principle 2): plain host code that turns waiting and running sequences into a
// StepPlan under a token budget (continuous batching, chunked prefill, decodes first), admits
// through the CacheCoordinator, preempts by recompute, and applies StepResults. No I/O, no clocks,
// no threads. It may plan step N+1 before step N's result is applied (pipelining, principle 10).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "engine/cache/cache_coordinator.h"
#include "engine/exec/step_plan.h"
#include "engine/sched/sequence.h"

namespace kl {

struct SchedulerConfig {
  int64_t max_num_batched_tokens = 8192;
  int max_num_seqs = 256;
  int64_t max_model_len = 8192;
  bool priority_policy = false;  // false: FCFS on arrival; true: (priority, arrival)
  std::vector<int32_t> eos_token_ids;
  // Check the cache invariants after every schedule() and update(): on in debug builds.
#ifdef NDEBUG
  bool check_invariants = false;
#else
  bool check_invariants = true;
#endif
};

// What a step produced for one sequence of a request.
struct SeqEvent {
  int64_t request_id = 0;
  int index = 0;
  int64_t seq_id = 0;
  int32_t token = -1;  // -1: no new token (e.g. a finish without one)
  float logprob = 0.f;
  std::vector<kernels::TokenLogprob> top_logprobs;
  std::vector<std::vector<kernels::TokenLogprob>> prompt_logprobs;
  FinishReason finish = FinishReason::kNone;
  int64_t num_prompt_tokens = 0;
  int64_t num_generated = 0;
  std::string error;
};

struct SchedulerStats {
  int num_running = 0;
  int num_waiting = 0;
  int64_t num_preemptions = 0;  // total since start
  int64_t num_free_pages = 0;
  int64_t num_pages = 0;
  int64_t num_free_state_blocks = 0;
  int64_t num_state_blocks = 0;
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig config, int64_t num_pages, int64_t num_state_blocks);

  // Queues a request's n sequences. Throws kl::Error when it can never run: prompt empty or not
  // shorter than max_model_len ("maximum context length is N tokens"), or longer than the cache.
  void add_request(int64_t request_id, std::vector<int32_t> prompt,
                   std::shared_ptr<const SamplingParams> params, uint64_t seed, int priority = 0);
  // Ends every sequence of the request and releases its caches at once. Returns false when the
  // request is unknown (already finished).
  bool abort_request(int64_t request_id, std::vector<SeqEvent>& events);

  StepPlan schedule();
  // Applies the result of a scheduled plan (in schedule order) and returns the per-sequence events.
  std::vector<SeqEvent> update(const StepPlan& plan, const StepResult& result);

  bool has_unfinished() const { return !seqs_.empty(); }
  int num_requests() const { return static_cast<int>(requests_.size()); }
  SchedulerStats stats() const;
  const CacheCoordinator& caches() const { return coord_; }
  const Sequence* find(int64_t seq_id) const;
  void check_invariants() const;

 private:
  struct Request {
    std::vector<int64_t> seq_ids;
    int num_unfinished = 0;
  };

  bool before(const Sequence& a, const Sequence& b) const;  // scheduling priority order
  void insert_sorted(std::vector<Sequence*>& list, Sequence* s) const;
  static void remove_from(std::vector<Sequence*>& list, const Sequence* s);
  bool schedule_chunk(Sequence& s, int64_t& budget, StepPlan& plan, std::vector<int64_t>& in_plan);
  bool make_room(Sequence& s, int64_t tokens, const std::vector<int64_t>& in_plan);
  void preempt(Sequence& s);
  bool fork_children(Sequence& parent, StepPlan& plan, std::vector<int64_t>& in_plan);
  void register_seq(Sequence& s, StepPlan& plan);
  void finish(Sequence& s, FinishReason reason, std::vector<SeqEvent>* events);
  bool stop_token(const Sequence& s, int32_t token) const;
  SeqEvent event_of(const Sequence& s) const;

  SchedulerConfig config_;
  CacheCoordinator coord_;
  std::map<int64_t, Sequence> seqs_;  // live sequences by id
  std::map<int64_t, Request> requests_;
  // Both lists hold pointers into seqs_ (std::map nodes do not move) in priority order, so a step
  // walks them without lookups or sorting.
  std::vector<Sequence*> running_;
  std::vector<Sequence*> waiting_;
  std::vector<int64_t> finished_unreported_;  // sent to the executor in the next plan
  int64_t next_seq_id_ = 0;
  uint64_t next_arrival_ = 0;
  uint64_t next_step_ = 0;
  int64_t num_preemptions_ = 0;
};

}  // namespace kl
