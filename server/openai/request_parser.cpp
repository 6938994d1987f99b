// Request bodies -> CompletionRequest / ChatRequest / TokenizeRequest, with vLLM's validation
// rules and 400s that name the field. Known features we do not implement are refused (never
// silently ignored); unknown fields are ignored.
#include "server/openai/request_parser.h"

#include <cfloat>
#include <limits>

#include "server/openai/api_error.h"
#include "server/openai/json_fields.h"

namespace kl::openai {

using nlohmann::json;

namespace {

constexpr int64_t kI32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

int64_t vocab_of(const ModelCard& card) {
  return card.vocab_size > 0 ? card.vocab_size : kI32Max;
}

[[noreturn]] void unsupported(const std::string& field, const std::string& what) {
  throw ApiError(400, fmt::format("'{}' is not supported by this server: {}", field, what), field);
}

// Known OpenAI / vLLM features that klserve does not implement: a 400 saying so.
void refuse_unsupported(const FieldReader& f, int n) {
  for (const char* k : {"guided_json", "guided_regex", "guided_choice", "guided_grammar",
                        "guided_decoding_backend", "guided_whitespace_pattern",
                        "structured_outputs", "logits_processors", "truncate_prompt_tokens"})
    if (f.has(k)) unsupported(k, "guided decoding and prompt truncation are not implemented");
  if (auto b = f.boolean("use_beam_search"); b && *b)
    unsupported("use_beam_search", "beam search is not implemented");
  if (auto b = f.integer("best_of", 1, kMaxN); b && *b != 1 && *b != n)
    unsupported("best_of", "best_of other than n is not implemented");
  for (const char* k : {"bad_words", "allowed_token_ids"}) {
    const json* v = f.get(k);
    if (v && !(v->is_array() && v->empty()))
      unsupported(k, "token restrictions are not implemented");
  }
  if (const json* rf = f.object("response_format")) {
    auto it = rf->find("type");
    if (it == rf->end() || !it->is_string())
      fail_field("response_format", "'response_format.type' must be a string");
    if (*it != "text")
      unsupported("response_format",
                  fmt::format("type '{}' needs guided decoding, which is not implemented",
                              it->get<std::string>()));
  }
}

void parse_common(const FieldReader& f, const ModelCard& card, CommonRequest& r) {
  SamplingParams& p = r.params;
  const int64_t vocab = vocab_of(card);
  if (auto v = f.integer("n", 1, kMaxN)) p.n = static_cast<int32_t>(*v);
  refuse_unsupported(f, p.n);
  if (auto v = f.number("temperature", 0.0, FLT_MAX)) p.temperature = static_cast<float>(*v);
  if (auto v = f.number("top_p", 0.0, 1.0)) {
    if (*v <= 0.0) fail_field("top_p", "'top_p' must be in (0, 1], got {}", *v);
    p.top_p = static_cast<float>(*v);
  }
  if (auto v = f.integer("top_k", -1, kI32Max)) p.top_k = static_cast<int32_t>(*v);
  if (auto v = f.number("min_p", 0.0, 1.0)) p.min_p = static_cast<float>(*v);
  if (auto v = f.integer("seed", kI64Min, kI64Max)) p.seed = static_cast<uint64_t>(*v);
  if (auto v = f.number("presence_penalty", -2.0, 2.0)) p.presence_penalty = static_cast<float>(*v);
  if (auto v = f.number("frequency_penalty", -2.0, 2.0))
    p.frequency_penalty = static_cast<float>(*v);
  if (auto v = f.number("repetition_penalty", 0.0, FLT_MAX)) {
    if (*v <= 0.0) fail_field("repetition_penalty", "'repetition_penalty' must be > 0, got {}", *v);
    p.repetition_penalty = static_cast<float>(*v);
  }
  if (const json* lb = f.object("logit_bias")) {
    if (lb->size() > kMaxLogitBias)
      fail_field("logit_bias", "'logit_bias' may hold at most {} entries, got {}", kMaxLogitBias,
                 lb->size());
    for (const auto& [key, val] : lb->items()) {
      int64_t id = -1;
      size_t used = 0;
      try {
        id = std::stoll(key, &used);
      } catch (...) {
        used = 0;
      }
      if (used == 0 || used != key.size())
        fail_field("logit_bias", "'logit_bias' keys must be token ids, got \"{}\"", key);
      if (id < 0 || id >= vocab)
        fail_field("logit_bias", "'logit_bias' token {} is outside the vocabulary [0, {})", id,
                   vocab);
      if (!val.is_number() || !(val.get<double>() >= -100.0 && val.get<double>() <= 100.0))
        fail_field("logit_bias", "'logit_bias' values must be numbers in [-100, 100], got {}",
                   val.dump());
      p.logit_bias.emplace_back(static_cast<int32_t>(id), val.get<float>());
    }
  }
  if (auto v = f.integer("min_tokens", 0, kI32Max)) p.min_tokens = static_cast<int32_t>(*v);
  if (auto v = f.integer("max_tokens", 1, kI32Max)) p.max_tokens = static_cast<int32_t>(*v);
  r.gen.stop = f.string_or_list("stop", kMaxStopStrings, kMaxStopStringBytes);
  p.stop_token_ids = f.int_list("stop_token_ids", 0, vocab - 1, kMaxStopTokenIds);
  if (auto v = f.boolean("ignore_eos")) p.ignore_eos = *v;
  if (auto v = f.boolean("skip_special_tokens")) r.gen.skip_special_tokens = *v;
  if (auto v = f.boolean("include_stop_str_in_output")) r.gen.include_stop_str_in_output = *v;
  if (auto v = f.boolean("stream")) r.stream = *v;
  if (const json* so = f.object("stream_options")) {
    if (!r.stream)
      fail_field("stream_options", "'stream_options' can only be set when 'stream' is true");
    FieldReader s(*so);
    try {
      r.include_usage = s.boolean("include_usage").value_or(false);
      r.continuous_usage = s.boolean("continuous_usage_stats").value_or(false);
    } catch (const ApiError& e) {
      throw ApiError(400, e.what(), "stream_options");
    }
  }
  if (auto v = f.integer("priority", std::numeric_limits<int32_t>::min(), kI32Max))
    r.priority = static_cast<int>(*v);
  if (auto v = f.boolean("return_token_ids")) r.return_token_ids = *v;
  if (auto v = f.boolean("return_tokens_as_token_ids")) r.return_tokens_as_token_ids = *v;
  if (auto v = f.integer("prompt_logprobs", 0, kMaxLogprobs)) {
    if (r.stream)
      fail_field("prompt_logprobs", "'prompt_logprobs' is not available when streaming");
    r.prompt_logprobs = static_cast<int32_t>(*v);
    p.prompt_logprobs = r.prompt_logprobs;
  }
}

void check_min_max(const SamplingParams& p) {
  if (p.max_tokens && p.min_tokens > *p.max_tokens)
    fail_field("min_tokens", "'min_tokens' ({}) must not exceed the maximum tokens ({})",
               p.min_tokens, *p.max_tokens);
}

// Token ids of one prompt (ints in the vocabulary).
std::vector<int32_t> token_prompt(const json& arr, int64_t vocab) {
  std::vector<int32_t> ids;
  for (const json& e : arr) {
    bool ok = false;
    auto i = as_integer(e, 0, vocab - 1, &ok);
    if (!i)
      fail_field("prompt", "a token-id prompt must hold only integers, got a {}",
                 json_type_name(e));
    if (!ok)
      fail_field("prompt", "prompt token {} is outside the vocabulary [0, {})", e.dump(), vocab);
    ids.push_back(static_cast<int32_t>(*i));
  }
  if (ids.empty()) fail_field("prompt", "'prompt' must not be empty");
  return ids;
}

void validate_messages(const json& messages, const char* field) {
  if (!messages.is_array())
    fail_field(field, "'{}' must be an array of messages, got {}", field, json_type_name(messages));
  if (messages.empty()) fail_field(field, "'{}' must not be empty", field);
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object())
      fail_field(field, "{}[{}] must be an object, got {}", field, i, json_type_name(m));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      fail_field(field, "{}[{}].role must be a string", field, i);
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool")
      fail_field(field, "{}[{}].role '{}' is not one of system, developer, user, assistant, tool",
                 field, i, r);
  }
}

