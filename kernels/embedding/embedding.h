// Token embedding lookup: out[t] = table[token_ids[t]].
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"

namespace kl::kernels {

struct EmbeddingParams {
  const int32_t* token_ids = nullptr;  // [num_tokens]
  int64_t num_tokens = 0;
  WeightView table;      // [vocab, hidden]
  float* out = nullptr;  // [num_tokens, hidden] fp32
};

void embedding_ref(const EmbeddingParams& p);

}  // namespace kl::kernels
