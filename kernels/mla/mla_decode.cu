// Decode rows of MLA in the absorbed form: the compaction of decode rows (their list, q gather,
// output scatter), attention of kDecodeHeads heads at a time over the shared latent cache with an
// online fp32 softmax, split over keys for parallelism when there are few rows, and the
// combination of the splits.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/mla/mla_kernels.cuh"

namespace kl::kernels::mla {
namespace {

using cuda::from_f32;
using cuda::kWarp;
using cuda::to_f32;

constexpr int kListThreads = 1024;
constexpr int kDecodeKeys = 32;  // keys per tile: one per lane in the score phase
constexpr int kDecodeThreads = 256;
// Row stride of the shared q and key tiles: 580 = 4 (mod 32) words, so the float4 reads of 8
// consecutive keys (a quarter-warp) hit 32 distinct banks.
constexpr int kRowStride = kWidth + 4;
constexpr int kHeadsPerPvThread = 8;  // output phase: a thread owns 8 heads x 4 latent columns

struct DecodeSmem {
  float q[kDecodeHeads][kRowStride];   // [q_lat | q_pe] of the block's heads
  float k[kDecodeKeys][kRowStride];    // the key tile [c | k_pe]
  float p[kDecodeKeys][kDecodeHeads];  // probabilities of the tile
  float alpha[kDecodeHeads];           // rescale of the running output for the tile
  float m[kDecodeHeads];
  float l[kDecodeHeads];
};

__global__ void __launch_bounds__(kListThreads)
    build_decode_list_kernel(const MlaSeqSpan* seqs, int num_seqs, int32_t* list) {
  __shared__ int warp_counts[kListThreads / kWarp];
  __shared__ int base;
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  if (threadIdx.x == 0) base = 0;
  __syncthreads();
  for (int b = 0; b < num_seqs; b += kListThreads) {
    const int s = b + static_cast<int>(threadIdx.x);
    const bool is_decode = s < num_seqs && seqs[s].num_rows == 1;
    const unsigned ballot = __ballot_sync(0xffffffffu, is_decode);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int offset = base;
    for (int w = 0; w < warp; ++w) offset += warp_counts[w];
    if (is_decode) list[offset + __popc(ballot & ((1u << lane) - 1u))] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 0; w < kListThreads / kWarp; ++w) base += warp_counts[w];
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void gather_decode_q_kernel(const T* q, const MlaSeqSpan* seqs, const int32_t* list,
                                       int64_t row_values, T* q_dec) {
  const int64_t d = blockIdx.x;
  const int64_t row = seqs[list[d]].row_begin;
  for (int64_t i = threadIdx.x; i < row_values; i += blockDim.x)
    q_dec[d * row_values + i] = q[row * row_values + i];
}

template <typename T>
__global__ void scatter_decode_out_kernel(const T* out_dec, const MlaSeqSpan* seqs,
                                          const int32_t* list, int64_t row_values, T* out) {
  const int64_t d = blockIdx.x;
  const int64_t row = seqs[list[d]].row_begin;
  for (int64_t i = threadIdx.x; i < row_values; i += blockDim.x)
    out[row * row_values + i] = out_dec[d * row_values + i];
}

// Grid (num_splits, ceil(H / kDecodeHeads), num_rows). Phases per key tile: load (all threads),
// scores (warp w: heads w and w + 8, lane = key; the softmax state of those heads lives in the
// warp's registers), output (thread: 8 heads x 4 latent columns, accumulated in registers).
// A key tile [kDecodeKeys, 576] of the paged cache in registers, as 16-byte vectors: lane j
// resolves the slot of key j once, the others get it by shuffle.
template <typename T>
struct KeyTileLoader {
  static constexpr int kVec = 16 / sizeof(T);
  static constexpr int kVecsPerKey = kWidth / kVec;
  static constexpr int kPerThread = kDecodeKeys * kVecsPerKey / kDecodeThreads;
  static_assert(kDecodeKeys * kVecsPerKey % kDecodeThreads == 0 && kDecodeKeys == kWarp);
  uint4 buf[kPerThread];

  __device__ void load(const T* cache, const int32_t* pages, int page_size, int kt, int key_end) {
    const int lane = threadIdx.x % kWarp;
    const int my_key = kt + lane;
    const long long my_slot =
        my_key < key_end
            ? static_cast<long long>(pages[my_key / page_size]) * page_size + my_key % page_size
            : -1;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int idx = threadIdx.x + i * kDecodeThreads;
      const int j = idx / kVecsPerKey, v = idx % kVecsPerKey;
      const long long slot = __shfl_sync(0xffffffffu, my_slot, j);
      buf[i] = slot >= 0 ? *reinterpret_cast<const uint4*>(cache + slot * kWidth + v * kVec)
                         : make_uint4(0, 0, 0, 0);  // past the split's end: masked scores
    }
  }

  __device__ void store(float (*k)[kRowStride]) const {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int idx = threadIdx.x + i * kDecodeThreads;
      const int j = idx / kVecsPerKey, v = idx % kVecsPerKey;
      float4* dst = reinterpret_cast<float4*>(&k[j][v * kVec]);
      if constexpr (sizeof(T) == 4) {
        dst[0] = *reinterpret_cast<const float4*>(&buf[i]);
      } else {
        const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&buf[i]);
        const float2 f0 = __bfloat1622float2(b[0]), f1 = __bfloat1622float2(b[1]);
        const float2 f2 = __bfloat1622float2(b[2]), f3 = __bfloat1622float2(b[3]);
        dst[0] = make_float4(f0.x, f0.y, f1.x, f1.y);
        dst[1] = make_float4(f2.x, f2.y, f3.x, f3.y);
      }
    }
  }
};

