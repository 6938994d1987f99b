// Mixture of experts: the sigmoid router with correction bias and grouped top-k (spec 3.5), the
// routed experts (SwiGLU) and a dense SwiGLU FFN used by the shared expert and the dense layers.
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"

namespace kl::kernels {

// s = sigmoid(logits); selection on s + bias (groups scored by the sum of their top-2, keep
// topk_group groups, then top_k experts); weights from the unbiased s, renormalised when asked
// (sum + 1e-20), times routed_scaling. Ties go to the lower expert id.
struct MoeRouterParams {
  const float* logits = nullptr;  // [num_tokens, E] fp32 router logits
  WeightView bias;                // [E] e_score_correction_bias
  int64_t num_tokens = 0;
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t num_groups = 1;
  int64_t topk_groups = 1;
  bool renormalize = true;
  float routed_scaling = 1.f;
  int32_t* expert_ids = nullptr;  // [num_tokens, top_k], in descending selection score
  float* weights = nullptr;       // [num_tokens, top_k]
};

void moe_router_ref(const MoeRouterParams& p);

// out[t] = down(silu(gate x[t]) * (up x[t])), intermediate = gate.rows. `accumulate` adds to out.
struct SwigluFfnParams {
  const float* x = nullptr;  // [num_tokens, hidden]
  int64_t num_tokens = 0;
  WeightView gate;       // [inter, hidden]
  WeightView up;         // [inter, hidden]
  WeightView down;       // [hidden, inter]
  float* out = nullptr;  // [num_tokens, hidden]
  bool accumulate = false;
};

void swiglu_ffn_ref(const SwigluFfnParams& p);

// out[t] = sum_i weights[t, i] * Expert_{expert_ids[t, i]}(x[t]), summed in selection order.
struct MoeExpertsParams {
  const float* x = nullptr;  // [num_tokens, hidden]
  int64_t num_tokens = 0;
  int64_t top_k = 0;
  const int32_t* expert_ids = nullptr;  // [num_tokens, top_k]
  const float* weights = nullptr;       // [num_tokens, top_k]
  const WeightView* w1 = nullptr;       // [E] gate projections, each [inter, hidden]
  const WeightView* w3 = nullptr;       // [E] up projections, each [inter, hidden]
  const WeightView* w2 = nullptr;       // [E] down projections, each [hidden, inter]
  float* out = nullptr;                 // [num_tokens, hidden]
  bool accumulate = false;
};

void moe_experts_ref(const MoeExpertsParams& p);

}  // namespace kl::kernels
