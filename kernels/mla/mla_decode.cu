// Decode rows of MLA in the absorbed form: the compaction of decode rows (their list, q gather,
// output scatter), attention of kDecodeHeads heads at a time over the shared latent cache with an
// online fp32 softmax, split over keys for parallelism when there are few rows, and the
// combination of the splits. Every dims-dependent kernel is a template on the MLA shape S
// (mla_kernels.cuh), instantiated for each compiled geometry.
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
constexpr int kDecodeThreads = 256;
static_assert(kDecodeKeys == kWarp, "score phase: one key per lane");
static_assert(kDecodeHeads == 2 * (kDecodeThreads / kWarp), "score phase: two heads per warp");

// The decode kernel's geometry for shape S.
template <typename S>
struct DecodeLayout {
  // Row stride of the shared q and key tiles: kWidth + 4 = 4 (mod 32) words when kWidth is a
  // multiple of 32 (580 for the model), so the float4 reads of 8 consecutive keys (a
  // quarter-warp) hit 32 distinct banks.
  static constexpr int kRowStride = S::kWidth + 4;
  // Output phase: a thread owns kHeadsPerPvThread heads x 4 latent columns (the model: 8 heads,
  // kLora / 4 = 128 column threads per head group, 2 head groups).
  static constexpr int kColThreads = S::kLora / 4;
  static constexpr int kHeadsPerPvThread = kDecodeHeads * kColThreads / kDecodeThreads;
  static_assert(S::kLora % 4 == 0 && S::kRope % 4 == 0, "float4 score loops");
  static_assert(kDecodeThreads % kColThreads == 0 && kHeadsPerPvThread % 4 == 0,
                "output phase: whole head groups of float4 probability reads");
};

template <typename S>
struct DecodeSmem {
  static constexpr int kRowStride = DecodeLayout<S>::kRowStride;
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

// A key tile [kDecodeKeys, kWidth] of the paged cache in registers, as 16-byte vectors: lane j
// resolves the slot of key j once, the others get it by shuffle. When the tile's vectors do not
// divide evenly among the threads (bf16 at kWidth 288), the last round is guarded.
template <typename T, typename S>
struct KeyTileLoader {
  static constexpr int kVec = 16 / sizeof(T);
  static constexpr int kWidth = S::kWidth;
  static constexpr int kVecsPerKey = kWidth / kVec;
  static constexpr int kVecsPerTile = kDecodeKeys * kVecsPerKey;
  static constexpr int kPerThread = (kVecsPerTile + kDecodeThreads - 1) / kDecodeThreads;
  static constexpr bool kEven = kVecsPerTile % kDecodeThreads == 0;
  static_assert(kWidth % kVec == 0, "a cached token is whole 16-byte vectors");
  uint4 buf[kPerThread];

