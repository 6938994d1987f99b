// Per-request generation parameters (the OpenAI / vLLM sampling surface), validated at the edge:
// a bad value is a kl::Error naming the field, which the API maps to HTTP 400.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace kl {

struct SamplingParams {
  int32_t n = 1;            // independent samples sharing one prefill
  float temperature = 1.f;  // 0 = greedy
  int32_t top_k = 0;        // <= 0: off (vLLM's -1 accepted as off)
  float top_p = 1.f;
  float min_p = 0.f;
  std::optional<uint64_t> seed;  // unseeded requests get an engine-drawn seed
  float repetition_penalty = 1.f;
  float presence_penalty = 0.f;
  float frequency_penalty = 0.f;
  std::vector<std::pair<int32_t, float>> logit_bias;
  int32_t min_tokens = 0;
  std::optional<int32_t> max_tokens;  // unset: up to max_model_len
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  int32_t logprobs = -1;         // -1: none; k >= 0: sampled token + top-k
  int32_t prompt_logprobs = -1;  // -1: none; k >= 0: each prompt token + top-k

  // Throws kl::Error naming the first invalid field.
  void validate(int64_t vocab_size) const;
};

inline constexpr int32_t kMaxLogprobs = 20;
inline constexpr int32_t kMaxN = 128;

}  // namespace kl
