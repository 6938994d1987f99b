// CUDA KDA delta rule in recurrent form (kda_recurrent_ref per sequence) over a varlen batch, on
// the V-major fp32 state [H, V, K] of each sequence's state block. Decode and short chunks.
//
// Row S[v, :] of a head's state evolves on its own (decay per K channel, r_v = S[v,:].k,
// S[v,:] += k beta (v_v - r_v), o_v = S[v,:].(scale q)), so a block owns (sequence, head, 16
// rows of V): each warp keeps 4 rows in registers, K split over the 32 lanes (K/32 contiguous
// channels per lane, so a row is one coalesced 512 B access for K = 128), and walks the tokens
// (staged in shared memory a round at a time) with the row dot products reduced by warp shuffles.
// The state is read and written once per call.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/kda/kda_cuda.h"

namespace kl::kernels {
namespace {

using cuda::ceil_div;
using cuda::from_f32;
using cuda::kWarp;
using cuda::to_f32;

constexpr int kRowsPerWarp = 4;
constexpr int kWarpsPerBlock = 4;
constexpr int kRowsPerBlock = kRowsPerWarp * kWarpsPerBlock;

// Sums each of the N values over the warp (every lane gets the sums); the N butterflies are
// interleaved so that their shuffles overlap.
template <int N>
__device__ __forceinline__ void warp_sum_n(float (&v)[N]) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) {
#pragma unroll
    for (int r = 0; r < N; ++r) v[r] += __shfl_xor_sync(0xffffffffu, v[r], o);
  }
}

template <int kPerLane>
__device__ __forceinline__ void load_row(const float* src, float (&row)[kPerLane]) {
  if constexpr (kPerLane % 4 == 0) {
#pragma unroll
    for (int i = 0; i < kPerLane; i += 4) {
      const float4 f = *reinterpret_cast<const float4*>(src + i);
      row[i] = f.x;
      row[i + 1] = f.y;
      row[i + 2] = f.z;
      row[i + 3] = f.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) row[i] = src[i];
  }
}

template <int kPerLane>
__device__ __forceinline__ void store_row(const float (&row)[kPerLane], float* dst) {
  if constexpr (kPerLane % 4 == 0) {
#pragma unroll
    for (int i = 0; i < kPerLane; i += 4) {
      *reinterpret_cast<float4*>(dst + i) = make_float4(row[i], row[i + 1], row[i + 2], row[i + 3]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) dst[i] = row[i];
  }
}

// Tokens staged per round: their inputs are loaded by the whole block at once (one memory
// latency per round instead of one per token) with exp(g) and scale * q computed once per block.
template <int kPerLane>
constexpr int kStageTokens = kPerLane >= 8 ? 8 : 16;

template <typename T, int kPerLane>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarp) kda_recurrent_kernel(KdaCudaParams<T> p) {
  constexpr int K = kPerLane * kWarp;
  constexpr int kStage = kStageTokens<kPerLane>;
  __shared__ __align__(16) float s_qs[kStage][K];     // scale * q
  __shared__ __align__(16) float s_k[kStage][K];      // k
  __shared__ __align__(16) float s_decay[kStage][K];  // exp(g)
  __shared__ float s_v[kStage][kRowsPerBlock];        // v of the block's rows
  __shared__ float s_beta[kStage];

  const int seq = blockIdx.x;
  const int64_t h = blockIdx.y;
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int32_t begin = p.cu_seqlens[seq];
  const int32_t end = p.cu_seqlens[seq + 1];
  if (begin == end) return;  // the whole block: an empty chunk leaves the state as is
  const int64_t H = p.num_heads;
  const int64_t V = p.head_v;
  const int64_t block_v0 = static_cast<int64_t>(blockIdx.z) * kRowsPerBlock;
  const int64_t v0 = block_v0 + warp * kRowsPerWarp;
  const bool active = v0 < V;      // idle warps still take part in staging and barriers
  const int kc = lane * kPerLane;  // this lane's first K channel
  float* S = p.states + static_cast<int64_t>(p.state_blocks[seq]) * H * V * K + h * V * K + kc;

  float s[kRowsPerWarp][kPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    if (active && v0 + r < V) {
      load_row<kPerLane>(S + (v0 + r) * K, s[r]);
    } else {
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) s[r][i] = 0.f;
    }
  }

  for (int64_t t0 = begin; t0 < end; t0 += kStage) {
    const int n = end - t0 < kStage ? static_cast<int>(end - t0) : kStage;
    for (int i = threadIdx.x; i < n * K; i += blockDim.x) {
      const int tok = i / K;
      const int c = i % K;
      const int64_t src = ((t0 + tok) * H + h) * K + c;
      s_qs[tok][c] = p.scale * to_f32(p.q[src]);
      s_k[tok][c] = to_f32(p.k[src]);
      s_decay[tok][c] = expf(p.g[src]);
    }
    for (int i = threadIdx.x; i < n * kRowsPerBlock; i += blockDim.x) {
      const int tok = i / kRowsPerBlock;
      const int64_t row = block_v0 + i % kRowsPerBlock;
      s_v[tok][i % kRowsPerBlock] = row < V ? to_f32(p.v[((t0 + tok) * H + h) * V + row]) : 0.f;
    }
    if (threadIdx.x < n) s_beta[threadIdx.x] = p.beta[(t0 + threadIdx.x) * H + h];
    __syncthreads();

    if (active) {
      for (int tok = 0; tok < n; ++tok) {
        float qs[kPerLane], k[kPerLane], decay[kPerLane];
        load_row<kPerLane>(&s_qs[tok][kc], qs);
        load_row<kPerLane>(&s_k[tok][kc], k);
        load_row<kPerLane>(&s_decay[tok][kc], decay);
        const float beta = s_beta[tok];
        float dot[kRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          dot[r] = 0.f;
#pragma unroll
          for (int i = 0; i < kPerLane; ++i) {
            s[r][i] *= decay[i];
            dot[r] = fmaf(s[r][i], k[i], dot[r]);
          }
        }
        warp_sum_n(dot);  // dot[r] = S[v0+r, :] . k
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          const float delta = beta * (s_v[tok][warp * kRowsPerWarp + r] - dot[r]);
          dot[r] = 0.f;
#pragma unroll
          for (int i = 0; i < kPerLane; ++i) {
            s[r][i] = fmaf(k[i], delta, s[r][i]);
            dot[r] = fmaf(s[r][i], qs[i], dot[r]);
          }
        }
        warp_sum_n(dot);  // dot[r] = o[v0+r]
        // Lane r stores row r: one store instruction for the warp's rows.
        float o = dot[0];
#pragma unroll
        for (int r = 1; r < kRowsPerWarp; ++r) o = lane == r ? dot[r] : o;
        if (lane < kRowsPerWarp && v0 + lane < V) {
          p.out[((t0 + tok) * H + h) * V + v0 + lane] = from_f32<T>(o);
        }
      }
    }
    __syncthreads();  // before the next round overwrites the staged inputs
  }

  if (active) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (v0 + r < V) store_row<kPerLane>(s[r], S + (v0 + r) * K);
    }
  }
}

