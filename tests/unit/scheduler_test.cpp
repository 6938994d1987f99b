// The scheduler as plain host code (principle 2): exact plans and page ids for admission, chunked
// prefill, decodes-first, pipelined planning, preemption by recompute, n > 1 forks, cancellation,
// and randomized schedules with the cache invariants checked after every step.
#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <random>
#include <set>

#include "engine/sched/scheduler.h"

using namespace kl;

namespace {

std::shared_ptr<const SamplingParams> params(int max_tokens, int n = 1) {
  auto p = std::make_shared<SamplingParams>();
  p->max_tokens = max_tokens;
  p->n = n;
  p->temperature = 0.f;
  return p;
}

std::vector<int32_t> tokens(int n, int32_t base = 10) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = base + i % 50;
  return t;
}

SchedulerConfig config(int64_t budget, int max_seqs = 16) {
  SchedulerConfig c;
  c.max_num_batched_tokens = budget;
  c.max_num_seqs = max_seqs;
  c.max_model_len = 1024;
  c.eos_token_ids = {2};
  c.check_invariants = true;
  return c;
}

// A result that samples `token` for every sequence that samples in the plan.
StepResult result_for(const StepPlan& plan, int32_t token = 7) {
  StepResult r;
  r.step_id = plan.step_id;
  for (const SeqStep& s : plan.seqs) {
    if (s.logits == LogitsMode::kNone) continue;
    SeqOutput o;
    o.seq_id = s.seq_id;
    o.sampled_token = s.sample ? token : -1;
    r.outputs.push_back(o);
  }
  return r;
}

const SeqStep* step_of(const StepPlan& p, int64_t seq_id) {
  for (const auto& s : p.seqs)
    if (s.seq_id == seq_id) return &s;
  return nullptr;
}

}  // namespace

TEST_CASE("scheduler: admission packs prompts under the token budget with exact pages") {
  Scheduler s(config(100), 10, 4);
  s.add_request(0, tokens(70), params(5), 1);
  s.add_request(1, tokens(10), params(5), 1);
  s.add_request(2, tokens(30), params(5), 1);  // does not fit the remaining budget of 20 whole
  StepPlan p = s.schedule();
  REQUIRE(p.seqs.size() == 3);
  CHECK(p.seqs[0].token_ids.size() == 70);
  CHECK(p.seqs[0].page_table == std::vector<int32_t>{0, 1});
  CHECK(p.seqs[0].state_block == 0);
  CHECK(p.seqs[0].reset_state);
  CHECK(p.seqs[0].logits == LogitsMode::kLast);
  CHECK(p.seqs[1].page_table == std::vector<int32_t>{2});
  CHECK(p.seqs[1].state_block == 1);
  // The third prompt is chunked: 20 tokens now, no sampling yet.
  CHECK(p.seqs[2].token_ids.size() == 20);
  CHECK(p.seqs[2].page_table == std::vector<int32_t>{3});
  CHECK(p.seqs[2].logits == LogitsMode::kNone);
  CHECK(p.new_seqs.size() == 3);
  s.update(p, result_for(p));
  // Next step: two decodes first, then the rest of the third prompt.
  StepPlan q = s.schedule();
  REQUIRE(q.seqs.size() == 3);
  CHECK(q.seqs[0].token_ids == std::vector<int32_t>{7});
  CHECK(q.seqs[0].num_computed_tokens == 70);
  CHECK(q.seqs[1].token_ids == std::vector<int32_t>{7});
  CHECK(q.seqs[2].token_ids.size() == 10);
  CHECK(q.seqs[2].num_computed_tokens == 20);
  CHECK(q.seqs[2].logits == LogitsMode::kLast);
  CHECK_FALSE(q.seqs[2].reset_state);
  CHECK(q.new_seqs.empty());
}

