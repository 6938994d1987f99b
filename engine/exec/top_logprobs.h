// The top-k entries of a row of log-probabilities (descending, ties to the lower id), optionally
// preceded by a given token's entry: the shape of vLLM's logprobs lists. Shared by the executors
// for prompt logprobs, which they compute on the host from the logits rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/sampling/sampling.h"

namespace kl {

inline std::vector<kernels::TokenLogprob> top_logprobs_of(const std::vector<float>& logprobs,
                                                          int32_t k, int32_t first_token) {
  std::vector<kernels::TokenLogprob> out;
  if (first_token >= 0) out.push_back({first_token, logprobs[first_token]});
  std::vector<int32_t> ids(logprobs.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  const size_t kk = std::min<size_t>(static_cast<size_t>(std::max(k, 0)), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + kk, ids.end(), [&](int32_t a, int32_t b) {
    return logprobs[a] > logprobs[b] || (logprobs[a] == logprobs[b] && a < b);
  });
  for (size_t i = 0; i < kk; ++i) out.push_back({ids[i], logprobs[ids[i]]});
  return out;
}

}  // namespace kl
