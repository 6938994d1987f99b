// The OpenAI routes through the real HTTP transport and SSE path (sockets, chunked encoding),
// driven by the scripted executor: tool-call deltas with finish_reason "tool_calls", a stop
// string split across tokens, and a multi-byte character split across tokens.
#include <catch2/catch.hpp>

#include "server/http/builtin_routes.h"
#include "server/http/http_server.h"
#include "server/openai/openai_routes.h"
#include "tests/unit/http_test_client.h"
#include "tests/unit/openai_test_util.h"

namespace {

using nlohmann::json;
using namespace kl;
using namespace kl::test;

// The fixture's engine behind a real server on a free port.
struct ServedFixture {
  explicit ServedFixture(ScriptedExecutor::Script script) : f(std::move(script)) {
    f.ctx.health = HealthState::kReady;
    http::Router router;
    http::add_builtin_routes(router, f.ctx);
    openai::add_openai_routes(router, f.ctx);
    http::ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    server = std::make_unique<http::Server>(o, std::move(router));
    server->start();
  }
  ~ServedFixture() { server->stop(std::chrono::milliseconds(200)); }

  // POSTs `body` and returns the SSE events (parsed JSON) read from the chunked stream.
  std::vector<json> stream(const std::string& path, const json& body) {
    HttpTestClient c(server->port());
    c.send_request("POST", path, "Content-Type: application/json\r\n", body.dump());
    auto head = c.read_head();
    REQUIRE(head.has_value());
    REQUIRE(head->status == 200);
    CHECK(head->headers["content-type"].rfind("text/event-stream", 0) == 0);
    std::string sse;
    for (;;) {
      auto chunk = c.read_chunk();
      REQUIRE(chunk.has_value());
      if (chunk->empty()) break;
      sse += *chunk;
    }
    return sse_events(sse);
  }

  OpenAiFixture f;
  std::unique_ptr<http::Server> server;
};

std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const json kTools = json::parse(R"([{"type": "function", "function": {"name": "get_weather",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");

json user(const std::string& text) {
  return json::array({{{"role", "user"}, {"content", text}}});
}

}  // namespace

TEST_CASE("over HTTP: streamed tool-call deltas end with finish_reason tool_calls",
          "[openai][http][tools]") {
  const auto& ids = openai_control_ids();
  ServedFixture s([&](const std::vector<int32_t>&, int) {
    return cat({enc("Checking."),
                {ids.tool_calls_section_begin, ids.tool_call_begin},
                enc("functions.get_weather:0"),
                {ids.tool_call_argument_begin},
                enc("{\"city\": "),
                enc("\"Oslo\"}"),
                {ids.tool_call_end, ids.tool_calls_section_end, ids.im_end}});
  });
  const auto events =
      s.stream("/v1/chat/completions", {{"messages", user("Weather in Oslo?")},
                                        {"tools", kTools},
                                        {"stream", true},
                                        {"stream_options", {{"include_usage", true}}}});
  REQUIRE(events.size() >=
          3);  // role, content and tool-call deltas (merged when ready together), usage
  CHECK(events[0]["choices"][0]["delta"]["role"] == "assistant");
  std::string content, args, name, id, finish;
  for (const json& e : events) {
    if (e["choices"].empty()) continue;  // the usage chunk
    const json& ch = e["choices"][0];
    content += ch["delta"].value("content", "");
    for (const json& tc : ch["delta"].value("tool_calls", json::array())) {
      if (tc.contains("id")) id = tc["id"];
      if (tc.contains("function") && tc["function"].contains("name")) name = tc["function"]["name"];
      if (tc.contains("function")) args += tc["function"].value("arguments", "");
    }
    if (ch["finish_reason"].is_string()) finish = ch["finish_reason"];
  }
  CHECK(content == "Checking.");
  CHECK(id == "functions.get_weather:0");
  CHECK(name == "get_weather");
  CHECK(json::parse(args) == json({{"city", "Oslo"}}));
  CHECK(finish == "tool_calls");
  CHECK(events.back()["usage"]["completion_tokens"].get<int>() > 5);
}

