// The engine loop with a fake executor: pipelining (step N+1 planned while step N runs), fail-fast
// admission control, cancellation, validation at submit, and draining shutdown.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "engine/api/engine.h"
#include "engine/exec/fake_executor.h"

using namespace kl;
using namespace std::chrono_literals;

namespace {

EngineConfig engine_config(int max_seqs = 8, int64_t max_waiting = 64) {
  EngineConfig c;
  c.vocab_size = 1000;
  c.max_num_waiting = max_waiting;
  c.scheduler.max_num_batched_tokens = 256;
  c.scheduler.max_num_seqs = max_seqs;
  c.scheduler.max_model_len = 512;
  c.scheduler.eos_token_ids = {2};
  c.scheduler.check_invariants = true;
  return c;
}

GenerateRequest request(int prompt_len, int max_tokens) {
  GenerateRequest r;
  for (int i = 0; i < prompt_len; ++i) r.prompt.push_back(10 + i);
  r.params.max_tokens = max_tokens;
  r.params.temperature = 0.f;
  return r;
}

// Reads a stream to its end: the tokens of sample 0 and the finish reason.
std::pair<std::vector<int32_t>, FinishReason> read_all(RequestStream& s) {
  std::vector<int32_t> toks;
  FinishReason fin = FinishReason::kNone;
  while (!s.done()) {
    auto o = s.next(5000ms);
    REQUIRE(o.has_value());
    if (o->token >= 0) toks.push_back(o->token);
    if (o->finish != FinishReason::kNone) fin = o->finish;
  }
  return {toks, fin};
}

template <typename Pred>
bool wait_for(Pred p, std::chrono::milliseconds limit = 5000ms) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!p()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST_CASE("engine: step N+1 is planned and submitted while step N executes") {
  auto exec = std::make_unique<FakeExecutor>(64, 8, 20ms);
  FakeExecutor* fake = exec.get();
  Engine engine(engine_config(), std::move(exec));
  auto r = engine.submit(request(8, 6));
  REQUIRE(r.status == SubmitStatus::kOk);
  auto [toks, fin] = read_all(*r.stream);
  CHECK(fin == FinishReason::kLength);
  CHECK(toks.size() == 6);
  const auto tl = fake->timeline();
  REQUIRE(tl.size() >= 6);
  int overlapped = 0;
  for (size_t i = 0; i + 1 < tl.size(); ++i) overlapped += tl[i + 1].submitted < tl[i].finished;
  // Every step after the first was submitted before its predecessor finished executing.
  CHECK(overlapped >= static_cast<int>(tl.size()) - 2);
  // The tokens are the executor's, in order (position = prompt length + index).
  for (size_t i = 0; i < toks.size(); ++i) CHECK(toks[i] == fake->token_at(0, 8 + i));
}

TEST_CASE("engine: beyond max_num_waiting, submission fails fast as overloaded") {
  Engine engine(engine_config(1, 2), std::make_unique<FakeExecutor>(64, 8, 20ms));
  auto a = engine.submit(request(4, 200));
  REQUIRE(a.status == SubmitStatus::kOk);
  REQUIRE(wait_for([&] { return engine.stats().num_running == 1; }));
  auto b = engine.submit(request(4, 5));
  auto c = engine.submit(request(4, 5));
  auto d = engine.submit(request(4, 5));
  CHECK(b.status == SubmitStatus::kOk);
  CHECK(c.status == SubmitStatus::kOk);
  CHECK(d.status == SubmitStatus::kOverloaded);
  CHECK_THAT(d.error, Catch::Contains("overloaded"));
  engine.cancel(a.stream->id());
  CHECK(read_all(*a.stream).second == FinishReason::kAbort);
  CHECK(read_all(*b.stream).second == FinishReason::kLength);
  CHECK(read_all(*c.stream).second == FinishReason::kLength);
}

TEST_CASE("engine: cancellation ends the stream and frees the caches") {
  Engine engine(engine_config(), std::make_unique<FakeExecutor>(64, 8, 2ms));
  auto a = engine.submit(request(100, 400));
  REQUIRE(a.status == SubmitStatus::kOk);
  REQUIRE(a.stream->next(5000ms).has_value());  // it is generating
  engine.cancel(a.stream->id());
  CHECK(read_all(*a.stream).second == FinishReason::kAbort);
  REQUIRE(wait_for([&] {
    auto s = engine.stats();
    return s.num_running == 0 && s.page_usage == 0.0 && s.state_block_usage == 0.0;
  }));
}

TEST_CASE("engine: invalid requests are refused at submit with the field named") {
  Engine engine(engine_config(), std::make_unique<FakeExecutor>(64, 8, 0us));
  auto bad = request(4, 5);
  bad.params.top_p = 1.5f;
  auto r = engine.submit(bad);
  CHECK(r.status == SubmitStatus::kInvalid);
  CHECK_THAT(r.error, Catch::Contains("top_p"));
  auto too_long = engine.submit(request(600, 5));
  CHECK(too_long.status == SubmitStatus::kInvalid);
  CHECK_THAT(too_long.error, Catch::Contains("maximum context length is 512 tokens"));
  auto oov = request(4, 5);
  oov.prompt[1] = 5000;
  CHECK(engine.submit(oov).status == SubmitStatus::kInvalid);
  // The engine keeps serving.
  auto ok = engine.submit(request(4, 3));
  REQUIRE(ok.status == SubmitStatus::kOk);
  CHECK(read_all(*ok.stream).first.size() == 3);
}

TEST_CASE("engine: EOS finishes with stop; a draining shutdown completes every request") {
  Engine engine(engine_config(2), std::make_unique<FakeExecutor>(64, 8, 1ms, 1000, 5));
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 6; ++i) {
    auto r = engine.submit(request(3 + i, 40));
    REQUIRE(r.status == SubmitStatus::kOk);
    streams.push_back(r.stream);
  }
  engine.shutdown(/*drain=*/true);
  CHECK(engine.submit(request(3, 3)).status == SubmitStatus::kShuttingDown);
  for (auto& s : streams) {
    auto [toks, fin] = read_all(*s);
    CHECK(fin == FinishReason::kStop);  // the fake emits EOS within 5 tokens
    CHECK(toks.back() == 2);
    CHECK(toks.size() <= 5);
  }
}

TEST_CASE("engine: a fatal executor error fails every request, refuses new ones, reports once") {
  auto exec = std::make_unique<FakeExecutor>(64, 8, 200us);
  exec->set_fatal_from_step(4);
  std::atomic<int> fatal_calls{0};
  std::string reported;
  EngineConfig c = engine_config();
  c.on_fatal = [&](const std::string& e) {
    reported = e;
    ++fatal_calls;  // after `reported`: the test reads it once it sees the count
  };
  Engine engine(c, std::move(exec));
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 3; ++i) {
    auto r = engine.submit(request(5, 100));
    REQUIRE(r.status == SubmitStatus::kOk);
    streams.push_back(r.stream);
  }
  for (auto& s : streams) {
    auto [toks, fin] = read_all(*s);
    CHECK(fin == FinishReason::kError);
    CHECK(toks.size() < 100);
  }
  REQUIRE(wait_for([&] { return fatal_calls.load() == 1; }));
  CHECK_THAT(reported, Catch::Contains("illegal memory access"));
  CHECK_THAT(engine.fatal_error(), Catch::Contains("illegal memory access"));
  auto late = engine.submit(request(5, 10));
  CHECK(late.status == SubmitStatus::kShuttingDown);
  CHECK_THAT(late.error, Catch::Contains("fatal error"));
  engine.shutdown(false);  // returns promptly: nothing is left to drain
}
