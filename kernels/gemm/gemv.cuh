// A GEMV-style kernel for memory-bound products with few rows per weight matrix (decode): one
// warp per output column, reading the weight row once with 16-byte loads and applying it to every
// row of its tile. Used by the MoE for small tiles: the router and the experts' gate/up + SwiGLU
// and down (kernels/moe/moe_grouped_gemm.cu). Tried for the dense Linear layers at m <= 8 too:
// no faster than cuBLASLt at m = 1, where those small GEMMs are latency-bound, and 2x slower at
// m = 8. Device code: include only from .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"

namespace kl::kernels::gemv {

using cuda::from_f32;
using cuda::kWarp;
using cuda::to_f32;

constexpr int kGemvThreads = 256;  // 8 warps = 8 output columns per block
constexpr int kColsPerBlock = kGemvThreads / kWarp;

enum class Mode {
  kRows,    // out[r] = a[r] . w for the rows r < m; one weight matrix; strided rows
  kSwiglu,  // act[r] = T(silu(x . w1) * (x . w3)), x row = row_pair[r] / top_k
  kDown,    // y[row_pair[r]] = T(act[r] . w2)
};

// Values per 16-byte weight load: 8 when A and W are both 2-byte types, else 4.
template <typename TA, typename TW>
constexpr int kVec = (sizeof(TA) == 2 && sizeof(TW) == 2) ? 8 : 4;

template <int V>
__device__ __forceinline__ void load_vec(const float* p, float v[V]) {
#pragma unroll
  for (int h = 0; h < V / 4; ++h) {
    const float4 q = reinterpret_cast<const float4*>(p)[h];
    v[4 * h] = q.x;
    v[4 * h + 1] = q.y;
    v[4 * h + 2] = q.z;
    v[4 * h + 3] = q.w;
  }
}
template <int V>
__device__ __forceinline__ void load_vec(const __nv_bfloat16* p, float v[V]) {
  uint32_t words[V / 2];
  if constexpr (V == 8) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    words[0] = raw.x, words[1] = raw.y, words[2] = raw.z, words[3] = raw.w;
  } else {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    words[0] = raw.x, words[1] = raw.y;
  }
#pragma unroll
  for (int i = 0; i < V / 2; ++i) {
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&words[i]));
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

template <typename TA, typename TW, typename TOut>
struct GemvArgs {
  const TA* a = nullptr;  // kSwiglu: x [tokens, k]; kDown: act [rows, k]; kRows: [m, k]
  int64_t a_stride = 0;   // kRows: elements between rows (a multiple of the vector width)
  const int32_t* row_pair = nullptr;
  int top_k = 1;
  int64_t m = 0;           // kRows: valid rows
  const TW* b0 = nullptr;  // [E][n, k] (kRows: [n, k])
  const TW* b1 = nullptr;  // kSwiglu: the up projection
  int64_t b_expert_stride = 0;
  const int32_t* tile_expert = nullptr;  // null: expert 0
  const int32_t* num_tiles = nullptr;    // null: every tile of the grid is used
  int64_t n = 0, k = 0;
  TOut* out = nullptr;
  int64_t out_stride = 0;  // kRows: elements between output rows; else n
};

