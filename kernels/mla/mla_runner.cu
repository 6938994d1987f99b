// MlaAttentionRunner: the fused kv_a_layernorm + paged cache write, and MLA attention of a step
// (decode rows absorbed, prefill chunks expanded; see mla_cuda.h) over scratch allocated once.
// Host work is metadata only: the host copy of the sequence spans sizes the launches, the device
// copy drives the kernels. The kernels are compiled per MLA head geometry (MlaShape in
// mla_kernels.cuh); the runner picks the instantiation matching its MlaDims once per call.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/gemm/gemm_cuda.h"
#include "kernels/mla/mla_cuda.h"
#include "kernels/mla/mla_kernels.cuh"

namespace kl::kernels {
namespace {

using namespace mla;

constexpr int kCacheWriteThreads = 128;  // 4 latent values per thread
constexpr int64_t kDefaultChunkKeys = 2048;
constexpr int64_t kMaxDecodeGroup = 1024;  // decode rows per absorbed pass (bounds the scratch)
constexpr int64_t kAlign = 256;

// Calls f(S{}) with the compiled shape S matching d's head geometry; throws for any other.
template <typename F>
void with_shape(const MlaDims& d, const char* what, F&& f) {
  if (KimiLinearShape::matches(d)) {
    f(KimiLinearShape{});
  } else if (TinyGoldenShape::matches(d)) {
    f(TinyGoldenShape{});
  } else {
    KL_CHECK(false,
             "{}: no MLA kernels are compiled for nope {} rope {} v {} kv_lora {} (compiled: "
             "nope/rope/v/kv_lora 128/64/128/512 and 64/32/64/256)",
             what, d.nope, d.rope, d.v_dim, d.kv_lora);
  }
}

// One token per block: fp32 sum of squares of the kLora latent values, the normalised value
// rounded to T before the weight multiply (as rmsnorm_cuda), then [ckv_normed | k_pe] to its slot.
template <typename T, typename S>
__global__ void __launch_bounds__(kCacheWriteThreads)
    cache_write_kernel(const T* kv, int64_t kv_stride, const void* weight, DType weight_dtype,
                       const int64_t* slot_mapping, float eps, T* cache) {
  constexpr int kLora = S::kLora, kRope = S::kRope, kWidth = S::kWidth;
  static_assert(kLora % kCacheWriteThreads == 0 && kRope <= kCacheWriteThreads,
                "cache_write: whole latent rounds, one rope value per thread at most");
  const int64_t t = blockIdx.x;
  const int64_t slot = slot_mapping[t];
  if (slot < 0) return;  // a padding token (vLLM's convention, as mla_cache_write_ref)
  const T* x = kv + t * kv_stride;
  constexpr int kPerThread = kLora / kCacheWriteThreads;
  float v[kPerThread];
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    v[i] = cuda::to_f32(x[threadIdx.x + i * kCacheWriteThreads]);
    ss += v[i] * v[i];
  }
  ss = cuda::block_sum(ss);
  // IEEE sqrt and division (not rsqrtf) to stay within an ulp of rmsnorm_ref.
  const float inv = 1.f / sqrtf(ss / static_cast<float>(kLora) + eps);
  T* dst = cache + slot * kWidth;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int c = threadIdx.x + i * kCacheWriteThreads;
    const float normed = cuda::round_to<T>(v[i] * inv);
    dst[c] = cuda::from_f32<T>(normed * cuda::load_weight(weight, weight_dtype, c));
  }
  if (threadIdx.x < kRope) dst[kLora + threadIdx.x] = x[kLora + threadIdx.x];
}

template <typename T>
constexpr DType dtype_of() {
  return std::is_same_v<T, float> ? DType::kF32 : DType::kBF16;
}

// Per head h of a batch of H: C_h[m, n] = A_h[m, k] B_h(k, n), with B_h a block of kv_b (the
// heads' blocks kKvbRows * kLora apart), stored [k, n] (W_UK) or [n, k] (W_UV, transposed).
template <typename T, typename S>
BatchedGemmCudaParams<T> per_head_gemm(int64_t m, int64_t n, int64_t k, int64_t H, const T* a,
                                       int64_t lda, int64_t a_head_stride, const T* b,
                                       bool b_transposed, T* c, int64_t ldc,
                                       int64_t c_head_stride) {
  BatchedGemmCudaParams<T> g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.batch = H;
  g.a = a;
  g.lda = lda;
  g.a_batch_stride = a_head_stride;
  g.b = b;
  g.ldb = S::kLora;
  g.b_batch_stride = int64_t{S::kKvbRows} * S::kLora;
  g.b_transposed = b_transposed;
  g.c = c;
  g.ldc = ldc;
  g.c_batch_stride = c_head_stride;
  return g;
}

}  // namespace

