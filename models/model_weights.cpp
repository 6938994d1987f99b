// Binds the per-layer weight views by the official tensor names from models/weight_names.h,
// following the LayerPlan (the store was validated against the same table).
#include "models/model_weights.h"

#include "engine/checkpoint/weight_store.h"
#include "models/weight_names.h"

namespace kl {
namespace {

KdaWeights bind_kda(const WeightStore& st, int i) {
  auto w = [&](std::string_view suffix) { return st.get(layer_tensor_name(i, suffix)); };
  KdaWeights k;
  k.q_proj = w(wn::kKdaQProj);
  k.k_proj = w(wn::kKdaKProj);
  k.v_proj = w(wn::kKdaVProj);
  k.q_conv = w(wn::kKdaQConv);
  k.k_conv = w(wn::kKdaKConv);
  k.v_conv = w(wn::kKdaVConv);
  k.a_log = w(wn::kKdaALog);
  k.dt_bias = w(wn::kKdaDtBias);
  k.f_a_proj = w(wn::kKdaFAProj);
  k.f_b_proj = w(wn::kKdaFBProj);
  k.b_proj = w(wn::kKdaBProj);
  k.g_a_proj = w(wn::kKdaGAProj);
  k.g_b_proj = w(wn::kKdaGBProj);
  k.o_norm = w(wn::kKdaONorm);
  k.o_proj = w(wn::kKdaOProj);
  return k;
}

MlaWeights bind_mla(const WeightStore& st, int i) {
  auto w = [&](std::string_view suffix) { return st.get(layer_tensor_name(i, suffix)); };
  MlaWeights m;
  m.q_proj = w(wn::kMlaQProj);
  m.kv_a_proj_with_mqa = w(wn::kMlaKvAProj);
  m.kv_a_layernorm = w(wn::kMlaKvANorm);
  m.kv_b_proj = w(wn::kMlaKvBProj);
  m.o_proj = w(wn::kMlaOProj);
  return m;
}

MoeWeights bind_moe(const ModelConfig& c, const WeightStore& st, int i) {
  auto w = [&](std::string_view suffix) { return st.get(layer_tensor_name(i, suffix)); };
  MoeWeights m;
  m.router = w(wn::kMoeRouter);
  m.correction_bias = w(wn::kMoeBias);
  m.w1.reserve(c.num_experts);
  m.w3.reserve(c.num_experts);
  m.w2.reserve(c.num_experts);
  for (int e = 0; e < c.num_experts; ++e) {
    m.w1.push_back(st.get(expert_tensor_name(i, e, wn::kExpertGate)));
    m.w3.push_back(st.get(expert_tensor_name(i, e, wn::kExpertUp)));
    m.w2.push_back(st.get(expert_tensor_name(i, e, wn::kExpertDown)));
  }
  m.has_shared = c.num_shared_experts > 0;
  if (m.has_shared) {
    m.shared.gate_proj = w(wn::kSharedGate);
    m.shared.up_proj = w(wn::kSharedUp);
    m.shared.down_proj = w(wn::kSharedDown);
  }
  return m;
}

}  // namespace

ModelWeights bind_model_weights(const ModelConfig& config, const WeightStore& store) {
  ModelWeights mw;
  mw.embed_tokens = store.get(std::string(kEmbedTokensName));
  mw.final_norm = store.get(std::string(kFinalNormName));
  mw.lm_head = config.tie_word_embeddings ? mw.embed_tokens : store.get(std::string(kLmHeadName));
  mw.layers.reserve(config.plan.layers.size());
  for (const LayerSpec& s : config.plan.layers) {
    LayerWeights lw;
    lw.input_layernorm = store.get(layer_tensor_name(s.index, wn::kInputNorm));
    lw.post_attention_layernorm = store.get(layer_tensor_name(s.index, wn::kPostAttnNorm));
    if (s.mixer == MixerKind::kKda) {
      lw.kda = bind_kda(store, s.index);
    } else {
      lw.mla = bind_mla(store, s.index);
    }
    if (s.ffn == FfnKind::kDense) {
      auto w = [&](std::string_view suffix) {
        return store.get(layer_tensor_name(s.index, suffix));
      };
      lw.dense.gate_proj = w(wn::kMlpGate);
      lw.dense.up_proj = w(wn::kMlpUp);
      lw.dense.down_proj = w(wn::kMlpDown);
    } else {
      lw.moe = bind_moe(config, store, s.index);
    }
    mw.layers.push_back(std::move(lw));
  }
  return mw;
}

}  // namespace kl