// bf16 keeps two blocks per SM (<= 128 registers); fp32's larger prefetch buffer gets one.
template <typename T>
__global__ void __launch_bounds__(kDecodeThreads, sizeof(T) == 2 ? 2 : 1)
    decode_attention_kernel(DecodeAttentionArgs<T> a) {
  extern __shared__ float4 smem_raw[];
  DecodeSmem& sm = *reinterpret_cast<DecodeSmem*>(smem_raw);
  const int tid = threadIdx.x;
  const int lane = tid % kWarp;
  const int warp = tid / kWarp;
  const int split = blockIdx.x;
  const int h0 = blockIdx.y * kDecodeHeads;
  const int64_t d = blockIdx.z;
  const int H = a.num_heads;
  const int seq = a.list[d];
  const int num_keys = a.seqs[seq].num_computed + 1;
  const int key_begin = split * a.split_keys;
  const int key_end = min(num_keys, key_begin + a.split_keys);
  const int32_t* pages = a.page_tables + static_cast<int64_t>(seq) * a.page_table_stride;

  for (int i = tid; i < kDecodeHeads * kWidth; i += kDecodeThreads) {
    const int hh = i / kWidth, c = i % kWidth, h = h0 + hh;
    float v = 0.f;
    if (h < H) {
      v = c < kLora ? to_f32(a.q_lat[(d * H + h) * kLora + c])
                    : to_f32(a.q_dec[(d * H + h) * kQkDim + kNope + (c - kLora)]);
    }
    sm.q[hh][c] = v;
  }

  // Score-phase state of heads `warp` and `warp + 8`, replicated in every lane of the warp.
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.f, 0.f};
  // Output-phase accumulators: heads hb .. hb + 7, latent columns col .. col + 3.
  const int col = (tid % (kDecodeThreads / 2)) * 4;
  const int hb = (tid / (kDecodeThreads / 2)) * kHeadsPerPvThread;
  float acc[kHeadsPerPvThread][4] = {};

  // The next key tile is fetched into registers while the current one is computed on.
  KeyTileLoader<T> loader;
  if (key_begin < key_end) loader.load(a.cache, pages, a.page_size, key_begin, key_end);
  for (int kt = key_begin; kt < key_end; kt += kDecodeKeys) {
    __syncthreads();  // the previous tile's readers are done (and q is loaded)
    loader.store(sm.k);
    __syncthreads();
    if (kt + kDecodeKeys < key_end)
      loader.load(a.cache, pages, a.page_size, kt + kDecodeKeys, key_end);

    // Scores: lane = key, heads warp and warp + 8.
    {
      const float4* kr = reinterpret_cast<const float4*>(sm.k[lane]);
      const float4* q0 = reinterpret_cast<const float4*>(sm.q[warp]);
      const float4* q1 = reinterpret_cast<const float4*>(sm.q[warp + 8]);
      float lat0 = 0.f, lat1 = 0.f, pe0 = 0.f, pe1 = 0.f;
#pragma unroll 8
      for (int c4 = 0; c4 < kLora / 4; ++c4) {
        const float4 k = kr[c4], x = q0[c4], y = q1[c4];
        lat0 += x.x * k.x + x.y * k.y + x.z * k.z + x.w * k.w;
        lat1 += y.x * k.x + y.y * k.y + y.z * k.z + y.w * k.w;
      }
#pragma unroll
      for (int c4 = kLora / 4; c4 < kWidth / 4; ++c4) {
        const float4 k = kr[c4], x = q0[c4], y = q1[c4];
        pe0 += x.x * k.x + x.y * k.y + x.z * k.z + x.w * k.w;
        pe1 += y.x * k.x + y.y * k.y + y.z * k.z + y.w * k.w;
      }
      const bool valid = kt + lane < key_end;
      const float s[2] = {valid ? (lat0 + pe0) * a.scale : -INFINITY,
                          valid ? (lat1 + pe1) * a.scale : -INFINITY};
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        // The tile has at least one valid key, so m_new is finite; exp(-inf) = 0 masks the rest.
        const float m_new = fmaxf(m_run[i], cuda::warp_max(s[i]));
        const float p = expf(s[i] - m_new);
        const float alpha = expf(m_run[i] - m_new);
        l_run[i] = l_run[i] * alpha + cuda::warp_sum(p);
        m_run[i] = m_new;
        sm.p[lane][warp + 8 * i] = p;
        if (lane == 0) sm.alpha[warp + 8 * i] = alpha;
      }
    }
    __syncthreads();

    // Output: acc = acc * alpha + P . C over the tile.