json parse_tools(const FieldReader& f) {
  const json* tools = f.array("tools");
  if (!tools) return json::array();
  if (tools->empty())
    fail_field("tools", "'tools' must not be empty (leave it out when there are no tools)");
  if (tools->size() > kMaxTools)
    fail_field("tools", "'tools' may hold at most {} tools, got {}", kMaxTools, tools->size());
  for (size_t i = 0; i < tools->size(); ++i) {
    const json& t = (*tools)[i];
    auto type = t.is_object() ? t.find("type") : t.end();
    if (!t.is_object() || type == t.end() || *type != "function")
      fail_field("tools", "tools[{}] must be an object with type \"function\"", i);
    auto fn = t.find("function");
    if (fn == t.end() || !fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string() ||
        (*fn)["name"].get_ref<const std::string&>().empty())
      fail_field("tools", "tools[{}].function must be an object with a non-empty string name", i);
  }
  return *tools;
}

}  // namespace

void check_model(const json& body, const ModelCard& card) {
  FieldReader f(body);
  auto model = f.string("model");
  if (model && *model != card.served_model_name) {
    ApiError e(404, fmt::format("The model `{}` does not exist.", *model), "model");
    throw e;
  }
}

CompletionRequest parse_completion_request(const json& body, const ModelCard& card) {
  check_model(body, card);
  FieldReader f(body);
  CompletionRequest r;
  r.params.max_tokens = kCompletionsDefaultMaxTokens;
  parse_common(f, card, r);
  if (auto s = f.string("suffix"); s && !s->empty())
    unsupported("suffix", "fill-in-the-middle is not implemented");
  if (f.has("prompt_embeds")) unsupported("prompt_embeds", "prompts must be text or token ids");
  if (auto v = f.boolean("echo")) r.echo = *v;
  if (auto v = f.integer("logprobs", 0, kMaxLogprobs)) r.logprobs = static_cast<int32_t>(*v);
  r.params.logprobs = r.logprobs;
  r.gen.logprobs = r.logprobs >= 0;
  // vLLM: echo with logprobs reports the prompt tokens' logprobs too.
  if (r.echo && r.logprobs >= 0)
    r.params.prompt_logprobs = std::max(r.params.prompt_logprobs, r.logprobs);
  check_min_max(r.params);

  const int64_t vocab = vocab_of(card);
  const json* prompt = f.get("prompt");
  if (!prompt) fail_field("prompt", "'prompt' is required");
  if (prompt->is_string()) {
    if (prompt->get_ref<const std::string&>().empty())
      fail_field("prompt", "'prompt' must not be empty");
    r.prompts.push_back({prompt->get<std::string>(), {}});
  } else if (prompt->is_array()) {
    if (prompt->empty()) fail_field("prompt", "'prompt' must not be empty");
    const json& first = (*prompt)[0];
    if (first.is_number()) {
      r.prompts.push_back({std::nullopt, token_prompt(*prompt, vocab)});
    } else {
      if (prompt->size() > kMaxPrompts)
        fail_field("prompt", "'prompt' may hold at most {} prompts, got {}", kMaxPrompts,
                   prompt->size());
      for (const json& p : *prompt) {
        if (p.is_string()) {
          if (p.get_ref<const std::string&>().empty())
            fail_field("prompt", "prompts must not be empty");
          r.prompts.push_back({p.get<std::string>(), {}});
        } else if (p.is_array()) {
          r.prompts.push_back({std::nullopt, token_prompt(p, vocab)});
        } else {
          fail_field("prompt",
                     "'prompt' must be a string, a list of token ids, or a list of strings or "
                     "token-id lists; got a list with a {}",
                     json_type_name(p));
        }
      }
    }
  } else {
    fail_field("prompt", "'prompt' must be a string or a list, got {}", json_type_name(*prompt));
  }
  return r;
}

