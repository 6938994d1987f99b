// Validation of SamplingParams (ranges as vLLM enforces them).
#include "engine/api/sampling_params.h"

#include <cmath>

#include "engine/core/error.h"

namespace kl {

void SamplingParams::validate(int64_t vocab_size) const {
  KL_CHECK(n >= 1 && n <= kMaxN, "n must be in [1, {}], got {}", kMaxN, n);
  KL_CHECK(std::isfinite(temperature) && temperature >= 0.f,
           "temperature must be a finite number >= 0, got {}", temperature);
  KL_CHECK(top_k >= -1, "top_k must be -1 (off), 0 (off) or positive, got {}", top_k);
  KL_CHECK(top_p > 0.f && top_p <= 1.f, "top_p must be in (0, 1], got {}", top_p);
  KL_CHECK(min_p >= 0.f && min_p <= 1.f, "min_p must be in [0, 1], got {}", min_p);
  KL_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0.f,
           "repetition_penalty must be > 0, got {}", repetition_penalty);
  KL_CHECK(presence_penalty >= -2.f && presence_penalty <= 2.f,
           "presence_penalty must be in [-2, 2], got {}", presence_penalty);
  KL_CHECK(frequency_penalty >= -2.f && frequency_penalty <= 2.f,
           "frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  for (const auto& [token, bias] : logit_bias) {
    KL_CHECK(token >= 0 && token < vocab_size, "logit_bias token {} outside the vocabulary [0, {})",
             token, vocab_size);
    KL_CHECK(bias >= -100.f && bias <= 100.f,
             "logit_bias value for token {} must be in [-100, 100], got {}", token, bias);
  }
  KL_CHECK(min_tokens >= 0, "min_tokens must be >= 0, got {}", min_tokens);
  if (max_tokens) {
    KL_CHECK(*max_tokens >= 1, "max_tokens must be >= 1, got {}", *max_tokens);
    KL_CHECK(min_tokens <= *max_tokens, "min_tokens ({}) must not exceed max_tokens ({})",
             min_tokens, *max_tokens);
  }
  for (int32_t t : stop_token_ids)
    KL_CHECK(t >= 0 && t < vocab_size, "stop_token_ids entry {} outside the vocabulary [0, {})", t,
             vocab_size);
  KL_CHECK(logprobs >= -1 && logprobs <= kMaxLogprobs, "logprobs must be in [0, {}], got {}",
           kMaxLogprobs, logprobs);
  KL_CHECK(prompt_logprobs >= -1 && prompt_logprobs <= kMaxLogprobs,
           "prompt_logprobs must be in [0, {}], got {}", kMaxLogprobs, prompt_logprobs);
}

}  // namespace kl