struct MlaAttentionRunner::Impl {
  MlaDims dims;
  int64_t max_num_tokens = 0;
  bool bf16 = false;
  int64_t chunk_keys = 0;    // keys up-projected at a time in prefill
  int64_t decode_group = 0;  // decode rows per absorbed pass
  int64_t max_partials = 0;  // (row, split) pairs of the decode split scratch
  int num_sms = 0;
  void* base = nullptr;
  int64_t bytes = 0;

  // Scratch, carved from `base` (element type T = the activation dtype unless noted; the model's
  // sizes: nope + rope 192, kv_lora 512, v 128, rope 64, nope + v 256).
  int32_t* decode_list = nullptr;  // [max_num_tokens]
  void* q_dec = nullptr;           // [decode_group, H, nope + rope]
  void* q_lat = nullptr;           // [decode_group, H, kv_lora]
  void* out_lat = nullptr;         // [decode_group, H, kv_lora]
  void* out_dec = nullptr;         // [decode_group, H * v]
  float* part_acc = nullptr;       // [max_partials, H, kv_lora] fp32
  float* part_ml = nullptr;        // [max_partials, H, 2] fp32
  void* lat = nullptr;             // [chunk_keys, kv_lora]
  void* pe = nullptr;              // [chunk_keys, rope]
  void* kv_up = nullptr;           // [chunk_keys, H * (nope + v)]
  float* acc = nullptr;            // [max_num_tokens, H, v] fp32
  float* ml = nullptr;             // [max_num_tokens, H, 2] fp32

  ~Impl() { cudaFree(base); }

  template <typename T, typename S>
  void cache_write(const MlaCacheWriteCudaParams<T>& p, cudaStream_t stream);
  template <typename T, typename S>
  void attention(GemmRunner& gemm, const MlaAttentionCudaParams<T>& p, cudaStream_t stream);
};

MlaAttentionRunner::MlaAttentionRunner(const MlaDims& dims, int64_t max_num_tokens, bool bf16,
                                       int64_t chunk_keys)
    : impl_(std::make_unique<Impl>()) {
  // Unsupported head geometries throw here, naming the dims.
  with_shape(dims, "MlaAttentionRunner", [](auto shape) {
    using S = decltype(shape);
    set_decode_smem_limit<S>();
    set_prefill_smem_limit<S>();
  });
  KL_CHECK(dims.num_heads > 0 && dims.num_heads <= 65535 && dims.page_size > 0,
           "MlaAttentionRunner: num_heads {} / page_size {} out of range", dims.num_heads,
           dims.page_size);
  KL_CHECK(max_num_tokens > 0 && max_num_tokens <= 0x7fffffff,
           "MlaAttentionRunner: max_num_tokens {} out of range", max_num_tokens);
  if (chunk_keys == 0) chunk_keys = kDefaultChunkKeys;
  KL_CHECK(chunk_keys > 0 && chunk_keys <= (1 << 20),
           "MlaAttentionRunner: chunk_keys {} out of range", chunk_keys);
  Impl& m = *impl_;
  m.dims = dims;
  m.max_num_tokens = max_num_tokens;
  m.bf16 = bf16;
  m.chunk_keys = chunk_keys;
  m.decode_group = std::min(max_num_tokens, kMaxDecodeGroup);
  int device = 0;
  KL_CUDA_CHECK(cudaGetDevice(&device));
  KL_CUDA_CHECK(cudaDeviceGetAttribute(&m.num_sms, cudaDevAttrMultiProcessorCount, device));
  // Splitting keys is only done while rows x head blocks stay below 2 waves (see attention), so
  // rows x splits stays below twice that.
  m.max_partials = 4 * static_cast<int64_t>(m.num_sms);

  const int64_t H = dims.num_heads;
  const int64_t qk_dim = dims.nope + dims.rope, kvb_rows = dims.nope + dims.v_dim;
  const int64_t elt = bf16 ? 2 : 4;
  int64_t offset = 0;
  auto carve = [&](int64_t n) {
    const int64_t at = offset;
    offset += (n + kAlign - 1) / kAlign * kAlign;
    return at;
  };
  const int64_t o_list = carve(max_num_tokens * 4);
  const int64_t o_q_dec = carve(m.decode_group * H * qk_dim * elt);
  const int64_t o_q_lat = carve(m.decode_group * H * dims.kv_lora * elt);
  const int64_t o_out_lat = carve(m.decode_group * H * dims.kv_lora * elt);
  const int64_t o_out_dec = carve(m.decode_group * H * dims.v_dim * elt);
  const int64_t o_part_acc = carve(m.max_partials * H * dims.kv_lora * 4);
  const int64_t o_part_ml = carve(m.max_partials * H * 2 * 4);
  const int64_t o_lat = carve(chunk_keys * dims.kv_lora * elt);
  const int64_t o_pe = carve(chunk_keys * dims.rope * elt);
  const int64_t o_kv_up = carve(chunk_keys * H * kvb_rows * elt);
  const int64_t o_acc = carve(max_num_tokens * H * dims.v_dim * 4);
  const int64_t o_ml = carve(max_num_tokens * H * 2 * 4);
  m.bytes = offset;
  const cudaError_t err = cudaMalloc(&m.base, static_cast<size_t>(m.bytes));
  KL_CHECK(err == cudaSuccess, "MlaAttentionRunner: cudaMalloc of {} MiB of scratch failed: {}",
           m.bytes >> 20, cudaGetErrorString(err));
  char* b = static_cast<char*>(m.base);
  m.decode_list = reinterpret_cast<int32_t*>(b + o_list);
  m.q_dec = b + o_q_dec;
  m.q_lat = b + o_q_lat;
  m.out_lat = b + o_out_lat;
  m.out_dec = b + o_out_dec;
  m.part_acc = reinterpret_cast<float*>(b + o_part_acc);
  m.part_ml = reinterpret_cast<float*>(b + o_part_ml);
  m.lat = b + o_lat;
  m.pe = b + o_pe;
  m.kv_up = b + o_kv_up;
  m.acc = reinterpret_cast<float*>(b + o_acc);
  m.ml = reinterpret_cast<float*>(b + o_ml);
}