template <typename T, int kPerLane>
void launch(const KdaCudaParams<T>& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.num_seqs), static_cast<unsigned>(p.num_heads),
                  static_cast<unsigned>(ceil_div(p.head_v, kRowsPerBlock)));
  kda_recurrent_kernel<T, kPerLane><<<grid, kWarpsPerBlock * kWarp, 0, stream>>>(p);
  KL_CUDA_CHECK_LAUNCH("kda_recurrent_cuda");
}

}  // namespace

template <typename T>
void kda_recurrent_cuda(const KdaCudaParams<T>& p, CudaStream stream) {
  const int64_t H = p.num_heads;
  const int64_t K = p.head_k;
  const int64_t V = p.head_v;
  KL_CHECK(H > 0 && H <= 65535 && V > 0 && ceil_div(V, kRowsPerBlock) <= 65535,
           "kda_recurrent_cuda: bad shape H={} V={}", H, V);
  KL_CHECK(K == 32 || K == 64 || K == 128 || K == 256,
           "kda_recurrent_cuda: head_k {} not supported (32, 64, 128 or 256)", K);
  KL_CHECK(p.num_tokens >= 0 && p.num_tokens <= 0x7fffffff,
           "kda_recurrent_cuda: num_tokens {} out of range", p.num_tokens);
  KL_CHECK(p.num_seqs >= 0, "kda_recurrent_cuda: num_seqs {} < 0", p.num_seqs);
  KL_CHECK(p.max_seqlen >= 0 && p.max_seqlen <= p.num_tokens,
           "kda_recurrent_cuda: max_seqlen {} not in [0, num_tokens {}]", p.max_seqlen,
           p.num_tokens);
  if (p.num_tokens == 0 || p.num_seqs == 0) return;
  KL_CHECK(p.q && p.k && p.v && p.g && p.beta && p.out,
           "kda_recurrent_cuda: null device pointer (q, k, v, g, beta or out)");
  KL_CHECK(p.cu_seqlens && p.state_blocks && p.states,
           "kda_recurrent_cuda: null device pointer (cu_seqlens, state_blocks or states)");
  KL_CHECK(reinterpret_cast<uintptr_t>(p.states) % 16 == 0,
           "kda_recurrent_cuda: states must be 16-byte aligned");
  auto s = static_cast<cudaStream_t>(stream);
  switch (K) {
    case 32:
      launch<T, 1>(p, s);
      break;
    case 64:
      launch<T, 2>(p, s);
      break;
    case 128:
      launch<T, 4>(p, s);
      break;
    default:
      launch<T, 8>(p, s);
      break;
  }
}

template void kda_recurrent_cuda<float>(const KdaCudaParams<float>&, CudaStream);
template void kda_recurrent_cuda<__nv_bfloat16>(const KdaCudaParams<__nv_bfloat16>&, CudaStream);

}  // namespace kl::kernels
