// /v1/completions through the real handler, GenerationSource and Engine (ScriptedExecutor):
// bodies, SSE framing, usage, echo, legacy logprobs, token ids, stop strings and multi-byte
// characters split across tokens, several prompts, n = 2, cancellation, /tokenize.
#include <catch2/catch.hpp>

#include <thread>

#include "server/openai/openai_handlers.h"
#include "server/tokenizer/chat_template.h"
#include "server/tokenizer/utf8.h"
#include "tests/unit/openai_test_util.h"

namespace {

using nlohmann::json;
using namespace kl::test;
using kl::test::ScriptedExecutor;

std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

int32_t im_end() {
  return openai_control_ids().im_end;
}

// Every prompt gets " world!" then <|im_end|>.
ScriptedExecutor::Script world() {
  return [](const std::vector<int32_t>&, int) { return cat({enc(" world!"), {im_end()}}); };
}

std::string text_of_stream(const std::vector<json>& events, int index = 0) {
  std::string text;
  for (const json& e : events)
    for (const json& c : e["choices"])
      if (c["index"] == index) text += c["text"].get<std::string>();
  return text;
}

}  // namespace

TEST_CASE("completion body: text, finish reason, usage", "[openai][completions]") {
  OpenAiFixture f(world());
  auto r = post(f, "/v1/completions", {{"prompt", "Hello"}, {"model", "test-model"}});
  REQUIRE(r.status == 200);
  CHECK(r.streamed);  // the body comes from a StreamSource, never a blocked I/O thread
  CHECK(r.content_type == "application/json");
  auto j = r.json();
  CHECK(j["object"] == "text_completion");
  CHECK(j["model"] == "test-model");
  CHECK(j["id"].get<std::string>().rfind("cmpl-", 0) == 0);
  CHECK(j["created"].get<int64_t>() > 1600000000);
  REQUIRE(j["choices"].size() == 1);
  CHECK(j["choices"][0]["index"] == 0);
  CHECK(j["choices"][0]["text"] == " world!");
  CHECK(j["choices"][0]["finish_reason"] == "stop");
  CHECK(j["choices"][0]["logprobs"].is_null());
  CHECK_FALSE(j["choices"][0].contains("token_ids"));
  const int64_t completion = static_cast<int64_t>(enc(" world!").size()) + 1;  // + <|im_end|>
  CHECK(j["usage"]["prompt_tokens"] == enc("Hello").size());
  CHECK(j["usage"]["completion_tokens"] == completion);
  CHECK(j["usage"]["total_tokens"] == completion + static_cast<int64_t>(enc("Hello").size()));

  j = post(f, "/v1/completions", {{"prompt", "Hello"}, {"max_tokens", 1}}).json();
  CHECK(j["choices"][0]["finish_reason"] == "length");
  CHECK(j["usage"]["completion_tokens"] == 1);
}

TEST_CASE("completion stream: SSE framing, one id, finish chunk, usage chunk, [DONE]",
          "[openai][completions][sse]") {
  OpenAiFixture f(world());
  auto r =
      post(f, "/v1/completions",
           {{"prompt", "Hello"}, {"stream", true}, {"stream_options", {{"include_usage", true}}}});
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "text/event-stream");
  auto events = sse_events(r.body);
  REQUIRE(events.size() >= 2);  // content chunks (the last with the finish), usage
  for (const json& e : events) {
    CHECK(e["id"] == events[0]["id"]);
    CHECK(e["created"] == events[0]["created"]);
    CHECK(e["model"] == "test-model");
    CHECK(e["object"] == "text_completion");
    CHECK(e.contains("usage"));  // null until the last chunk
  }
  CHECK(text_of_stream(events) == " world!");
  const json& last = events.back();
  CHECK(last["choices"].empty());
  CHECK(last["usage"]["completion_tokens"] == enc(" world!").size() + 1);
  CHECK(last["usage"]["total_tokens"] ==
        last["usage"]["prompt_tokens"].get<int>() + last["usage"]["completion_tokens"].get<int>());
  const json& fin = events[events.size() - 2];
  CHECK(fin["choices"][0]["finish_reason"] == "stop");
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    CHECK(events[i]["choices"][0]["finish_reason"].is_null());
    CHECK(events[i]["usage"].is_null());
  }

  // Without include_usage: no usage anywhere; continuous stats: usage on every chunk.
  events = sse_events(post(f, "/v1/completions", {{"prompt", "Hello"}, {"stream", true}}).body);
  for (const json& e : events) CHECK_FALSE(e.contains("usage"));
  events = sse_events(
      post(f, "/v1/completions",
           {{"prompt", "Hello"},
            {"stream", true},
            {"stream_options", {{"include_usage", true}, {"continuous_usage_stats", true}}}})
          .body);
  for (const json& e : events) CHECK(e["usage"]["prompt_tokens"] == enc("Hello").size());
}

