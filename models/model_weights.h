// The model's weights grouped per layer, as views into a WeightStore (mmapped checkpoint or dummy
// buffers). Built once at load by bind_model_weights(); executors read only these views.
#pragma once

#include <vector>

#include "engine/core/weight_view.h"
#include "models/model_config.h"

namespace kl {

class WeightStore;

struct KdaWeights {
  WeightView q_proj, k_proj, v_proj;  // [H*K, hidden]
  WeightView q_conv, k_conv, v_conv;  // [H*K, W] (checkpoint [H*K, 1, W])
  WeightView a_log;                   // [1, H] (checkpoint [1, 1, H, 1]) f32
  WeightView dt_bias;                 // [1, H*K] f32
  WeightView f_a_proj;                // [K, hidden]
  WeightView f_b_proj;                // [H*K, K]
  WeightView b_proj;                  // [H, hidden]
  WeightView g_a_proj;                // [K, hidden]
  WeightView g_b_proj;                // [H*K, K]
  WeightView o_norm;                  // [1, K]
  WeightView o_proj;                  // [hidden, H*K]
};

struct MlaWeights {
  WeightView q_proj;              // [H*(nope+rope), hidden]
  WeightView kv_a_proj_with_mqa;  // [kv_lora+rope, hidden]
  WeightView kv_a_layernorm;      // [1, kv_lora]
  WeightView kv_b_proj;           // [H*(nope+v), kv_lora]
  WeightView o_proj;              // [hidden, H*v]
};

struct DenseFfnWeights {
  WeightView gate_proj, up_proj, down_proj;
};

struct MoeWeights {
  WeightView router;                   // [E, hidden]
  WeightView correction_bias;          // [1, E]
  std::vector<WeightView> w1, w3, w2;  // [E] each: gate [inter, hidden], up, down [hidden, inter]
  bool has_shared = false;
  DenseFfnWeights shared;  // intermediate = moe_intermediate_size * num_shared_experts
};

struct LayerWeights {
  WeightView input_layernorm;           // [1, hidden]
  WeightView post_attention_layernorm;  // [1, hidden]
  KdaWeights kda;                       // valid when the layer's mixer is KDA
  MlaWeights mla;                       // valid when the layer's mixer is MLA
  DenseFfnWeights dense;                // valid when the layer's FFN is dense
  MoeWeights moe;                       // valid when the layer's FFN is MoE
};

struct ModelWeights {
  WeightView embed_tokens;  // [vocab, hidden]
  WeightView final_norm;    // [1, hidden]
  WeightView lm_head;       // [vocab, hidden] (= embed_tokens when tied)
  std::vector<LayerWeights> layers;
};

// Binds views by the official tensor names (models/weight_names.h). The store must already have
// been validated against the config, so every name exists with its expected shape.
ModelWeights bind_model_weights(const ModelConfig& config, const WeightStore& store);

}  // namespace kl
