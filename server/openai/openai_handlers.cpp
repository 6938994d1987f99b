// Handlers of the generation and tokenizer routes: request -> engine submissions -> a
// StreamSource, with every failure mapped to the OpenAI error envelope and status.
#include "server/openai/openai_handlers.h"

#include "engine/core/error.h"
#include "server/openai/api_error.h"
#include "server/openai/generation_source.h"
#include "server/openai/json_fields.h"
#include "server/openai/request_parser.h"
#include "server/openai/response_builder.h"

namespace kl::openai {

using nlohmann::json;

namespace {

void check_serving(const ServingContext& ctx) {
  switch (ctx.health.load()) {
    case HealthState::kReady:
      break;
    case HealthState::kLoading:
      throw ApiError(503, "the model is still loading");
    case HealthState::kDraining:
      throw ApiError(503, "the server is shutting down");
    case HealthState::kFailed:
      throw ApiError(503, "the engine has failed");
  }
  if (!ctx.engine) throw ApiError(503, "no engine is running");
}

// vLLM's wording (clients match "maximum context length is").
void check_context(int64_t prompt_len, const SamplingParams& p, int64_t max_len,
                   const char* prompt_field) {
  if (max_len <= 0) return;
  if (prompt_len >= max_len)
    throw ApiError(400,
                   fmt::format("This model's maximum context length is {} tokens. However, your "
                               "request has {} input tokens. Please reduce the length of the "
                               "input {}. (parameter=input_tokens, value={})",
                               max_len, prompt_len, prompt_field, prompt_len),
                   prompt_field);
  if (p.max_tokens && prompt_len + *p.max_tokens > max_len)
    throw ApiError(
        400,
        fmt::format("This model's maximum context length is {} tokens. However, you requested "
                    "{} output tokens and your prompt contains at least {} input tokens, for a "
                    "total of at least {} tokens. Please reduce the length of the input prompt "
                    "or the number of requested output tokens. (parameter=input_tokens, "
                    "value={})",
                    max_len, *p.max_tokens, prompt_len, prompt_len + *p.max_tokens, prompt_len),
        "max_tokens");
}

std::unique_ptr<GenerationRun> submit(ServingContext& ctx, const std::vector<int32_t>& ids,
                                      const CommonRequest& r, const GenerationOptions& gen) {
  GenerateRequest g;
  g.prompt = ids;
  g.params = r.params;
  g.priority = r.priority;
  SubmitResult s = ctx.engine.load()->submit(std::move(g));
  switch (s.status) {
    case SubmitStatus::kOk:
      break;
    case SubmitStatus::kInvalid:
      throw ApiError(400, s.error);
    case SubmitStatus::kOverloaded: {
      ApiError e(429, s.error);
      e.headers.emplace_back("Retry-After", "1");
      throw e;
    }
    case SubmitStatus::kShuttingDown:
      throw ApiError(503, s.error);
  }
  return std::make_unique<GenerationRun>(ctx, s.stream, r.params.n,
                                         static_cast<int64_t>(ids.size()), gen);
}

SourceOptions source_options(const ServingContext& ctx, const CommonRequest& r, Api api) {
  SourceOptions o;
  o.api = api;
  o.stream = r.stream;
  o.id = make_response_id(api == Api::kChat ? "chatcmpl" : "cmpl");
  o.created = unix_now();
  o.model = ctx.card.served_model_name;
  o.n = r.params.n;
  o.include_usage = r.include_usage;
  o.continuous_usage = r.continuous_usage;
  o.return_token_ids = r.return_token_ids;
  o.return_tokens_as_token_ids = r.return_tokens_as_token_ids;
  o.prompt_logprobs = r.prompt_logprobs;
  return o;
}

http::StreamResponse stream_response(ServingContext& ctx, SourceOptions o,
                                     std::vector<PromptRun> runs) {
  http::StreamResponse resp;
  resp.status = 200;
  resp.content_type = o.stream ? "text/event-stream" : "application/json";
  if (o.stream) resp.headers.emplace_back("Cache-Control", "no-cache");
  // One JSON document at the end: its status is known only then (200, or 500 if the engine
  // failed the request).
  resp.head_with_first_data = !o.stream;
  resp.source = std::make_unique<GenerationSource>(ctx, std::move(o), std::move(runs));
  return resp;
}

http::Response error_out(ServingContext& ctx, const ApiError& e) {
  if (ctx.metrics) ctx.metrics->on_request_error(e.status());
  return to_response(e);
}

// Encodes text, turning the tokenizer's kl::Error (invalid UTF-8) into a 400 on `field`.
std::vector<int32_t> encode(const tok::Tokenizer& tok, const std::string& text, const char* field) {
  try {
    // Raw prompts may spell control tokens (a pre-rendered chat), as HF's Kimi tokenizer allows;
    // chat messages never can (the template encodes their text as ordinary text).
    return tok.encode(text, /*allow_special=*/true);
  } catch (const Error& e) {
    throw ApiError(400, fmt::format("'{}': {}", field, e.what()), field);
  }
}

tok::RenderedChat render(const ServingContext& ctx, const json& messages, const json& tools,
                         bool add_generation_prompt) {
  try {
    tok::ChatRenderOptions o;
    o.add_generation_prompt = add_generation_prompt;
    return tok::render_chat(messages, tools, *ctx.tokenizer, o);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "messages");
  }
}

}  // namespace

