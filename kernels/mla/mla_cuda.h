// MLA (NoPE) on the GPU over the paged latent cache (one cache per MLA layer:
// [num_pages, page_size, kv_lora + rope] in the activation type T). Same function as the CPU
// twins of kernels/mla/mla.h: decode rows use the absorbed form, prefill chunks the expanded form
// (the cached prefix plus the new tokens up-projected through kv_b in chunks, then causal
// attention), so both read the same cache.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/core/weight_view.h"
#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

class GemmRunner;

// The head geometry (nope, rope, v_dim, kv_lora) must be one the kernels are compiled for:
// Kimi Linear's 128 / 64 / 128 / 512 or the tiny-grouped test model's 64 / 32 / 64 / 256;
// MlaAttentionRunner's constructor throws kl::Error naming any other.
struct MlaDims {
  int64_t num_heads = 32;
  int64_t nope = 128;
  int64_t rope = 64;
  int64_t v_dim = 128;
  int64_t kv_lora = 512;
  int64_t page_size = 64;
  float kv_norm_eps = 1e-6f;  // kv_a_layernorm (spec 3.1: fixed, not rms_norm_eps)
};

// Normalises the latent of each new token (kv_a_layernorm, rmsnorm semantics of rmsnorm_cuda)
// and writes [ckv_normed | k_pe] to cache slot slot_mapping[t] (= page * page_size + offset).
template <typename T>
struct MlaCacheWriteCudaParams {
  const T* kv = nullptr;   // [num_tokens, kv_lora + rope] device: kv_a_proj_with_mqa output,
  int64_t kv_stride = 0;   // row stride (0 = kv_lora + rope)
  WeightView norm_weight;  // [kv_lora] device
  const int64_t* slot_mapping = nullptr;  // [num_tokens] device
  int64_t num_tokens = 0;
  T* cache = nullptr;
};

// One sequence's share of a step, host side.
struct MlaSeqSpan {
  int32_t row_begin = 0;     // first of its rows in the step's token rows
  int32_t num_rows = 0;      // new tokens (1 for a decode)
  int32_t num_computed = 0;  // tokens already cached before this step; row i sees
                             // num_computed + i + 1 keys (the cache already holds the new ones)
};

template <typename T>
struct MlaAttentionCudaParams {
  const T* q = nullptr;  // [num_tokens, H, nope + rope] device (q_proj output)
  int64_t num_tokens = 0;
  WeightView kv_b;           // [H * (nope + v_dim), kv_lora] device, dtype of T
  const T* cache = nullptr;  // written for this step's tokens already
  int64_t num_pages = 0;
  const int32_t* page_tables = nullptr;  // [num_seqs, page_table_stride] device
  int64_t page_table_stride = 0;
  const MlaSeqSpan* seqs = nullptr;      // [num_seqs] host
  const MlaSeqSpan* seqs_dev = nullptr;  // [num_seqs] device copy of the same
  int num_seqs = 0;
  T* out = nullptr;  // [num_tokens, H * v_dim] device (o_proj input)
  // For steps captured in a CUDA graph: a bound on every decode row's keys, so that the launch
  // shapes (key splits) do not depend on this step's lengths and the graph replays correctly as
  // the contexts grow. 0: this step's longest decode row.
  int64_t decode_keys_bound = 0;
};

// Owns the scratch of MLA attention (absorbed queries, latent outputs, up-projected prefix
// chunks), sized at construction for at most max_num_tokens rows per step.
class MlaAttentionRunner {
 public:
  // chunk_keys: keys up-projected at a time for prefill chunks (0 = 2048); bounds the kv_b
  // scratch ([chunk_keys, H * (nope + v_dim)]). Tests pass a small value to exercise several
  // chunks.
  MlaAttentionRunner(const MlaDims& dims, int64_t max_num_tokens, bool bf16,
                     int64_t chunk_keys = 0);
  ~MlaAttentionRunner();
  MlaAttentionRunner(const MlaAttentionRunner&) = delete;
  MlaAttentionRunner& operator=(const MlaAttentionRunner&) = delete;

  // Device bytes of scratch this runner holds (the executor's memory plan).
  int64_t workspace_bytes() const;

  template <typename T>
  void cache_write(const MlaCacheWriteCudaParams<T>& p, CudaStream stream);
  template <typename T>
  void attention(GemmRunner& gemm, const MlaAttentionCudaParams<T>& p, CudaStream stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kl::kernels
