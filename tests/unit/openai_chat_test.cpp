// /v1/chat/completions through the real handler, GenerationSource and Engine: message bodies,
// the role-first SSE stream, tool calls (whole and as streamed deltas, finish_reason
// "tool_calls"), tool_choice "none", chat logprobs, n = 2 and usage.
#include <catch2/catch.hpp>

#include "tests/unit/openai_test_util.h"

namespace {

using nlohmann::json;
using namespace kl::test;

std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const kl::tok::KimiControlIds& ids() {
  return openai_control_ids();
}

json user(const std::string& text) {
  return json::array({{{"role", "user"}, {"content", text}}});
}

const json kTools = json::array(
    {{{"type", "function"},
      {"function",
       {{"name", "get_weather"},
        {"description", "Weather of a city"},
        {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}}});

// "Let me check." then one Kimi tool call, the arguments split over several tokens.
std::vector<int32_t> tool_script() {
  return cat({enc("Let me check."),
              {ids().tool_calls_section_begin, ids().tool_call_begin},
              enc("functions.get_weather:0"),
              {ids().tool_call_argument_begin},
              enc("{\"city\": "),
              enc("\"Tokyo\"}"),
              {ids().tool_call_end, ids().tool_calls_section_end, ids().im_end}});
}

}  // namespace

TEST_CASE("chat body: assistant message, usage", "[openai][chat]") {
  const auto script = cat({enc("Hi there!"), {ids().im_end}});
  OpenAiFixture f([script](const std::vector<int32_t>&, int) { return script; });
  auto r = post(f, "/v1/chat/completions", {{"messages", user("Hello")}});
  REQUIRE(r.status == 200);
  auto j = r.json();
  CHECK(j["object"] == "chat.completion");
  CHECK(j["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
  CHECK(j["model"] == "test-model");
  const json& c = j["choices"][0];
  CHECK(c["index"] == 0);
  CHECK(c["message"]["role"] == "assistant");
  CHECK(c["message"]["content"] == "Hi there!");
  CHECK_FALSE(c["message"].contains("tool_calls"));
  CHECK(c["finish_reason"] == "stop");
  CHECK(c["logprobs"].is_null());
  const auto prompt = kl::tok::render_chat(user("Hello"), json::array(), *openai_tokenizer()).ids;
  CHECK(j["usage"]["prompt_tokens"] == prompt.size());
  CHECK(j["usage"]["completion_tokens"] == script.size());
  CHECK(j["usage"]["total_tokens"] == prompt.size() + script.size());

  j = post(f, "/v1/chat/completions",
           {{"messages", user("Hello")}, {"max_completion_tokens", 2}, {"return_token_ids", true}})
          .json();
  CHECK(j["choices"][0]["finish_reason"] == "length");
  CHECK(j["choices"][0]["token_ids"] == std::vector<int32_t>(script.begin(), script.begin() + 2));
  CHECK(j["prompt_token_ids"] == prompt);
}

TEST_CASE("chat stream: role chunk first, content deltas, finish, usage, [DONE]",
          "[openai][chat][sse]") {
  const auto script = cat({enc("Hi"), enc(" there"), enc("!"), {ids().im_end}});
  OpenAiFixture f([script](const std::vector<int32_t>&, int) { return script; });
  auto r = post(f, "/v1/chat/completions",
                {{"messages", user("Hello")},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}}});
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "text/event-stream");
  auto events = sse_events(r.body);
  // role, content (possibly merged with the finish when the tokens arrive at once), usage
  REQUIRE(events.size() >= 3);
  for (const json& e : events) {
    CHECK(e["object"] == "chat.completion.chunk");
    CHECK(e["id"] == events[0]["id"]);
    CHECK(e["model"] == "test-model");
  }
  CHECK(events[0]["choices"][0]["delta"] == json({{"role", "assistant"}, {"content", ""}}));
  CHECK(events[0]["choices"][0]["finish_reason"].is_null());
  std::string content;
  for (size_t i = 1; i + 2 < events.size(); ++i) {
    const json& d = events[i]["choices"][0]["delta"];
    CHECK_FALSE(d.contains("role"));
    CHECK(events[i]["choices"][0]["finish_reason"].is_null());
    content += d.value("content", "");
  }
  const json& fin = events[events.size() - 2]["choices"][0];
  content += fin["delta"].value("content", "");
  CHECK(content == "Hi there!");
  CHECK(fin["finish_reason"] == "stop");
  CHECK(events.back()["choices"].empty());
  CHECK(events.back()["usage"]["completion_tokens"] == script.size());
}

TEST_CASE("tool calls: message.tool_calls and finish_reason tool_calls", "[openai][chat][tools]") {
  OpenAiFixture f([](const std::vector<int32_t>&, int) { return tool_script(); });
  auto j =
      post(f, "/v1/chat/completions", {{"messages", user("Weather in Tokyo?")}, {"tools", kTools}})
          .json();
  const json& c = j["choices"][0];
  CHECK(c["finish_reason"] == "tool_calls");
  CHECK(c["message"]["content"] == "Let me check.");
  REQUIRE(c["message"]["tool_calls"].size() == 1);
  const json& call = c["message"]["tool_calls"][0];
  CHECK(call["id"] == "functions.get_weather:0");
  CHECK(call["type"] == "function");
  CHECK(call["function"]["name"] == "get_weather");
  CHECK(json::parse(call["function"]["arguments"].get<std::string>()) == json({{"city", "Tokyo"}}));
  CHECK(j["usage"]["completion_tokens"] == tool_script().size());

  // tool_choice "none": no parsing, the envelope stays in the text (tools still in the prompt).
  j = post(f, "/v1/chat/completions",
           {{"messages", user("Weather?")}, {"tools", kTools}, {"tool_choice", "none"}})
          .json();
  CHECK(j["choices"][0]["finish_reason"] == "stop");
  CHECK_FALSE(j["choices"][0]["message"].contains("tool_calls"));
  CHECK_THAT(j["choices"][0]["message"]["content"].get<std::string>(),
             Catch::Contains("functions.get_weather:0"));
}

TEST_CASE("tool calls stream as deltas: id and name first, then argument fragments",
          "[openai][chat][tools][sse]") {
  OpenAiFixture f([](const std::vector<int32_t>&, int) { return tool_script(); });
  auto events = sse_events(
      post(f, "/v1/chat/completions",
           {{"messages", user("Weather in Tokyo?")}, {"tools", kTools}, {"stream", true}})
          .body);
  std::string content, arguments;
  int announced = 0;
  bool saw_args_before_begin = false;
  std::string finish;
  for (size_t i = 1; i < events.size(); ++i) {
    const json& ch = events[i]["choices"][0];
    const json& d = ch["delta"];
    content += d.value("content", "");
    if (d.contains("tool_calls")) {
      for (const json& tc : d["tool_calls"]) {
        CHECK(tc["index"] == 0);
        if (tc.contains("id")) {
          ++announced;
          CHECK(tc["id"] == "functions.get_weather:0");
          CHECK(tc["type"] == "function");
          CHECK(tc["function"]["name"] == "get_weather");
        } else if (announced == 0) {
          saw_args_before_begin = true;
        }
        arguments += tc["function"].value("arguments", "");
      }
    }
    if (ch["finish_reason"].is_string()) finish = ch["finish_reason"];
  }
  CHECK(announced == 1);
  CHECK_FALSE(saw_args_before_begin);
  CHECK(content == "Let me check.");
  CHECK(json::parse(arguments) == json({{"city", "Tokyo"}}));
  CHECK(finish == "tool_calls");
}

TEST_CASE("chat logprobs format", "[openai][chat][logprobs]") {
  const auto script = cat({enc("Hi there"), {ids().im_end}});
  OpenAiFixture f([script](const std::vector<int32_t>&, int) { return script; });
  auto j = post(f, "/v1/chat/completions",
                {{"messages", user("Hello")}, {"logprobs", true}, {"top_logprobs", 2}})
               .json();
  const json& content = j["choices"][0]["logprobs"]["content"];
  REQUIRE(content.size() == script.size());
  for (size_t i = 0; i < script.size(); ++i) {
    const json& e = content[i];
    CHECK(e["token"] == openai_tokenizer()->decode({script[i]}));
    CHECK(e["logprob"].get<double>() ==
          Approx(kl::test::ScriptedExecutor::sampled_logprob(static_cast<int64_t>(i))));
    CHECK(e["bytes"].is_array());
    REQUIRE(e["top_logprobs"].size() == 2);
    CHECK(e["top_logprobs"][0].contains("token"));
    CHECK(e["top_logprobs"][0].contains("bytes"));
  }
  std::string first;
  for (int b : content[0]["bytes"]) first += static_cast<char>(b);
  CHECK(first == *openai_tokenizer()->token_bytes(script[0]));

  // logprobs without top_logprobs: entries with empty alternatives; streaming carries them too.
  j = post(f, "/v1/chat/completions", {{"messages", user("Hello")}, {"logprobs", true}}).json();
  CHECK(j["choices"][0]["logprobs"]["content"][0]["top_logprobs"].empty());
  auto events = sse_events(post(f, "/v1/chat/completions",
                                {{"messages", user("Hello")}, {"logprobs", true}, {"stream", true}})
                               .body);
  size_t n = 0;
  for (size_t i = 1; i < events.size(); ++i) {
    const json& lp = events[i]["choices"][0]["logprobs"];
    if (lp.is_object()) n += lp["content"].size();
  }
  CHECK(n == script.size());
}

TEST_CASE("chat n = 2: two choices, role chunks for both", "[openai][chat]") {
  OpenAiFixture f([](const std::vector<int32_t>&, int k) {
    return cat({enc(k == 0 ? "Alpha" : "Beta"), {openai_control_ids().im_end}});
  });
  auto j = post(f, "/v1/chat/completions", {{"messages", user("Hello")}, {"n", 2}}).json();
  REQUIRE(j["choices"].size() == 2);
  CHECK(j["choices"][0]["message"]["content"] == "Alpha");
  CHECK(j["choices"][1]["message"]["content"] == "Beta");
  CHECK(j["usage"]["completion_tokens"] == enc("Alpha").size() + enc("Beta").size() + 2);

  auto events = sse_events(
      post(f, "/v1/chat/completions", {{"messages", user("Hello")}, {"n", 2}, {"stream", true}})
          .body);
  CHECK(events[0]["choices"][0]["index"] == 0);
  CHECK(events[1]["choices"][0]["index"] == 1);
  CHECK(events[1]["choices"][0]["delta"]["role"] == "assistant");
  std::string texts[2];
  int finishes = 0;
  for (size_t i = 2; i < events.size(); ++i) {
    const json& c = events[i]["choices"][0];
    texts[c["index"].get<int>()] += c["delta"].value("content", "");
    finishes += c["finish_reason"].is_string() ? 1 : 0;
  }
  CHECK(texts[0] == "Alpha");
  CHECK(texts[1] == "Beta");
  CHECK(finishes == 2);
}