#pragma unroll
    for (int hh = 0; hh < kHeadsPerPvThread; ++hh) {
      const float al = sm.alpha[hb + hh];
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[hh][c] *= al;
    }
#pragma unroll 4
    for (int j = 0; j < kDecodeKeys; ++j) {
      const float4 c = *reinterpret_cast<const float4*>(&sm.k[j][col]);
      const float4 p0 = *reinterpret_cast<const float4*>(&sm.p[j][hb]);
      const float4 p1 = *reinterpret_cast<const float4*>(&sm.p[j][hb + 4]);
      const float pj[8] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
#pragma unroll
      for (int hh = 0; hh < kHeadsPerPvThread; ++hh) {
        acc[hh][0] += pj[hh] * c.x;
        acc[hh][1] += pj[hh] * c.y;
        acc[hh][2] += pj[hh] * c.z;
        acc[hh][3] += pj[hh] * c.w;
      }
    }
  }

  if (lane == 0) {
    for (int i = 0; i < 2; ++i) {
      sm.m[warp + 8 * i] = m_run[i];
      sm.l[warp + 8 * i] = l_run[i];
    }
  }
  __syncthreads();
#pragma unroll
  for (int hh = 0; hh < kHeadsPerPvThread; ++hh) {
    const int h = h0 + hb + hh;
    if (h >= H) continue;
    if (a.num_splits == 1) {
      // One split holds every key (at least one), so l > 0.
      const float inv = 1.f / sm.l[hb + hh];
      T* dst = a.out_lat + (d * H + h) * kLora + col;
      for (int c = 0; c < 4; ++c) dst[c] = from_f32<T>(acc[hh][c] * inv);
    } else {
      // An empty split leaves m = -inf, l = 0, acc = 0: the combination weighs it by zero.
      const int64_t prow = d * a.num_splits + split;
      float* dst = a.part_acc + (prow * H + h) * kLora + col;
      for (int c = 0; c < 4; ++c) dst[c] = acc[hh][c];
      if (col == 0) {
        a.part_ml[(prow * H + h) * 2] = sm.m[hb + hh];
        a.part_ml[(prow * H + h) * 2 + 1] = sm.l[hb + hh];
      }
    }
  }
}