TEST_CASE("scheduler: chunked prefill grows the page table append-only") {
  Scheduler s(config(32), 8, 2);
  s.add_request(0, tokens(70), params(1), 1);
  std::vector<std::vector<int32_t>> tables;
  std::vector<size_t> chunks;
  for (int i = 0; i < 3; ++i) {
    StepPlan p = s.schedule();
    REQUIRE(p.seqs.size() == 1);
    tables.push_back(p.seqs[0].page_table);
    chunks.push_back(p.seqs[0].token_ids.size());
    s.update(p, result_for(p));
  }
  CHECK(chunks == std::vector<size_t>{32, 32, 6});
  CHECK(tables[0] == std::vector<int32_t>{0});
  CHECK(tables[1] == std::vector<int32_t>{0});
  CHECK(tables[2] == std::vector<int32_t>{0, 1});
  // max_tokens 1: the request finished with the token sampled after the prompt.
  CHECK_FALSE(s.has_unfinished());
  CHECK(s.caches().pages().num_free() == 8);
  CHECK(s.caches().state_blocks().num_free() == 2);
}

TEST_CASE("scheduler: step N+1 is planned before step N's result, naming the pending token") {
  Scheduler s(config(64), 8, 2);
  s.add_request(0, tokens(5), params(3), 1);
  StepPlan p0 = s.schedule();
  StepPlan p1 = s.schedule();  // p0 still in flight
  REQUIRE(p1.seqs.size() == 1);
  CHECK(p1.seqs[0].token_ids == std::vector<int32_t>{kPrevSampledToken});
  CHECK(p1.seqs[0].num_computed_tokens == 5);
  CHECK(p1.seqs[0].sample);
  auto e0 = s.update(p0, result_for(p0, 11));
  REQUIRE(e0.size() == 1);
  CHECK(e0[0].token == 11);
  StepPlan p2 = s.schedule();
  auto e1 = s.update(p1, result_for(p1, 12));
  CHECK(e1[0].token == 12);
  auto e2 = s.update(p2, result_for(p2, 13));
  CHECK(e2[0].finish == FinishReason::kLength);
  CHECK(e2[0].num_generated == 3);
  CHECK_FALSE(s.has_unfinished());
}

TEST_CASE("scheduler: EOS and stop ids finish a sequence, min_tokens holds them off") {
  Scheduler s(config(64), 8, 2);
  auto p = std::make_shared<SamplingParams>();
  p->max_tokens = 10;
  p->min_tokens = 2;
  s.add_request(0, tokens(4), p, 1);
  StepPlan a = s.schedule();
  CHECK(a.new_seqs.at(0).min_tokens_banned == std::vector<int32_t>{2});
  CHECK(s.update(a, result_for(a, 2))[0].finish == FinishReason::kNone);  // 1st token
  StepPlan b = s.schedule();
  CHECK(s.update(b, result_for(b, 2))[0].finish == FinishReason::kNone);  // 2nd token
  StepPlan c = s.schedule();
  CHECK(s.update(c, result_for(c, 2))[0].finish == FinishReason::kStop);  // 3rd may stop
}

TEST_CASE("scheduler: running out of pages preempts the latest arrival by recompute") {
  // 3 pages: A (60 tokens) and B (60 tokens) both grow past one page; one must yield.
  Scheduler s(config(256), 3, 2);
  s.add_request(0, tokens(60), params(20), 1);
  s.add_request(1, tokens(60, 20), params(20), 1);
  StepPlan p = s.schedule();
  REQUIRE(p.seqs.size() == 2);
  s.update(p, result_for(p));
  int64_t preempted_step = -1;
  for (int i = 0; i < 40 && s.has_unfinished(); ++i) {
    StepPlan q = s.schedule();
    if (s.stats().num_preemptions > 0 && preempted_step < 0) {
      preempted_step = i;
      // B (seq 1, later arrival) was preempted; A continues alone.
      CHECK(step_of(q, 1) == nullptr);
      CHECK(step_of(q, 0) != nullptr);
      CHECK(s.find(1)->status == SeqStatus::kWaiting);
      CHECK(s.find(1)->cache.empty());
    }
    s.update(q, result_for(q));
  }
  CHECK(preempted_step >= 0);
  CHECK_FALSE(s.has_unfinished());
  CHECK(s.caches().pages().num_free() == 3);
}

