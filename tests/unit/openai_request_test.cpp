// OpenAI request parsing and validation: wrong types and ranges are 400s naming the field,
// unsupported features are refused, unknown fields ignored; handler-level statuses (404, 429,
// 503, context length, no tokenizer) through the real handlers and engine.
#include <catch2/catch.hpp>

#include "server/openai/api_error.h"
#include "server/openai/json_fields.h"
#include "server/openai/request_parser.h"
#include "tests/unit/openai_test_util.h"

namespace {

using kl::openai::ApiError;
using nlohmann::json;
using namespace kl::test;

kl::ModelCard card() {
  kl::ModelCard c;
  c.served_model_name = "test-model";
  c.max_model_len = 256;
  c.vocab_size = 2304;
  return c;
}

// The ApiError a completions body raises (status, param), or status 0 when it parses.
std::pair<int, std::string> completion_error(const json& body) {
  try {
    kl::openai::parse_completion_request(body, card());
  } catch (const ApiError& e) {
    return {e.status(), e.param()};
  }
  return {0, ""};
}

std::pair<int, std::string> chat_error(const json& body) {
  try {
    kl::openai::parse_chat_request(body, card());
  } catch (const ApiError& e) {
    return {e.status(), e.param()};
  }
  return {0, ""};
}

json completion(json extra) {
  json b = {{"prompt", "Hello"}};
  for (auto& [k, v] : extra.items()) b[k] = v;
  return b;
}

json chat(json extra) {
  json b = {{"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})}};
  for (auto& [k, v] : extra.items()) b[k] = v;
  return b;
}

const json kTool = {{"type", "function"},
                    {"function", {{"name", "get_weather"}, {"parameters", json::object()}}}};

}  // namespace

TEST_CASE("malformed bodies are 400s", "[openai][request]") {
  for (const char* body :
       {"", "{", "{\"prompt\": 1,}", "[1,2]", "\"str\"", "{} trailing", "null"}) {
    INFO(body);
    CHECK_THROWS_AS(kl::openai::parse_json_object(body), ApiError);
  }
  std::string deep(200, '[');
  deep = "{\"a\":" + deep + std::string(200, ']') + "}";
  try {
    kl::openai::parse_json_object(deep);
    FAIL("deep nesting accepted");
  } catch (const ApiError& e) {
    CHECK(e.status() == 400);
    CHECK_THAT(e.what(), Catch::Contains("nested"));
  }
  CHECK(kl::openai::parse_json_object("{\"a\": 1}")["a"] == 1);
}

TEST_CASE("wrong types and ranges name their field", "[openai][request]") {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"max_tokens", "10"}}, "max_tokens"},
      {{{"max_tokens", -1}}, "max_tokens"},
      {{{"max_tokens", 0}}, "max_tokens"},
      {{{"max_tokens", 1e12}}, "max_tokens"},
      {{{"max_tokens", 2.5}}, "max_tokens"},
      {{{"n", 1000000}}, "n"},
      {{{"n", 0}}, "n"},
      {{{"temperature", true}}, "temperature"},
      {{{"temperature", -1}}, "temperature"},
      {{{"temperature", 1e308}}, "temperature"},
      {{{"top_p", 0}}, "top_p"},
      {{{"top_p", 1.5}}, "top_p"},
      {{{"top_k", -2}}, "top_k"},
      {{{"min_p", 2}}, "min_p"},
      {{{"seed", 18446744073709551615ull}}, "seed"},
      {{{"seed", "1"}}, "seed"},
      {{{"presence_penalty", 3}}, "presence_penalty"},
      {{{"frequency_penalty", -2.5}}, "frequency_penalty"},
      {{{"repetition_penalty", 0}}, "repetition_penalty"},
      {{{"logit_bias", {{"abc", 1}}}}, "logit_bias"},
      {{{"logit_bias", {{"99999", 1}}}}, "logit_bias"},
      {{{"logit_bias", {{"5", 200}}}}, "logit_bias"},
      {{{"logit_bias", json::array()}}, "logit_bias"},
      {{{"stop", 5}}, "stop"},
      {{{"stop", json::array({"a", 1})}}, "stop"},
      {{{"stop", std::vector<std::string>(1000, "x")}}, "stop"},
      {{{"stop", std::string(5000, 'x')}}, "stop"},
      {{{"stop_token_ids", json::array({5, 999999})}}, "stop_token_ids"},
      {{{"stop_token_ids", "5"}}, "stop_token_ids"},
      {{{"min_tokens", 20}, {"max_tokens", 10}}, "min_tokens"},
      {{{"ignore_eos", "yes"}}, "ignore_eos"},
      {{{"stream", 1}}, "stream"},
      {{{"stream_options", {{"include_usage", true}}}}, "stream_options"},
      {{{"stream", true}, {"stream_options", {{"include_usage", "yes"}}}}, "stream_options"},
      {{{"stream", true}, {"prompt_logprobs", 1}}, "prompt_logprobs"},
      {{{"prompt_logprobs", -1}}, "prompt_logprobs"},
      {{{"logprobs", 21}}, "logprobs"},
      {{{"logprobs", true}}, "logprobs"},
      {{{"echo", "no"}}, "echo"},
      {{{"priority", "high"}}, "priority"},
      {{{"prompt", ""}}, "prompt"},
      {{{"prompt", json::array()}}, "prompt"},
      {{{"prompt", json::array({1, "a"})}}, "prompt"},
      {{{"prompt", json::array({"a", 1})}}, "prompt"},
      {{{"prompt", json::array({1, 99999})}}, "prompt"},
      {{{"prompt", json::array({-1})}}, "prompt"},
      {{{"prompt", 5}}, "prompt"},
      {{{"prompt", nullptr}}, "prompt"},
      {{{"model", 5}}, "model"},
  };
  for (const auto& [extra, field] : cases) {
    INFO(extra.dump());
    auto [status, param] = completion_error(completion(extra));
    CHECK(status == 400);
    CHECK(param == field);
  }
}

