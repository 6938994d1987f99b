// The whole engine (scheduler + pipelined loop + CpuExecutor) on the golden cases: under heavy
// concurrency, random arrivals and a page budget small enough to force preemption, every prompt
// yields its golden greedy ids, bitwise the same (tokens and logprobs) as running alone.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "engine/api/engine.h"
#include "engine/exec/cpu_executor.h"
#include "tests/golden/golden_case.h"

using namespace kl;
using namespace kl::test;
using namespace std::chrono_literals;

namespace {

struct Sample {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  FinishReason finish = FinishReason::kNone;
};

std::unique_ptr<Engine> make_engine(const GoldenCase& gc, int64_t pages, int64_t blocks,
                                    int max_seqs, int64_t budget) {
  EngineConfig c;
  c.vocab_size = gc.config.vocab_size;
  c.scheduler.max_num_batched_tokens = budget;
  c.scheduler.max_num_seqs = max_seqs;
  c.scheduler.max_model_len = 512;
  c.scheduler.eos_token_ids = {};  // golden continuations ignore EOS
  c.scheduler.check_invariants = true;
  return std::make_unique<Engine>(
      c, std::make_unique<CpuExecutor>(gc.config, gc.weights, pages, blocks));
}

GenerateRequest greedy(const GoldenPrompt& p) {
  GenerateRequest r;
  r.prompt = p.input_ids;
  r.params.temperature = 0.f;
  r.params.max_tokens = static_cast<int32_t>(p.greedy_ids.size());
  r.params.logprobs = 0;
  return r;
}

std::vector<Sample> read_samples(RequestStream& s, int n) {
  std::vector<Sample> out(n);
  while (!s.done()) {
    auto o = s.next(60000ms);
    REQUIRE(o.has_value());
    REQUIRE(o->error.empty());
    if (o->token >= 0) {
      out[o->index].tokens.push_back(o->token);
      out[o->index].logprobs.push_back(o->logprob);
    }
    if (o->finish != FinishReason::kNone) out[o->index].finish = o->finish;
  }
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// Each request alone on an ample cache, then all of them twice at random moments on a cache too
// small for all (the longest prompt plus continuation needs 5 pages; 7 are shared), which forces
// preemption. Returns (alone, concurrent) samples and the concurrent engine's stats.
struct ConcurrentRun {
  std::vector<Sample> alone;
  std::vector<std::pair<size_t, Sample>> concurrent;
  EngineStats stats;
};

template <typename MakeRequest>
ConcurrentRun run_alone_and_concurrently(const GoldenCase& gc, MakeRequest make) {
  ConcurrentRun out;
  {
    auto engine = make_engine(gc, 64, 4, 4, 512);
    for (const auto& p : gc.prompts) {
      auto r = engine->submit(make(p));
      REQUIRE(r.status == SubmitStatus::kOk);
      out.alone.push_back(read_samples(*r.stream, 1)[0]);
    }
  }
  auto engine = make_engine(gc, 7, 6, 6, 96);
  std::mt19937_64 rng(99);
  std::vector<std::pair<size_t, std::shared_ptr<RequestStream>>> streams;
  for (int rep = 0; rep < 2; ++rep) {
    for (size_t i = 0; i < gc.prompts.size(); ++i) {
      auto r = engine->submit(make(gc.prompts[i]));
      REQUIRE(r.status == SubmitStatus::kOk);
      streams.emplace_back(i, r.stream);
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    }
  }
  for (auto& [i, stream] : streams) out.concurrent.emplace_back(i, read_samples(*stream, 1)[0]);
  out.stats = engine->stats();
  return out;
}

}  // namespace

TEST_CASE("engine golden: concurrency, random arrivals and preemption reproduce the golden ids") {
  for (const auto& dir : golden_case_dirs()) {
    GoldenCase gc = load_golden_case(dir);
    INFO(gc.name);
    const ConcurrentRun run = run_alone_and_concurrently(gc, greedy);
    for (size_t i = 0; i < gc.prompts.size(); ++i) {
      CHECK(run.alone[i].tokens == gc.prompts[i].greedy_ids);
      CHECK(run.alone[i].finish == FinishReason::kLength);
    }
    for (const auto& [i, s] : run.concurrent) {
      INFO("prompt " << gc.prompts[i].name);
      CHECK(s.tokens == gc.prompts[i].greedy_ids);
      CHECK(same_bits(s.logprobs, run.alone[i].logprobs));
    }
    WARN(gc.name << ": " << run.stats.num_preemptions << " preemptions over " << run.stats.num_steps
                 << " steps");
    CHECK(run.stats.num_preemptions > 0);
  }
}

TEST_CASE("engine golden: seeded sampling with penalties is unchanged by batching and preemption") {
  GoldenCase gc = load_golden_case(golden_case_dirs().front());
  auto seeded = [](const GoldenPrompt& p) {
    GenerateRequest r;
    r.prompt = p.input_ids;
    r.params.temperature = 0.9f;
    r.params.top_p = 0.95f;
    r.params.top_k = 50;
    r.params.repetition_penalty = 1.1f;
    r.params.frequency_penalty = 0.2f;
    r.params.seed = 1000 + p.input_ids.size();
    r.params.max_tokens = 16;
    r.params.logprobs = 2;
    return r;
  };
  const ConcurrentRun run = run_alone_and_concurrently(gc, seeded);
  int differs_from_greedy = 0;
  for (const auto& [i, s] : run.concurrent) {
    INFO("prompt " << gc.prompts[i].name);
    CHECK(s.tokens == run.alone[i].tokens);
    CHECK(same_bits(s.logprobs, run.alone[i].logprobs));
    differs_from_greedy += s.tokens != gc.prompts[i].greedy_ids;
  }
  CHECK(differs_from_greedy > 0);  // it really sampled
  CHECK(run.stats.num_preemptions > 0);
}

TEST_CASE("engine golden: prompt logprobs and top logprobs match the reference logits") {
  GoldenCase gc = load_golden_case(golden_case_dirs().front());  // tiny-a where present
  auto engine = make_engine(gc, 64, 4, 4, 48);                   // chunked prompts
  for (const auto& p : gc.prompts) {
    if (p.prefill_logits.empty()) continue;
    GenerateRequest r = greedy(p);
    r.params.prompt_logprobs = 3;
    r.params.logprobs = 3;
    auto sub = engine->submit(r);
    REQUIRE(sub.status == SubmitStatus::kOk);
    std::vector<std::vector<kernels::TokenLogprob>> prompt_lp;
    std::vector<std::vector<kernels::TokenLogprob>> top;
    while (!sub.stream->done()) {
      auto o = sub.stream->next(60000ms);
      REQUIRE(o.has_value());
      for (auto& row : o->prompt_logprobs) prompt_lp.push_back(row);
      if (o->token >= 0) top.push_back(o->top_logprobs);
    }
    const int64_t V = gc.config.vocab_size;
    const size_t L = p.input_ids.size();
    REQUIRE(prompt_lp.size() == L);
    auto ref_logprob = [&](const float* row, int32_t tok) {  // independent double log_softmax
      double m = row[0];
      for (int64_t v = 1; v < V; ++v) m = std::max<double>(m, row[v]);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - m);
      return double(row[tok]) - m - std::log(sum);
    };
    for (size_t t = 0; t + 1 < L; ++t) {
      REQUIRE(prompt_lp[t].size() == 4);  // the next prompt token + top 3
      CHECK(prompt_lp[t][0].token == p.input_ids[t + 1]);
      const float* row = p.prefill_logits.data() + t * V;
      CHECK(std::fabs(prompt_lp[t][0].logprob - ref_logprob(row, p.input_ids[t + 1])) < 1e-3);
      CHECK(prompt_lp[t][1].logprob >= prompt_lp[t][2].logprob);
    }
    CHECK(prompt_lp[L - 1].empty());  // the last prompt position predicts the first output
    REQUIRE(top.size() == p.greedy_ids.size());
    for (size_t k = 0; k < top.size(); ++k) {
      REQUIRE(top[k].size() == 3);
      CHECK(top[k][0].token == p.greedy_ids[k]);  // greedy: the best token is the chosen one
      const float* row = p.decode_logits.data() + k * V;
      CHECK(std::fabs(top[k][0].logprob - ref_logprob(row, p.greedy_ids[k])) < 1e-3);
    }
  }
}

TEST_CASE("engine golden: n = 4 with a seed gives 4 distinct samples, each reproducible") {
  const auto dirs = golden_case_dirs();
  GoldenCase gc = load_golden_case(dirs.front());
  const GoldenPrompt& p = gc.prompts.back();
  auto run = [&] {
    auto engine = make_engine(gc, 64, 8, 8, 512);
    GenerateRequest r;
    r.prompt = p.input_ids;
    r.params.n = 4;
    r.params.seed = 1234;
    r.params.temperature = 1.0f;
    r.params.max_tokens = 12;
    r.params.logprobs = 0;
    auto s = engine->submit(r);
    REQUIRE(s.status == SubmitStatus::kOk);
    return read_samples(*s.stream, 4);
  };
  const auto first = run();
  const auto second = run();
  std::set<std::vector<int32_t>> distinct;
  for (int i = 0; i < 4; ++i) {
    CHECK(first[i].tokens.size() == 12);
    CHECK(first[i].tokens == second[i].tokens);
    CHECK(same_bits(first[i].logprobs, second[i].logprobs));
    distinct.insert(first[i].tokens);
  }
  CHECK(distinct.size() == 4);
}
