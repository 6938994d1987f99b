// CUDA chunked KDA prefill (spec 4.1, chunk 64) over a varlen batch, on the V-major fp32 state
// [H, V, K] of each sequence's state block. Same function as kda_chunked_ref / kda_recurrent_ref.
// One CTA per (32-row V slice, head, sequence) walks the sequence's chunks in order.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/kda/kda_cuda.h"

// Per chunk (L <= 64 rows, G the chunk-local cumulative gate, S the CTA's [32, 128] state slice):
//   1. load qs = scale q, k, G (cumsum of g from global), v slice, beta; rows >= L are zero
//   2. A_qk[r, j] = sum_c qs_r k_j exp(G_r - G_j) (j <= r), A_kk = beta_r (same with k_r, j < r)
//   3. Q <- qs . exp(G), K <- k . exp(G) (gamma), kg = k . exp(G_L - G) (over G);
//      T_bb = (I + A_kk)^-1 of the four 16x16 diagonal blocks
//   4. X = beta (v - (K . gamma) S^T), O = (qs . gamma) S^T (the inter-chunk term, in registers)
//   5. V' = (I + A_kk)^-1 X by block forward substitution over the 16-row sub-chunks
//   6. O += A_qk V' (written out), S <- diag(gamma_L) S + kg^T V'
// Every exponent is a difference of cumulative gates of rows inside one chunk with the later row
// first, so each factor is <= 1 and exp(-G) never appears. In step 2 the 4x4 off-diagonal register
// tiles factor exp(G_r - G_j) = exp(G_r - G_m) exp(G_m - G_j) at the tile's last column m (both
// factors <= 1; if one underflows the true product is below fp32 range too), 7 exps instead of 16.
// All arithmetic is fp32 for both activation types: bf16 inputs are widened exactly and only the
// output is rounded to bf16 (no intermediate is stored in bf16, unlike FLA's chunk_kda).
// The K-side work (steps 2-3) is repeated by the V/32 CTAs of a head; it is about a quarter of a
// CTA's arithmetic.

