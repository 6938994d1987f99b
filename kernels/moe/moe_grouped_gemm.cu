// The MoE's GEMMs on the GPU: one tiled fp32-FMA kernel (no TF32, no tensor cores yet) serves the
// router logits, the fused gate/up + SwiGLU of the experts and their down projection, with the
// expert of each row tile read from the device (the permutation built by moe_routing.cu); for
// decode-sized steps (small tiles, few tokens) the same products run as GEMVs
// (kernels/gemm/gemv.cuh), which stream the weights; and the weighted combine of the experts'
// outputs in selection order.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/gemm/gemv.cuh"
#include "kernels/moe/moe_cuda_internal.cuh"

namespace kl::kernels::moe_detail {
namespace {

using cuda::from_f32;
using cuda::to_f32;

constexpr int kGemmThreads = 256;  // 16 x 16 threads; thread (tx, ty) owns columns tx + 16 j
constexpr int kThreadCols = kTileN / 16;
constexpr int kCombineThreads = 256;
// Up to this many tokens the router logits run as a GEMV, past it on the tiled kernel.
constexpr int64_t kRouterGemvMaxTokens = 256;

enum class Epilogue {
  kLogits,  // out fp32 [m, n], rows < m
  kSwiglu,  // dual GEMM (w1, w3); act[r] = T(silu(gate) * up) for every row of a used tile
  kDown,    // y[row_pair[r]] = T(acc) for the non-padding rows
};

// Four consecutive values (16-byte aligned for float, 8-byte for bf16) as fp32.
__device__ __forceinline__ void load4(const float* p, float v[4]) {
  const float4 q = *reinterpret_cast<const float4*>(p);
  v[0] = q.x;
  v[1] = q.y;
  v[2] = q.z;
  v[3] = q.w;
}
__device__ __forceinline__ void load4(const __nv_bfloat16* p, float v[4]) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  v[0] = lo.x;
  v[1] = lo.y;
  v[2] = hi.x;
  v[3] = hi.y;
}

// The tiled kernel reads the same arguments as the GEMV (a_stride and out_stride are k and n here).
template <typename TA, typename TB, typename TOut>
using GemmArgs = gemv::GemvArgs<TA, TB, TOut>;

// Block = one tile of BM rows x kTileN columns; k walks in kTileK steps through shared memory,
// the next step's global loads issued before the current step's FMAs. Every output element is one
// thread's sequential fp32 FMA chain over k in order, so a row's result does not depend on which
// tile or position it lands in (the permutation's row order is free).
template <typename TA, typename TB, typename TOut, int BM, Epilogue kEpi>
__global__ void __launch_bounds__(kGemmThreads) grouped_gemm_kernel(GemmArgs<TA, TB, TOut> g) {
  constexpr bool kDual = kEpi == Epilogue::kSwiglu;
  constexpr int kRowsPerThread = BM / 16;
  static_assert(BM % 16 == 0 && BM * 4 <= kGemmThreads, "one A vector per loading thread");
  __shared__ float a_s[kTileK][BM + 4];
  __shared__ float b0_s[kTileK][kTileN + 4];
  __shared__ float b1_s[kDual ? kTileK : 1][kTileN + 4];

  const int tile = blockIdx.x;
  if (g.num_tiles && tile >= *g.num_tiles) return;
  const int64_t expert = g.tile_expert ? g.tile_expert[tile] : 0;
  const int64_t row0 = int64_t(tile) * BM;
  const int64_t n0 = int64_t(blockIdx.y) * kTileN;
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;

  // Loader roles: thread tid loads k values [lk, lk + 4) of A row lr (if tid < 4 BM) and of B row
  // lr (every thread: kTileN * kTileK / 4 == kGemmThreads).
  const int lr = tid / 4, lk = (tid % 4) * 4;
  const TA* a_src = nullptr;  // null: a zero row (padding, or past m)
  if (tid < BM * 4) {
    const int64_t r = row0 + lr;
    int64_t src = r;
    if constexpr (kEpi == Epilogue::kLogits) src = r < g.m ? r : -1;
    if constexpr (kEpi == Epilogue::kSwiglu) {
      const int32_t p = g.row_pair[r];
      src = p >= 0 ? p / g.top_k : -1;
    }
    if (src >= 0) a_src = g.a + src * g.k + lk;
  }
  const bool b_row_ok = n0 + lr < g.n;
  const TB* b0_src = g.b0 + expert * g.b_expert_stride + (n0 + lr) * g.k + lk;
  const TB* b1_src = kDual ? g.b1 + expert * g.b_expert_stride + (n0 + lr) * g.k + lk : nullptr;

  float ra[4] = {0.f, 0.f, 0.f, 0.f}, rb0[4] = {0.f, 0.f, 0.f, 0.f}, rb1[4] = {0.f, 0.f, 0.f, 0.f};
  auto load_step = [&](int64_t kk) {
    if (a_src) load4(a_src + kk, ra);
    if (b_row_ok) {
      load4(b0_src + kk, rb0);
      if constexpr (kDual) load4(b1_src + kk, rb1);
    }
  };

  float acc0[kRowsPerThread][kThreadCols] = {};
  float acc1[kDual ? kRowsPerThread : 1][kThreadCols] = {};
  load_step(0);
  for (int64_t kk = 0; kk < g.k; kk += kTileK) {
    if (tid < BM * 4) {
#pragma unroll
      for (int q = 0; q < 4; ++q) a_s[lk + q][lr] = ra[q];
    }
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      b0_s[lk + q][lr] = rb0[q];
      if constexpr (kDual) b1_s[lk + q][lr] = rb1[q];
    }
    __syncthreads();
    if (kk + kTileK < g.k) load_step(kk + kTileK);
#pragma unroll
    for (int q = 0; q < kTileK; ++q) {
      float av[kRowsPerThread], bv0[kThreadCols], bv1[kThreadCols];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) av[i] = a_s[q][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < kThreadCols; ++j) {
        bv0[j] = b0_s[q][tx + 16 * j];
        if constexpr (kDual) bv1[j] = b1_s[q][tx + 16 * j];
      }
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) {
#pragma unroll
        for (int j = 0; j < kThreadCols; ++j) {
          acc0[i][j] = fmaf(av[i], bv0[j], acc0[i][j]);
          if constexpr (kDual) acc1[i][j] = fmaf(av[i], bv1[j], acc1[i][j]);
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t r = row0 + ty + 16 * i;
    int64_t out_row = r;
    if constexpr (kEpi == Epilogue::kLogits) {
      if (r >= g.m) continue;
    }
    if constexpr (kEpi == Epilogue::kDown) {
      out_row = g.row_pair[r];
      if (out_row < 0) continue;
    }
#pragma unroll
    for (int j = 0; j < kThreadCols; ++j) {
      const int64_t c = n0 + tx + 16 * j;
      if (c >= g.n) continue;
      float v = acc0[i][j];
      if constexpr (kDual) {
        // silu_mul_ref's formula: g / (1 + exp(-g)) * up, IEEE division.
        v = v / (1.f + expf(-v)) * acc1[i][j];
      }
      g.out[out_row * g.n + c] = from_f32<TOut>(v);
    }
  }
}

template <typename TA, typename TB, typename TOut, Epilogue kEpi>
void launch_gemm(const GemmArgs<TA, TB, TOut>& g, int tile_m, int64_t grid_tiles,
                 cudaStream_t stream, const char* what) {
  KL_CHECK(g.k > 0 && g.k % kTileK == 0, "{}: reduction length {} must be a multiple of {}", what,
           g.k, kTileK);
  KL_CHECK(g.n > 0, "{}: {} output columns", what, g.n);
  KL_CHECK(grid_tiles > 0 && grid_tiles <= 0x7fffffff, "{}: {} row tiles", what, grid_tiles);
  const dim3 grid(static_cast<unsigned>(grid_tiles),
                  static_cast<unsigned>(cuda::ceil_div(g.n, kTileN)));
  if (tile_m == kSmallTileM) {
    grouped_gemm_kernel<TA, TB, TOut, kSmallTileM, kEpi><<<grid, kGemmThreads, 0, stream>>>(g);
  } else {
    KL_CHECK(tile_m == kLargeTileM, "{}: unsupported tile {}", what, tile_m);
    grouped_gemm_kernel<TA, TB, TOut, kLargeTileM, kEpi><<<grid, kGemmThreads, 0, stream>>>(g);
  }
  KL_CUDA_CHECK_LAUNCH(what);
}

// out[t] = sum_i w_i * y_i with explicit round-to-nearest mul and add (no FMA contraction), the
// CPU twin's `out += w * y` in slot order, rounded to T once.
template <typename T>
__global__ void __launch_bounds__(kCombineThreads)
    combine_kernel(const T* y, const float* weights, int top_k, int64_t hidden, T* out) {
  const int64_t t = blockIdx.x;
  const float* w = weights + t * top_k;
  const T* yt = y + t * top_k * hidden;
  for (int64_t c = blockIdx.y * int64_t(blockDim.x) + threadIdx.x; c < hidden;
       c += int64_t(gridDim.y) * blockDim.x) {
    float acc = 0.f;
    for (int i = 0; i < top_k; ++i)
      acc = __fadd_rn(acc, __fmul_rn(w[i], to_f32(yt[i * hidden + c])));
    out[t * hidden + c] = from_f32<T>(acc);
  }
}

}  // namespace

