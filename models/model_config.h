// The validated model configuration parsed from a hub config.json (spec section 1), and the
// LayerPlan derived from it: the one place that decides which layer is KDA or MLA, dense or MoE.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kl {

enum class MixerKind : uint8_t { kKda, kMla };
enum class FfnKind : uint8_t { kDense, kMoe };

struct LayerSpec {
  int index = 0;  // 0-based, as in tensor names model.layers.{index}
  MixerKind mixer = MixerKind::kKda;
  FfnKind ffn = FfnKind::kDense;
  int kda_index = -1;  // position among KDA layers (state-block slot), -1 for MLA
  int mla_index = -1;  // position among MLA layers (latent-cache layer), -1 for KDA
};

struct LayerPlan {
  std::vector<LayerSpec> layers;
  int num_kda_layers = 0;
  int num_mla_layers = 0;
};

struct ModelConfig {
  std::string source;  // file the config came from (for error messages and logs)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int num_hidden_layers = 0;
  int64_t intermediate_size = 0;  // dense FFN
  float rms_norm_eps = 1e-5f;
  bool tie_word_embeddings = false;
  int64_t max_position_embeddings = 0;  // model_max_length
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;

  // MLA
  int num_attention_heads = 0;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  // KDA
  int kda_num_heads = 0;
  int64_t kda_head_dim = 0;
  int short_conv_kernel_size = 4;
  bool has_gate_lower_bound = false;
  float gate_lower_bound = 0.f;

  // MoE
  int num_experts = 0;
  int num_experts_per_token = 0;
  int num_shared_experts = 0;
  int64_t moe_intermediate_size = 0;
  int first_k_dense_replace = 0;
  int moe_layer_freq = 1;
  int num_expert_group = 1;
  int topk_group = 1;
  float routed_scaling_factor = 1.f;
  bool moe_renormalize = true;

  LayerPlan plan;

  // Fixed epsilons (spec 3.1): kv_a_layernorm and the KDA q/k L2 norm.
  static constexpr float kKvNormEps = 1e-6f;
  static constexpr float kQkL2Eps = 1e-6f;

  int64_t mla_q_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t mla_cache_dim() const { return kv_lora_rank + qk_rope_head_dim; }  // 576
  int64_t kda_dim() const { return kda_num_heads * kda_head_dim; }           // 4096
  // The shared experts run as one SwiGLU MLP of this width (spec 3.4).
  int64_t shared_intermediate_size() const { return moe_intermediate_size * num_shared_experts; }
};

// Parses and validates a hub config.json. Throws kl::Error naming the file and field.
ModelConfig load_model_config(const std::string& path);
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);

// One-line description of the layer plan for the startup log, e.g. "27 layers: 20 KDA + 7 MLA ...".
std::string describe_layer_plan(const ModelConfig& c);

}  // namespace kl
