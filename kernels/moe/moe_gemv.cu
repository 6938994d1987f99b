// The MoE's GEMMs for decode-sized steps (small tiles: an expert gets a few rows; the router
// for a few tokens): memory-bound, so each weight row is read once per tile with 16-byte loads,
// several in flight, and applied to every row the tile holds. One warp per output column; the
// tile's rows are a prefix of it (the scatter fills each expert's segment from its start), the rest
// is padding (row_pair -1) and is neither read nor written. Same data layout as the tiled kernels
// of moe_grouped_gemm.cu: act by permuted row, y by pair.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/moe/moe_cuda_internal.cuh"

namespace kl::kernels::moe_detail {
namespace {

using cuda::from_f32;
using cuda::kWarp;
using cuda::to_f32;

constexpr int kGemvThreads = 256;  // 8 warps = 8 output columns per block
constexpr int kColsPerBlock = kGemvThreads / kWarp;

enum class Mode {
  kLogits,  // out fp32 [m, n]: row r of the tile is token r (< m); one weight matrix
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
  const TA* a = nullptr;  // kSwiglu: x [tokens, k]; kDown: act [rows, k]; kLogits: x [m, k]
  const int32_t* row_pair = nullptr;
  int top_k = 1;
  int64_t m = 0;           // kLogits: valid rows
  const TW* b0 = nullptr;  // [E][n, k] (kLogits: [n, k])
  const TW* b1 = nullptr;  // kSwiglu: the up projection
  int64_t b_expert_stride = 0;
  const int32_t* tile_expert = nullptr;  // null: expert 0
  const int32_t* num_tiles = nullptr;    // null: every tile of the grid is used
  int64_t n = 0, k = 0;
  TOut* out = nullptr;
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
    if constexpr (kMode == Mode::kLogits) {
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
        load_vec<V>(g.a + int64_t(src_row[i]) * g.k + k0, av);
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
    // silu_mul_ref's formula for the SwiGLU: g / (1 + exp(-g)) * up, IEEE division.
    const float v = kDual ? s0 / (1.f + expf(-s0)) * s1 : s0;
    g.out[int64_t(d) * g.n + c] = from_f32<TOut>(v);
  }
}

template <typename TA, typename TW, typename TOut, Mode kMode>
void launch_gemv(const GemvArgs<TA, TW, TOut>& g, int64_t max_tiles, bool few_rows,
                 cudaStream_t stream, const char* what) {
  constexpr int V = kVec<TA, TW>;
  KL_CHECK(g.k > 0 && g.k % V == 0, "{}: reduction length {} must be a multiple of {}", what, g.k,
           V);
  KL_CHECK(g.n > 0, "{}: {} output columns", what, g.n);
  KL_CHECK(max_tiles > 0 && max_tiles <= 0x7fffffff, "{}: {} row tiles", what, max_tiles);
  const dim3 grid(static_cast<unsigned>(max_tiles),
                  static_cast<unsigned>(cuda::ceil_div(g.n, kColsPerBlock)));
  constexpr int kFewRowsUnroll = kMode == Mode::kSwiglu ? 2 : 4;
  if (few_rows)
    tile_gemv_kernel<TA, TW, TOut, kSmallTileM, kMode, kFewRowsUnroll>
        <<<grid, kGemvThreads, 0, stream>>>(g);
  else
    tile_gemv_kernel<TA, TW, TOut, kSmallTileM, kMode, 1><<<grid, kGemvThreads, 0, stream>>>(g);
  KL_CUDA_CHECK_LAUNCH(what);
}

}  // namespace

template <typename T>
void launch_gate_up_gemv(const T* x, const Permutation& perm, int64_t top_k, const T* w1,
                         const T* w3, int64_t inter, int64_t hidden, int64_t max_tiles,
                         bool few_rows, T* act, cudaStream_t stream) {
  GemvArgs<T, T, T> g;
  g.a = x;
  g.row_pair = perm.row_pair;
  g.top_k = static_cast<int>(top_k);
  g.b0 = w1;
  g.b1 = w3;
  g.b_expert_stride = inter * hidden;
  g.tile_expert = perm.tile_expert;
  g.num_tiles = perm.num_tiles;
  g.n = inter;
  g.k = hidden;
  g.out = act;
  launch_gemv<T, T, T, Mode::kSwiglu>(g, max_tiles, few_rows, stream, "moe gate_up (decode)");
}

template <typename T>
void launch_down_gemv(const T* act, const Permutation& perm, const T* w2, int64_t hidden,
                      int64_t inter, int64_t max_tiles, bool few_rows, T* y, cudaStream_t stream) {
  GemvArgs<T, T, T> g;
  g.a = act;
  g.row_pair = perm.row_pair;
  g.b0 = w2;
  g.b_expert_stride = hidden * inter;
  g.tile_expert = perm.tile_expert;
  g.num_tiles = perm.num_tiles;
  g.n = hidden;
  g.k = inter;
  g.out = y;
  launch_gemv<T, T, T, Mode::kDown>(g, max_tiles, few_rows, stream, "moe down (decode)");
}

template <typename T>
void launch_router_logits_gemv(const T* x, int64_t num_tokens, int64_t hidden, const float* router,
                               int64_t num_experts, float* logits, cudaStream_t stream) {
  if (num_tokens == 0) return;
  GemvArgs<T, float, float> g;
  g.a = x;
  g.m = num_tokens;
  g.b0 = router;
  g.n = num_experts;
  g.k = hidden;
  g.out = logits;
  launch_gemv<T, float, float, Mode::kLogits>(g, cuda::ceil_div(num_tokens, kSmallTileM),
                                              num_tokens <= 2, stream,
                                              "moe router_logits (decode)");
}

#define KL_MOE_GEMV_INSTANTIATE(T)                                                                \
  template void launch_gate_up_gemv<T>(const T*, const Permutation&, int64_t, const T*, const T*, \
                                       int64_t, int64_t, int64_t, bool, T*, cudaStream_t);        \
  template void launch_down_gemv<T>(const T*, const Permutation&, const T*, int64_t, int64_t,     \
                                    int64_t, bool, T*, cudaStream_t);                             \
  template void launch_router_logits_gemv<T>(const T*, int64_t, int64_t, const float*, int64_t,   \
                                             float*, cudaStream_t);
KL_MOE_GEMV_INSTANTIATE(float)
KL_MOE_GEMV_INSTANTIATE(__nv_bfloat16)
#undef KL_MOE_GEMV_INSTANTIATE

}  // namespace kl::kernels::moe_detail