ChatRequest parse_chat_request(const json& body, const ModelCard& card) {
  check_model(body, card);
  FieldReader f(body);
  ChatRequest r;
  parse_common(f, card, r);
  if (auto v = f.integer("max_completion_tokens", 1, kI32Max))
    r.params.max_tokens = static_cast<int32_t>(*v);
  check_min_max(r.params);
  for (const char* k : {"functions", "function_call"})
    if (f.has(k)) unsupported(k, "the legacy functions API is not implemented; use 'tools'");
  if (f.has("chat_template"))
    unsupported("chat_template", "the server renders the model's own chat format only");
  if (auto v = f.boolean("continue_final_message"); v && *v)
    unsupported("continue_final_message", "continuing the final message is not implemented");
  if (auto v = f.boolean("add_generation_prompt")) r.add_generation_prompt = *v;
  f.boolean("parallel_tool_calls");  // type-checked; several calls per turn are always allowed

  const json* messages = f.get("messages");
  if (!messages) fail_field("messages", "'messages' is required");
  validate_messages(*messages, "messages");
  r.messages = *messages;
  r.tools = parse_tools(f);
  if (const json* tc = f.get("tool_choice")) {
    if (tc->is_string()) {
      const std::string s = tc->get<std::string>();
      if (s == "none")
        r.tool_choice_none = true;
      else if (s == "required")
        unsupported("tool_choice", "\"required\" needs guided decoding; use \"auto\"");
      else if (s != "auto")
        fail_field("tool_choice",
                   "'tool_choice' must be \"none\", \"auto\", \"required\" or an "
                   "object naming a tool, got \"{}\"",
                   s);
    } else if (tc->is_object()) {
      unsupported("tool_choice", "naming a tool needs guided decoding; use \"auto\"");
    } else {
      fail_field("tool_choice", "'tool_choice' must be a string or an object, got {}",
                 json_type_name(*tc));
    }
  }
  if (auto v = f.boolean("logprobs")) r.logprobs = *v;
  if (auto v = f.integer("top_logprobs", 0, kMaxLogprobs)) {
    if (!r.logprobs) fail_field("top_logprobs", "'top_logprobs' needs 'logprobs' to be true");
    r.top_logprobs = static_cast<int32_t>(*v);
  }
  r.params.logprobs = r.logprobs ? r.top_logprobs : -1;
  r.gen.logprobs = r.logprobs;
  return r;
}

TokenizeRequest parse_tokenize_request(const json& body, const ModelCard& card) {
  check_model(body, card);
  FieldReader f(body);
  TokenizeRequest r;
  f.boolean("add_special_tokens");  // type-checked; Kimi adds no special tokens to text
  if (auto v = f.boolean("return_token_strs")) r.return_token_strs = *v;
  if (auto v = f.boolean("add_generation_prompt")) r.add_generation_prompt = *v;
  r.prompt = f.string("prompt");
  if (const json* m = f.get("messages")) {
    if (r.prompt) fail_field("messages", "give either 'prompt' or 'messages', not both");
    validate_messages(*m, "messages");
    r.messages = *m;
    r.tools = parse_tools(f);
  } else if (!r.prompt) {
    fail_field("prompt", "'prompt' (a string) or 'messages' is required");
  }
  return r;
}

std::vector<int32_t> parse_detokenize_request(const json& body, const ModelCard& card) {
  check_model(body, card);
  FieldReader f(body);
  if (!f.has("tokens")) fail_field("tokens", "'tokens' is required");
  return f.int_list("tokens", 0, vocab_of(card) - 1, static_cast<size_t>(1) << 24);
}

}  // namespace kl::openai