TEST_CASE("scheduler: a resumed sequence recomputes prompt and outputs, re-registered") {
  Scheduler s(config(256), 3, 2);
  s.add_request(0, tokens(60), params(20), 1);
  s.add_request(1, tokens(60, 20), params(20), 1);
  bool checked = false;
  for (int i = 0; i < 60 && s.has_unfinished(); ++i) {
    StepPlan q = s.schedule();
    for (const SeqSampling& reg : q.new_seqs) {
      if (reg.seq_id != 1 || reg.output_tokens.empty()) continue;
      // Resume: the whole known sequence is recomputed in one chunk, outputs re-registered.
      const SeqStep* st = step_of(q, 1);
      REQUIRE(st != nullptr);
      CHECK(st->reset_state);
      CHECK(st->num_computed_tokens == 0);
      CHECK(static_cast<int64_t>(st->token_ids.size()) ==
            60 + static_cast<int64_t>(reg.output_tokens.size()));
      CHECK(st->sample);
      CHECK(std::find(q.finished_seqs.begin(), q.finished_seqs.end(), 1) == q.finished_seqs.end());
      checked = true;
    }
    s.update(q, result_for(q));
  }
  CHECK(checked);
}

TEST_CASE("scheduler: n = 4 prefills once, forks with shared pages and copied state") {
  Scheduler s(config(512), 16, 8);
  s.add_request(0, tokens(100), params(3, 4), 5);
  StepPlan p = s.schedule();
  REQUIRE(p.seqs.size() == 1);  // one prefill of the prompt but its last token
  CHECK(p.seqs[0].token_ids.size() == 99);
  CHECK(p.seqs[0].logits == LogitsMode::kNone);
  s.update(p, result_for(p));
  StepPlan q = s.schedule();
  REQUIRE(q.seqs.size() == 4);
  CHECK(q.block_ops.size() == 3);
  CHECK(q.page_copies.size() == 3);  // 99 tokens: the second page is partial, copied per fork
  for (const auto& op : q.block_ops) {
    CHECK(op.kind == StateBlockOp::Kind::kCopy);
    CHECK(op.src == p.seqs[0].state_block);
  }
  const int32_t first_page = p.seqs[0].page_table[0];
  CHECK(s.caches().pages().refcount(first_page) == 4);
  for (const auto& st : q.seqs) {
    CHECK(st.token_ids.size() == 1);
    CHECK(st.num_computed_tokens == 99);
    CHECK(st.sample);
    CHECK(st.page_table[0] == first_page);
  }
  CHECK(q.new_seqs.size() == 3);
  std::set<uint64_t> seeds{q.new_seqs[0].seed, q.new_seqs[1].seed, q.new_seqs[2].seed};
  CHECK(seeds.size() == 3);
  auto ev = s.update(q, result_for(q));
  CHECK(ev.size() == 4);
}

TEST_CASE("scheduler: cancellation releases every page and state block at once") {
  Scheduler s(config(64), 8, 4);
  s.add_request(0, tokens(100), params(50, 2), 1);
  s.add_request(1, tokens(30), params(50), 1);
  for (int i = 0; i < 3; ++i) {
    StepPlan p = s.schedule();
    s.update(p, result_for(p));
  }
  std::vector<SeqEvent> ev;
  CHECK(s.abort_request(0, ev));
  CHECK(s.abort_request(1, ev));
  CHECK_FALSE(s.abort_request(1, ev));
  for (const auto& e : ev) CHECK(e.finish == FinishReason::kAbort);
  CHECK(s.caches().pages().num_free() == 8);
  CHECK(s.caches().state_blocks().num_free() == 4);
  CHECK_FALSE(s.has_unfinished());
  s.check_invariants();
}

TEST_CASE("scheduler: requests that can never run are refused with a clear error") {
  Scheduler s(config(64), 4, 2);
  CHECK_THROWS_WITH(s.add_request(0, tokens(1024), params(5), 1),
                    Catch::Contains("maximum context length is 1024 tokens"));
  CHECK_THROWS_WITH(s.add_request(1, {}, params(5), 1), Catch::Contains("empty"));
  CHECK_THROWS_WITH(s.add_request(2, tokens(300), params(5), 1),
                    Catch::Contains("cache holds 256 tokens"));
  CHECK_THROWS_WITH(s.add_request(3, tokens(10), params(5, 3), 1), Catch::Contains("n = 3"));
}

