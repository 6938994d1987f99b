// The checkpoint's tensor names, shapes and dtypes per layer kind (spec 2.3), derived from the
// LayerPlan. Validation, weight binding, dummy weights and the checkpoint writer all read this
// table.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/dtype.h"
#include "models/model_config.h"

namespace kl {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::kBF16;
  // Another shape a checkpoint may legitimately use for the same data (conv weights stored 2-D
  // [H*K, W] instead of nn.Conv1d's [H*K, 1, W]); empty when only `shape` is accepted.
  std::vector<int64_t> alt_shape = {};

  int64_t numel() const;
  uint64_t nbytes() const { return static_cast<uint64_t>(numel()) * dtype_size(dtype); }
};

// Global tensor names.
inline constexpr std::string_view kEmbedTokensName = "model.embed_tokens.weight";
inline constexpr std::string_view kFinalNormName = "model.norm.weight";
inline constexpr std::string_view kLmHeadName = "lm_head.weight";

// Suffixes below model.layers.{i}. (one list per layer part, in spec 2.3 order).
namespace wn {
inline constexpr std::string_view kInputNorm = "input_layernorm.weight";
inline constexpr std::string_view kPostAttnNorm = "post_attention_layernorm.weight";
// KDA mixer, under self_attn.
inline constexpr std::string_view kKdaQProj = "self_attn.q_proj.weight";
inline constexpr std::string_view kKdaKProj = "self_attn.k_proj.weight";
inline constexpr std::string_view kKdaVProj = "self_attn.v_proj.weight";
inline constexpr std::string_view kKdaQConv = "self_attn.q_conv1d.weight";
inline constexpr std::string_view kKdaKConv = "self_attn.k_conv1d.weight";
inline constexpr std::string_view kKdaVConv = "self_attn.v_conv1d.weight";
inline constexpr std::string_view kKdaALog = "self_attn.A_log";
inline constexpr std::string_view kKdaFAProj = "self_attn.f_a_proj.weight";
inline constexpr std::string_view kKdaFBProj = "self_attn.f_b_proj.weight";
inline constexpr std::string_view kKdaDtBias = "self_attn.dt_bias";
inline constexpr std::string_view kKdaBProj = "self_attn.b_proj.weight";
inline constexpr std::string_view kKdaGAProj = "self_attn.g_a_proj.weight";
inline constexpr std::string_view kKdaGBProj = "self_attn.g_b_proj.weight";
inline constexpr std::string_view kKdaONorm = "self_attn.o_norm.weight";
inline constexpr std::string_view kKdaOProj = "self_attn.o_proj.weight";
// MLA mixer, under self_attn.
inline constexpr std::string_view kMlaQProj = "self_attn.q_proj.weight";
inline constexpr std::string_view kMlaKvAProj = "self_attn.kv_a_proj_with_mqa.weight";
inline constexpr std::string_view kMlaKvANorm = "self_attn.kv_a_layernorm.weight";
inline constexpr std::string_view kMlaKvBProj = "self_attn.kv_b_proj.weight";
inline constexpr std::string_view kMlaOProj = "self_attn.o_proj.weight";
// Dense FFN.
inline constexpr std::string_view kMlpGate = "mlp.gate_proj.weight";
inline constexpr std::string_view kMlpUp = "mlp.up_proj.weight";
inline constexpr std::string_view kMlpDown = "mlp.down_proj.weight";
// MoE, under block_sparse_moe.
inline constexpr std::string_view kMoeRouter = "block_sparse_moe.gate.weight";
inline constexpr std::string_view kMoeBias = "block_sparse_moe.gate.e_score_correction_bias";
inline constexpr std::string_view kSharedGate = "block_sparse_moe.shared_experts.gate_proj.weight";
inline constexpr std::string_view kSharedUp = "block_sparse_moe.shared_experts.up_proj.weight";
inline constexpr std::string_view kSharedDown = "block_sparse_moe.shared_experts.down_proj.weight";
// Routed expert projections: w1 = gate, w3 = up, w2 = down.
inline constexpr std::string_view kExpertGate = "w1";
inline constexpr std::string_view kExpertUp = "w3";
inline constexpr std::string_view kExpertDown = "w2";
}  // namespace wn

// "model.layers.{layer}.{suffix}"
std::string layer_tensor_name(int layer, std::string_view suffix);
// "model.layers.{layer}.block_sparse_moe.experts.{expert}.{proj}.weight", proj one of w1/w2/w3.
std::string expert_tensor_name(int layer, int expert, std::string_view proj);

// Every tensor the checkpoint of `config` holds: globals, then layer by layer. A_log [1,1,H,1]
// and dt_bias [H*K] are F32, everything else BF16; lm_head is absent when embeddings are tied.
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

// True when `shape` is the spec's shape or its accepted alternative.
bool shape_accepted(const TensorSpec& spec, const std::vector<int64_t>& shape);

// "[4096, 1, 4]"
std::string format_shape(const std::vector<int64_t>& shape);

}  // namespace kl
