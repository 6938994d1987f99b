// Internal to kernels/mla: the MLA head geometries the kernels are compiled for (MlaShape) and
// the launchers of the decode (absorbed) and prefill (expanded) attention kernels, which
// MlaAttentionRunner (mla_runner.cu) strings together with its GEMMs. Every dims-dependent
// launcher is a template on the shape S, so each geometry gets kernels with compile-time loop
// bounds and shared-memory layouts (the model's geometry keeps exactly its specialised code).
// Include only from .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mla/mla_cuda.h"

namespace kl::kernels::mla {

// One MLA head geometry: q / expanded-k head [nope | rope], value head v, latent kv_lora.
template <int Nope, int Rope, int V, int Lora>
struct MlaShape {
  static constexpr int kNope = Nope;
  static constexpr int kRope = Rope;
  static constexpr int kQkDim = Nope + Rope;  // q and expanded k per head
  static constexpr int kVDim = V;
  static constexpr int kLora = Lora;
  static constexpr int kWidth = Lora + Rope;  // one cached token
  static constexpr int kKvbRows = Nope + V;   // kv_b rows per head ([k_nope | v])
  static bool matches(const MlaDims& d) {
    return d.nope == Nope && d.rope == Rope && d.v_dim == V && d.kv_lora == Lora;
  }
};

// The geometries with compiled kernels (MlaAttentionRunner throws for any other): Kimi Linear's
// (spec 3.3) and the tiny-grouped golden test model's (tests/data/golden/tiny-grouped).
using KimiLinearShape = MlaShape<128, 64, 128, 512>;
using TinyGoldenShape = MlaShape<64, 32, 64, 256>;

// Decode attention over the latent cache: a block takes kDecodeHeads heads of one decode row
// (they share every key tile it loads) and one split of its keys.
constexpr int kDecodeHeads = 16;
constexpr int kDecodeKeys = 32;    // keys per tile (split sizes are whole tiles)
constexpr int kMinSplitKeys = 64;  // fewer keys per split than this is not worth a partial

// list[d] = index of the d-th sequence (in order) with num_rows == 1.
void launch_build_decode_list(const MlaSeqSpan* seqs, int num_seqs, int32_t* list,
                              cudaStream_t stream);

// q_dec[d] = q[row of decode sequence list[d]] ([H, kQkDim] each), for d in [0, num_rows).
template <typename T, typename S>
void launch_gather_decode_q(const T* q, const MlaSeqSpan* seqs, const int32_t* list, int num_rows,
                            int num_heads, T* q_dec, cudaStream_t stream);

// out[row of decode sequence list[d]] = out_dec[d] ([H * kVDim] each).
template <typename T, typename S>
void launch_scatter_decode_out(const T* out_dec, const MlaSeqSpan* seqs, const int32_t* list,
                               int num_rows, int num_heads, T* out, cudaStream_t stream);

template <typename T>
struct DecodeAttentionArgs {
  const T* q_lat = nullptr;  // [num_rows, H, kLora]
  const T* q_dec = nullptr;  // [num_rows, H, kQkDim]: q_pe at offset kNope
  const T* cache = nullptr;  // [num_pages, page_size, kWidth]
  const int32_t* page_tables = nullptr;
  int64_t page_table_stride = 0;
  const MlaSeqSpan* seqs = nullptr;
  const int32_t* list = nullptr;  // [num_rows] sequence of each decode row
  int num_rows = 0;
  int num_heads = 0;
  int page_size = 0;
  float scale = 0.f;
  int num_splits = 1;         // key splits per row; split s takes keys [s * split_keys, ...)
  int split_keys = 0;         // a multiple of kDecodeKeys
  T* out_lat = nullptr;       // [num_rows, H, kLora], written when num_splits == 1
  float* part_acc = nullptr;  // [num_rows * num_splits, H, kLora] unnormalised, otherwise
  float* part_ml = nullptr;   // [num_rows * num_splits, H, 2]: running max and sum
};

// Absorbed attention of decode rows over their latent caches (plus the combination of the key
// splits when num_splits > 1): out_lat = softmax((q_lat.c + q_pe.k_pe) * scale) . c.
template <typename T, typename S>
void launch_decode_attention(const DecodeAttentionArgs<T>& a, cudaStream_t stream);

// lat[k] = cache latent of key key_begin + k, pe[k] = its k_pe, for k in [0, num_keys).
template <typename T, typename S>
void launch_gather_keys(const T* cache, const int32_t* pages, int page_size, int key_begin,
                        int num_keys, T* lat, T* pe, cudaStream_t stream);

template <typename T>
struct PrefillChunkArgs {
  const T* q = nullptr;  // [num_rows, H, kQkDim]: the sequence's query rows
  int num_rows = 0;
  int num_computed = 0;  // row i sees keys [0, num_computed + i]
  int num_heads = 0;
  float scale = 0.f;
  const T* kv_up = nullptr;  // [chunk_keys, H * kKvbRows]: per head [k_nope | v] of the keys
  const T* k_pe = nullptr;   // [chunk_keys, kRope]
  int chunk_begin = 0;       // global index of the chunk's first key
  int chunk_keys = 0;
  bool first = false;    // the first key chunk: start from an empty softmax state
  bool last = false;     // the last key chunk: normalise and write `out`
  float* acc = nullptr;  // [num_rows, H, kVDim] fp32 running output between chunks
  float* ml = nullptr;   // [num_rows, H, 2] fp32 running max and sum between chunks
  T* out = nullptr;      // [num_rows, H * kVDim]
};

// Causal expanded attention of a prefill chunk's rows over one key chunk, with the online softmax
// carried in acc/ml across chunks.
template <typename T, typename S>
void launch_prefill_chunk(const PrefillChunkArgs<T>& a, cudaStream_t stream);

// Opt the attention kernels of shape S into their dynamic shared memory (once per device).
template <typename S>
void set_decode_smem_limit();
template <typename S>
void set_prefill_smem_limit();

}  // namespace kl::kernels::mla
