// The model's forward pass on the CPU reference kernels. Row-wise ops (norms, GEMMs, router,
// experts) run over all of the step's tokens at once; ops with sequence state (conv, KDA, MLA
// attention) run per sequence, KDA token by token, so a sequence's logits are bitwise the same
// whatever else is in the batch and wherever its prefill is split (principle 11).
#include "engine/exec/cpu_forward.h"

#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "engine/core/error.h"
#include "kernels/activation/silu_mul.h"
#include "kernels/conv/short_conv.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/kda/kda.h"
#include "kernels/kda/kda_gate.h"
#include "kernels/mla/mla.h"
#include "kernels/moe/moe.h"
#include "kernels/norm/rmsnorm.h"

namespace kl {

using namespace kl::kernels;

// ---------------------------------------------------------------------------------------------
// CpuCaches

CpuCaches::CpuCaches(const ModelConfig& config, int64_t num_pages, int64_t num_state_blocks)
    : spec_(cache_spec(config)), num_pages_(num_pages), num_blocks_(num_state_blocks) {
  KL_CHECK(num_pages >= 0 && num_state_blocks >= 0, "negative cache size");
  mla_.resize(spec_.num_mla_layers);
  for (auto& layer : mla_) layer.assign(num_pages * kPageSize * spec_.mla_values_per_token, 0.f);
  conv_window_values_ = spec_.kda_conv_values / 3;
  block_values_ = spec_.num_kda_layers * (spec_.kda_state_values + spec_.kda_conv_values);
  blocks_.assign(num_blocks_ * block_values_, 0.f);
}

void CpuCaches::check_block(int32_t block) const {
  KL_CHECK(block >= 0 && block < num_blocks_, "state block {} out of range [0, {})", block,
           num_blocks_);
}

float* CpuCaches::kda_state(int32_t block, int kda_index) {
  check_block(block);
  return blocks_.data() + block * block_values_ +
         kda_index * (spec_.kda_state_values + spec_.kda_conv_values);
}

float* CpuCaches::kda_conv(int32_t block, int kda_index, int which) {
  return kda_state(block, kda_index) + spec_.kda_state_values + which * conv_window_values_;
}

void CpuCaches::reset_block(int32_t block) {
  check_block(block);
  std::fill_n(blocks_.data() + block * block_values_, block_values_, 0.f);
}

void CpuCaches::copy_block(int32_t src, int32_t dst) {
  check_block(src);
  check_block(dst);
  if (src == dst) return;
  std::memcpy(blocks_.data() + dst * block_values_, blocks_.data() + src * block_values_,
              block_values_ * sizeof(float));
}

void CpuCaches::copy_page(int32_t src, int32_t dst) {
  KL_CHECK(src >= 0 && src < num_pages_ && dst >= 0 && dst < num_pages_,
           "page copy {} -> {} out of range [0, {})", src, dst, num_pages_);
  const int64_t page_values = kPageSize * spec_.mla_values_per_token;
  for (auto& layer : mla_)
    std::memcpy(layer.data() + dst * page_values, layer.data() + src * page_values,
                page_values * sizeof(float));
}

// ---------------------------------------------------------------------------------------------
// Forward pass

namespace {

struct SeqRows {
  int64_t begin = 0;  // first row of the sequence's chunk in the step's token rows
  int64_t len = 0;
};

// out[m, n] = x[m, :] . w[n, :]
void linear(const float* x, int64_t m, const WeightView& w, float* out) {
  gemm_ref(
      {.x = x, .m = m, .x_stride = 0, .w = w, .out = out, .out_stride = 0, .accumulate = false});
}

class ForwardPass {
 public:
  ForwardPass(const ModelConfig& c, const ModelWeights& w, CpuCaches& caches,
              const std::vector<SeqStep>& seqs, const ActivationSink& sink)
      : c_(c), w_(w), caches_(caches), seqs_(seqs), sink_(sink) {
    for (const auto& s : seqs) {
      rows_.push_back({num_tokens_, static_cast<int64_t>(s.token_ids.size())});
      num_tokens_ += static_cast<int64_t>(s.token_ids.size());
    }
  }

