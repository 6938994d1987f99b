// Prefill chunks of MLA in the expanded form: the gather of a key chunk's latents out of the
// paged cache (for the kv_b up-projection GEMM) and causal attention of a chunk's query rows over
// the up-projected keys, flash style: the fp32 softmax state (running max, sum, output) lives in
// registers within a key chunk and in fp32 scratch between chunks. Every dims-dependent kernel is
// a template on the MLA shape S (mla_kernels.cuh), instantiated for each compiled geometry.
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

constexpr int kRowsPerWarp = 8;
constexpr int kPrefillThreads = 256;
constexpr int kPrefillRows = kRowsPerWarp * kPrefillThreads / kWarp;  // 64 query rows a block
constexpr int kPrefillKeys = kWarp;  // keys per tile: one per lane in the score phase

template <typename S>
struct PrefillSmem {
  // kQkDim + 4 and kVDim + 4 words = 4 (mod 32) when the dims are multiples of 32 (196 and 132
  // for the model): float4 reads of 8 consecutive rows hit distinct banks.
  static constexpr int kQkStride = S::kQkDim + 4;
  static constexpr int kVStride = S::kVDim + 4;
  float q[kPrefillRows][kQkStride];  // [q_nope | q_pe] of the block's rows, one head
  float k[kPrefillKeys][kQkStride];  // [k_nope | k_pe] of the key tile
  float v[kPrefillKeys][kVStride];
  float p[kPrefillThreads / kWarp][kPrefillKeys][kRowsPerWarp];  // per warp: [key][row]
};

// N consecutive fp32 values (N = 4, 2 or 1, 4N-byte aligned) as one vector load / store.
template <int N>
__device__ __forceinline__ void load_floats(const float* src, float (&dst)[N]) {
  if constexpr (N == 4) {
    const float4 x = *reinterpret_cast<const float4*>(src);
    dst[0] = x.x;
    dst[1] = x.y;
    dst[2] = x.z;
    dst[3] = x.w;
  } else if constexpr (N == 2) {
    const float2 x = *reinterpret_cast<const float2*>(src);
    dst[0] = x.x;
    dst[1] = x.y;
  } else {
    static_assert(N == 1, "load_floats: 1, 2 or 4 values");
    dst[0] = *src;
  }
}

template <int N>
__device__ __forceinline__ void store_floats(const float (&src)[N], float* dst) {
  if constexpr (N == 4) {
    *reinterpret_cast<float4*>(dst) = make_float4(src[0], src[1], src[2], src[3]);
  } else if constexpr (N == 2) {
    *reinterpret_cast<float2*>(dst) = make_float2(src[0], src[1]);
  } else {
    static_assert(N == 1, "store_floats: 1, 2 or 4 values");
    *dst = src[0];
  }
}

template <typename T, typename S>
__global__ void gather_keys_kernel(const T* cache, const int32_t* pages, int page_size,
                                   int key_begin, T* lat, T* pe) {
  constexpr int kLora = S::kLora, kRope = S::kRope, kWidth = S::kWidth;
  const int k = blockIdx.x;
  const int key = key_begin + k;
  const int64_t slot = static_cast<int64_t>(pages[key / page_size]) * page_size + key % page_size;
  const T* src = cache + slot * kWidth;
  for (int c = threadIdx.x; c < kWidth; c += blockDim.x) {
    if (c < kLora) {
      lat[static_cast<int64_t>(k) * kLora + c] = src[c];
    } else {
      pe[static_cast<int64_t>(k) * kRope + (c - kLora)] = src[c];
    }
  }
}