TEST_CASE("stop strings split across tokens", "[openai][completions][stop]") {
  // "The answer is 42. Done" from pieces, so that "wer is 4" spans three tokens.
  const auto script =
      cat({enc("The ans"), enc("wer"), enc(" is"), enc(" 42"), enc(". Done"), {im_end()}});
  OpenAiFixture f([script](const std::vector<int32_t>&, int) { return script; });
  for (bool stream : {false, true}) {
    INFO("stream " << stream);
    json req = {{"prompt", "Q"}, {"stop", json::array({"zzz", "wer is 4"})}, {"stream", stream}};
    auto r = post(f, "/v1/completions", req);
    if (stream) {
      auto events = sse_events(r.body);
      CHECK(text_of_stream(events) == "The ans");
      CHECK(events.back()["choices"][0]["finish_reason"] == "stop");
    } else {
      CHECK(r.json()["choices"][0]["text"] == "The ans");
      CHECK(r.json()["choices"][0]["finish_reason"] == "stop");
    }
    req["include_stop_str_in_output"] = true;
    r = post(f, "/v1/completions", req);
    CHECK((stream ? text_of_stream(sse_events(r.body))
                  : r.json()["choices"][0]["text"].get<std::string>()) == "The answer is 4");
  }
}

TEST_CASE("multi-byte characters split across tokens stream as whole characters",
          "[openai][completions][utf8]") {
  // 你好 = E4 BD A0 E5 A5 BD, one byte per token.
  std::vector<int32_t> script;
  for (unsigned char b : std::string("\xE4\xBD\xA0\xE5\xA5\xBD")) script.push_back(byte_token(b));
  script.push_back(im_end());
  OpenAiFixture f([script](const std::vector<int32_t>&, int) { return script; });
  auto r = post(f, "/v1/completions", {{"prompt", "Q"}, {"stream", true}, {"logprobs", 0}});
  auto events = sse_events(r.body);  // every event parsed as JSON: valid UTF-8 throughout
  std::string text;
  for (const json& e : events) {
    const std::string t = e["choices"][0]["text"];
    CHECK(kl::tok::is_valid_utf8(t));
    CHECK(t.find("\xEF\xBF\xBD") == std::string::npos);  // no U+FFFD
    text += t;
  }
  CHECK(text == "\xE4\xBD\xA0\xE5\xA5\xBD");
  CHECK(post(f, "/v1/completions", {{"prompt", "Q"}}).json()["choices"][0]["text"] ==
        "\xE4\xBD\xA0\xE5\xA5\xBD");
}

