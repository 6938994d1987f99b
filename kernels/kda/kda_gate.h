// KDA per-token scalars: the log-space forget gate g (spec 3.2 step 6), the write strength beta
// (step 7) and the per-head L2 normalisation of q and k (step 4). All fp32.
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"

namespace kl::kernels {

// g[t, h*K + c] = -exp(A_log[h]) * softplus(f[t, h*K + c] + dt_bias[h*K + c]);
// softplus(x) = x for x > 20 (FLA's threshold). With has_lower_bound, the later variant
// g = lower_bound * sigmoid(exp(A_log[h]) * (f + dt_bias)) is used instead.
struct KdaGateParams {
  const float* f = nullptr;  // [num_tokens, H*K] output of f_b_proj
  WeightView a_log;          // [H] (checkpoint [1, 1, H, 1]), f32
  WeightView dt_bias;        // [H*K], f32
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  bool has_lower_bound = false;
  float lower_bound = 0.f;
  float* g = nullptr;  // [num_tokens, H*K]; may alias f
};

void kda_gate_ref(const KdaGateParams& p);

// beta[i] = sigmoid(b[i]).
void kda_beta_ref(const float* b, int64_t n, float* beta);

// x[r] <- x[r] / sqrt(sum(x[r]^2) + eps) * scale, for each row of `dim`.
void l2norm_rows_ref(float* x, int64_t num_rows, int64_t dim, float eps, float scale);

}  // namespace kl::kernels
