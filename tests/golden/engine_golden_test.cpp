// The whole engine (scheduler + pipelined loop + CpuExecutor) on the golden cases: under heavy
// concurrency, random arrivals and a page budget small enough to force preemption, every prompt
// yields its golden greedy ids, bitwise the same (tokens and logprobs) as running alone.
#include <catch2/catch.hpp>

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

}  // namespace

TEST_CASE("engine golden: concurrency, random arrivals and preemption reproduce the golden ids") {
  for (const auto& dir : golden_case_dirs()) {
    GoldenCase gc = load_golden_case(dir);
    INFO(gc.name);
    // Alone: one request at a time on an ample cache.
    std::vector<Sample> alone;
    {
      auto engine = make_engine(gc, 64, 4, 4, 512);
      for (const auto& p : gc.prompts) {
        auto r = engine->submit(greedy(p));
        REQUIRE(r.status == SubmitStatus::kOk);
        alone.push_back(read_samples(*r.stream, 1)[0]);
        CHECK(alone.back().tokens == p.greedy_ids);
        CHECK(alone.back().finish == FinishReason::kLength);
      }
    }
    // All prompts, twice each, at random moments, on a cache too small for all of them: the
    // longest prompt plus its continuation needs 5 pages, and 7 pages are shared by everyone.
    auto engine = make_engine(gc, 7, 6, 6, 96);
    std::mt19937_64 rng(99);
    std::vector<std::pair<size_t, std::shared_ptr<RequestStream>>> streams;
    for (int rep = 0; rep < 2; ++rep) {
      for (size_t i = 0; i < gc.prompts.size(); ++i) {
        auto r = engine->submit(greedy(gc.prompts[i]));
        REQUIRE(r.status == SubmitStatus::kOk);
        streams.emplace_back(i, r.stream);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
      }
    }
    for (auto& [i, stream] : streams) {
      Sample s = read_samples(*stream, 1)[0];
      INFO("prompt " << gc.prompts[i].name);
      CHECK(s.tokens == gc.prompts[i].greedy_ids);
      CHECK(same_bits(s.logprobs, alone[i].logprobs));
    }
    const EngineStats st = engine->stats();
    WARN(gc.name << ": " << st.num_preemptions << " preemptions over " << st.num_steps
                 << " steps");
    CHECK(st.num_preemptions > 0);
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