MlaAttentionRunner::~MlaAttentionRunner() = default;

int64_t MlaAttentionRunner::workspace_bytes() const {
  return impl_->bytes;
}

template <typename T>
void MlaAttentionRunner::cache_write(const MlaCacheWriteCudaParams<T>& p, CudaStream stream) {
  with_shape(impl_->dims, "mla cache_write",
             [&](auto shape) { impl_->cache_write<T, decltype(shape)>(p, stream); });
}

template <typename T, typename S>
void MlaAttentionRunner::Impl::cache_write(const MlaCacheWriteCudaParams<T>& p,
                                           cudaStream_t stream) {
  constexpr int kLora = S::kLora, kWidth = S::kWidth;
  const MlaDims& d = dims;
  const int64_t stride = p.kv_stride ? p.kv_stride : kWidth;
  KL_CHECK(p.num_tokens >= 0 && p.num_tokens <= 0x7fffffff,
           "mla cache_write: num_tokens {} out of range", p.num_tokens);
  KL_CHECK(stride >= kWidth, "mla cache_write: kv_stride {} below {}", stride, kWidth);
  KL_CHECK(p.norm_weight.numel() == kLora,
           "mla cache_write: kv_a_layernorm weight has {} values, expected {}",
           p.norm_weight.numel(), kLora);
  if (p.num_tokens == 0) return;
  KL_CHECK(p.kv && p.cache && p.slot_mapping && p.norm_weight.data,
           "mla cache_write: null device pointer");
  cache_write_kernel<T, S><<<static_cast<unsigned>(p.num_tokens), kCacheWriteThreads, 0, stream>>>(
      p.kv, stride, p.norm_weight.data, p.norm_weight.dtype, p.slot_mapping, d.kv_norm_eps,
      p.cache);
  KL_CUDA_CHECK_LAUNCH("mla cache_write");
}

template <typename T>
void MlaAttentionRunner::attention(GemmRunner& gemm, const MlaAttentionCudaParams<T>& p,
                                   CudaStream stream) {
  with_shape(impl_->dims, "mla attention",
             [&](auto shape) { impl_->attention<T, decltype(shape)>(gemm, p, stream); });
}

