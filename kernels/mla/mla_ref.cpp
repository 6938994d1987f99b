// CPU twins of MLA over the paged latent cache (spec 3.3, absorbed form): cache write, query
// absorption into the latent space, attention over the cache in page order, and un-absorption.
#include "kernels/mla/mla.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/error.h"
#include "kernels/gemm/ref_dot.h"

namespace kl::kernels {
namespace {

// Rows [row0, row0 + n) of kv_b as fp32: one head's W_UK or W_UV block, converted once per call.
std::vector<float> head_block(const WeightView& kv_b, int64_t row0, int64_t n) {
  std::vector<float> out(n * kv_b.cols);
  detail::weight_rows_to_f32(kv_b, row0, n, out.data());
  return out;
}

}  // namespace

void mla_cache_write_ref(const MlaCacheWriteParams& p) {
  const int64_t width = p.kv_lora + p.rope;
  const int64_t ckv_stride = p.ckv_stride ? p.ckv_stride : p.kv_lora;
  const int64_t pe_stride = p.k_pe_stride ? p.k_pe_stride : p.rope;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t slot = p.slot_mapping[t];
    if (slot < 0) continue;  // a padding token (vLLM's convention): nothing to store
    float* dst = p.cache + slot * width;
    std::copy_n(p.ckv + t * ckv_stride, p.kv_lora, dst);
    std::copy_n(p.k_pe + t * pe_stride, p.rope, dst + p.kv_lora);
  }
}

void mla_absorb_q_ref(const MlaAbsorbParams& p) {
  const int64_t H = p.num_heads;
  const int64_t lora = p.kv_b.cols;
  const int64_t qdim = p.nope + p.rope;
  KL_CHECK(p.kv_b.rows == H * (p.nope + p.v_dim), "mla_absorb_q_ref: kv_b has {} rows, expected {}",
           p.kv_b.rows, H * (p.nope + p.v_dim));
  for (int64_t h = 0; h < H; ++h) {
    const std::vector<float> wuk = head_block(p.kv_b, h * (p.nope + p.v_dim), p.nope);
    for (int64_t t = 0; t < p.num_tokens; ++t) {
      const float* qn = p.q + (t * H + h) * qdim;
      float* ql = p.q_lat + (t * H + h) * lora;
      // W_UK^T q: a sum of W_UK's rows weighted by q_nope, in row order n = 0 .. nope-1.
      std::fill_n(ql, lora, 0.f);
      for (int64_t n = 0; n < p.nope; ++n) {
        const float a = qn[n];
        const float* row = wuk.data() + n * lora;
        for (int64_t l = 0; l < lora; ++l) ql[l] += a * row[l];
      }
    }
  }
}

void mla_attention_ref(const MlaAttentionParams& p) {
  const int64_t H = p.num_heads;
  const int64_t lora = p.kv_lora;
  const int64_t qdim = p.nope + p.rope;
  const int64_t width = lora + p.rope;
  int64_t max_ctx = 0;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    KL_CHECK(p.context_lens[t] >= 0, "mla_attention_ref: context_lens[{}] = {}", t,
             p.context_lens[t]);
    max_ctx = std::max<int64_t>(max_ctx, p.context_lens[t]);
  }
  std::vector<float> s(max_ctx);
  std::vector<const float*> keys(max_ctx);
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t n = p.context_lens[t];
    for (int64_t j = 0; j < n; ++j) {
      const int64_t page = p.page_table[j / p.page_size];
      keys[j] = p.cache + (page * p.page_size + j % p.page_size) * width;
    }
    for (int64_t h = 0; h < H; ++h) {
      const float* ql = p.q_lat + (t * H + h) * lora;
      const float* qpe = p.q + (t * H + h) * qdim + p.nope;
      float* out = p.out_lat + (t * H + h) * lora;
      std::fill_n(out, lora, 0.f);
      if (n == 0) continue;  // nothing visible: a zero output rather than 0/0
      float mx = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        // The un-rotated rope term is part of the score (spec 3.3: dropping it is wrong).
        s[j] = (detail::dot_f32(ql, keys[j], lora) + detail::dot_f32(qpe, keys[j] + lora, p.rope)) *
               p.scale;
        mx = std::max(mx, s[j]);
      }
      float sum = 0.f;
      for (int64_t j = 0; j < n; ++j) {
        s[j] = std::exp(s[j] - mx);  // <= 1: subtracting the max keeps exp in range
        sum += s[j];
      }
      for (int64_t j = 0; j < n; ++j) {
        const float pj = s[j];
        const float* c = keys[j];
        for (int64_t l = 0; l < lora; ++l) out[l] += pj * c[l];
      }
      const float inv = 1.f / sum;
      for (int64_t l = 0; l < lora; ++l) out[l] *= inv;
    }
  }
}

void mla_unabsorb_ref(const MlaUnabsorbParams& p) {
  const int64_t H = p.num_heads;
  const int64_t lora = p.kv_b.cols;
  KL_CHECK(p.kv_b.rows == H * (p.nope + p.v_dim), "mla_unabsorb_ref: kv_b has {} rows, expected {}",
           p.kv_b.rows, H * (p.nope + p.v_dim));
  for (int64_t h = 0; h < H; ++h) {
    const std::vector<float> wuv = head_block(p.kv_b, h * (p.nope + p.v_dim) + p.nope, p.v_dim);
    for (int64_t t = 0; t < p.num_tokens; ++t) {
      const float* ol = p.out_lat + (t * H + h) * lora;
      float* out = p.out + t * H * p.v_dim + h * p.v_dim;
      for (int64_t i = 0; i < p.v_dim; ++i)
        out[i] = detail::dot_f32(wuv.data() + i * lora, ol, lora);
    }
  }
}

}  // namespace kl::kernels