  void run(std::vector<SeqOutput>& outputs) {
    const int64_t D = c_.hidden_size;
    std::vector<int32_t> tokens;
    tokens.reserve(num_tokens_);
    for (const auto& s : seqs_) tokens.insert(tokens.end(), s.token_ids.begin(), s.token_ids.end());
    for (int32_t t : tokens)
      KL_CHECK(t >= 0 && t < c_.vocab_size, "token id {} outside the vocabulary [0, {})", t,
               c_.vocab_size);

    std::vector<float> h(num_tokens_ * D), normed(num_tokens_ * D), delta(num_tokens_ * D);
    embedding_ref({.token_ids = tokens.data(),
                   .num_tokens = num_tokens_,
                   .table = w_.embed_tokens,
                   .out = h.data()});
    emit("embed", h.data());

    for (const LayerSpec& layer : c_.plan.layers) {
      const LayerWeights& lw = w_.layers[layer.index];
      rmsnorm_ref({.x = h.data(),
                   .residual = nullptr,
                   .weight = lw.input_layernorm,
                   .eps = c_.rms_norm_eps,
                   .num_rows = num_tokens_,
                   .dim = D,
                   .out = normed.data()});
      if (layer.mixer == MixerKind::kKda)
        kda_mixer(layer, lw.kda, normed.data(), delta.data());
      else
        mla_mixer(layer, lw.mla, normed.data(), delta.data());
      emit(fmt::format("layer{}.mixer_out", layer.index), delta.data());
      // h += mixer_out; normed = post_attention_layernorm(h)
      rmsnorm_ref({.x = delta.data(),
                   .residual = h.data(),
                   .weight = lw.post_attention_layernorm,
                   .eps = c_.rms_norm_eps,
                   .num_rows = num_tokens_,
                   .dim = D,
                   .out = normed.data()});
      if (layer.ffn == FfnKind::kDense)
        swiglu_ffn_ref({.x = normed.data(),
                        .num_tokens = num_tokens_,
                        .gate = lw.dense.gate_proj,
                        .up = lw.dense.up_proj,
                        .down = lw.dense.down_proj,
                        .out = delta.data(),
                        .accumulate = false});
      else
        moe_ffn(lw.moe, normed.data(), delta.data());
      emit(fmt::format("layer{}.ffn_out", layer.index), delta.data());
      for (int64_t i = 0; i < num_tokens_ * D; ++i) h[i] += delta[i];
      emit(fmt::format("layer{}.out", layer.index), h.data());
    }
    logits(h, outputs);
  }

 private:
  void emit(const std::string& name, const float* data) {
    if (sink_) sink_(name, data, num_tokens_, c_.hidden_size);
  }

  void kda_mixer(const LayerSpec& layer, const KdaWeights& w, const float* a, float* out) {
    const int64_t T = num_tokens_, H = c_.kda_num_heads, K = c_.kda_head_dim, HK = H * K;
    std::vector<float> proj[3], conv[3];
    const WeightView* proj_w[3] = {&w.q_proj, &w.k_proj, &w.v_proj};
    const WeightView* conv_w[3] = {&w.q_conv, &w.k_conv, &w.v_conv};
    for (int p = 0; p < 3; ++p) {
      proj[p].resize(T * HK);
      conv[p].resize(T * HK);
      linear(a, T, *proj_w[p], proj[p].data());
    }
    // Short conv + SiLU per sequence, carrying the window in the state block.
    for (size_t s = 0; s < seqs_.size(); ++s) {
      for (int p = 0; p < 3; ++p) {
        short_conv_ref({.x = proj[p].data() + rows_[s].begin * HK,
                        .num_tokens = rows_[s].len,
                        .dim = HK,
                        .kernel_size = c_.short_conv_kernel_size,
                        .weight = *conv_w[p],
                        .window = caches_.kda_conv(seqs_[s].state_block, layer.kda_index, p),
                        .apply_silu = true,
                        .out = conv[p].data() + rows_[s].begin * HK});
      }
    }
    float* q = conv[0].data();
    float* k = conv[1].data();
    const float* v = conv[2].data();
    l2norm_rows_ref(q, T * H, K, ModelConfig::kQkL2Eps, 1.f);
    l2norm_rows_ref(k, T * H, K, ModelConfig::kQkL2Eps, 1.f);

    // Forget gate g = -exp(A_log) softplus(f_b(f_a(a)) + dt_bias) and write strength beta.
    std::vector<float> low(T * K), g(T * HK), beta(T * H);
    linear(a, T, w.f_a_proj, low.data());
    linear(low.data(), T, w.f_b_proj, g.data());
    kda_gate_ref({.f = g.data(),
                  .a_log = w.a_log,
                  .dt_bias = w.dt_bias,
                  .num_tokens = T,
                  .num_heads = H,
                  .head_dim = K,
                  .has_lower_bound = c_.has_gate_lower_bound,
                  .lower_bound = c_.gate_lower_bound,
                  .g = g.data()});
    linear(a, T, w.b_proj, beta.data());
    kda_beta_ref(beta.data(), T * H, beta.data());

    // Delta-rule recurrence per sequence, token by token, on the V-major state.
    std::vector<float> o(T * HK);
    const float scale = 1.f / std::sqrt(static_cast<float>(K));
    for (size_t s = 0; s < seqs_.size(); ++s) {
      const int64_t r0 = rows_[s].begin;
      kda_recurrent_ref({.q = q + r0 * HK,
                         .k = k + r0 * HK,
                         .v = v + r0 * HK,
                         .g = g.data() + r0 * HK,
                         .beta = beta.data() + r0 * H,
                         .num_tokens = rows_[s].len,
                         .num_heads = H,
                         .head_k = K,
                         .head_v = K,
                         .scale = scale,
                         .state = caches_.kda_state(seqs_[s].state_block, layer.kda_index),
                         .out = o.data() + r0 * HK});
    }

    // Output gate z = g_b(g_a(a)), gated RMSNorm per head, output projection.
    std::vector<float> z(T * HK);
    linear(a, T, w.g_a_proj, low.data());
    linear(low.data(), T, w.g_b_proj, z.data());
    gated_rmsnorm_ref({.x = o.data(),
                       .gate = z.data(),
                       .weight = w.o_norm,
                       .eps = c_.rms_norm_eps,
                       .num_rows = T * H,
                       .dim = K,
                       .out = o.data()});
    linear(o.data(), T, w.o_proj, out);
  }

