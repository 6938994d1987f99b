// Internal launchers of the CUDA MoE (moe_runner.cu drives them): the routing kernels
// (moe_routing.cu) and the grouped GEMMs (tiled, or GEMVs for decode-sized steps) + combine
// (moe_grouped_gemm.cu). Include only from
// the .cu files of kernels/moe.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/weight_view.h"

namespace kl::kernels::moe_detail {

// GEMM tiles: kTileN output columns by a tile_m rows (kSmallTileM for decode-sized batches, where
// experts get a few rows each, kLargeTileM for prefill), k in steps of kTileK. Each expert's row
// segment of the permutation is padded to tile_m so a tile never straddles two experts.
constexpr int kTileN = 64;
constexpr int kTileK = 16;
constexpr int kSmallTileM = 16;
constexpr int kLargeTileM = 64;
constexpr int kMaxExperts = 1024;  // the routing kernels keep one expert per thread of a block

// Where the routed (token, slot) pairs go: pair p = t * top_k + i sits on row row_pair[r] == p of
// its expert's padded segment; padding rows hold -1.
struct Permutation {
  int32_t* counts = nullptr;       // [E] pairs per expert (zeroed before the router)
  int32_t* fill = nullptr;         // [E] rows handed out so far by the scatter (zeroed too)
  int32_t* offsets = nullptr;      // [E] first padded row of each expert's segment
  int32_t* num_tiles = nullptr;    // [1] tiles that hold rows (the rest of the grid exits)
  int32_t* tile_expert = nullptr;  // [max tiles] expert of each tile
  int32_t* row_pair = nullptr;     // [max rows] pair of each padded row, -1 for padding
};

// logits[t, e] = x[t] . router[e] in fp32 FMA (x converted from T on load); a GEMV for up to
// 256 tokens.
template <typename T>
void launch_router_logits(const T* x, int64_t num_tokens, int64_t hidden, const float* router,
                          int64_t num_experts, float* logits, cudaStream_t stream);

// Sigmoid + bias grouped top-k per token (one block per token) and the per-expert pair counts.
struct RouterTopkArgs {
  const float* logits = nullptr;  // [T, E]
  WeightView bias;                // [E] or no data
  int64_t num_tokens = 0, num_experts = 0, top_k = 0, num_groups = 1, topk_groups = 1;
  bool renormalize = true;
  float routed_scaling = 1.f;
  int32_t* ids = nullptr;  // [T, top_k]
  float* weights = nullptr;
  int32_t* ids_copy = nullptr;  // optional second destination (the caller's)
  float* weights_copy = nullptr;
  int32_t* counts = nullptr;  // [E], atomically incremented
};
void launch_router_topk(const RouterTopkArgs& a, cudaStream_t stream);

// Padded segment offsets, tile -> expert map and the tile count from the counts (one block).
void launch_build_segments(const Permutation& perm, int64_t num_experts, int tile_m,
                           cudaStream_t stream);

// row_pair[offsets[e] + slot] = p for every pair p (expert e = ids[p]).
void launch_scatter_pairs(const Permutation& perm, const int32_t* ids, int64_t num_pairs,
                          cudaStream_t stream);

// act[r] = T(silu(x[tok(r)] . w1[e]) * (x[tok(r)] . w3[e])) for the rows of every used tile.
// Small tiles (decode-sized steps) run the GEMV of kernels/gemm/gemv.cuh, unrolled when few_rows
// (the tiles hold about one row); large tiles the tiled kernel.
template <typename T>
void launch_gate_up(const T* x, const Permutation& perm, int64_t top_k, const T* w1, const T* w3,
                    int64_t inter, int64_t hidden, int64_t max_tiles, int tile_m, bool few_rows,
                    T* act, cudaStream_t stream);

// y[row_pair[r]] = T(act[r] . w2[e]) for the non-padding rows of every used tile (same paths).
template <typename T>
void launch_down(const T* act, const Permutation& perm, const T* w2, int64_t hidden, int64_t inter,
                 int64_t max_tiles, int tile_m, bool few_rows, T* y, cudaStream_t stream);

// out[t] = T(sum_i weights[t, i] * y[t * top_k + i]) in fp32, slot 0 first.
template <typename T>
void launch_combine(const T* y, const float* weights, int64_t num_tokens, int64_t top_k,
                    int64_t hidden, T* out, cudaStream_t stream);

}  // namespace kl::kernels::moe_detail