http::HandlerResult handle_completions(ServingContext& ctx, const http::Request& req) {
  try {
    check_serving(ctx);
    const json body = parse_json_object(req.body);
    CompletionRequest r = parse_completion_request(body, ctx.card);
    if (!ctx.tokenizer) {
      for (const PromptInput& p : r.prompts)
        if (p.text)
          fail_field("prompt",
                     "this server runs without a tokenizer (--skip-tokenizer-init): prompts must "
                     "be token ids");
      if (!r.gen.stop.empty())
        fail_field("stop",
                   "stop strings need a tokenizer (--skip-tokenizer-init); use "
                   "stop_token_ids");
    }
    std::vector<PromptRun> runs;
    for (PromptInput& p : r.prompts) {
      PromptRun pr;
      if (p.text) {
        pr.prompt_ids = encode(*ctx.tokenizer, *p.text, "prompt");
        pr.prompt_text = std::move(*p.text);
      } else {
        pr.prompt_ids = std::move(p.ids);
        if (ctx.tokenizer && r.echo) pr.prompt_text = ctx.tokenizer->decode(pr.prompt_ids);
      }
      if (pr.prompt_ids.empty()) fail_field("prompt", "the prompt encodes to no tokens");
      check_context(static_cast<int64_t>(pr.prompt_ids.size()), r.params, ctx.card.max_model_len,
                    "prompt");
      runs.push_back(std::move(pr));
    }
    // Submit only once every prompt is valid; a refusal cancels those already submitted.
    for (PromptRun& pr : runs) pr.run = submit(ctx, pr.prompt_ids, r, r.gen);
    SourceOptions o = source_options(ctx, r, Api::kCompletions);
    o.echo = r.echo;
    o.logprobs = r.logprobs;
    return stream_response(ctx, std::move(o), std::move(runs));
  } catch (const ApiError& e) {
    return error_out(ctx, e);
  } catch (const nlohmann::json::exception& e) {
    // A shape the validators did not foresee: still the client's fault, never a 500.
    return error_out(ctx, ApiError(400, fmt::format("malformed request: {}", e.what())));
  }
}

http::HandlerResult handle_chat_completions(ServingContext& ctx, const http::Request& req) {
  try {
    check_serving(ctx);
    const json body = parse_json_object(req.body);
    ChatRequest r = parse_chat_request(body, ctx.card);
    if (!ctx.tokenizer)
      fail_field("messages",
                 "chat completions need a tokenizer, and this server runs without one "
                 "(--skip-tokenizer-init); use /v1/completions with token-id prompts");
    PromptRun pr;
    tok::RenderedChat chat = render(ctx, r.messages, r.tools, r.add_generation_prompt);
    pr.prompt_ids = std::move(chat.ids);
    check_context(static_cast<int64_t>(pr.prompt_ids.size()), r.params, ctx.card.max_model_len,
                  "messages");
    GenerationOptions gen = r.gen;
    gen.parse_tool_calls = !r.tools.empty() && !r.tool_choice_none;
    pr.run = submit(ctx, pr.prompt_ids, r, gen);
    std::vector<PromptRun> runs;
    runs.push_back(std::move(pr));
    SourceOptions o = source_options(ctx, r, Api::kChat);
    o.logprobs = r.logprobs ? r.top_logprobs : -1;
    return stream_response(ctx, std::move(o), std::move(runs));
  } catch (const ApiError& e) {
    return error_out(ctx, e);
  } catch (const nlohmann::json::exception& e) {
    // A shape the validators did not foresee: still the client's fault, never a 500.
    return error_out(ctx, ApiError(400, fmt::format("malformed request: {}", e.what())));
  }
}

http::Response handle_tokenize(ServingContext& ctx, const http::Request& req) {
  try {
    const json body = parse_json_object(req.body);
    TokenizeRequest r = parse_tokenize_request(body, ctx.card);
    if (!ctx.tokenizer)
      throw ApiError(400, "this server runs without a tokenizer (--skip-tokenizer-init)");
    std::vector<int32_t> ids = r.prompt
                                   ? encode(*ctx.tokenizer, *r.prompt, "prompt")
                                   : render(ctx, r.messages, r.tools, r.add_generation_prompt).ids;
    json out = {{"count", ids.size()}, {"max_model_len", ctx.card.max_model_len}, {"tokens", ids}};
    if (r.return_token_strs) {
      TokenText tt(ctx.tokenizer.get(), false);
      json strs = json::array();
      for (int32_t id : ids) strs.push_back(tt.str(id));
      out["token_strs"] = std::move(strs);
    } else {
      out["token_strs"] = nullptr;
    }
    http::Response resp;
    resp.body = dump_json(out);
    return resp;
  } catch (const ApiError& e) {
    return error_out(ctx, e);
  } catch (const nlohmann::json::exception& e) {
    // A shape the validators did not foresee: still the client's fault, never a 500.
    return error_out(ctx, ApiError(400, fmt::format("malformed request: {}", e.what())));
  }
}

http::Response handle_detokenize(ServingContext& ctx, const http::Request& req) {
  try {
    const json body = parse_json_object(req.body);
    std::vector<int32_t> ids = parse_detokenize_request(body, ctx.card);
    if (!ctx.tokenizer)
      throw ApiError(400, "this server runs without a tokenizer (--skip-tokenizer-init)");
    http::Response resp;
    resp.body = dump_json(json{{"prompt", ctx.tokenizer->decode(ids)}});
    return resp;
  } catch (const ApiError& e) {
    return error_out(ctx, e);
  } catch (const nlohmann::json::exception& e) {
    // A shape the validators did not foresee: still the client's fault, never a 500.
    return error_out(ctx, ApiError(400, fmt::format("malformed request: {}", e.what())));
  }
}

}  // namespace kl::openai