template <typename T, typename S>
void MlaAttentionRunner::Impl::attention(GemmRunner& gemm, const MlaAttentionCudaParams<T>& p,
                                         cudaStream_t stream) {
  constexpr int kNope = S::kNope, kQkDim = S::kQkDim, kVDim = S::kVDim, kLora = S::kLora;
  constexpr int kKvbRows = S::kKvbRows;
  Impl& m = *this;
  const int64_t H = m.dims.num_heads;
  const int64_t page = m.dims.page_size;
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  KL_CHECK(m.bf16 == kBf16, "mla attention: the runner was sized for {} activations",
           m.bf16 ? "bf16" : "fp32");
  KL_CHECK(p.kv_b.dtype == dtype_of<T>(), "mla attention: kv_b dtype {} differs from {}",
           dtype_name(p.kv_b.dtype), dtype_name(dtype_of<T>()));
  KL_CHECK(p.kv_b.rows == H * kKvbRows && p.kv_b.cols == kLora,
           "mla attention: kv_b is [{}, {}], expected [{}, {}]", p.kv_b.rows, p.kv_b.cols,
           H * kKvbRows, kLora);
  KL_CHECK(p.num_tokens >= 0 && p.num_tokens <= m.max_num_tokens,
           "mla attention: num_tokens {} exceeds the runner's {}", p.num_tokens, m.max_num_tokens);
  KL_CHECK(p.num_seqs >= 0 && p.num_seqs <= m.max_num_tokens,
           "mla attention: num_seqs {} out of range", p.num_seqs);
  if (p.num_tokens == 0 || p.num_seqs == 0) return;
  KL_CHECK(p.q && p.cache && p.page_tables && p.seqs && p.seqs_dev && p.out && p.kv_b.data,
           "mla attention: null pointer");
  KL_CHECK(reinterpret_cast<uintptr_t>(p.cache) % 16 == 0,
           "mla attention: the cache must be 16-byte aligned (the kernels read 16-byte vectors)");
  int num_decode = 0;
  int64_t max_decode_keys = 0;
  for (int s = 0; s < p.num_seqs; ++s) {
    const MlaSeqSpan& sp = p.seqs[s];
    KL_CHECK(sp.row_begin >= 0 && sp.num_rows >= 0 && sp.num_computed >= 0 &&
                 int64_t{sp.row_begin} + sp.num_rows <= p.num_tokens,
             "mla attention: sequence {} spans rows [{}, {}) (+{} cached) of {}", s, sp.row_begin,
             int64_t{sp.row_begin} + sp.num_rows, sp.num_computed, p.num_tokens);
    const int64_t keys = int64_t{sp.num_computed} + sp.num_rows;
    KL_CHECK((keys + page - 1) / page <= p.page_table_stride,
             "mla attention: sequence {} needs {} pages, the page table rows hold {}", s,
             (keys + page - 1) / page, p.page_table_stride);
    if (sp.num_rows == 1) {
      ++num_decode;
      max_decode_keys = std::max(max_decode_keys, keys);
    }
  }
  if (p.decode_keys_bound > 0) {
    KL_CHECK(p.decode_keys_bound >= max_decode_keys,
             "mla attention: a decode row has {} keys, beyond decode_keys_bound {}",
             max_decode_keys, p.decode_keys_bound);
    max_decode_keys = p.decode_keys_bound;
  }
  const float scale = 1.f / std::sqrt(static_cast<float>(kQkDim));
  const T* kv_b = static_cast<const T*>(p.kv_b.data);

  if (num_decode > 0) {
    launch_build_decode_list(p.seqs_dev, p.num_seqs, m.decode_list, stream);
    const int64_t head_blocks = (H + kDecodeHeads - 1) / kDecodeHeads;
    const int64_t target_blocks = 2 * static_cast<int64_t>(m.num_sms);
    for (int64_t g0 = 0; g0 < num_decode; g0 += m.decode_group) {
      const int64_t rows = std::min<int64_t>(m.decode_group, num_decode - g0);
      const int32_t* list = m.decode_list + g0;
      T* q_dec = static_cast<T*>(m.q_dec);
      T* q_lat = static_cast<T*>(m.q_lat);
      T* out_lat = static_cast<T*>(m.out_lat);
      T* out_dec = static_cast<T*>(m.out_dec);
      launch_gather_decode_q<T, S>(p.q, p.seqs_dev, list, static_cast<int>(rows),
                                   static_cast<int>(H), q_dec, stream);
      // q_lat[r, h] = W_UK(h)^T q_nope[r, h]: per head, [rows, 128] x [128, 512].
      gemm.batched<T>(per_head_gemm<T, S>(rows, kLora, kNope, H, q_dec, H * kQkDim, kQkDim, kv_b,
                                          false, q_lat, H * kLora, kLora),
                      stream);
      // Split the keys only while the rows alone leave the GPU short of two waves of blocks.
      int64_t splits = 1;
      if (rows * head_blocks < target_blocks) {
        splits = (target_blocks + rows * head_blocks - 1) / (rows * head_blocks);
        splits = std::min(splits, (max_decode_keys + kMinSplitKeys - 1) / kMinSplitKeys);
        splits = std::max<int64_t>(1, std::min(splits, m.max_partials / rows));
      }
      int64_t split_keys = (max_decode_keys + splits - 1) / splits;
      split_keys = (split_keys + kDecodeKeys - 1) / kDecodeKeys * kDecodeKeys;  // whole tiles
      splits = (max_decode_keys + split_keys - 1) / split_keys;
      DecodeAttentionArgs<T> a;
      a.q_lat = q_lat;
      a.q_dec = q_dec;
      a.cache = p.cache;
      a.page_tables = p.page_tables;
      a.page_table_stride = p.page_table_stride;
      a.seqs = p.seqs_dev;
      a.list = list;
      a.num_rows = static_cast<int>(rows);
      a.num_heads = static_cast<int>(H);
      a.page_size = static_cast<int>(page);
      a.scale = scale;
      a.num_splits = static_cast<int>(splits);
      a.split_keys = static_cast<int>(split_keys);
      a.out_lat = out_lat;
      a.part_acc = m.part_acc;
      a.part_ml = m.part_ml;
      launch_decode_attention<T, S>(a, stream);
      // out[r, h] = W_UV(h) out_lat[r, h]: per head, [rows, 512] x [128, 512]^T.
      gemm.batched<T>(per_head_gemm<T, S>(rows, kVDim, kLora, H, out_lat, H * kLora, kLora,
                                          kv_b + kNope * kLora, true, out_dec, H * kVDim, kVDim),
                      stream);
      launch_scatter_decode_out<T, S>(out_dec, p.seqs_dev, list, static_cast<int>(rows),
                                      static_cast<int>(H), p.out, stream);
    }
  }

  // Prefill chunks: up-project chunk_keys keys at a time, each chunk attended by all the rows.
  T* lat = static_cast<T*>(m.lat);
  T* pe = static_cast<T*>(m.pe);
  T* kv_up = static_cast<T*>(m.kv_up);
  for (int s = 0; s < p.num_seqs; ++s) {
    const MlaSeqSpan& sp = p.seqs[s];
    if (sp.num_rows <= 1) continue;
    const int64_t keys = int64_t{sp.num_computed} + sp.num_rows;
    KL_CHECK(keys <= 0x7fffffff, "mla attention: sequence {} has {} keys", s, keys);
    const int32_t* pages = p.page_tables + static_cast<int64_t>(s) * p.page_table_stride;
    for (int64_t c0 = 0; c0 < keys; c0 += m.chunk_keys) {
      const int64_t n = std::min(m.chunk_keys, keys - c0);
      launch_gather_keys<T, S>(p.cache, pages, static_cast<int>(page), static_cast<int>(c0),
                               static_cast<int>(n), lat, pe, stream);
      LinearCudaParams<T> up;
      up.x = lat;
      up.m = n;
      up.w = p.kv_b;
      up.out = kv_up;
      gemm.linear<T>(up, stream);
      PrefillChunkArgs<T> a;
      a.q = p.q + static_cast<int64_t>(sp.row_begin) * H * kQkDim;
      a.num_rows = sp.num_rows;
      a.num_computed = sp.num_computed;
      a.num_heads = static_cast<int>(H);
      a.scale = scale;
      a.kv_up = kv_up;
      a.k_pe = pe;
      a.chunk_begin = static_cast<int>(c0);
      a.chunk_keys = static_cast<int>(n);
      a.first = c0 == 0;
      a.last = c0 + n >= keys;
      a.acc = m.acc + static_cast<int64_t>(sp.row_begin) * H * kVDim;
      a.ml = m.ml + static_cast<int64_t>(sp.row_begin) * H * 2;
      a.out = p.out + static_cast<int64_t>(sp.row_begin) * H * kVDim;
      launch_prefill_chunk<T, S>(a, stream);
    }
  }
}

template void MlaAttentionRunner::cache_write<float>(const MlaCacheWriteCudaParams<float>&,
                                                     CudaStream);
template void MlaAttentionRunner::cache_write<__nv_bfloat16>(
    const MlaCacheWriteCudaParams<__nv_bfloat16>&, CudaStream);
template void MlaAttentionRunner::attention<float>(GemmRunner&,
                                                   const MlaAttentionCudaParams<float>&,
                                                   CudaStream);
template void MlaAttentionRunner::attention<__nv_bfloat16>(
    GemmRunner&, const MlaAttentionCudaParams<__nv_bfloat16>&, CudaStream);

}  // namespace kl::kernels