TEST_CASE("over HTTP: a stop string split across tokens ends the stream, nothing after it",
          "[openai][http][stop]") {
  ServedFixture s([](const std::vector<int32_t>&, int) {
    std::vector<int32_t> t = enc("Hello wor");
    for (unsigned char b : std::string("ld END")) t.push_back(byte_token(b));
    auto tail = enc(" more text that must not appear");
    t.insert(t.end(), tail.begin(), tail.end());
    return t;
  });
  const auto events =
      s.stream("/v1/completions",
               {{"prompt", "Say hello"}, {"max_tokens", 40}, {"stop", {"d EN"}}, {"stream", true}});
  std::string text, finish;
  for (const json& e : events) {
    text += e["choices"][0].value("text", "");
    if (e["choices"][0]["finish_reason"].is_string()) finish = e["choices"][0]["finish_reason"];
  }
  CHECK(text == "Hello worl");
  CHECK(finish == "stop");
}

TEST_CASE("over HTTP: a multi-byte character split across tokens is never split in the stream",
          "[openai][http][utf8]") {
  ServedFixture s([](const std::vector<int32_t>&, int) {
    std::vector<int32_t> t;
    for (unsigned char b : std::string("a\xE4\xBD\xA0\xE5\xA5\xBD"
                                       "b"))
      t.push_back(byte_token(b));
    return t;
  });
  const auto events =
      s.stream("/v1/completions", {{"prompt", "x"}, {"max_tokens", 8}, {"stream", true}});
  std::string text;
  for (const json& e : events) {
    const std::string piece = e["choices"][0].value("text", "");
    // Every delta is valid UTF-8 on its own: json::dump would throw on a split sequence.
    CHECK_NOTHROW(json(piece).dump());
    text += piece;
  }
  CHECK(text ==
        "a\xE4\xBD\xA0\xE5\xA5\xBD"
        "b");
}

// A request the engine fails after it was accepted (here: a fatal executor error on the third
// step). A non-streamed response has sent nothing yet, so it carries the error's status, not a
// 200 with an error body; a stream has sent its 200 and ends with an error event and [DONE].
TEST_CASE("over HTTP: an engine failure is a 500 for a non-streamed request, an event in a stream",
          "[openai][http][errors]") {
  SECTION("non-streamed") {
    ServedFixture s([](const std::vector<int32_t>&, int) { return enc(" a b c d e f g h i j"); });
    s.f.executor->set_fatal_from_step(3);
    HttpTestClient c(s.server->port());
    c.send_request("POST", "/v1/completions", "Content-Type: application/json\r\n",
                   json({{"prompt", "Hello"}, {"max_tokens", 8}}).dump());
    auto reply = c.read_reply();
    REQUIRE(reply.has_value());
    CHECK(reply->status == 500);
    CHECK(reply->headers["content-type"] == "application/json");
    const json body = json::parse(reply->body);
    CHECK_THAT(body["error"]["message"].get<std::string>(),
               Catch::Contains("illegal memory access"));
    CHECK(body["error"]["code"] == 500);
  }
  SECTION("streamed") {
    ServedFixture s([](const std::vector<int32_t>&, int) { return enc(" a b c d e f g h i j"); });
    s.f.executor->set_fatal_from_step(3);
    const auto events =
        s.stream("/v1/completions", {{"prompt", "Hello"}, {"max_tokens", 8}, {"stream", true}});
    REQUIRE(!events.empty());
    CHECK(events.back().contains("error"));
  }
  SECTION("non-streamed, no failure: still a 200 with the completion") {
    ServedFixture s([](const std::vector<int32_t>&, int) { return enc(" a b"); });
    HttpTestClient c(s.server->port());
    c.send_request("POST", "/v1/completions", "Content-Type: application/json\r\n",
                   json({{"prompt", "Hello"}, {"max_tokens", 16}}).dump());
    auto reply = c.read_reply();
    REQUIRE(reply.has_value());
    CHECK(reply->status == 200);
    CHECK(json::parse(reply->body)["choices"][0]["text"] == " a b");
  }
}