// Each lane sums its strided chunks of k in order, then a fixed xor-shuffle tree: a row's result
// does not depend on the tile, its position in it or the other rows.
// kUnroll: weight chunks per lane loaded before their FMAs. With one or two rows per tile (small
// decode batches) nothing else keeps loads in flight, and unrolling halves the time; with many
// rows the x loads do, and the unrolled kernel's extra registers (128 for bf16 gate/up at 2)
// cost more than they bring (H100, tests/bench/NOTES.md).
template <typename TA, typename TW, typename TOut, int BM, Mode kMode, int kUnroll>
__global__ void __launch_bounds__(kGemvThreads) tile_gemv_kernel(GemvArgs<TA, TW, TOut> g) {
  constexpr int V = kVec<TA, TW>;
  constexpr bool kDual = kMode == Mode::kSwiglu;
  const int tile = blockIdx.x;
  if (g.num_tiles && tile >= *g.num_tiles) return;  // uniform per block
  const int64_t row0 = int64_t(tile) * BM;

  // The tile's rows, shared by the block's warps (one tile, eight columns): the A row each reads
  // and the output row each writes (-1: padding); they are a prefix of nv rows.
  __shared__ int32_t src_row[BM], dest_row[BM];
  if (threadIdx.x < BM) {
    const int i = threadIdx.x;
    const int64_t r = row0 + i;
    if constexpr (kMode == Mode::kRows) {
      src_row[i] = r < g.m ? int32_t(r) : 0;
      dest_row[i] = r < g.m ? int32_t(r) : -1;
    } else {
      const int32_t p = g.row_pair[r];
      src_row[i] = kDual ? (p < 0 ? 0 : p / g.top_k) : int32_t(r);
      dest_row[i] = p < 0 ? -1 : (kDual ? int32_t(r) : p);
    }
  }
  __syncthreads();
  int nv = 0;
#pragma unroll
  for (int i = 0; i < BM; ++i)
    if (dest_row[i] >= 0) nv = i + 1;

  const int lane = threadIdx.x % kWarp;
  const int64_t c = int64_t(blockIdx.y) * kColsPerBlock + threadIdx.x / kWarp;
  if (c >= g.n) return;  // whole warps: the shuffles below stay full
  const int64_t expert = g.tile_expert ? g.tile_expert[tile] : 0;
  const TW* w0 = g.b0 + expert * g.b_expert_stride + c * g.k;
  const TW* w1 = kDual ? g.b1 + expert * g.b_expert_stride + c * g.k : nullptr;

  const int64_t a_stride = kMode == Mode::kRows ? g.a_stride : g.k;
  const int64_t out_stride = kMode == Mode::kRows ? g.out_stride : g.n;
  float acc0[BM] = {}, acc1[kDual ? BM : 1] = {};
  constexpr int64_t kStep = int64_t(kWarp) * V;
  for (int64_t base = int64_t(lane) * V; base < g.k; base += kStep * kUnroll) {
    // The weight loads of kUnroll chunks first (independent: in flight together), then the FMAs.
    float wv0[kUnroll][V], wv1[kDual ? kUnroll : 1][V];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k0 = base + u * kStep;
      if (k0 < g.k) {
        load_vec<V>(w0 + k0, wv0[u]);
        if constexpr (kDual) load_vec<V>(w1 + k0, wv1[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k0 = base + u * kStep;
      if (k0 >= g.k) break;
#pragma unroll
      for (int i = 0; i < BM; ++i) {
        if (i >= nv) break;  // nv is uniform across the block
        float av[V];
        load_vec<V>(g.a + int64_t(src_row[i]) * a_stride + k0, av);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          acc0[i] = fmaf(av[j], wv0[u][j], acc0[i]);
          if constexpr (kDual) acc1[i] = fmaf(av[j], wv1[u][j], acc1[i]);
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < BM; ++i) {
    if (i >= nv) break;
    float s0 = acc0[i], s1 = kDual ? acc1[i] : 0.f;
#pragma unroll
    for (int off = kWarp / 2; off > 0; off /= 2) {
      s0 += __shfl_xor_sync(0xffffffffu, s0, off);
      if constexpr (kDual) s1 += __shfl_xor_sync(0xffffffffu, s1, off);
    }
    const int32_t d = dest_row[i];
    if (lane != 0 || d < 0) continue;
    TOut* o = g.out + int64_t(d) * out_stride + c;
    if constexpr (kDual) {
      // silu_mul_ref's formula for the SwiGLU: g / (1 + exp(-g)) * up, IEEE division.
      *o = from_f32<TOut>(s0 / (1.f + expf(-s0)) * s1);
    } else {
      *o = from_f32<TOut>(s0);
    }
  }
}

// Enqueues the kernel over max_tiles row tiles of BM rows (tiles past *num_tiles exit at once).
// few_rows: the tiles hold one or two rows, where unrolled weight loads pay.
template <typename TA, typename TW, typename TOut, int BM, Mode kMode>
void launch(const GemvArgs<TA, TW, TOut>& g, int64_t max_tiles, bool few_rows, cudaStream_t stream,
            const char* what) {
  constexpr int V = kVec<TA, TW>;
  KL_CHECK(g.k > 0 && g.k % V == 0, "{}: reduction length {} must be a multiple of {}", what, g.k,
           V);
  // Tiles on x: consecutive blocks take other tiles (experts) of the same columns, which measured
  // faster on an H100 than the transposed order (b8 4.4 vs 5.5 ms of MoE per step, 12 layers).
  KL_CHECK(g.n > 0 && g.n <= 65535 * kColsPerBlock, "{}: {} output columns", what, g.n);
  KL_CHECK(max_tiles > 0 && max_tiles <= 0x7fffffff, "{}: {} row tiles", what, max_tiles);
  const dim3 grid(static_cast<unsigned>(max_tiles),
                  static_cast<unsigned>(cuda::ceil_div(g.n, kColsPerBlock)));
  constexpr int kFewRowsUnroll = kMode == Mode::kSwiglu ? 2 : 4;
  if (few_rows)
    tile_gemv_kernel<TA, TW, TOut, BM, kMode, kFewRowsUnroll><<<grid, kGemvThreads, 0, stream>>>(g);
  else
    tile_gemv_kernel<TA, TW, TOut, BM, kMode, 1><<<grid, kGemvThreads, 0, stream>>>(g);
  KL_CUDA_CHECK_LAUNCH(what);
}

}  // namespace kl::kernels::gemv