namespace kl::kernels {
namespace {

using cuda::from_f32;
using cuda::to_f32;

constexpr int kChunk = 64;
constexpr int kSub = 16;  // secondary chunk: the diagonal blocks of (I + A_kk) inverted directly
constexpr int kNumSub = kChunk / kSub;
constexpr int kHeadK = 128;
constexpr int kSliceV = 32;  // state rows (V) per CTA
constexpr int kThreads = 256;
// Row strides in floats: +4 moves consecutive rows 4 banks apart, so 8 threads reading float4s
// of 8 different rows at the same column hit 32 distinct banks.
constexpr int kStrideK = kHeadK + 4;
constexpr int kStrideA = kChunk + 4;

// Shared memory carve-up (floats).
constexpr int kOffQ = 0;                              // [64][kStrideK] qs, then qs . gamma
constexpr int kOffK = kOffQ + kChunk * kStrideK;      // [64][kStrideK] k, then k . gamma
constexpr int kOffG = kOffK + kChunk * kStrideK;      // [64][kStrideK] G, then kg
constexpr int kOffS = kOffG + kChunk * kStrideK;      // [32][kStrideK] state slice
constexpr int kOffAqk = kOffS + kSliceV * kStrideK;   // [64][kStrideA]
constexpr int kOffAkk = kOffAqk + kChunk * kStrideA;  // [64][kStrideA] (beta folded in)
constexpr int kOffT = kOffAkk + kChunk * kStrideA;    // [4][16][16] inverted diagonal blocks
constexpr int kOffX = kOffT + kNumSub * kSub * kSub;  // [64][32] v, then X, then V'
constexpr int kOffY = kOffX + kChunk * kSliceV;       // [16][32] forward-substitution residual
constexpr int kOffBeta = kOffY + kSub * kSliceV;      // [64]
constexpr int kOffGLast = kOffBeta + kChunk;          // [128] G of the chunk's last row
constexpr int kSmemFloats = kOffGLast + kHeadK;
constexpr size_t kSmemBytes = kSmemFloats * sizeof(float);

__device__ __forceinline__ float4 lds4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ void sts4(float* p, float4 v) {
  *reinterpret_cast<float4*>(p) = v;
}
__device__ __forceinline__ float dot4(float4 a, float4 b) {
  return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}
__device__ __forceinline__ float4 mul4(float4 a, float4 b) {
  return make_float4(a.x * b.x, a.y * b.y, a.z * b.z, a.w * b.w);
}
__device__ __forceinline__ float4 scale4(float4 a, float s) {
  return make_float4(a.x * s, a.y * s, a.z * s, a.w * s);
}
// exp(a - b) per component; callers pass a <= b (a later row's cumulative gate first).
__device__ __forceinline__ float4 exp_diff4(float4 a, float4 b) {
  return make_float4(__expf(a.x - b.x), __expf(a.y - b.y), __expf(a.z - b.z), __expf(a.w - b.w));
}

// Four consecutive activations as fp32 (16-byte aligned for float, 8-byte for bf16), read-only
// path.
__device__ __forceinline__ float4 load4(const float* p) {
  return __ldg(reinterpret_cast<const float4*>(p));
}
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 raw = __ldg(reinterpret_cast<const uint2*>(p));
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}

// Step 1. Warps 0-3 build G for channel `tid` straight from global memory, warps 4-7 load beta,
// q, k and the v slice. Every load of a thread is issued before its first dependent use (the
// loads go to registers first), so a chunk costs about one memory latency, not one per row.
template <typename T>
__device__ void load_chunk(const KdaCudaParams<T>& p, float* sm, int64_t row0, int L, int h,
                           int e0) {
  const int tid = threadIdx.x;
  const int64_t H = p.num_heads;
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
  if (tid < kHeadK) {
    float gv[kChunk];
#pragma unroll
    for (int r = 0; r < kChunk; ++r) {
      gv[r] = r < L ? __ldg(p.g + ((row0 + r) * H + h) * kHeadK + tid) : 0.f;
    }
    float run = 0.f;
#pragma unroll
    for (int r = 0; r < kChunk; ++r) {
      run += gv[r];
      sm[kOffG + r * kStrideK + tid] = run;
    }
    sm[kOffGLast + tid] = run;  // padded rows add 0, so this is G of row L-1
    return;
  }
  const int u = tid - kHeadK;  // 0 .. 127
  if (u < kChunk) sm[kOffBeta + u] = u < L ? __ldg(p.beta + (row0 + u) * H + h) : 0.f;
  // q and k: 64 rows of 32 float4 each, 16 float4 per thread per tensor.
  constexpr int kPerThread = kChunk * kHeadK / 4 / kHeadK;
#pragma unroll
  for (int which = 0; which < 2; ++which) {
    const T* src = which == 0 ? p.q : p.k;
    const float mult = which == 0 ? p.scale : 1.f;
    float4 buf[kPerThread];
#pragma unroll
    for (int m = 0; m < kPerThread; ++m) {
      const int i = u + kHeadK * m;
      const int r = i / (kHeadK / 4);
      const int c = (i % (kHeadK / 4)) * 4;
      buf[m] = r < L ? scale4(load4(src + ((row0 + r) * H + h) * kHeadK + c), mult) : zero;
    }
    float* dst = sm + (which == 0 ? kOffQ : kOffK);
#pragma unroll
    for (int m = 0; m < kPerThread; ++m) {
      const int i = u + kHeadK * m;
      sts4(dst + (i / (kHeadK / 4)) * kStrideK + (i % (kHeadK / 4)) * 4, buf[m]);
    }
  }
  // The v slice: 64 rows of 8 float4, 4 per thread.
  constexpr int kVPerThread = kChunk * kSliceV / 4 / kHeadK;
  float4 vbuf[kVPerThread];
#pragma unroll
  for (int m = 0; m < kVPerThread; ++m) {
    const int i = u + kHeadK * m;
    const int r = i / (kSliceV / 4);
    const int e = (i % (kSliceV / 4)) * 4;
    vbuf[m] = r < L ? load4(p.v + ((row0 + r) * H + h) * p.head_v + e0 + e) : zero;
  }
#pragma unroll
  for (int m = 0; m < kVPerThread; ++m) {
    const int i = u + kHeadK * m;
    sts4(sm + kOffX + (i / (kSliceV / 4)) * kSliceV + (i % (kSliceV / 4)) * 4, vbuf[m]);
  }
}

// Pulls the next chunk's rows of q, k, g and the v slice into L2 while this chunk computes.
template <typename T>
__device__ void prefetch_chunk(const KdaCudaParams<T>& p, int64_t row0, int L, int h, int e0) {
  const int r = threadIdx.x / 4;     // 64 rows
  const int part = threadIdx.x % 4;  // 128-byte line of the row
  if (r >= L) return;
  const int64_t H = p.num_heads;
  const int64_t qk = ((row0 + r) * H + h) * kHeadK;
  auto prefetch = [](const void* ptr) { asm volatile("prefetch.global.L2 [%0];" ::"l"(ptr)); };
  const int line_elems_t = 128 / static_cast<int>(sizeof(T));
  if (part * line_elems_t < kHeadK) {
    prefetch(p.q + qk + part * line_elems_t);
    prefetch(p.k + qk + part * line_elems_t);
  }
  prefetch(p.g + qk + part * 32);
  if (part == 0) prefetch(p.v + ((row0 + r) * H + h) * p.head_v + e0);
}

// Step 2 for one 4x4 tile of A_qk / A_kk (rows r0.., columns j0..; r0 >= j0). The 120 strictly
// upper tiles are zeroed by the threads without a lower tile.
__device__ void intra_chunk_tile(float* sm, int tile, int L) {
  if (tile >= 136) {             // 16 * 17 / 2 lower tiles (diagonal included)
    int u = tile - 136, ti = 0;  // strictly upper tile u -> (ti, tj) with tj > ti
    while (u >= 15 - ti) u -= 15 - ti++;
    const int tj = ti + 1 + u;
    for (int ii = 0; ii < 4; ++ii) {
      sts4(sm + kOffAqk + (4 * ti + ii) * kStrideA + 4 * tj, make_float4(0.f, 0.f, 0.f, 0.f));
      sts4(sm + kOffAkk + (4 * ti + ii) * kStrideA + 4 * tj, make_float4(0.f, 0.f, 0.f, 0.f));
    }
    return;
  }
  int ti = 0, tj = tile;
  while (tj > ti) tj -= ++ti;
  const int r0 = 4 * ti, j0 = 4 * tj;
  float aq[4][4] = {}, ak[4][4] = {};
  const float* Q = sm + kOffQ;
  const float* K = sm + kOffK;
  const float* G = sm + kOffG;
  if (r0 < L) {  // tiles of padded rows stay zero
    if (ti > tj) {
      const int m = j0 + 3;  // the factoring row: every column j <= m < every row r
      for (int c = 0; c < kHeadK; c += 4) {
        const float4 gm = lds4(G + m * kStrideK + c);
        float4 kf[4];
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) {
          const float4 kj = lds4(K + (j0 + jj) * kStrideK + c);
          kf[jj] = jj == 3 ? kj : mul4(kj, exp_diff4(gm, lds4(G + (j0 + jj) * kStrideK + c)));
        }
#pragma unroll
        for (int ii = 0; ii < 4; ++ii) {
          const float4 e = exp_diff4(lds4(G + (r0 + ii) * kStrideK + c), gm);
          const float4 qe = mul4(lds4(Q + (r0 + ii) * kStrideK + c), e);
          const float4 ke = mul4(lds4(K + (r0 + ii) * kStrideK + c), e);
#pragma unroll
          for (int jj = 0; jj < 4; ++jj) {
            aq[ii][jj] += dot4(qe, kf[jj]);
            ak[ii][jj] += dot4(ke, kf[jj]);
          }
        }
      }
    } else {  // diagonal tile: explicit exp(G_r - G_j) per pair
      for (int c = 0; c < kHeadK; c += 4) {
        float4 gr[4], kr[4];
#pragma unroll
        for (int ii = 0; ii < 4; ++ii) {
          gr[ii] = lds4(G + (r0 + ii) * kStrideK + c);
          kr[ii] = lds4(K + (r0 + ii) * kStrideK + c);
        }
#pragma unroll
        for (int ii = 0; ii < 4; ++ii) {
          const float4 qv = lds4(Q + (r0 + ii) * kStrideK + c);
          aq[ii][ii] += dot4(qv, kr[ii]);
#pragma unroll
          for (int jj = 0; jj < ii; ++jj) {
            const float4 kd = mul4(kr[jj], exp_diff4(gr[ii], gr[jj]));
            aq[ii][jj] += dot4(qv, kd);
            ak[ii][jj] += dot4(kr[ii], kd);
          }
        }
      }
    }
  }
#pragma unroll
  for (int ii = 0; ii < 4; ++ii) {
    const float b = sm[kOffBeta + r0 + ii];
    sts4(sm + kOffAqk + (r0 + ii) * kStrideA + j0,
         make_float4(aq[ii][0], aq[ii][1], aq[ii][2], aq[ii][3]));
    sts4(sm + kOffAkk + (r0 + ii) * kStrideA + j0,
         make_float4(b * ak[ii][0], b * ak[ii][1], b * ak[ii][2], b * ak[ii][3]));
  }
}