  // Vector i of this thread exists (always, when the tile divides evenly).
  __device__ static bool has(int i) {
    return kEven || static_cast<int>(threadIdx.x) + i * kDecodeThreads < kVecsPerTile;
  }

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
      // Every lane shuffles; a guarded-off vector's j may be >= 32 (the shuffle takes it modulo
      // the warp width) and its value goes unused.
      const long long slot = __shfl_sync(0xffffffffu, my_slot, j);
      if (!has(i)) continue;
      buf[i] = slot >= 0 ? *reinterpret_cast<const uint4*>(cache + slot * kWidth + v * kVec)
                         : make_uint4(0, 0, 0, 0);  // past the split's end: masked scores
    }
  }

  __device__ void store(float (*k)[DecodeLayout<S>::kRowStride]) const {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      if (!has(i)) continue;
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

// Grid (num_splits, ceil(H / kDecodeHeads), num_rows). Phases per key tile: load (all threads),
// scores (warp w: heads w and w + 8, lane = key; the softmax state of those heads lives in the
// warp's registers), output (thread: kHeadsPerPvThread heads x 4 latent columns, accumulated in
// registers). bf16 keeps two blocks per SM (<= 128 registers); fp32's larger prefetch buffer
// gets one.
template <typename T, typename S>
__global__ void __launch_bounds__(kDecodeThreads, sizeof(T) == 2 ? 2 : 1)
    decode_attention_kernel(DecodeAttentionArgs<T> a) {
  constexpr int kNope = S::kNope, kQkDim = S::kQkDim, kLora = S::kLora, kWidth = S::kWidth;
  constexpr int kColThreads = DecodeLayout<S>::kColThreads;
  constexpr int kHeadsPerPvThread = DecodeLayout<S>::kHeadsPerPvThread;
  extern __shared__ float4 smem_raw[];
  DecodeSmem<S>& sm = *reinterpret_cast<DecodeSmem<S>*>(smem_raw);
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
  // Output-phase accumulators: heads hb .. hb + kHeadsPerPvThread - 1, latent columns col ..
  // col + 3.
  const int col = (tid % kColThreads) * 4;
  const int hb = (tid / kColThreads) * kHeadsPerPvThread;
  float acc[kHeadsPerPvThread][4] = {};

  // The next key tile is fetched into registers while the current one is computed on.
  KeyTileLoader<T, S> loader;
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
      float pj[kHeadsPerPvThread];
#pragma unroll
      for (int h4 = 0; h4 < kHeadsPerPvThread / 4; ++h4) {
        const float4 p4 = *reinterpret_cast<const float4*>(&sm.p[j][hb + 4 * h4]);
        pj[4 * h4] = p4.x;
        pj[4 * h4 + 1] = p4.y;
        pj[4 * h4 + 2] = p4.z;
        pj[4 * h4 + 3] = p4.w;
      }
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
template <typename T, typename S>
__global__ void combine_splits_kernel(const float* part_acc, const float* part_ml, int num_splits,
                                      int num_heads, T* out_lat) {
  constexpr int kLora = S::kLora;
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

template <typename T, typename S>
void launch_gather_decode_q(const T* q, const MlaSeqSpan* seqs, const int32_t* list, int num_rows,
                            int num_heads, T* q_dec, cudaStream_t stream) {
  gather_decode_q_kernel<T><<<num_rows, 256, 0, stream>>>(
      q, seqs, list, static_cast<int64_t>(num_heads) * S::kQkDim, q_dec);
  KL_CUDA_CHECK_LAUNCH("mla: gather_decode_q");
}

template <typename T, typename S>
void launch_scatter_decode_out(const T* out_dec, const MlaSeqSpan* seqs, const int32_t* list,
                               int num_rows, int num_heads, T* out, cudaStream_t stream) {
  scatter_decode_out_kernel<T><<<num_rows, 256, 0, stream>>>(
      out_dec, seqs, list, static_cast<int64_t>(num_heads) * S::kVDim, out);
  KL_CUDA_CHECK_LAUNCH("mla: scatter_decode_out");
}

template <typename T, typename S>
void launch_decode_attention(const DecodeAttentionArgs<T>& a, cudaStream_t stream) {
  const dim3 grid(a.num_splits, (a.num_heads + kDecodeHeads - 1) / kDecodeHeads, a.num_rows);
  decode_attention_kernel<T, S><<<grid, kDecodeThreads, sizeof(DecodeSmem<S>), stream>>>(a);
  KL_CUDA_CHECK_LAUNCH("mla: decode_attention");
  if (a.num_splits > 1) {
    combine_splits_kernel<T, S><<<dim3(a.num_rows, a.num_heads), S::kLora / 4, 0, stream>>>(
        a.part_acc, a.part_ml, a.num_splits, a.num_heads, a.out_lat);
    KL_CUDA_CHECK_LAUNCH("mla: combine_splits");
  }
}

template <typename S>
void set_decode_smem_limit() {  // ~111 KiB for the model: above the 48 KiB default
  KL_CUDA_CHECK(cudaFuncSetAttribute(decode_attention_kernel<float, S>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(sizeof(DecodeSmem<S>))));
  KL_CUDA_CHECK(cudaFuncSetAttribute(decode_attention_kernel<__nv_bfloat16, S>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(sizeof(DecodeSmem<S>))));
}

#define KL_MLA_DECODE_INSTANTIATE(T, S)                                                           \
  template void launch_gather_decode_q<T, S>(const T*, const MlaSeqSpan*, const int32_t*, int,    \
                                             int, T*, cudaStream_t);                              \
  template void launch_scatter_decode_out<T, S>(const T*, const MlaSeqSpan*, const int32_t*, int, \
                                                int, T*, cudaStream_t);                           \
  template void launch_decode_attention<T, S>(const DecodeAttentionArgs<T>&, cudaStream_t);

KL_MLA_DECODE_INSTANTIATE(float, KimiLinearShape)
KL_MLA_DECODE_INSTANTIATE(__nv_bfloat16, KimiLinearShape)
KL_MLA_DECODE_INSTANTIATE(float, TinyGoldenShape)
KL_MLA_DECODE_INSTANTIATE(__nv_bfloat16, TinyGoldenShape)
template void set_decode_smem_limit<KimiLinearShape>();
template void set_decode_smem_limit<TinyGoldenShape>();

}  // namespace kl::kernels::mla
