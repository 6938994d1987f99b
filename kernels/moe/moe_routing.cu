// CUDA MoE routing: sigmoid + correction-bias grouped top-k per token (moe_router_ref's selection
// and weights), per-expert counts, padded segment offsets and the scatter of (token, slot) pairs
// into their experts' segments. Everything stays on the device: no host sync between the steps.
#include <cuda_runtime.h>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/moe/moe_cuda_internal.cuh"

namespace kl::kernels::moe_detail {
namespace {

using cuda::kWarp;

constexpr int kTopkThreads = 256;
constexpr int kSegmentThreads = kMaxExperts;  // one thread per expert
constexpr int kScatterThreads = 256;

// True when a ranks before b in "descending value, lower index first on ties": the order of the
// CPU twin's stable sort.
__device__ __forceinline__ bool ranks_before(float va, int a, float vb, int b) {
  return va > vb || (va == vb && a < b);
}

// One block per token. Ranks are counted exactly (each candidate counts the candidates ranking
// before it) rather than found by a parallel sort: E is at most a few hundred, the O(E^2)
// comparisons are cheap, and the result is the stable sort's order by construction.
__global__ void __launch_bounds__(kTopkThreads)
    router_topk_kernel(const float* logits, const void* bias, DType bias_dtype, int num_experts,
                       int top_k, int num_groups, int topk_groups, bool renormalize,
                       float routed_scaling, int32_t* ids, float* weights, int32_t* ids_copy,
                       float* weights_copy, int32_t* counts) {
  extern __shared__ float smem[];
  float* score = smem;                     // [E] s = sigmoid(logit)
  float* sel = score + num_experts;        // [E] s + bias (selection only)
  float* group_score = sel + num_experts;  // [G]
  int* group_kept = reinterpret_cast<int*>(group_score + num_groups);  // [G]
  int* chosen = group_kept + num_groups;                               // [top_k]

  const int64_t t = blockIdx.x;
  const float* lt = logits + t * num_experts;
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) {
    const float s = 1.f / (1.f + expf(-lt[e]));  // the twin's formula; IEEE division
    score[e] = s;
    sel[e] = s + (bias ? cuda::load_weight(bias, bias_dtype, e) : 0.f);
  }
  __syncthreads();

  const int per_group = num_experts / num_groups;
  const bool grouped = topk_groups < num_groups;
  if (grouped) {
    // Group score: the sum of its two best selection scores (the only one for 1-expert groups).
    for (int g = threadIdx.x; g < num_groups; g += blockDim.x) {
      float best = -INFINITY, second = -INFINITY;
      for (int j = 0; j < per_group; ++j) {
        const float v = sel[g * per_group + j];
        if (v > best) {
          second = best;
          best = v;
        } else if (v > second) {
          second = v;
        }
      }
      group_score[g] = best + (per_group > 1 ? second : 0.f);
    }
    __syncthreads();
    for (int g = threadIdx.x; g < num_groups; g += blockDim.x) {
      int rank = 0;
      for (int h = 0; h < num_groups; ++h)
        rank += ranks_before(group_score[h], h, group_score[g], g);
      group_kept[g] = rank < topk_groups;
    }
    __syncthreads();
  }

  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) {
    if (grouped && !group_kept[e / per_group]) continue;
    const float v = sel[e];
    int rank = 0;
    for (int f = 0; f < num_experts && rank < top_k; ++f) {
      if (grouped && !group_kept[f / per_group]) continue;
      rank += ranks_before(sel[f], f, v, e);
    }
    if (rank < top_k) {
      chosen[rank] = e;
      atomicAdd(counts + e, 1);
    }
  }
  __syncthreads();

  // The weights in the twin's order of operations: sum in selection order, divide, scale.
  if (threadIdx.x == 0) {
    float sum = 0.f;
    for (int i = 0; i < top_k; ++i) sum += score[chosen[i]];
    for (int i = 0; i < top_k; ++i) {
      float w = score[chosen[i]];
      if (renormalize) w = w / (sum + 1e-20f);
      w = w * routed_scaling;
      ids[t * top_k + i] = chosen[i];
      weights[t * top_k + i] = w;
      if (ids_copy) ids_copy[t * top_k + i] = chosen[i];
      if (weights_copy) weights_copy[t * top_k + i] = w;
    }
  }
}