// Step 3b: column c of the inverse of the unit lower-triangular block I + A_kk[b, b] (16x16), by
// forward substitution; t[j] = 0 for j < c, so the sums need no bounds.
__device__ void invert_diag_block(float* sm, int b, int c) {
  const float* A = sm + kOffAkk + (kSub * b) * kStrideA + kSub * b;
  float t[kSub];
#pragma unroll
  for (int r = 0; r < kSub; ++r) {
    float s = r == c ? 1.f : 0.f;
#pragma unroll
    for (int j = 0; j < r; ++j) s -= A[r * kStrideA + j] * t[j];
    t[r] = s;
  }
#pragma unroll
  for (int r = 0; r < kSub; ++r) sm[kOffT + b * kSub * kSub + r * kSub + c] = t[r];
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 1) kda_chunked_kernel(KdaCudaParams<T> p) {
  extern __shared__ float4 smem_f4[];
  float* sm = reinterpret_cast<float*>(smem_f4);
  const int tid = threadIdx.x;
  const int e0 = blockIdx.x * kSliceV;
  const int h = blockIdx.y;
  const int seq = blockIdx.z;
  const int64_t H = p.num_heads;
  const int64_t V = p.head_v;
  const int64_t bos = p.cu_seqlens[seq];
  const int64_t len = p.cu_seqlens[seq + 1] - bos;
  if (len <= 0) return;
  float* state = p.states + (static_cast<int64_t>(p.state_blocks[seq]) * H + h) * V * kHeadK +
                 static_cast<int64_t>(e0) * kHeadK;
  for (int i = tid; i < kSliceV * kHeadK / 4; i += kThreads) {
    const int e = i / (kHeadK / 4);
    const int c = (i % (kHeadK / 4)) * 4;
    sts4(sm + kOffS + e * kStrideK + c, reinterpret_cast<const float4*>(state)[i]);
  }

  // Output / X tile of this thread: rows 4 rt .. 4 rt + 3, columns ct and ct + 16.
  const int rt = tid / 16;
  const int ct = tid % 16;
  for (int64_t t0 = 0; t0 < len; t0 += kChunk) {
    const int L = static_cast<int>(len - t0 < kChunk ? len - t0 : kChunk);
    const int64_t row0 = bos + t0;
    load_chunk(p, sm, row0, L, h, e0);
    __syncthreads();
    if (t0 + kChunk < len) {
      const int64_t next = len - t0 - kChunk;
      prefetch_chunk(p, row0 + kChunk, static_cast<int>(next < kChunk ? next : kChunk), h, e0);
    }

    intra_chunk_tile(sm, tid, L);
    __syncthreads();

    // Step 3: gate the rows in place (each element read and written by one thread).
    for (int i = tid; i < kChunk * kHeadK / 4; i += kThreads) {
      const int r = i / (kHeadK / 4);
      const int c = (i % (kHeadK / 4)) * 4;
      const float4 gv = lds4(sm + kOffG + r * kStrideK + c);
      const float4 kv = lds4(sm + kOffK + r * kStrideK + c);
      const float4 gamma = exp_diff4(gv, make_float4(0.f, 0.f, 0.f, 0.f));
      sts4(sm + kOffG + r * kStrideK + c, mul4(kv, exp_diff4(lds4(sm + kOffGLast + c), gv)));
      sts4(sm + kOffK + r * kStrideK + c, mul4(kv, gamma));
      sts4(sm + kOffQ + r * kStrideK + c, mul4(lds4(sm + kOffQ + r * kStrideK + c), gamma));
    }
    if (tid < kNumSub * kSub) invert_diag_block(sm, tid / kSub, tid % kSub);
    __syncthreads();

    // Step 4: X and the inter-chunk output, contracting over K against the state slice.
    float xa[4][2] = {}, oa[4][2] = {};
    for (int c = 0; c < kHeadK; c += 4) {
      const float4 s0 = lds4(sm + kOffS + ct * kStrideK + c);
      const float4 s1 = lds4(sm + kOffS + (ct + 16) * kStrideK + c);
#pragma unroll
      for (int ii = 0; ii < 4; ++ii) {
        const float4 kv = lds4(sm + kOffK + (4 * rt + ii) * kStrideK + c);
        const float4 qv = lds4(sm + kOffQ + (4 * rt + ii) * kStrideK + c);
        xa[ii][0] += dot4(kv, s0);
        xa[ii][1] += dot4(kv, s1);
        oa[ii][0] += dot4(qv, s0);
        oa[ii][1] += dot4(qv, s1);
      }
    }
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const int r = 4 * rt + ii;
      const float b = sm[kOffBeta + r];
      float* x = sm + kOffX + r * kSliceV;
      x[ct] = b * (x[ct] - xa[ii][0]);
      x[ct + 16] = b * (x[ct + 16] - xa[ii][1]);
    }
    __syncthreads();

    // Step 5: V'_i = T_ii (X_i - sum_{m<i} A_kk[i, m] V'_m), sub-chunk by sub-chunk. Sub-chunks
    // past L hold X = 0 (beta = 0 there), hence V' = 0, and are skipped.
    for (int i = 0; i < kNumSub && kSub * i < L; ++i) {
      for (int idx = tid; idx < kSub * kSliceV; idx += kThreads) {
        const int r = idx / kSliceV;
        const int e = idx % kSliceV;
        const float* a = sm + kOffAkk + (kSub * i + r) * kStrideA;
        float y = sm[kOffX + (kSub * i + r) * kSliceV + e];
        for (int j = 0; j < kSub * i; ++j) y -= a[j] * sm[kOffX + j * kSliceV + e];
        sm[kOffY + idx] = y;
      }
      __syncthreads();
      for (int idx = tid; idx < kSub * kSliceV; idx += kThreads) {
        const int r = idx / kSliceV;
        const int e = idx % kSliceV;
        const float* t = sm + kOffT + i * kSub * kSub + r * kSub;
        float v = 0.f;
        for (int m = 0; m <= r; ++m) v += t[m] * sm[kOffY + m * kSliceV + e];
        sm[kOffX + (kSub * i + r) * kSliceV + e] = v;
      }
      __syncthreads();
    }

    // Step 6a: the intra-chunk output (A_qk is zero above the diagonal) and the store.
    for (int j = 0; j < 4 * rt + 4; ++j) {
      const float v0 = sm[kOffX + j * kSliceV + ct];
      const float v1 = sm[kOffX + j * kSliceV + ct + 16];
#pragma unroll
      for (int ii = 0; ii < 4; ++ii) {
        const float a = sm[kOffAqk + (4 * rt + ii) * kStrideA + j];
        oa[ii][0] += a * v0;
        oa[ii][1] += a * v1;
      }
    }
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const int r = 4 * rt + ii;
      if (r < L) {
        T* o = p.out + ((row0 + r) * H + h) * V + e0;
        o[ct] = from_f32<T>(oa[ii][0]);
        o[ct + 16] = from_f32<T>(oa[ii][1]);
      }
    }

    // Step 6b: S <- diag(gamma_L) S + kg^T V'; this thread owns rows er + 8 i, columns c..c+3.
    {
      const int er = tid / 32;
      const int c = (tid % 32) * 4;
      const float4 gamma_last =
          exp_diff4(lds4(sm + kOffGLast + c), make_float4(0.f, 0.f, 0.f, 0.f));
      float4 acc[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        acc[i] = mul4(lds4(sm + kOffS + (er + 8 * i) * kStrideK + c), gamma_last);
      for (int j = 0; j < L; ++j) {
        const float4 kg = lds4(sm + kOffG + j * kStrideK + c);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float v = sm[kOffX + j * kSliceV + er + 8 * i];
          acc[i].x += v * kg.x;
          acc[i].y += v * kg.y;
          acc[i].z += v * kg.z;
          acc[i].w += v * kg.w;
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) sts4(sm + kOffS + (er + 8 * i) * kStrideK + c, acc[i]);
    }
    __syncthreads();
  }

  for (int i = tid; i < kSliceV * kHeadK / 4; i += kThreads) {
    const int e = i / (kHeadK / 4);
    const int c = (i % (kHeadK / 4)) * 4;
    reinterpret_cast<float4*>(state)[i] = lds4(sm + kOffS + e * kStrideK + c);
  }
}