TEST_CASE("chat fields are validated and named", "[openai][request]") {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"messages", "hi"}}, "messages"},
      {{{"messages", json::array()}}, "messages"},
      {{{"messages", json::array({1})}}, "messages"},
      {{{"messages", json::array({{{"content", "x"}}})}}, "messages"},
      {{{"messages", json::array({{{"role", "wizard"}, {"content", "x"}}})}}, "messages"},
      {{{"top_logprobs", "5"}}, "top_logprobs"},
      {{{"top_logprobs", 2}}, "top_logprobs"},  // without logprobs
      {{{"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs"},
      {{{"max_completion_tokens", -5}}, "max_completion_tokens"},
      {{{"tools", json::array()}}, "tools"},
      {{{"tools", json::array({{{"type", "function"}}})}}, "tools"},
      {{{"tools", json::array({kTool})}, {"tool_choice", "maybe"}}, "tool_choice"},
      {{{"tools", json::array({kTool})}, {"tool_choice", 3}}, "tool_choice"},
      {{{"parallel_tool_calls", "yes"}}, "parallel_tool_calls"},
      {{{"tools", json::array({{{"type", 5}}})}}, "tools"},
  };
  for (const auto& [extra, field] : cases) {
    INFO(extra.dump());
    auto [status, param] = chat_error(chat(extra));
    CHECK(status == 400);
    CHECK(param == field);
  }
}

