// The KDA delta-rule core for one sequence (spec 3.2 step 8): recurrent (token by token) and
// chunked (spec 4.1, chunk 64) forms. The state is V-major: per head [V, K], fp32.
// q and k arrive L2-normalised; `scale` multiplies q (1/sqrt(K) for the model).
#pragma once

#include <cstdint>

namespace kl::kernels {

struct KdaParams {
  const float* q = nullptr;     // [num_tokens, H, K]
  const float* k = nullptr;     // [num_tokens, H, K]
  const float* v = nullptr;     // [num_tokens, H, V]
  const float* g = nullptr;     // [num_tokens, H, K] log-space decay (<= 0)
  const float* beta = nullptr;  // [num_tokens, H]
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t head_k = 0;
  int64_t head_v = 0;
  float scale = 1.f;
  float* state = nullptr;  // [H, V, K] in/out: initial state in, final state out
  float* out = nullptr;    // [num_tokens, H, V]
};

// S <- diag(exp g_t) S; r = S^T k; S <- S + k (beta (v - r))^T; o = S^T (scale q). Token by token.
void kda_recurrent_ref(const KdaParams& p);

// The same function evaluated chunkwise (chunk_size rows per chunk, only in-chunk gate
// differences exp(G_r - G_j), r >= j). The oracle for the GPU chunked kernel.
void kda_chunked_ref(const KdaParams& p, int chunk_size = 64);

}  // namespace kl::kernels