TEST_CASE("echo and legacy logprobs", "[openai][completions][logprobs]") {
  OpenAiFixture f(world());
  const auto prompt = enc("Hello there");
  const auto gen = cat({enc(" world!"), {im_end()}});
  auto j = post(f, "/v1/completions", {{"prompt", "Hello there"}, {"echo", true}}).json();
  CHECK(j["choices"][0]["text"] == "Hello there world!");

  j = post(f, "/v1/completions", {{"prompt", "Hello there"}, {"logprobs", 2}}).json();
  json lp = j["choices"][0]["logprobs"];
  REQUIRE(lp["tokens"].size() == gen.size());
  CHECK(lp["token_logprobs"].size() == gen.size());
  CHECK(lp["top_logprobs"].size() == gen.size());
  CHECK(lp["text_offset"][0] == 0);
  for (size_t i = 0; i < gen.size(); ++i) {
    CHECK(lp["token_logprobs"][i].get<double>() ==
          Approx(ScriptedExecutor::sampled_logprob(static_cast<int64_t>(i))));
    CHECK(lp["top_logprobs"][i].size() <= 3);
    CHECK(lp["top_logprobs"][i].contains(lp["tokens"][i].get<std::string>()));
    if (i > 0)
      CHECK(lp["text_offset"][i].get<int>() ==
            lp["text_offset"][i - 1].get<int>() +
                static_cast<int>(lp["tokens"][i - 1].get<std::string>().size()));
  }
  CHECK(lp["tokens"][0] == openai_tokenizer()->decode({gen[0]}));

  // Echo with logprobs: the prompt tokens lead, the first one unscored.
  j = post(f, "/v1/completions", {{"prompt", "Hello there"}, {"echo", true}, {"logprobs", 1}})
          .json();
  lp = j["choices"][0]["logprobs"];
  REQUIRE(lp["tokens"].size() == prompt.size() + gen.size());
  CHECK(lp["token_logprobs"][0].is_null());
  CHECK(lp["top_logprobs"][0].is_null());
  CHECK(lp["token_logprobs"][1].get<double>() == Approx(ScriptedExecutor::prompt_logprob(0)));
  CHECK(lp["token_logprobs"][prompt.size()].get<double>() ==
        Approx(ScriptedExecutor::sampled_logprob(0)));
  CHECK(lp["text_offset"][prompt.size()] == std::string("Hello there").size());

  // Streaming echo: the prompt text leads the first chunk.
  auto events = sse_events(
      post(f, "/v1/completions", {{"prompt", "Hello there"}, {"echo", true}, {"stream", true}})
          .body);
  CHECK(text_of_stream(events) == "Hello there world!");
}

TEST_CASE("token ids: return_token_ids, return_tokens_as_token_ids, prompt_logprobs",
          "[openai][completions]") {
  OpenAiFixture f(world());
  const auto gen = cat({enc(" world!"), {im_end()}});
  auto j = post(f, "/v1/completions",
                {{"prompt", "Hello"},
                 {"return_token_ids", true},
                 {"logprobs", 0},
                 {"return_tokens_as_token_ids", true}})
               .json();
  CHECK(j["choices"][0]["prompt_token_ids"] == enc("Hello"));
  CHECK(j["choices"][0]["token_ids"] == gen);
  CHECK(j["choices"][0]["logprobs"]["tokens"][0] == "token_id:" + std::to_string(gen[0]));

  const auto prompt = enc("Hello there friend");
  j = post(f, "/v1/completions", {{"prompt", prompt}, {"prompt_logprobs", 1}}).json();
  json pl = j["choices"][0]["prompt_logprobs"];
  REQUIRE(pl.size() == prompt.size());
  CHECK(pl[0].is_null());
  const json& e = pl[1][std::to_string(prompt[1])];
  CHECK(e["logprob"].get<double>() == Approx(ScriptedExecutor::prompt_logprob(0)));
  CHECK(e["rank"] == 1);
  CHECK(e["decoded_token"] == openai_tokenizer()->decode({prompt[1]}));

  // Streaming with token ids: the first chunk carries prompt_token_ids, each chunk its tokens.
  auto events = sse_events(post(f, "/v1/completions",
                                {{"prompt", "Hello"}, {"stream", true}, {"return_token_ids", true}})
                               .body);
  std::vector<int32_t> ids;
  for (const json& ev : events)
    for (int32_t t : ev["choices"][0]["token_ids"]) ids.push_back(t);
  CHECK(ids == gen);
  CHECK(events[0]["choices"][0]["prompt_token_ids"] == enc("Hello"));
}