TEST_CASE("known unsupported features are refused, not ignored", "[openai][request]") {
  const std::vector<std::pair<json, std::string>> chat_cases = {
      {{{"response_format", {{"type", "json_schema"}, {"json_schema", json::object()}}}},
       "response_format"},
      {{{"response_format", {{"type", "json_object"}}}}, "response_format"},
      {{{"guided_json", json::object()}}, "guided_json"},
      {{{"guided_regex", "a+"}}, "guided_regex"},
      {{{"structured_outputs", {{"regex", "a"}}}}, "structured_outputs"},
      {{{"tools", json::array({kTool})}, {"tool_choice", "required"}}, "tool_choice"},
      {{{"tools", json::array({kTool})},
        {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}},
       "tool_choice"},
      {{{"functions", json::array({json::object()})}}, "functions"},
      {{{"best_of", 3}}, "best_of"},
      {{{"use_beam_search", true}}, "use_beam_search"},
      {{{"chat_template", "{{ x }}"}}, "chat_template"},
      {{{"continue_final_message", true}}, "continue_final_message"},
      {{{"bad_words", json::array({"x"})}}, "bad_words"},
  };
  for (const auto& [extra, field] : chat_cases) {
    INFO(extra.dump());
    try {
      kl::openai::parse_chat_request(chat(extra), card());
      FAIL("accepted");
    } catch (const ApiError& e) {
      CHECK(e.status() == 400);
      CHECK(e.param() == field);
      CHECK_THAT(e.what(), Catch::Contains("not supported"));
    }
  }
  auto [status, param] = completion_error(completion({{"suffix", "end"}}));
  CHECK(status == 400);
  CHECK(param == "suffix");
  // Harmless spellings of "off" stay accepted.
  CHECK(chat_error(chat({{"response_format", {{"type", "text"}}}, {"best_of", 1}})).first == 0);
  CHECK(completion_error(completion({{"suffix", ""}, {"bad_words", json::array()}})).first == 0);
}

TEST_CASE("valid requests map onto sampling parameters", "[openai][request]") {
  const json body = completion({{"n", 3},
                                {"temperature", 0.5},
                                {"top_p", 0.9},
                                {"top_k", 40},
                                {"min_p", 0.05},
                                {"seed", -7},
                                {"presence_penalty", 0.5},
                                {"frequency_penalty", -0.5},
                                {"repetition_penalty", 1.1},
                                {"logit_bias", {{"17", -100}, {"5", 2.5}}},
                                {"min_tokens", 2},
                                {"max_tokens", 30},
                                {"stop", "END"},
                                {"stop_token_ids", json::array({3, 4})},
                                {"ignore_eos", true},
                                {"skip_special_tokens", false},
                                {"include_stop_str_in_output", true},
                                {"priority", -2},
                                {"echo", true},
                                {"logprobs", 2},
                                {"stream", true},
                                {"stream_options", {{"include_usage", true}}},
                                {"return_token_ids", true},
                                {"some_unknown_field", {{"nested", 1}}},
                                {"user", "someone"},
                                {"model", "test-model"},
                                {"top_a", nullptr}});
  auto r = kl::openai::parse_completion_request(body, card());
  CHECK(r.params.n == 3);
  CHECK(r.params.temperature == Approx(0.5));
  CHECK(r.params.top_k == 40);
  CHECK(r.params.seed == static_cast<uint64_t>(int64_t{-7}));
  CHECK(r.params.logit_bias.size() == 2);
  CHECK(r.params.max_tokens == 30);
  CHECK(r.params.min_tokens == 2);
  CHECK(r.gen.stop == std::vector<std::string>{"END"});
  CHECK(r.params.stop_token_ids == std::vector<int32_t>{3, 4});
  CHECK(r.params.ignore_eos);
  CHECK_FALSE(r.gen.skip_special_tokens);
  CHECK(r.gen.include_stop_str_in_output);
  CHECK(r.priority == -2);
  CHECK(r.echo);
  CHECK(r.logprobs == 2);
  CHECK(r.params.logprobs == 2);
  CHECK(r.params.prompt_logprobs == 2);  // echo with logprobs scores the prompt too
  CHECK(r.stream);
  CHECK(r.include_usage);
  CHECK(r.return_token_ids);
  REQUIRE(r.prompts.size() == 1);
  CHECK(r.prompts[0].text == "Hello");
  CHECK_NOTHROW(r.params.validate(2304));

  // Defaults: vLLM's 16 tokens for completions, none (the context) for chat.
  CHECK(kl::openai::parse_completion_request(completion({}), card()).params.max_tokens == 16);
  CHECK_FALSE(kl::openai::parse_chat_request(chat({}), card()).params.max_tokens.has_value());
  auto c = kl::openai::parse_chat_request(chat({{"max_tokens", 5},
                                                {"max_completion_tokens", 9},
                                                {"logprobs", true},
                                                {"top_logprobs", 3},
                                                {"tools", json::array({kTool})}}),
                                          card());
  CHECK(c.params.max_tokens == 9);
  CHECK(c.params.logprobs == 3);
  CHECK(c.tools.size() == 1);
  CHECK_FALSE(c.tool_choice_none);
  CHECK(kl::openai::parse_chat_request(
            chat({{"tools", json::array({kTool})}, {"tool_choice", "none"}}), card())
            .tool_choice_none);

  auto multi = kl::openai::parse_completion_request(
      completion({{"prompt", json::array({json::array({1, 2}), json::array({3})})}}), card());
  REQUIRE(multi.prompts.size() == 2);
  CHECK(multi.prompts[1].ids == std::vector<int32_t>{3});
  CHECK(kl::openai::parse_completion_request(completion({{"prompt", json::array({"a", "b"})}}),
                                             card())
            .prompts.size() == 2);
}

