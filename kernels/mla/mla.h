// MLA (NoPE) over a paged latent cache, absorbed form. One cache per MLA layer:
// [num_pages, page_size, kv_lora + rope] (576 values per token for the model), fp32 on the CPU.
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"

namespace kl::kernels {

// cache[slot_mapping[t]] = [ckv_normed[t] | k_pe[t]]; slot = page * page_size + offset.
struct MlaCacheWriteParams {
  const float* ckv = nullptr;   // [num_tokens, kv_lora] (after kv_a_layernorm)
  const float* k_pe = nullptr;  // [num_tokens, rope]
  int64_t ckv_stride = 0;       // row strides (0 = dense)
  int64_t k_pe_stride = 0;
  const int64_t* slot_mapping = nullptr;  // [num_tokens]
  int64_t num_tokens = 0;
  int64_t kv_lora = 512;
  int64_t rope = 64;
  float* cache = nullptr;
};

void mla_cache_write_ref(const MlaCacheWriteParams& p);

// q_lat[t, h] = W_UK(h)^T q_nope[t, h], with W_UK(h) = rows h*(nope+v) + [0, nope) of kv_b_proj.
// q arrives as the q_proj output [num_tokens, H, nope + rope]; q_lat is [num_tokens, H, kv_lora].
struct MlaAbsorbParams {
  const float* q = nullptr;  // [num_tokens, H, nope + rope]
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t nope = 128;
  int64_t rope = 64;
  int64_t v_dim = 128;
  WeightView kv_b;         // [H * (nope + v_dim), kv_lora]
  float* q_lat = nullptr;  // [num_tokens, H, kv_lora]
};

void mla_absorb_q_ref(const MlaAbsorbParams& p);

// Attention of each query over the first context_lens[t] cached tokens of its sequence, keys in
// page order: s_j = (q_lat . c_j + q_pe . k_pe_j) * scale, softmax in fp32, out_lat = sum p_j c_j.
struct MlaAttentionParams {
  const float* q_lat = nullptr;           // [num_tokens, H, kv_lora]
  const float* q = nullptr;               // [num_tokens, H, nope + rope]; q_pe = last `rope` values
  const float* cache = nullptr;           // [num_pages, page_size, kv_lora + rope]
  const int32_t* page_table = nullptr;    // pages of this sequence, in order
  const int32_t* context_lens = nullptr;  // [num_tokens] keys visible to each query
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t nope = 128;
  int64_t rope = 64;
  int64_t kv_lora = 512;
  int64_t page_size = 64;
  float scale = 0.f;         // 1/sqrt(nope + rope)
  float* out_lat = nullptr;  // [num_tokens, H, kv_lora]
};

void mla_attention_ref(const MlaAttentionParams& p);

// out[t, h] = W_UV(h) out_lat[t, h], W_UV(h) = rows h*(nope+v) + [nope, nope + v) of kv_b_proj.
struct MlaUnabsorbParams {
  const float* out_lat = nullptr;  // [num_tokens, H, kv_lora]
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t nope = 128;
  int64_t v_dim = 128;
  WeightView kv_b;
  float* out = nullptr;  // [num_tokens, H * v_dim]
};

void mla_unabsorb_ref(const MlaUnabsorbParams& p);

}  // namespace kl::kernels
