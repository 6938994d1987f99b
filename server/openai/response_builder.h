// JSON pieces of the OpenAI responses: token strings and bytes, logprobs in the legacy
// completions format and the chat format, vLLM's prompt_logprobs, usage, and SSE framing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/sampling/sampling.h"
#include "server/serving/generation.h"
#include "server/tokenizer/tokenizer.h"

namespace kl::openai {

using nlohmann::json;

// How one token is shown in logprobs: its decoded text (U+FFFD for a partial character), or
// "token_id:N" with return_tokens_as_token_ids or without a tokenizer.
class TokenText {
 public:
  TokenText(const tok::Tokenizer* tokenizer, bool as_token_ids)
      : tok_(tokenizer), as_ids_(as_token_ids || tokenizer == nullptr) {}
  std::string str(int32_t id) const;
  // The token's raw bytes (exact, even for part of a character), as OpenAI's "bytes".
  json bytes(int32_t id) const;

 private:
  const tok::Tokenizer* tok_;
  bool as_ids_;
};

// vLLM clamps -inf (and NaN) logprobs to -9999 so that the JSON stays valid.
double clamp_logprob(float lp);

// The legacy completions "logprobs" object, built token by token.
class LegacyLogprobs {
 public:
  // `offset`: text_offset of the next token (the length in code points of the text before it).
  explicit LegacyLogprobs(size_t offset = 0) : offset_(offset) {}
  // A token without a logprob (the first prompt token of an echo): nulls.
  void add_unscored(const TokenText& tt, int32_t token);
  // `top`: the top-k alternatives; the token itself is added to the dict, as vLLM does.
  void add(const TokenText& tt, int32_t token, float logprob,
           const std::vector<kernels::TokenLogprob>& top);
  bool empty() const { return tokens_.empty(); }
  size_t offset() const { return offset_; }
  json to_json() const;
  void clear();  // drops the entries but keeps the running offset (streaming chunks)

 private:
  void push_token(const TokenText& tt, int32_t token, std::string& text_out);
  json tokens_ = json::array(), token_logprobs_ = json::array(), top_logprobs_ = json::array(),
       text_offset_ = json::array();
  size_t offset_;
};

// Chat format: {"token", "logprob", "bytes", "top_logprobs": [{"token","logprob","bytes"}]}.
json chat_logprob_entry(const TokenText& tt, int32_t token, float logprob,
                        const std::vector<kernels::TokenLogprob>& top, int num_top);

// vLLM's prompt_logprobs: [null, {"<id>": {"logprob", "rank", "decoded_token"}, ...}, ...], one
// entry per prompt token. rows[j] holds the logprob of prompt token j + 1 first, then the top-k.
json prompt_logprobs_json(const TokenText& tt, const std::vector<int32_t>& prompt,
                          const std::vector<std::vector<kernels::TokenLogprob>>& rows);

json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

// One SSE event: "data: <json>\n\n".
std::string sse_event(const json& j);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

// "cmpl-<32 hex>" / "chatcmpl-<32 hex>".
std::string make_response_id(const char* prefix);
int64_t unix_now();

}  // namespace kl::openai