// Grid (num_rows, H), kLora / 4 threads: each thread combines 4 latent columns of every split.
template <typename T>
__global__ void combine_splits_kernel(const float* part_acc, const float* part_ml, int num_splits,
                                      int num_heads, T* out_lat) {
  const int64_t d = blockIdx.x;
  const int h = blockIdx.y;
  const int col = threadIdx.x * 4;
  float m = -INFINITY;
  for (int s = 0; s < num_splits; ++s)
    m = fmaxf(m, part_ml[((d * num_splits + s) * num_heads + h) * 2]);
  float l = 0.f, acc[4] = {};
  for (int s = 0; s < num_splits; ++s) {
    const int64_t prow = (d * num_splits + s) * num_heads + h;
    const float w = expf(part_ml[prow * 2] - m);  // 0 for an empty split (m = -inf)
    l += w * part_ml[prow * 2 + 1];
    const float4 x = *reinterpret_cast<const float4*>(part_acc + prow * kLora + col);
    acc[0] += w * x.x;
    acc[1] += w * x.y;
    acc[2] += w * x.z;
    acc[3] += w * x.w;
  }
  const float inv = 1.f / l;
  T* dst = out_lat + (d * num_heads + h) * kLora + col;
  for (int c = 0; c < 4; ++c) dst[c] = from_f32<T>(acc[c] * inv);
}

}  // namespace

void launch_build_decode_list(const MlaSeqSpan* seqs, int num_seqs, int32_t* list,
                              cudaStream_t stream) {
  build_decode_list_kernel<<<1, kListThreads, 0, stream>>>(seqs, num_seqs, list);
  KL_CUDA_CHECK_LAUNCH("mla: build_decode_list");
}

template <typename T>
void launch_gather_decode_q(const T* q, const MlaSeqSpan* seqs, const int32_t* list, int num_rows,
                            int num_heads, T* q_dec, cudaStream_t stream) {
  gather_decode_q_kernel<T><<<num_rows, 256, 0, stream>>>(
      q, seqs, list, static_cast<int64_t>(num_heads) * kQkDim, q_dec);
  KL_CUDA_CHECK_LAUNCH("mla: gather_decode_q");
}

template <typename T>
void launch_scatter_decode_out(const T* out_dec, const MlaSeqSpan* seqs, const int32_t* list,
                               int num_rows, int num_heads, T* out, cudaStream_t stream) {
  scatter_decode_out_kernel<T><<<num_rows, 256, 0, stream>>>(
      out_dec, seqs, list, static_cast<int64_t>(num_heads) * kVDim, out);
  KL_CUDA_CHECK_LAUNCH("mla: scatter_decode_out");
}

template <typename T>
void launch_decode_attention(const DecodeAttentionArgs<T>& a, cudaStream_t stream) {
  const dim3 grid(a.num_splits, (a.num_heads + kDecodeHeads - 1) / kDecodeHeads, a.num_rows);
  decode_attention_kernel<T><<<grid, kDecodeThreads, sizeof(DecodeSmem), stream>>>(a);
  KL_CUDA_CHECK_LAUNCH("mla: decode_attention");
  if (a.num_splits > 1) {
    combine_splits_kernel<T><<<dim3(a.num_rows, a.num_heads), kLora / 4, 0, stream>>>(
        a.part_acc, a.part_ml, a.num_splits, a.num_heads, a.out_lat);
    KL_CUDA_CHECK_LAUNCH("mla: combine_splits");
  }
}

void set_decode_smem_limit() {  // ~111 KiB: above the 48 KiB default
  KL_CUDA_CHECK(cudaFuncSetAttribute(decode_attention_kernel<float>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(sizeof(DecodeSmem))));
  KL_CUDA_CHECK(cudaFuncSetAttribute(decode_attention_kernel<__nv_bfloat16>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(sizeof(DecodeSmem))));
}

#define KL_MLA_DECODE_INSTANTIATE(T)                                                             \
  template void launch_gather_decode_q<T>(const T*, const MlaSeqSpan*, const int32_t*, int, int, \
                                          T*, cudaStream_t);                                     \
  template void launch_scatter_decode_out<T>(const T*, const MlaSeqSpan*, const int32_t*, int,   \
                                             int, T*, cudaStream_t);                             \
  template void launch_decode_attention<T>(const DecodeAttentionArgs<T>&, cudaStream_t);

KL_MLA_DECODE_INSTANTIATE(float)
KL_MLA_DECODE_INSTANTIATE(__nv_bfloat16)

}  // namespace kl::kernels::mla