  void mla_mixer(const LayerSpec& layer, const MlaWeights& w, const float* a, float* out) {
    const int64_t T = num_tokens_, H = c_.num_attention_heads;
    const int64_t nope = c_.qk_nope_head_dim, rope = c_.qk_rope_head_dim, L = c_.kv_lora_rank;
    const int64_t qdim = nope + rope, cdim = L + rope;
    std::vector<float> q(T * H * qdim), kv(T * cdim), ckv(T * L);
    linear(a, T, w.q_proj, q.data());
    linear(a, T, w.kv_a_proj_with_mqa, kv.data());
    for (int64_t t = 0; t < T; ++t) std::memcpy(&ckv[t * L], &kv[t * cdim], L * sizeof(float));
    rmsnorm_ref({.x = ckv.data(),
                 .residual = nullptr,
                 .weight = w.kv_a_layernorm,
                 .eps = ModelConfig::kKvNormEps,
                 .num_rows = T,
                 .dim = L,
                 .out = ckv.data()});

    float* cache = caches_.mla_layer(layer.mla_index);
    std::vector<int64_t> slots(T);
    std::vector<int32_t> context_lens(T);
    for (size_t s = 0; s < seqs_.size(); ++s) {
      const SeqStep& seq = seqs_[s];
      for (int64_t i = 0; i < rows_[s].len; ++i) {
        const int64_t pos = seq.num_computed_tokens + i;
        const size_t page_idx = static_cast<size_t>(pos / kPageSize);
        KL_CHECK(page_idx < seq.page_table.size(),
                 "sequence {}: token {} has no page (page table holds {} pages)", seq.seq_id, pos,
                 seq.page_table.size());
        const int32_t page = seq.page_table[page_idx];
        KL_CHECK(page >= 0 && page < caches_.num_pages(), "sequence {}: page {} out of range",
                 seq.seq_id, page);
        slots[rows_[s].begin + i] = int64_t{page} * kPageSize + pos % kPageSize;
        context_lens[rows_[s].begin + i] = static_cast<int32_t>(pos + 1);
      }
    }
    mla_cache_write_ref({.ckv = ckv.data(),
                         .k_pe = kv.data() + L,
                         .ckv_stride = L,
                         .k_pe_stride = cdim,
                         .slot_mapping = slots.data(),
                         .num_tokens = T,
                         .kv_lora = L,
                         .rope = rope,
                         .cache = cache});

    std::vector<float> q_lat(T * H * L), out_lat(T * H * L), attn(T * H * c_.v_head_dim);
    mla_absorb_q_ref({.q = q.data(),
                      .num_tokens = T,
                      .num_heads = H,
                      .nope = nope,
                      .rope = rope,
                      .v_dim = c_.v_head_dim,
                      .kv_b = w.kv_b_proj,
                      .q_lat = q_lat.data()});
    const float scale = 1.f / std::sqrt(static_cast<float>(qdim));
    for (size_t s = 0; s < seqs_.size(); ++s) {
      const int64_t r0 = rows_[s].begin;
      mla_attention_ref({.q_lat = q_lat.data() + r0 * H * L,
                         .q = q.data() + r0 * H * qdim,
                         .cache = cache,
                         .page_table = seqs_[s].page_table.data(),
                         .context_lens = context_lens.data() + r0,
                         .num_tokens = rows_[s].len,
                         .num_heads = H,
                         .nope = nope,
                         .rope = rope,
                         .kv_lora = L,
                         .page_size = kPageSize,
                         .scale = scale,
                         .out_lat = out_lat.data() + r0 * H * L});
    }
    mla_unabsorb_ref({.out_lat = out_lat.data(),
                      .num_tokens = T,
                      .num_heads = H,
                      .nope = nope,
                      .v_dim = c_.v_head_dim,
                      .kv_b = w.kv_b_proj,
                      .out = attn.data()});
    linear(attn.data(), T, w.o_proj, out);
  }

