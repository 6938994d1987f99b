// The per-layer-kind tensor table (spec 2.3): names, [out, in] shapes and stored dtypes of every
// checkpoint tensor, generated from the LayerPlan so no other code spells a layer's contents.
#include "models/weight_names.h"

#include <fmt/format.h>

namespace kl {
namespace {

// Appends model.layers.{i}.{suffix}.
struct LayerTable {
  std::vector<TensorSpec>& out;
  int layer;

  void add(std::string_view suffix, std::vector<int64_t> shape, DType dtype = DType::kBF16,
           std::vector<int64_t> alt = {}) {
    out.push_back(
        TensorSpec{layer_tensor_name(layer, suffix), std::move(shape), dtype, std::move(alt)});
  }
};

void add_kda(LayerTable& t, const ModelConfig& c) {
  const int64_t d = c.hidden_size, h = c.kda_num_heads, k = c.kda_head_dim, hk = c.kda_dim();
  const int64_t w = c.short_conv_kernel_size;
  t.add(wn::kKdaQProj, {hk, d});
  t.add(wn::kKdaKProj, {hk, d});
  t.add(wn::kKdaVProj, {hk, d});
  // nn.Conv1d(groups=H*K) stores [H*K, 1, W]; some exporters squeeze the middle axis.
  t.add(wn::kKdaQConv, {hk, 1, w}, DType::kBF16, {hk, w});
  t.add(wn::kKdaKConv, {hk, 1, w}, DType::kBF16, {hk, w});
  t.add(wn::kKdaVConv, {hk, 1, w}, DType::kBF16, {hk, w});
  // HF creates A_log and dt_bias as explicit float32 parameters (spec 2.2).
  t.add(wn::kKdaALog, {1, 1, h, 1}, DType::kF32);
  t.add(wn::kKdaFAProj, {k, d});  // the gate projections' rank is the head dim
  t.add(wn::kKdaFBProj, {hk, k});
  t.add(wn::kKdaDtBias, {hk}, DType::kF32);
  t.add(wn::kKdaBProj, {h, d});
  t.add(wn::kKdaGAProj, {k, d});
  t.add(wn::kKdaGBProj, {hk, k});
  t.add(wn::kKdaONorm, {k});
  t.add(wn::kKdaOProj, {d, hk});
}

void add_mla(LayerTable& t, const ModelConfig& c) {
  const int64_t d = c.hidden_size, h = c.num_attention_heads;
  t.add(wn::kMlaQProj, {h * c.mla_q_head_dim(), d});
  t.add(wn::kMlaKvAProj, {c.mla_cache_dim(), d});
  t.add(wn::kMlaKvANorm, {c.kv_lora_rank});
  t.add(wn::kMlaKvBProj, {h * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank});
  t.add(wn::kMlaOProj, {d, h * c.v_head_dim});
}

void add_dense(LayerTable& t, const ModelConfig& c) {
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  t.add(wn::kMlpGate, {f, d});
  t.add(wn::kMlpUp, {f, d});
  t.add(wn::kMlpDown, {d, f});
}

void add_moe(LayerTable& t, const ModelConfig& c) {
  const int64_t d = c.hidden_size, e = c.num_experts, f = c.moe_intermediate_size;
  t.add(wn::kMoeRouter, {e, d});
  t.add(wn::kMoeBias, {e});
  for (int x = 0; x < c.num_experts; ++x) {
    t.out.push_back(TensorSpec{expert_tensor_name(t.layer, x, wn::kExpertGate), {f, d}});
    t.out.push_back(TensorSpec{expert_tensor_name(t.layer, x, wn::kExpertUp), {f, d}});
    t.out.push_back(TensorSpec{expert_tensor_name(t.layer, x, wn::kExpertDown), {d, f}});
  }
  if (c.num_shared_experts > 0) {
    const int64_t s = c.shared_intermediate_size();
    t.add(wn::kSharedGate, {s, d});
    t.add(wn::kSharedUp, {s, d});
    t.add(wn::kSharedDown, {d, s});
  }
}

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string layer_tensor_name(int layer, std::string_view suffix) {
  return fmt::format("model.layers.{}.{}", layer, suffix);
}

std::string expert_tensor_name(int layer, int expert, std::string_view proj) {
  return fmt::format("model.layers.{}.block_sparse_moe.experts.{}.{}.weight", layer, expert, proj);
}

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  std::vector<TensorSpec> out;
  out.push_back(TensorSpec{std::string(kEmbedTokensName), {c.vocab_size, c.hidden_size}});
  for (const LayerSpec& s : c.plan.layers) {
    LayerTable t{out, s.index};
    t.add(wn::kInputNorm, {c.hidden_size});
    if (s.mixer == MixerKind::kKda) {
      add_kda(t, c);
    } else {
      add_mla(t, c);
    }
    t.add(wn::kPostAttnNorm, {c.hidden_size});
    if (s.ffn == FfnKind::kDense) {
      add_dense(t, c);
    } else {
      add_moe(t, c);
    }
  }
  out.push_back(TensorSpec{std::string(kFinalNormName), {c.hidden_size}});
  if (!c.tie_word_embeddings)
    out.push_back(TensorSpec{std::string(kLmHeadName), {c.vocab_size, c.hidden_size}});
  return out;
}

bool shape_accepted(const TensorSpec& spec, const std::vector<int64_t>& shape) {
  return shape == spec.shape || (!spec.alt_shape.empty() && shape == spec.alt_shape);
}

std::string format_shape(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

}  // namespace kl
