// The KDA delta-rule core on the GPU over a varlen batch, on the V-major fp32 state of each
// sequence's state block (per head [V, K]): the recurrent form (token by token; decode and short
// chunks) and the chunked form (spec 4.1, chunk 64; prefill). Same function as kda_recurrent_ref
// / kda_chunked_ref per sequence. q and k arrive L2-normalised; `scale` multiplies q.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

template <typename T>
struct KdaCudaParams {
  const T* q = nullptr;         // [num_tokens, H, K] device
  const T* k = nullptr;         // [num_tokens, H, K] device
  const T* v = nullptr;         // [num_tokens, H, V] device
  const float* g = nullptr;     // [num_tokens, H, K] device, log-space decay (<= 0)
  const float* beta = nullptr;  // [num_tokens, H] device
  int64_t num_tokens = 0;
  int num_seqs = 0;
  const int32_t* cu_seqlens = nullptr;    // [num_seqs + 1] device: rows of sequence s
  const int32_t* state_blocks = nullptr;  // [num_seqs] device: state block of sequence s
  int64_t max_seqlen = 0;                 // host: the longest chunk (grid sizing)
  int64_t num_heads = 0;
  int64_t head_k = 0;
  int64_t head_v = 0;
  float scale = 1.f;
  // State of block b: states + b * H * V * K, [H, V, K] fp32: initial state in, final state out.
  float* states = nullptr;
  T* out = nullptr;  // [num_tokens, H, V] device
};

// S <- diag(exp g_t) S; r = S^T k; S <- S + k (beta (v - r))^T; o = S^T (scale q), per token.
template <typename T>
void kda_recurrent_cuda(const KdaCudaParams<T>& p, CudaStream stream);

// The same function chunkwise (64 rows per chunk, only in-chunk gate differences).
template <typename T>
void kda_chunked_cuda(const KdaCudaParams<T>& p, CudaStream stream);

}  // namespace kl::kernels