  void moe_ffn(const MoeWeights& w, const float* b, float* out) {
    const int64_t T = num_tokens_, E = c_.num_experts, K = c_.num_experts_per_token;
    std::vector<float> router_logits(T * E), weights(T * K);
    std::vector<int32_t> ids(T * K);
    linear(b, T, w.router, router_logits.data());
    moe_router_ref({.logits = router_logits.data(),
                    .bias = w.correction_bias,
                    .num_tokens = T,
                    .num_experts = E,
                    .top_k = K,
                    .num_groups = c_.num_expert_group,
                    .topk_groups = c_.topk_group,
                    .renormalize = c_.moe_renormalize,
                    .routed_scaling = c_.routed_scaling_factor,
                    .expert_ids = ids.data(),
                    .weights = weights.data()});
    moe_experts_ref({.x = b,
                     .num_tokens = T,
                     .top_k = K,
                     .expert_ids = ids.data(),
                     .weights = weights.data(),
                     .w1 = w.w1.data(),
                     .w3 = w.w3.data(),
                     .w2 = w.w2.data(),
                     .out = out,
                     .accumulate = false});
    if (w.has_shared)
      swiglu_ffn_ref({.x = b,
                      .num_tokens = T,
                      .gate = w.shared.gate_proj,
                      .up = w.shared.up_proj,
                      .down = w.shared.down_proj,
                      .out = out,
                      .accumulate = true});
  }

  // Final norm and lm_head on the rows that need logits only.
  void logits(const std::vector<float>& h, std::vector<SeqOutput>& outputs) {
    const int64_t D = c_.hidden_size, V = c_.vocab_size;
    for (size_t s = 0; s < seqs_.size(); ++s) {
      const SeqStep& seq = seqs_[s];
      if (seq.logits == LogitsMode::kNone) continue;
      const int64_t n = seq.logits == LogitsMode::kAll ? rows_[s].len : 1;
      if (n == 0) fail("sequence {}: logits requested for an empty chunk", seq.seq_id);
      const int64_t first = rows_[s].begin + rows_[s].len - n;
      std::vector<float> y(n * D);
      rmsnorm_ref({.x = h.data() + first * D,
                   .residual = nullptr,
                   .weight = w_.final_norm,
                   .eps = c_.rms_norm_eps,
                   .num_rows = n,
                   .dim = D,
                   .out = y.data()});
      SeqOutput o;
      o.seq_id = seq.seq_id;
      o.logits.resize(n * V);
      linear(y.data(), n, w_.lm_head, o.logits.data());
      outputs.push_back(std::move(o));
    }
  }

  const ModelConfig& c_;
  const ModelWeights& w_;
  CpuCaches& caches_;
  const std::vector<SeqStep>& seqs_;
  const ActivationSink& sink_;
  std::vector<SeqRows> rows_;
  int64_t num_tokens_ = 0;
};

}  // namespace

void cpu_forward(const ModelConfig& config, const ModelWeights& weights, CpuCaches& caches,
                 const std::vector<SeqStep>& seqs, std::vector<SeqOutput>& outputs,
                 const ActivationSink& sink) {
  ForwardPass(config, weights, caches, seqs, sink).run(outputs);
}

}  // namespace kl
