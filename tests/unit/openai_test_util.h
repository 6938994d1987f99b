// Shared fixtures of the OpenAI route tests: the project's small tokenizer (trained once), a
// real Engine over a ScriptedExecutor, and helpers that drive a handler's StreamSource to the
// end and split SSE streams into events.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/api/engine.h"
#include "server/http/http_types.h"
#include "server/serving/serving_context.h"
#include "tests/support/scripted_executor.h"

namespace kl::test {

// The default model's tokenizer (2048 regular tokens + 256 Kimi specials), built once.
std::shared_ptr<const tok::Tokenizer> openai_tokenizer();
const tok::KimiControlIds& openai_control_ids();
std::vector<int32_t> enc(const std::string& text);  // ordinary text
int32_t byte_token(unsigned char b);                // the id of a single-byte token

struct OpenAiFixture {
  // `script` picks the tokens per (prompt, sample); with_tokenizer false: --skip-tokenizer-init.
  explicit OpenAiFixture(ScriptedExecutor::Script script, bool with_tokenizer = true,
                         int64_t max_model_len = 256, int64_t max_num_waiting = 64);
  ~OpenAiFixture();

  ScriptedExecutor* executor = nullptr;  // owned by the engine
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Metrics> metrics;
  ServingContext ctx;
};

struct HttpResult {
  int status = 0;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool streamed = false;
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

// Drives a handler result to the end (pulling with `max_bytes` per call, as the transport does).
HttpResult collect(http::HandlerResult r, size_t max_bytes = 7);
HttpResult post(OpenAiFixture& f, const std::string& path, const nlohmann::json& body);
HttpResult post_raw(OpenAiFixture& f, const std::string& path, const std::string& body);

// SSE events of a stream: each "data: X\n\n" parsed (the last one must be "[DONE]", which is not
// returned); fails the test on bad framing.
std::vector<nlohmann::json> sse_events(const std::string& body);

}  // namespace kl::test
