// OpenAI test fixtures: tokenizer, engine over a ScriptedExecutor, handler drivers, SSE parsing.
#include "tests/unit/openai_test_util.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "server/openai/openai_handlers.h"
#include "server/tokenizer/default_tokenizer.h"

namespace kl::test {

using nlohmann::json;

std::shared_ptr<const tok::Tokenizer> openai_tokenizer() {
  static const std::shared_ptr<const tok::Tokenizer> t = tok::make_kimi_tokenizer(
      tok::train_default_ranks(), tok::kimi_default_specials(tok::kDefaultNumRegularTokens));
  return t;
}

const tok::KimiControlIds& openai_control_ids() {
  static const tok::KimiControlIds ids = tok::KimiControlIds::resolve(*openai_tokenizer());
  return ids;
}

std::vector<int32_t> enc(const std::string& text) {
  return openai_tokenizer()->encode(text);
}

int32_t byte_token(unsigned char b) {
  const auto& t = *openai_tokenizer();
  for (int32_t id = 0; id < t.num_regular(); ++id) {
    const std::string* s = t.token_bytes(id);
    if (s && s->size() == 1 && static_cast<unsigned char>((*s)[0]) == b) return id;
  }
  FAIL("no single-byte token for " << int(b));
  return -1;
}

OpenAiFixture::OpenAiFixture(ScriptedExecutor::Script script, bool with_tokenizer,
                             int64_t max_model_len, int64_t max_num_waiting) {
  EngineConfig c;
  c.vocab_size = tok::kDefaultVocabSize;
  c.max_num_waiting = max_num_waiting;
  c.scheduler.max_num_batched_tokens = 256;
  c.scheduler.max_num_seqs = 8;
  c.scheduler.max_model_len = max_model_len;
  c.scheduler.eos_token_ids = openai_control_ids().stop_ids();
  auto exec = std::make_unique<ScriptedExecutor>(std::move(script), openai_control_ids().im_end,
                                                 tok::kDefaultNumRegularTokens);
  executor = exec.get();
  engine = std::make_unique<Engine>(c, std::move(exec));
  metrics = std::make_unique<Metrics>("test-model");
  ctx.engine = engine.get();
  if (with_tokenizer) {
    ctx.tokenizer = openai_tokenizer();
    ctx.control_ids = openai_control_ids();
  }
  ctx.card.served_model_name = "test-model";
  ctx.card.max_model_len = max_model_len;
  ctx.card.vocab_size = tok::kDefaultVocabSize;
  ctx.metrics = metrics.get();
  ctx.health = HealthState::kReady;
}

OpenAiFixture::~OpenAiFixture() {
  engine->shutdown(false);
}

HttpResult collect(http::HandlerResult r, size_t max_bytes) {
  HttpResult out;
  if (auto* resp = std::get_if<http::Response>(&r)) {
    out.status = resp->status;
    out.content_type = resp->content_type;
    out.headers = resp->headers;
    out.body = resp->body;
    return out;
  }
  auto& s = std::get<http::StreamResponse>(r);
  out.status = s.status;
  out.content_type = s.content_type;
  out.headers = s.headers;
  out.streamed = true;
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;
  s.source->set_wakeup([&] {
    std::lock_guard<std::mutex> lock(mu);
    woken = true;
    cv.notify_all();
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    http::StreamSource::Chunk c = s.source->pull(max_bytes);
    REQUIRE(c.data.size() <= max_bytes);
    // As the transport: a deferred head takes the status of the first bytes.
    if (s.head_with_first_data && out.body.empty() && c.status != 0) out.status = c.status;
    out.body += c.data;
    if (c.done) break;
    if (!c.data.empty()) continue;
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_until(lock, deadline, [&] { return woken; }));
    woken = false;
  }
  return out;
}

HttpResult post_raw(OpenAiFixture& f, const std::string& path, const std::string& body) {
  http::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body;
  if (path == "/v1/completions") return collect(openai::handle_completions(f.ctx, req));
  if (path == "/v1/chat/completions") return collect(openai::handle_chat_completions(f.ctx, req));
  if (path == "/tokenize") return collect(openai::handle_tokenize(f.ctx, req));
  if (path == "/detokenize") return collect(openai::handle_detokenize(f.ctx, req));
  FAIL("unknown path " << path);
  return {};
}

HttpResult post(OpenAiFixture& f, const std::string& path, const json& body) {
  return post_raw(f, path, body.dump());
}

std::vector<json> sse_events(const std::string& body) {
  std::vector<json> events;
  size_t pos = 0;
  bool done = false;
  while (pos < body.size()) {
    REQUIRE_FALSE(done);  // nothing after [DONE]
    REQUIRE(body.compare(pos, 6, "data: ") == 0);
    const size_t end = body.find("\n\n", pos);
    REQUIRE(end != std::string::npos);
    const std::string data = body.substr(pos + 6, end - pos - 6);
    REQUIRE(data.find('\n') == std::string::npos);
    if (data == "[DONE]")
      done = true;
    else
      events.push_back(json::parse(data));
    pos = end + 2;
  }
  REQUIRE(done);
  return events;
}

}  // namespace kl::test