bool aligned(const void* ptr, size_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

}  // namespace

template <typename T>
void kda_chunked_cuda(const KdaCudaParams<T>& p, CudaStream stream) {
  KL_CHECK(p.num_seqs >= 0 && p.num_seqs <= 65535, "kda_chunked_cuda: num_seqs {} out of range",
           p.num_seqs);
  KL_CHECK(p.num_tokens >= 0, "kda_chunked_cuda: num_tokens {} < 0", p.num_tokens);
  KL_CHECK(p.num_heads > 0 && p.num_heads <= 65535, "kda_chunked_cuda: num_heads {} out of range",
           p.num_heads);
  KL_CHECK(p.head_k == kHeadK, "kda_chunked_cuda: head_k {} unsupported (only {})", p.head_k,
           kHeadK);
  KL_CHECK(p.head_v > 0 && p.head_v % kSliceV == 0 && p.head_v / kSliceV <= 65535,
           "kda_chunked_cuda: head_v {} must be a positive multiple of {}", p.head_v, kSliceV);
  if (p.num_seqs == 0 || p.num_tokens == 0) return;
  KL_CHECK(
      p.q && p.k && p.v && p.g && p.beta && p.cu_seqlens && p.state_blocks && p.states && p.out,
      "kda_chunked_cuda: null device pointer");
  constexpr size_t kVec = 4 * sizeof(T);  // the kernel reads q, k, v four values at a time
  KL_CHECK(aligned(p.q, kVec) && aligned(p.k, kVec) && aligned(p.v, kVec) && aligned(p.states, 16),
           "kda_chunked_cuda: q, k, v must be {}-byte aligned and states 16-byte aligned", kVec);
  KL_CUDA_CHECK(cudaFuncSetAttribute(kda_chunked_kernel<T>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(kSmemBytes)));
  const dim3 grid(static_cast<unsigned>(p.head_v / kSliceV), static_cast<unsigned>(p.num_heads),
                  static_cast<unsigned>(p.num_seqs));
  kda_chunked_kernel<T><<<grid, kThreads, kSmemBytes, stream>>>(p);
  KL_CUDA_CHECK_LAUNCH("kda_chunked_cuda");
}

template void kda_chunked_cuda<float>(const KdaCudaParams<float>&, CudaStream);
template void kda_chunked_cuda<__nv_bfloat16>(const KdaCudaParams<__nv_bfloat16>&, CudaStream);

}  // namespace kl::kernels