TEST_CASE("scheduler: randomized arrivals, cancellations and preemptions keep the invariants") {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 4; ++round) {
    SchedulerConfig c = config(64 + 64 * round, 8);
    c.priority_policy = round % 2 == 1;
    Scheduler s(c, 6 + 2 * round, 6);
    int64_t next_id = 0, arrivals = 0, cancels = 0;
    std::deque<StepPlan> in_flight;
    for (int step = 0; step < 1500; ++step) {
      if (rng() % 4 == 0 && arrivals < 1000) {
        const int len = 1 + static_cast<int>(rng() % 150);
        const int n = rng() % 6 == 0 ? 2 : 1;
        s.add_request(next_id++, tokens(len, rng() % 100), params(20 + rng() % 60, n), rng(),
                      static_cast<int>(rng() % 3));
        ++arrivals;
      }
      if (rng() % 17 == 0 && next_id > 0) {
        std::vector<SeqEvent> ev;
        cancels += s.abort_request(
            std::max<int64_t>(0, next_id - 1 - static_cast<int64_t>(rng() % 8)), ev);
      }
      StepPlan p = s.schedule();
      if (!p.seqs.empty()) in_flight.push_back(std::move(p));
      if (in_flight.size() >= 2 || (!in_flight.empty() && rng() % 2)) {
        const int32_t tok = rng() % 50 == 0 ? 2 : 9;  // sometimes EOS
        s.update(in_flight.front(), result_for(in_flight.front(), tok));
        in_flight.pop_front();
      }
    }
    while (s.has_unfinished() || !in_flight.empty()) {
      StepPlan p = s.schedule();
      if (!p.seqs.empty()) in_flight.push_back(std::move(p));
      REQUIRE(!in_flight.empty());  // no deadlock: work remains plannable
      s.update(in_flight.front(), result_for(in_flight.front()));
      in_flight.pop_front();
    }
    CHECK(arrivals > 300);
    CHECK(cancels > 10);
    CHECK(s.stats().num_preemptions > 0);
    CHECK(s.caches().pages().num_free() == s.caches().pages().num_blocks());
    CHECK(s.caches().state_blocks().num_free() == s.caches().state_blocks().num_blocks());
  }
}

TEST_CASE("scheduler: with the priority policy a later, more urgent request is admitted first") {
  SchedulerConfig c = config(16, 1);
  c.priority_policy = true;
  Scheduler s(c, 8, 2);
  s.add_request(0, tokens(4), params(2), 1, /*priority=*/5);
  s.add_request(1, tokens(4), params(2), 1, /*priority=*/-1);
  StepPlan p = s.schedule();
  REQUIRE(p.seqs.size() == 1);  // max_num_seqs 1
  CHECK(s.find(p.seqs[0].seq_id)->request_id == 1);
  // FCFS ignores priorities.
  Scheduler f(config(16, 1), 8, 2);
  f.add_request(0, tokens(4), params(2), 1, 5);
  f.add_request(1, tokens(4), params(2), 1, -1);
  StepPlan q = f.schedule();
  CHECK(f.find(q.seqs[0].seq_id)->request_id == 0);
}

TEST_CASE("scheduler: a sequence that ends while the next step is in flight is still reported") {
  Scheduler s(config(64), 8, 2);
  s.add_request(0, tokens(5), params(10), 1);
  StepPlan p0 = s.schedule();
  StepPlan p1 = s.schedule();  // decode planned while p0 runs
  CHECK(s.update(p0, result_for(p0, 2))[0].finish == FinishReason::kStop);  // EOS
  StepPlan p2 = s.schedule();  // nothing to run: must not swallow the drop of sequence 0
  CHECK(p2.seqs.empty());
  CHECK(p2.finished_seqs.empty());
  s.update(p1, result_for(p1));
  s.add_request(1, tokens(3), params(2), 1);
  StepPlan p3 = s.schedule();
  REQUIRE(p3.seqs.size() == 1);
  CHECK(p3.finished_seqs == std::vector<int64_t>{0});
}