// One block, one thread per expert: exclusive scan of the padded counts (warp shuffles, then the
// warp totals), then each expert writes the tile -> expert entries of its segment.
__global__ void __launch_bounds__(kSegmentThreads)
    build_segments_kernel(const int32_t* counts, int num_experts, int tile_m, int32_t* offsets,
                          int32_t* tile_expert, int32_t* num_tiles) {
  __shared__ int warp_total[kSegmentThreads / kWarp];
  const int e = threadIdx.x;
  const int lane = e % kWarp, warp = e / kWarp;
  const int padded = e < num_experts ? (counts[e] + tile_m - 1) / tile_m * tile_m : 0;
  int incl = padded;
  for (int o = 1; o < kWarp; o *= 2) {
    const int v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == kWarp - 1) warp_total[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int w = warp_total[lane];
    for (int o = 1; o < kWarp; o *= 2) {
      const int v = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += v;
    }
    warp_total[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  if (warp > 0) incl += warp_total[warp - 1];
  const int offset = incl - padded;
  if (e < num_experts) {
    offsets[e] = offset;
    for (int tile = offset / tile_m; tile < incl / tile_m; ++tile) tile_expert[tile] = e;
  }
  if (e == kSegmentThreads - 1) *num_tiles = incl / tile_m;
}

// The order of rows inside a segment depends on the atomics, but no result does: every GEMM row is
// computed on its own (same k order whatever its position) and written back by pair index.
__global__ void scatter_pairs_kernel(const int32_t* ids, int64_t num_pairs, const int32_t* offsets,
                                     int32_t* fill, int32_t* row_pair) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < num_pairs;
       p += int64_t(gridDim.x) * blockDim.x) {
    const int e = ids[p];
    const int slot = atomicAdd(fill + e, 1);
    row_pair[offsets[e] + slot] = static_cast<int32_t>(p);
  }
}

}  // namespace

void launch_router_topk(const RouterTopkArgs& a, cudaStream_t stream) {
  KL_CHECK(a.num_experts > 0 && a.num_experts <= kMaxExperts,
           "moe router: {} experts (1..{} supported)", a.num_experts, kMaxExperts);
  KL_CHECK(a.top_k > 0 && a.top_k <= a.num_experts, "moe router: top_k {} of {} experts", a.top_k,
           a.num_experts);
  KL_CHECK(a.num_groups > 0 && a.num_experts % a.num_groups == 0,
           "moe router: {} experts not divisible into {} groups", a.num_experts, a.num_groups);
  KL_CHECK(a.topk_groups > 0 && a.topk_groups <= a.num_groups,
           "moe router: topk_group {} of {} groups", a.topk_groups, a.num_groups);
  KL_CHECK(a.topk_groups * (a.num_experts / a.num_groups) >= a.top_k,
           "moe router: {} kept groups of {} experts cannot supply top_k {}", a.topk_groups,
           a.num_experts / a.num_groups, a.top_k);
  KL_CHECK(!a.bias.data || a.bias.numel() == a.num_experts,
           "moe router: bias has {} values, expected {}", a.bias.numel(), a.num_experts);
  KL_CHECK(a.num_tokens >= 0 && a.num_tokens <= 0x7fffffff, "moe router: {} tokens", a.num_tokens);
  if (a.num_tokens == 0) return;
  const size_t smem = (2 * a.num_experts + 2 * a.num_groups + a.top_k) * sizeof(float);
  router_topk_kernel<<<static_cast<unsigned>(a.num_tokens), kTopkThreads, smem, stream>>>(
      a.logits, a.bias.data, a.bias.dtype, static_cast<int>(a.num_experts),
      static_cast<int>(a.top_k), static_cast<int>(a.num_groups), static_cast<int>(a.topk_groups),
      a.renormalize, a.routed_scaling, a.ids, a.weights, a.ids_copy, a.weights_copy, a.counts);
  KL_CUDA_CHECK_LAUNCH("moe router_topk");
}

void launch_build_segments(const Permutation& perm, int64_t num_experts, int tile_m,
                           cudaStream_t stream) {
  KL_CHECK(num_experts > 0 && num_experts <= kMaxExperts, "moe segments: {} experts", num_experts);
  build_segments_kernel<<<1, kSegmentThreads, 0, stream>>>(
      perm.counts, static_cast<int>(num_experts), tile_m, perm.offsets, perm.tile_expert,
      perm.num_tiles);
  KL_CUDA_CHECK_LAUNCH("moe build_segments");
}

void launch_scatter_pairs(const Permutation& perm, const int32_t* ids, int64_t num_pairs,
                          cudaStream_t stream) {
  if (num_pairs == 0) return;
  const int64_t blocks = cuda::ceil_div(num_pairs, kScatterThreads);
  scatter_pairs_kernel<<<static_cast<unsigned>(blocks < 1024 ? blocks : 1024), kScatterThreads, 0,
                         stream>>>(ids, num_pairs, perm.offsets, perm.fill, perm.row_pair);
  KL_CUDA_CHECK_LAUNCH("moe scatter_pairs");
}

}  // namespace kl::kernels::moe_detail
