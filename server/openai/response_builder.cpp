// Response JSON pieces: token rendering, logprob formats, usage, SSE framing, ids.
#include "server/openai/response_builder.h"

#include <chrono>
#include <cmath>
#include <mutex>
#include <random>

#include "server/openai/api_error.h"
#include "server/tokenizer/utf8.h"

namespace kl::openai {

std::string TokenText::str(int32_t id) const {
  if (as_ids_) return "token_id:" + std::to_string(id);
  return tok_->decode({id});
}

json TokenText::bytes(int32_t id) const {
  const std::string* b = tok_ ? tok_->token_bytes(id) : nullptr;
  const std::string s = b ? *b : str(id);
  json out = json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

double clamp_logprob(float lp) {
  if (std::isnan(lp) || lp < -9999.f) return -9999.0;
  return static_cast<double>(lp);
}

void LegacyLogprobs::push_token(const TokenText& tt, int32_t token, std::string& text_out) {
  text_out = tt.str(token);
  tokens_.push_back(text_out);
  text_offset_.push_back(offset_);
  // Python string lengths: code points.
  offset_ += tok::count_code_points(text_out);
}

void LegacyLogprobs::add_unscored(const TokenText& tt, int32_t token) {
  std::string s;
  push_token(tt, token, s);
  token_logprobs_.push_back(nullptr);
  top_logprobs_.push_back(nullptr);
}

void LegacyLogprobs::add(const TokenText& tt, int32_t token, float logprob,
                         const std::vector<kernels::TokenLogprob>& top) {
  std::string s;
  push_token(tt, token, s);
  token_logprobs_.push_back(clamp_logprob(logprob));
  json dict = json::object();
  dict[s] = clamp_logprob(logprob);
  for (const auto& t : top) {
    const std::string k = tt.str(t.token);
    if (!dict.contains(k)) dict[k] = clamp_logprob(t.logprob);
  }
  top_logprobs_.push_back(std::move(dict));
}

json LegacyLogprobs::to_json() const {
  return {{"tokens", tokens_},
          {"token_logprobs", token_logprobs_},
          {"top_logprobs", top_logprobs_},
          {"text_offset", text_offset_}};
}

void LegacyLogprobs::clear() {
  tokens_ = json::array();
  token_logprobs_ = json::array();
  top_logprobs_ = json::array();
  text_offset_ = json::array();
}

json chat_logprob_entry(const TokenText& tt, int32_t token, float logprob,
                        const std::vector<kernels::TokenLogprob>& top, int num_top) {
  json tops = json::array();
  for (int i = 0; i < num_top && i < static_cast<int>(top.size()); ++i)
    tops.push_back({{"token", tt.str(top[i].token)},
                    {"logprob", clamp_logprob(top[i].logprob)},
                    {"bytes", tt.bytes(top[i].token)}});
  return {{"token", tt.str(token)},
          {"logprob", clamp_logprob(logprob)},
          {"bytes", tt.bytes(token)},
          {"top_logprobs", std::move(tops)}};
}

json prompt_logprobs_json(const TokenText& tt, const std::vector<int32_t>& prompt,
                          const std::vector<std::vector<kernels::TokenLogprob>>& rows) {
  json out = json::array();
  if (prompt.empty()) return out;
  out.push_back(nullptr);
  for (size_t j = 1; j < prompt.size(); ++j) {
    const size_t r = j - 1;
    if (r >= rows.size() || rows[r].empty()) {
      out.push_back(nullptr);
      continue;
    }
    const auto& row = rows[r];
    json d = json::object();
    // The actual token's rank: 1 + how many alternatives are more likely (a lower bound when it
    // is not among them).
    int rank = 1;
    for (size_t i = 1; i < row.size(); ++i) rank += row[i].logprob > row[0].logprob ? 1 : 0;
    d[std::to_string(row[0].token)] = {{"logprob", clamp_logprob(row[0].logprob)},
                                       {"rank", rank},
                                       {"decoded_token", tt.str(row[0].token)}};
    for (size_t i = 1; i < row.size(); ++i) {
      const std::string key = std::to_string(row[i].token);
      if (d.contains(key)) continue;
      d[key] = {{"logprob", clamp_logprob(row[i].logprob)},
                {"rank", static_cast<int>(i)},
                {"decoded_token", tt.str(row[i].token)}};
    }
    out.push_back(std::move(d));
  }
  return out;
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

std::string sse_event(const json& j) {
  return "data: " + dump_json(j) + "\n\n";
}

std::string make_response_id(const char* prefix) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  uint64_t a, b;
  {
    std::lock_guard<std::mutex> lock(mu);
    a = rng();
    b = rng();
  }
  return fmt::format("{}-{:016x}{:016x}", prefix, a, b);
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace kl::openai