// Grid (ceil(num_rows / 64), H). Warp w owns rows w*8 .. w*8+7 in both phases: scores with
// lane = key (the row's max and sum are warp reductions, the softmax state is replicated in the
// warp's lanes), output with lane = kVDim / 32 value columns (4 for the model), so only the
// probabilities go through shared memory, within the warp.
template <typename T, typename S>
__global__ void __launch_bounds__(kPrefillThreads) prefill_chunk_kernel(PrefillChunkArgs<T> a) {
  constexpr int kNope = S::kNope, kRope = S::kRope, kQkDim = S::kQkDim, kVDim = S::kVDim;
  constexpr int kKvbRows = S::kKvbRows;
  constexpr int kCols = kVDim / kWarp;  // value columns per lane
  static_assert(kVDim % kWarp == 0 && (kCols == 4 || kCols == 2 || kCols == 1),
                "output phase: 1, 2 or 4 value columns per lane");
  static_assert(kQkDim % 4 == 0, "float4 score loop");
  extern __shared__ float4 smem_raw[];
  PrefillSmem<S>& sm = *reinterpret_cast<PrefillSmem<S>*>(smem_raw);
  const int tid = threadIdx.x;
  const int lane = tid % kWarp;
  const int warp = tid / kWarp;
  const int h = blockIdx.y;
  const int H = a.num_heads;
  const int r0 = blockIdx.x * kPrefillRows;
  const int64_t up_stride = static_cast<int64_t>(H) * kKvbRows;

  for (int i = tid; i < kPrefillRows * kQkDim; i += kPrefillThreads) {
    const int r = i / kQkDim, c = i % kQkDim, row = r0 + r;
    sm.q[r][c] =
        row < a.num_rows ? to_f32(a.q[(static_cast<int64_t>(row) * H + h) * kQkDim + c]) : 0.f;
  }

  const int wrow0 = r0 + warp * kRowsPerWarp;  // the warp's first row
  const int col = lane * kCols;
  float m_run[kRowsPerWarp], l_run[kRowsPerWarp], acc[kRowsPerWarp][kCols];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int row = wrow0 + i;
    m_run[i] = -INFINITY;
    l_run[i] = 0.f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) acc[i][c] = 0.f;
    if (!a.first && row < a.num_rows) {
      const int64_t rh = static_cast<int64_t>(row) * H + h;
      m_run[i] = a.ml[rh * 2];
      l_run[i] = a.ml[rh * 2 + 1];
      load_floats(a.acc + rh * kVDim + col, acc[i]);
    }
  }

  // Keys of this chunk that some row of the block may see.
  const int last_row = min(r0 + kPrefillRows, a.num_rows) - 1;
  const int key_stop = min(a.chunk_begin + a.chunk_keys, a.num_computed + last_row + 1);
  for (int kt = a.chunk_begin; kt < key_stop; kt += kPrefillKeys) {
    __syncthreads();  // the previous tile's readers are done (and q is loaded)
    for (int i = tid; i < kPrefillKeys * kQkDim; i += kPrefillThreads) {
      const int j = i / kQkDim, c = i % kQkDim, key = kt + j;
      float v = 0.f;
      if (key < key_stop) {
        const int64_t local = key - a.chunk_begin;
        v = c < kNope ? to_f32(a.kv_up[local * up_stride + h * kKvbRows + c])
                      : to_f32(a.k_pe[local * kRope + (c - kNope)]);
      }
      sm.k[j][c] = v;
    }
    for (int i = tid; i < kPrefillKeys * kVDim; i += kPrefillThreads) {
      const int j = i / kVDim, c = i % kVDim, key = kt + j;
      const int64_t local = key - a.chunk_begin;
      sm.v[j][c] =
          key < key_stop ? to_f32(a.kv_up[local * up_stride + h * kKvbRows + kNope + c]) : 0.f;
    }
    __syncthreads();

    // Scores of the warp's 8 rows against key kt + lane.
    float s[kRowsPerWarp] = {};
    {
      const float4* kr = reinterpret_cast<const float4*>(sm.k[lane]);
#pragma unroll 4
      for (int c4 = 0; c4 < kQkDim / 4; ++c4) {
        const float4 k = kr[c4];
#pragma unroll
        for (int i = 0; i < kRowsPerWarp; ++i) {
          const float4 x = reinterpret_cast<const float4*>(sm.q[warp * kRowsPerWarp + i])[c4];
          s[i] += x.x * k.x + x.y * k.y + x.z * k.z + x.w * k.w;
        }
      }
    }
    const int key = kt + lane;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int row = wrow0 + i;
      const bool visible = key < key_stop && row < a.num_rows && key <= a.num_computed + row;
      const float si = visible ? s[i] * a.scale : -INFINITY;
      const float m_new = fmaxf(m_run[i], cuda::warp_max(si));
      // A row that has seen no key yet and sees none in this tile keeps its empty state.
      const float p = m_new == -INFINITY ? 0.f : expf(si - m_new);
      const float alpha = m_new == -INFINITY ? 1.f : expf(m_run[i] - m_new);
      l_run[i] = l_run[i] * alpha + cuda::warp_sum(p);
      m_run[i] = m_new;
#pragma unroll
      for (int c = 0; c < kCols; ++c) acc[i][c] *= alpha;
      sm.p[warp][lane][i] = p;
    }
    __syncwarp();

