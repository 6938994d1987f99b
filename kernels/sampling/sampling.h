// Per-row sampling with logits processing (penalties, bias, min_tokens), temperature, top-k,
// top-p, min-p and a counter-based random stream keyed by (seed, position), so a seeded request
// draws the same token whenever its logits are the same (DESIGN principle 11). Also the
// log-probabilities of the chosen token and of the top alternatives.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace kl::kernels {

// What a row is sampled with. temperature <= kGreedyTemperature means greedy (arg-max, lowest id
// on ties) after the logits processors.
struct SamplingRowParams {
  float temperature = 1.f;
  int32_t top_k = 0;               // <= 0: off
  float top_p = 1.f;               // 1: off
  float min_p = 0.f;               // 0: off
  float repetition_penalty = 1.f;  // prompt + output tokens: l > 0 ? l / p : l * p
  float presence_penalty = 0.f;    // output tokens: l -= presence if count > 0
  float frequency_penalty = 0.f;   // output tokens: l -= frequency * count
  uint64_t seed = 0;               // the random stream of the row
  uint64_t position = 0;           // index of the token being sampled within the stream
  int32_t num_logprobs = -1;       // -1: none; k >= 0: chosen token + top-k alternatives
};
inline constexpr float kGreedyTemperature = 1e-5f;

// History a row's penalties read.
struct SamplingHistory {
  const int32_t* prompt_tokens = nullptr;  // for the repetition penalty
  int64_t num_prompt_tokens = 0;
  const int32_t* output_tokens = nullptr;  // all penalties
  int64_t num_output_tokens = 0;
  const std::pair<int32_t, float>* logit_bias = nullptr;  // added to the logits
  int64_t num_logit_bias = 0;
  const int32_t* banned_tokens = nullptr;  // set to -inf (EOS/stop ids while below min_tokens)
  int64_t num_banned_tokens = 0;
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.f;
};

struct SampleOutput {
  int32_t token = -1;
  float logprob = 0.f;            // of `token` under the raw model distribution
  std::vector<TokenLogprob> top;  // num_logprobs best tokens, descending (raw distribution)
};

// Samples one row. `logits` [vocab] is not modified. Log-probabilities are those of the raw
// logits (log_softmax before any processing), as vLLM reports by default.
SampleOutput sample_row_ref(const float* logits, int64_t vocab, const SamplingRowParams& p,
                            const SamplingHistory& h);

// log_softmax of a row (fp32 math with a double-precision sum), for prompt logprobs.
void log_softmax_ref(const float* logits, int64_t vocab, float* out);

// The uniform in [0, 1) drawn for (seed, position): a counter-based hash (splitmix64 mixing), so
// a GPU kernel can compute the same value from the same key.
double sampling_uniform(uint64_t seed, uint64_t position);

// The stages of sample_row_ref on their own, so that a GPU twin can be tested stage by stage; the
// exact order of operations (which the GPU kernel replicates) is documented in sampling_ref.cpp.
// Steps 1-5: NaN -> -inf, bans, logit_bias, repetition, frequency and presence penalties.
void apply_logits_processors_ref(const float* logits, int64_t vocab, const SamplingRowParams& p,
                                 const SamplingHistory& h, float* out);
// The distribution a non-greedy row draws from, given processed logits: temperature, min-p,
// top-k, top-p and renormalisation; `probs` [vocab] is 0 for every dropped token. A row with no
// finite or +inf logit gets all zeros (sample_row_ref then falls back to the raw arg-max).
void sampling_probs_ref(const float* processed_logits, int64_t vocab, const SamplingRowParams& p,
                        float* probs);

}  // namespace kl::kernels