template <typename T>
void launch_router_logits(const T* x, int64_t num_tokens, int64_t hidden, const float* router,
                          int64_t num_experts, float* logits, cudaStream_t stream) {
  if (num_tokens == 0) return;
  GemmArgs<T, float, float> g;
  g.a = x;
  g.a_stride = hidden;
  g.m = num_tokens;
  g.b0 = router;
  g.n = num_experts;
  g.k = hidden;
  g.out = logits;
  g.out_stride = num_experts;
  // The router's weights are re-read per 16 tokens either way; for a few tokens the GEMV's many
  // warps stream them far faster than the tiled kernel's few blocks.
  if (num_tokens <= kRouterGemvMaxTokens) {
    gemv::launch<T, float, float, kSmallTileM, gemv::Mode::kRows>(
        g, cuda::ceil_div(num_tokens, kSmallTileM), num_tokens <= 2, stream,
        "moe router_logits (gemv)");
    return;
  }
  const int tile_m = num_tokens >= kLargeTileM ? kLargeTileM : kSmallTileM;
  launch_gemm<T, float, float, Epilogue::kLogits>(g, tile_m, cuda::ceil_div(num_tokens, tile_m),
                                                  stream, "moe router_logits");
}

template <typename T>
void launch_gate_up(const T* x, const Permutation& perm, int64_t top_k, const T* w1, const T* w3,
                    int64_t inter, int64_t hidden, int64_t max_tiles, int tile_m, bool few_rows,
                    T* act, cudaStream_t stream) {
  GemmArgs<T, T, T> g;
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
  if (tile_m == kSmallTileM)
    gemv::launch<T, T, T, kSmallTileM, gemv::Mode::kSwiglu>(g, max_tiles, few_rows, stream,
                                                            "moe gate_up (gemv)");
  else
    launch_gemm<T, T, T, Epilogue::kSwiglu>(g, tile_m, max_tiles, stream, "moe gate_up");
}