TEST_CASE("several prompts and n = 2: one choice per (prompt, sample)", "[openai][completions]") {
  OpenAiFixture f([](const std::vector<int32_t>& prompt, int k) {
    return cat(
        {enc(prompt == enc("A") ? " alpha" : " beta"), enc(k == 0 ? " one" : " two"), {im_end()}});
  });
  auto j = post(f, "/v1/completions", {{"prompt", json::array({"A", "B"})}, {"n", 2}}).json();
  REQUIRE(j["choices"].size() == 4);
  std::vector<std::string> texts;
  for (size_t i = 0; i < 4; ++i) {
    CHECK(j["choices"][i]["index"] == i);
    texts.push_back(j["choices"][i]["text"]);
  }
  CHECK(texts == std::vector<std::string>{" alpha one", " alpha two", " beta one", " beta two"});
  CHECK(j["usage"]["prompt_tokens"] == enc("A").size() + enc("B").size());
  int64_t gen = 0;
  for (const char* s : {" alpha one", " alpha two", " beta one", " beta two"})
    gen += static_cast<int64_t>(enc(s).size()) + 1;
  CHECK(j["usage"]["completion_tokens"] == gen);

  auto events = sse_events(
      post(f, "/v1/completions", {{"prompt", json::array({"A", "B"})}, {"n", 2}, {"stream", true}})
          .body);
  CHECK(text_of_stream(events, 1) == " alpha two");
  CHECK(text_of_stream(events, 2) == " beta one");
  int finishes = 0;
  for (const json& e : events)
    for (const json& c : e["choices"]) finishes += c["finish_reason"].is_string() ? 1 : 0;
  CHECK(finishes == 4);
}

TEST_CASE("a cancelled stream ends its request in the engine", "[openai][completions]") {
  OpenAiFixture f([](const std::vector<int32_t>&, int) { return std::vector<int32_t>(200, 5); });
  kl::http::Request req;
  req.body =
      json{{"prompt", "Hi"}, {"stream", true}, {"max_tokens", 200}, {"ignore_eos", true}}.dump();
  auto result = kl::openai::handle_completions(f.ctx, req);
  auto& s = std::get<kl::http::StreamResponse>(result);
  s.source->set_wakeup([] {});
  for (int i = 0; i < 100 && s.source->pull(1 << 20).data.empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.source->cancel();
  CHECK(s.source->pull(1 << 20).done);
  s.source.reset();
  for (int i = 0; i < 2000 && (f.engine->stats().num_running + f.engine->stats().num_waiting) > 0;
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(f.engine->stats().num_running == 0);
}

TEST_CASE("tokenize and detokenize", "[openai][tokenize]") {
  OpenAiFixture f(world());
  auto r = post(f, "/tokenize", {{"prompt", "Hello world"}, {"return_token_strs", true}});
  REQUIRE(r.status == 200);
  auto j = r.json();
  CHECK(j["tokens"] == enc("Hello world"));
  CHECK(j["count"] == enc("Hello world").size());
  CHECK(j["max_model_len"] == 256);
  CHECK(j["token_strs"].size() == j["tokens"].size());

  const json messages = json::array({{{"role", "user"}, {"content", "Hi"}}});
  j = post(f, "/tokenize", {{"messages", messages}}).json();
  CHECK(j["tokens"] == kl::tok::render_chat(messages, json::array(), *openai_tokenizer()).ids);
  CHECK(j["token_strs"].is_null());

  j = post(f, "/detokenize", {{"tokens", enc("Hello world")}}).json();
  CHECK(j["prompt"] == "Hello world");
  CHECK(post(f, "/detokenize", {{"tokens", "x"}}).json()["error"]["param"] == "tokens");
  CHECK(post(f, "/tokenize", json::object()).status == 400);
  CHECK(post(f, "/tokenize", {{"prompt", "x"}, {"model", "other"}}).status == 404);
}
