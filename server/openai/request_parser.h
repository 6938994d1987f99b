// Parsing and validation of the OpenAI request bodies into plain structs (no tokenizing, no
// engine): /v1/completions, /v1/chat/completions and their shared sampling fields, /tokenize,
// /detokenize. Each problem is an ApiError: 400 naming the field, 404 for an unknown model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/api/sampling_params.h"
#include "server/serving/generation.h"
#include "server/serving/serving_context.h"

namespace kl::openai {

// Bounds beyond SamplingParams' own (serving.md §6: bounded everything).
inline constexpr size_t kMaxStopStrings = 64;
inline constexpr size_t kMaxStopStringBytes = 1024;
inline constexpr size_t kMaxStopTokenIds = 1024;
inline constexpr size_t kMaxLogitBias = 4096;
inline constexpr size_t kMaxPrompts = 128;  // prompts in one /v1/completions request
inline constexpr size_t kMaxTools = 128;
inline constexpr int32_t kCompletionsDefaultMaxTokens = 16;  // vLLM's /v1/completions default

// Fields both generation routes share.
struct CommonRequest {
  SamplingParams params;  // max_tokens unset: up to the context length
  GenerationOptions gen;  // stop strings, include_stop_str_in_output, skip_special_tokens
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage
  bool continuous_usage = false;  // stream_options.continuous_usage_stats
  int priority = 0;
  bool return_token_ids = false;
  bool return_tokens_as_token_ids = false;
  int32_t prompt_logprobs = -1;  // as the client asked (reported as "prompt_logprobs")
};

// One prompt of /v1/completions: text (tokenized later) or token ids.
struct PromptInput {
  std::optional<std::string> text;
  std::vector<int32_t> ids;
};

struct CompletionRequest : CommonRequest {
  std::vector<PromptInput> prompts;
  bool echo = false;
  int32_t logprobs = -1;  // legacy: top-k per token (0..20), -1 none
};

struct ChatRequest : CommonRequest {
  nlohmann::json messages;  // validated array of message objects
  nlohmann::json tools = nlohmann::json::array();
  bool tool_choice_none = false;
  bool add_generation_prompt = true;
  bool logprobs = false;
  int32_t top_logprobs = 0;
};

struct TokenizeRequest {
  std::optional<std::string> prompt;  // or messages
  nlohmann::json messages;
  nlohmann::json tools = nlohmann::json::array();
  bool add_generation_prompt = true;
  bool return_token_strs = false;
};

// 404 unless `model` is absent, null or the served model name.
void check_model(const nlohmann::json& body, const ModelCard& card);

CompletionRequest parse_completion_request(const nlohmann::json& body, const ModelCard& card);
ChatRequest parse_chat_request(const nlohmann::json& body, const ModelCard& card);
TokenizeRequest parse_tokenize_request(const nlohmann::json& body, const ModelCard& card);
std::vector<int32_t> parse_detokenize_request(const nlohmann::json& body, const ModelCard& card);

}  // namespace kl::openai