template <typename T>
void launch_down(const T* act, const Permutation& perm, const T* w2, int64_t hidden, int64_t inter,
                 int64_t max_tiles, int tile_m, bool few_rows, T* y, cudaStream_t stream) {
  GemmArgs<T, T, T> g;
  g.a = act;
  g.row_pair = perm.row_pair;
  g.b0 = w2;
  g.b_expert_stride = hidden * inter;
  g.tile_expert = perm.tile_expert;
  g.num_tiles = perm.num_tiles;
  g.n = hidden;
  g.k = inter;
  g.out = y;
  if (tile_m == kSmallTileM)
    gemv::launch<T, T, T, kSmallTileM, gemv::Mode::kDown>(g, max_tiles, few_rows, stream,
                                                          "moe down (gemv)");
  else
    launch_gemm<T, T, T, Epilogue::kDown>(g, tile_m, max_tiles, stream, "moe down");
}

template <typename T>
void launch_combine(const T* y, const float* weights, int64_t num_tokens, int64_t top_k,
                    int64_t hidden, T* out, cudaStream_t stream) {
  if (num_tokens == 0) return;
  KL_CHECK(num_tokens <= 0x7fffffff, "moe combine: {} tokens", num_tokens);
  // Enough blocks to fill the GPU at decode sizes: split the hidden dimension too.
  const int64_t col_blocks = num_tokens >= 128 ? 1 : cuda::ceil_div(hidden, kCombineThreads);
  const dim3 grid(static_cast<unsigned>(num_tokens), static_cast<unsigned>(col_blocks));
  combine_kernel<T>
      <<<grid, kCombineThreads, 0, stream>>>(y, weights, static_cast<int>(top_k), hidden, out);
  KL_CUDA_CHECK_LAUNCH("moe combine");
}

#define KL_MOE_INSTANTIATE(T)                                                                      \
  template void launch_router_logits<T>(const T*, int64_t, int64_t, const float*, int64_t, float*, \
                                        cudaStream_t);                                             \
  template void launch_gate_up<T>(const T*, const Permutation&, int64_t, const T*, const T*,       \
                                  int64_t, int64_t, int64_t, int, bool, T*, cudaStream_t);         \
  template void launch_down<T>(const T*, const Permutation&, const T*, int64_t, int64_t, int64_t,  \
                               int, bool, T*, cudaStream_t);                                       \
  template void launch_combine<T>(const T*, const float*, int64_t, int64_t, int64_t, T*,           \
                                  cudaStream_t);
KL_MOE_INSTANTIATE(float)
KL_MOE_INSTANTIATE(__nv_bfloat16)
#undef KL_MOE_INSTANTIATE

}  // namespace kl::kernels::moe_detail