#pragma unroll 4
    for (int j = 0; j < kPrefillKeys; ++j) {
      float v[kCols];
      load_floats(&sm.v[j][col], v);
      const float4 p0 = *reinterpret_cast<const float4*>(&sm.p[warp][j][0]);
      const float4 p1 = *reinterpret_cast<const float4*>(&sm.p[warp][j][4]);
      const float pj[kRowsPerWarp] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
#pragma unroll
        for (int c = 0; c < kCols; ++c) acc[i][c] += pj[i] * v[c];
      }
    }
    __syncwarp();  // the next tile overwrites this warp's probabilities
  }

#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int row = wrow0 + i;
    if (row >= a.num_rows) continue;
    const int64_t rh = static_cast<int64_t>(row) * H + h;
    if (a.last) {
      // Every row sees key 0 (in the first chunk), so l > 0.
      const float inv = 1.f / l_run[i];
      T* dst = a.out + rh * kVDim + col;
      for (int c = 0; c < kCols; ++c) dst[c] = from_f32<T>(acc[i][c] * inv);
    } else {
      store_floats(acc[i], a.acc + rh * kVDim + col);
      if (lane == 0) {
        a.ml[rh * 2] = m_run[i];
        a.ml[rh * 2 + 1] = l_run[i];
      }
    }
  }
}

}  // namespace

template <typename T, typename S>
void launch_gather_keys(const T* cache, const int32_t* pages, int page_size, int key_begin,
                        int num_keys, T* lat, T* pe, cudaStream_t stream) {
  gather_keys_kernel<T, S>
      <<<num_keys, 192, 0, stream>>>(cache, pages, page_size, key_begin, lat, pe);
  KL_CUDA_CHECK_LAUNCH("mla: gather_keys");
}

template <typename T, typename S>
void launch_prefill_chunk(const PrefillChunkArgs<T>& a, cudaStream_t stream) {
  const dim3 grid((a.num_rows + kPrefillRows - 1) / kPrefillRows, a.num_heads);
  prefill_chunk_kernel<T, S><<<grid, kPrefillThreads, sizeof(PrefillSmem<S>), stream>>>(a);
  KL_CUDA_CHECK_LAUNCH("mla: prefill_chunk");
}

template <typename S>
void set_prefill_smem_limit() {  // ~98 KiB for the model: above the 48 KiB default
  KL_CUDA_CHECK(cudaFuncSetAttribute(prefill_chunk_kernel<float, S>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(sizeof(PrefillSmem<S>))));
  KL_CUDA_CHECK(cudaFuncSetAttribute(prefill_chunk_kernel<__nv_bfloat16, S>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(sizeof(PrefillSmem<S>))));
}

#define KL_MLA_PREFILL_INSTANTIATE(T, S)                                                  \
  template void launch_gather_keys<T, S>(const T*, const int32_t*, int, int, int, T*, T*, \
                                         cudaStream_t);                                   \
  template void launch_prefill_chunk<T, S>(const PrefillChunkArgs<T>&, cudaStream_t);

KL_MLA_PREFILL_INSTANTIATE(float, KimiLinearShape)
KL_MLA_PREFILL_INSTANTIATE(__nv_bfloat16, KimiLinearShape)
KL_MLA_PREFILL_INSTANTIATE(float, TinyGoldenShape)
KL_MLA_PREFILL_INSTANTIATE(__nv_bfloat16, TinyGoldenShape)
template void set_prefill_smem_limit<KimiLinearShape>();
template void set_prefill_smem_limit<TinyGoldenShape>();

}  // namespace kl::kernels::mla