TEST_CASE("unknown model is 404, other models' names are not accepted", "[openai][request]") {
  auto [status, param] = completion_error(completion({{"model", "gpt-4"}}));
  CHECK(status == 404);
  CHECK(param == "model");
  CHECK(completion_error(completion({{"model", nullptr}})).first == 0);
}

TEST_CASE("handler errors use the OpenAI envelope and status", "[openai][request]") {
  OpenAiFixture f([](const std::vector<int32_t>&, int) { return enc(" ok"); });
  auto r = post(f, "/v1/completions", {{"prompt", "Hi"}, {"model", "nope"}});
  CHECK(r.status == 404);
  CHECK_FALSE(r.streamed);
  auto j = r.json();
  CHECK(j["error"]["type"] == "NotFoundError");
  CHECK(j["error"]["code"] == 404);
  CHECK(j["error"]["param"] == "model");
  CHECK_THAT(j["error"]["message"].get<std::string>(), Catch::Contains("nope"));

  r = post_raw(f, "/v1/chat/completions", "{not json");
  CHECK(r.status == 400);
  CHECK(r.json()["error"]["param"].is_null());

  // A content part the chat format cannot render is the client's fault, named.
  r = post(
      f, "/v1/chat/completions",
      {{"messages",
        json::array({{{"role", "user"}, {"content", json::array({{{"type", "image_url"}}})}}})}});
  CHECK(r.status == 400);
  CHECK(r.json()["error"]["param"] == "messages");

  r = post(f, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", "10"}});
  CHECK(r.status == 400);
  CHECK(r.json()["error"]["param"] == "max_tokens");
  CHECK(r.json()["error"]["type"] == "BadRequestError");
}

TEST_CASE("context length errors keep vLLM's wording", "[openai][request]") {
  OpenAiFixture f([](const std::vector<int32_t>&, int) { return enc(" ok"); });
  std::vector<int32_t> long_prompt(300, 5);
  auto r = post(f, "/v1/completions", {{"prompt", long_prompt}});
  CHECK(r.status == 400);
  CHECK_THAT(r.json()["error"]["message"].get<std::string>(),
             Catch::Contains("maximum context length is 256 tokens"));
  std::vector<int32_t> prompt(200, 5);
  r = post(f, "/v1/completions", {{"prompt", prompt}, {"max_tokens", 100}});
  CHECK(r.status == 400);
  CHECK(r.json()["error"]["param"] == "max_tokens");
  CHECK_THAT(r.json()["error"]["message"].get<std::string>(),
             Catch::Contains("This model's maximum context length is 256 tokens. However, you "
                             "requested 100 output tokens"));
  r = post(f, "/v1/chat/completions",
           {{"messages", json::array({{{"role", "user"}, {"content", std::string(2000, 'x')}}})}});
  CHECK(r.status == 400);
  CHECK_THAT(r.json()["error"]["message"].get<std::string>(),
             Catch::Contains("maximum context length is"));
  // Exactly at the limit is refused (at least one token must fit), one below is served.
  r = post(f, "/v1/completions", {{"prompt", std::vector<int32_t>(256, 5)}, {"max_tokens", 1}});
  CHECK(r.status == 400);
  r = post(f, "/v1/completions", {{"prompt", std::vector<int32_t>(255, 5)}, {"max_tokens", 1}});
  CHECK(r.status == 200);
}

TEST_CASE("overload is 429 with Retry-After; shutdown and draining are 503", "[openai][request]") {
  {
    OpenAiFixture f([](const std::vector<int32_t>&, int) { return enc(" ok"); }, true, 256, 0);
    auto r = post(f, "/v1/completions", {{"prompt", "Hi"}});
    CHECK(r.status == 429);
    CHECK(r.json()["error"]["code"] == 429);
    bool retry_after = false;
    for (auto& [k, v] : r.headers) retry_after |= k == "Retry-After" && v == "1";
    CHECK(retry_after);
  }
  OpenAiFixture f([](const std::vector<int32_t>&, int) { return enc(" ok"); });
  f.ctx.health = kl::HealthState::kDraining;
  CHECK(post(f, "/v1/chat/completions", chat({})).status == 503);
  f.ctx.health = kl::HealthState::kLoading;
  CHECK(post(f, "/v1/completions", {{"prompt", "Hi"}}).status == 503);
  f.ctx.health = kl::HealthState::kReady;
  f.engine->shutdown(false);
  auto r = post(f, "/v1/completions", {{"prompt", "Hi"}});
  CHECK(r.status == 503);
  CHECK(r.json()["error"]["type"] == "ServiceUnavailableError");
}

TEST_CASE("without a tokenizer only token-id prompts work", "[openai][request]") {
  OpenAiFixture f(
      [](const std::vector<int32_t>&, int) {
        return std::vector<int32_t>{7, 8, 9};
      },
      /*with_tokenizer=*/false);
  auto r = post(f, "/v1/chat/completions", chat({}));
  CHECK(r.status == 400);
  CHECK(r.json()["error"]["param"] == "messages");
  CHECK_THAT(r.json()["error"]["message"].get<std::string>(),
             Catch::Contains("skip-tokenizer-init"));
  CHECK(post(f, "/v1/completions", {{"prompt", "text"}}).status == 400);
  CHECK(post(f, "/v1/completions", {{"prompt", json::array({1, 2})}, {"stop", "x"}}).status == 400);
  CHECK(post(f, "/tokenize", {{"prompt", "x"}}).status == 400);

  r = post(f, "/v1/completions", {{"prompt", json::array({1, 2, 3})}, {"max_tokens", 3}});
  REQUIRE(r.status == 200);
  auto j = r.json();
  CHECK(j["choices"][0]["text"] == "");
  CHECK(j["choices"][0]["token_ids"] == json::array({7, 8, 9}));
  CHECK(j["choices"][0]["prompt_token_ids"] == json::array({1, 2, 3}));
  CHECK(j["choices"][0]["finish_reason"] == "length");
  // Logprob tokens fall back to "token_id:N".
  r = post(f, "/v1/completions",
           {{"prompt", json::array({1, 2, 3})}, {"max_tokens", 2}, {"logprobs", 1}});
  CHECK(r.json()["choices"][0]["logprobs"]["tokens"] == json::array({"token_id:7", "token_id:8"}));
}
