// The forward pass on the GPU: the same sequence of ops as cpu_forward.cpp (spec 3.1-3.5), each on
// its CUDA kernel, over a varlen batch. Row-wise ops run over all of the step's rows at once;
// short conv, KDA and MLA attention take the batch's varlen metadata. The residual adds are fused
// into the next RMSNorm (h += delta; normed = norm(h)); the residual stream h is fp32 under both
// activation types.
#include "engine/exec/cuda/cuda_forward.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "engine/core/error.h"
#include "kernels/activation/silu_mul_cuda.h"
#include "kernels/conv/short_conv_cuda.h"
#include "kernels/cuda/copy_cuda.h"
#include "kernels/embedding/embedding_cuda.h"
#include "kernels/gemm/gemm_cuda.h"
#include "kernels/kda/kda_cuda.h"
#include "kernels/kda/kda_gate_cuda.h"
#include "kernels/mla/mla_cuda.h"
#include "kernels/moe/moe_cuda.h"
#include "kernels/norm/rmsnorm_cuda.h"

namespace kl {
namespace {

using namespace kl::kernels;

// A device allocation owned by the forward pass.
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(int64_t bytes) : bytes_(bytes) {
    const cudaError_t e = cudaMalloc(&p_, static_cast<size_t>(std::max<int64_t>(bytes, 1)));
    KL_CHECK(e == cudaSuccess, "cannot allocate {:.1f} MiB of GPU memory for activations: {}",
             bytes / 1048576.0, cudaGetErrorString(e));
  }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  int64_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  int64_t bytes_ = 0;
};

MlaDims mla_dims(const ModelConfig& c) {
  MlaDims d;
  d.num_heads = c.num_attention_heads;
  d.nope = c.qk_nope_head_dim;
  d.rope = c.qk_rope_head_dim;
  d.v_dim = c.v_head_dim;
  d.kv_lora = c.kv_lora_rank;
  d.page_size = kPageSize;
  d.kv_norm_eps = ModelConfig::kKvNormEps;
  return d;
}

MoeDims moe_dims(const ModelConfig& c) {
  MoeDims d;
  d.hidden = c.hidden_size;
  d.inter = c.moe_intermediate_size;
  d.num_experts = c.num_experts;
  d.top_k = c.num_experts_per_token;
  d.num_groups = c.num_expert_group;
  d.topk_groups = c.topk_group;
  d.renormalize = c.moe_renormalize;
  d.routed_scaling = c.routed_scaling_factor;
  return d;
}

// T: the activation type. The residual stream h_ is fp32 for both: under bf16 activations the
// hidden state between layers stays in fp32 and the MoE router reads the post-attention norm's
// fp32 output (normed_f32_). Both cost little (a few KB per token) and halve the logits' error
// against the fp32 reference: HF's bf16 run rounds the residual to bf16 at each of the twelve
// adds, and router gaps of a few 1e-3 (bf16 noise) then flip experts (README, section "GPU").
template <typename T>
class Forward final : public CudaForward {
 public:
  Forward(const ModelConfig& c, const DeviceModel& m, const ForwardLimits& limits)
      : c_(c), m_(m), w_(m.weights()), limits_(limits) {
    const int64_t N = std::max<int64_t>(limits.max_tokens, 1);
    const int64_t D = c.hidden_size, HK = c.kda_dim(), H = c.kda_num_heads;
    const int64_t act = sizeof(T);
    auto alloc = [&](int64_t elems, int64_t elem_bytes) {
      arrays_.emplace_back(elems * elem_bytes);
      return arrays_.back().template as<char>();
    };
    arrays_.reserve(32);
    h_ = reinterpret_cast<float*>(alloc(N * D, 4));
    normed_ = reinterpret_cast<T*>(alloc(N * D, act));
    delta_ = reinterpret_cast<T*>(alloc(N * D, act));
    if (c.plan.num_kda_layers > 0) {
      // q, k, v, f_a and g_a of one fused GEMM (DeviceFusedLayer::kda_in_proj).
      kda_in_cols_ = 3 * HK + 2 * c.kda_head_dim;
      kda_in_ = reinterpret_cast<T*>(alloc(N * kda_in_cols_, act));
      for (int p = 0; p < 3; ++p) conv_[p] = reinterpret_cast<T*>(alloc(N * HK, act));
      fz_ = reinterpret_cast<T*>(alloc(N * HK, act));
      g_ = reinterpret_cast<float*>(alloc(N * HK, 4));
      braw_ = reinterpret_cast<T*>(alloc(N * H, act));
      beta_ = reinterpret_cast<float*>(alloc(N * H, 4));
      o_ = reinterpret_cast<T*>(alloc(N * HK, act));
    }
    if (c.plan.num_mla_layers > 0) {
      q_ = reinterpret_cast<T*>(alloc(N * c.num_attention_heads * c.mla_q_head_dim(), act));
      kv_ = reinterpret_cast<T*>(alloc(N * c.mla_cache_dim(), act));
      attn_ = reinterpret_cast<T*>(alloc(N * c.num_attention_heads * c.v_head_dim, act));
      mla_ = std::make_unique<MlaAttentionRunner>(mla_dims(c), N, act == 2);
    }
    bool any_moe = false;
    for (const LayerSpec& l : c.plan.layers) any_moe |= l.ffn == FfnKind::kMoe;
    int64_t inter = 0;
    for (const LayerSpec& l : c.plan.layers)
      inter = std::max(
          inter, l.ffn == FfnKind::kDense ? c.intermediate_size : c.shared_intermediate_size());
    // gate | up of one fused GEMM, per row; SwiGLU writes into the gate half.
    ffn_gate_up_ = reinterpret_cast<T*>(alloc(N * 2 * std::max<int64_t>(inter, 1), act));
    if (any_moe) moe_ = std::make_unique<MoeRunner>(moe_dims(c), N, act == 2);
    if (any_moe && act != 4) normed_f32_ = reinterpret_cast<float*>(alloc(N * D, 4));
    const int64_t rows = std::max<int64_t>(limits.max_logit_rows, 1);
    rows_h_ = reinterpret_cast<float*>(alloc(rows * D, 4));
    rows_d_ = reinterpret_cast<T*>(alloc(rows * D, act));
    logits_t_ = reinterpret_cast<T*>(alloc(rows * c.vocab_size, act));
    logits_ = act == 4 ? reinterpret_cast<float*>(logits_t_)
                       : reinterpret_cast<float*>(alloc(rows * c.vocab_size, 4));
  }

  int64_t workspace_bytes() const override {
    int64_t total = 0;
    for (const DeviceArray& a : arrays_) total += a.bytes();
    if (mla_) total += mla_->workspace_bytes();
    if (moe_) total += moe_->workspace_bytes();
    return total;
  }

  void run_layers(const StepBatch& b, DeviceCaches& caches, CudaStream s) override {
    KL_CHECK(b.num_tokens <= limits_.max_tokens, "step of {} tokens exceeds the limit of {}",
             b.num_tokens, limits_.max_tokens);
    N_ = b.num_tokens;
    if (N_ == 0) return;
    {
      auto scope = prof_.scope(KernelClass::kOther, s);
      embedding_cuda<float>(
          {.token_ids = b.d_token_ids, .num_tokens = N_, .table = w_.embed_tokens, .out = h_}, s);
    }
    bool first = true;
    for (const LayerSpec& layer : c_.plan.layers) {
      const LayerWeights& lw = w_.layers[layer.index];
      // h += delta (the previous layer's FFN output; none before the first layer);
      // normed = input_layernorm(h).
      norm(first ? nullptr : delta_, h_, lw.input_layernorm, N_, normed_, s);
      first = false;
      if (layer.mixer == MixerKind::kKda)
        kda_mixer(b, caches, layer, lw.kda, s);
      else
        mla_mixer(b, caches, layer, lw.mla, s);
      norm(delta_, h_, lw.post_attention_layernorm, N_, normed_, s,
           layer.ffn == FfnKind::kMoe ? normed_f32_ : nullptr);
      if (layer.ffn == FfnKind::kDense)
        dense_ffn(lw.dense, m_.fused(layer.index).gate_up_proj, normed_, delta_, false, s);
      else
        moe_ffn(layer, lw.moe, s);
    }
  }

  void compute_logits(const int32_t* d_rows, int64_t count, CudaStream s) override {
    KL_CHECK(count <= limits_.max_logit_rows, "{} logit rows exceed the limit of {}", count,
             limits_.max_logit_rows);
    if (count == 0) return;
    const int64_t D = c_.hidden_size;
    // The last layer's residual add and the final norm, on the chosen rows only.
    {
      auto scope = prof_.scope(KernelClass::kOther, s);
      gather_rows_cuda<float>({.src = h_,
                               .src_stride = D,
                               .rows = d_rows,
                               .num_rows = count,
                               .cols = D,
                               .dst = rows_h_},
                              s);
      gather_rows_cuda<T>({.src = delta_,
                           .src_stride = D,
                           .rows = d_rows,
                           .num_rows = count,
                           .cols = D,
                           .dst = rows_d_},
                          s);
    }
    norm(rows_d_, rows_h_, w_.final_norm, count, rows_d_, s);
    linear(rows_d_, count, w_.lm_head, logits_t_, s);
    auto scope = prof_.scope(KernelClass::kOther, s);
    if (sizeof(T) != 4)
      convert_cuda(logits_t_, DType::kBF16, logits_, DType::kF32, count * c_.vocab_size, s);
  }

  const float* logits() const override { return logits_; }
  KernelProfiler& profiler() override { return prof_; }

 private:
  void norm(const T* x, float* residual, const WeightView& w, int64_t rows, T* out, CudaStream s,
            float* out_f32 = nullptr) {
    RmsNormCudaParams<T, float> p;
    p.x = x;
    p.residual = residual;
    p.weight = w;
    p.eps = c_.rms_norm_eps;
    p.num_rows = rows;
    p.dim = c_.hidden_size;
    p.out = out;
    p.out_f32 = out_f32;
    auto scope = prof_.scope(KernelClass::kNorm, s);
    rmsnorm_cuda<T>(p, s);
  }

  void linear(const T* x, int64_t m, const WeightView& w, T* out, CudaStream s,
              bool accumulate = false, int64_t x_stride = 0) {
    auto scope = prof_.scope(KernelClass::kDenseGemm, s);
    gemm_.linear<T>({.x = x,
                     .m = m,
                     .x_stride = x_stride,
                     .w = w,
                     .out = out,
                     .out_stride = 0,
                     .accumulate = accumulate},
                    s);
  }

  void kda_mixer(const StepBatch& b, DeviceCaches& caches, const LayerSpec& layer,
                 const KdaWeights& w, CudaStream s) {
    const int64_t H = c_.kda_num_heads, K = c_.kda_head_dim, HK = H * K;
    // One GEMM for q, k, v, f_a and g_a: row t of kda_in_ is [q | k | v | f_a | g_a].
    const WeightView& in_proj = m_.fused(layer.index).kda_in_proj;
    KL_CHECK(in_proj.rows == kda_in_cols_, "fused KDA input projection has {} rows, expected {}",
             in_proj.rows, kda_in_cols_);
    linear(normed_, N_, in_proj, kda_in_, s);
    const T* f_low = kda_in_ + 3 * HK;
    const T* g_low = f_low + K;
    const WeightView* conv_w[3] = {&w.q_conv, &w.k_conv, &w.v_conv};
    T* windows = static_cast<T*>(caches.kda_windows(layer.kda_index));
    for (int p = 0; p < 3; ++p) {
      ShortConvCudaParams<T> cp;
      cp.x = kda_in_ + p * HK;
      cp.x_stride = kda_in_cols_;
      cp.num_tokens = N_;
      cp.dim = HK;
      cp.num_seqs = b.num_seqs;
      cp.cu_seqlens = b.d_cu_seqlens;
      cp.state_blocks = b.d_state_blocks;
      cp.max_seqlen = b.max_len_all;
      cp.kernel_size = c_.short_conv_kernel_size;
      cp.weight = *conv_w[p];
      cp.windows = windows + p * caches.window_values();
      cp.window_block_stride = caches.window_block_stride();
      cp.apply_silu = true;
      cp.out = conv_[p];
      auto scope = prof_.scope(KernelClass::kKda, s);
      short_conv_cuda<T>(cp, s);
    }
    {
      auto scope = prof_.scope(KernelClass::kKda, s);
      l2norm_rows_cuda<T>(conv_[0], N_ * H, K, ModelConfig::kQkL2Eps, 1.f, s);
      l2norm_rows_cuda<T>(conv_[1], N_ * H, K, ModelConfig::kQkL2Eps, 1.f, s);
    }

    linear(f_low, N_, w.f_b_proj, fz_, s, false, kda_in_cols_);
    KdaGateCudaParams<T> gp;
    gp.f = fz_;
    gp.a_log = w.a_log;
    gp.dt_bias = w.dt_bias;
    gp.num_tokens = N_;
    gp.num_heads = H;
    gp.head_dim = K;
    gp.has_lower_bound = c_.has_gate_lower_bound;
    gp.lower_bound = c_.gate_lower_bound;
    gp.g = g_;
    linear(normed_, N_, w.b_proj, braw_, s);
    {
      auto scope = prof_.scope(KernelClass::kKda, s);
      kda_gate_cuda<T>(gp, s);
      kda_beta_cuda<T>(braw_, N_ * H, beta_, s);
    }

    KdaCudaParams<T> kp;
    kp.num_heads = H;
    kp.head_k = K;
    kp.head_v = K;
    kp.scale = 1.f / std::sqrt(static_cast<float>(K));
    kp.states = caches.kda_states(layer.kda_index);
    if (b.num_recurrent > 0) {
      kp.q = conv_[0];
      kp.k = conv_[1];
      kp.v = conv_[2];
      kp.g = g_;
      kp.beta = beta_;
      kp.num_tokens = b.recurrent_tokens;
      kp.num_seqs = b.num_recurrent;
      kp.cu_seqlens = b.d_cu_seqlens;  // the recurrent group is the batch's prefix
      kp.state_blocks = b.d_state_blocks;
      kp.max_seqlen = b.max_len_recurrent;
      kp.out = o_;
      auto scope = prof_.scope(KernelClass::kKda, s);
      kda_recurrent_cuda<T>(kp, s);
    }
    if (b.num_recurrent < b.num_seqs) {
      const int64_t r0 = b.recurrent_tokens;
      kp.q = conv_[0] + r0 * HK;
      kp.k = conv_[1] + r0 * HK;
      kp.v = conv_[2] + r0 * HK;
      kp.g = g_ + r0 * HK;
      kp.beta = beta_ + r0 * H;
      kp.num_tokens = N_ - r0;
      kp.num_seqs = b.num_seqs - b.num_recurrent;
      kp.cu_seqlens = b.d_cu_chunked;
      kp.state_blocks = b.d_state_blocks + b.num_recurrent;
      kp.max_seqlen = b.max_len_chunked;
      kp.out = o_ + r0 * HK;
      auto scope = prof_.scope(KernelClass::kKda, s);
      kda_chunked_cuda<T>(kp, s);
    }

    linear(g_low, N_, w.g_b_proj, fz_, s, false, kda_in_cols_);
    GatedRmsNormCudaParams<T> np;
    np.x = o_;
    np.gate = fz_;
    np.weight = w.o_norm;
    np.eps = c_.rms_norm_eps;
    np.num_rows = N_ * H;
    np.dim = K;
    np.out = o_;
    {
      auto scope = prof_.scope(KernelClass::kKda, s);
      gated_rmsnorm_cuda<T>(np, s);
    }
    linear(o_, N_, w.o_proj, delta_, s);
  }

  void mla_mixer(const StepBatch& b, DeviceCaches& caches, const LayerSpec& layer,
                 const MlaWeights& w, CudaStream s) {
    linear(normed_, N_, w.q_proj, q_, s);
    linear(normed_, N_, w.kv_a_proj_with_mqa, kv_, s);
    T* cache = static_cast<T*>(caches.mla_layer(layer.mla_index));
    MlaCacheWriteCudaParams<T> wp;
    wp.kv = kv_;
    wp.kv_stride = c_.mla_cache_dim();
    wp.norm_weight = w.kv_a_layernorm;
    wp.slot_mapping = b.d_slot_mapping;
    wp.num_tokens = N_;
    wp.cache = cache;
    {
      auto scope = prof_.scope(KernelClass::kMla, s);
      mla_->cache_write<T>(wp, s);
    }
    MlaAttentionCudaParams<T> ap;
    ap.q = q_;
    ap.num_tokens = N_;
    ap.kv_b = w.kv_b_proj;
    ap.cache = cache;
    ap.num_pages = caches.num_pages();
    ap.page_tables = b.d_page_tables;
    ap.page_table_stride = b.page_table_stride;
    ap.seqs = b.spans.data();
    ap.seqs_dev = b.d_spans;
    ap.num_seqs = b.num_seqs;
    ap.out = attn_;
    ap.decode_keys_bound = b.decode_keys_bound;
    {
      auto scope = prof_.scope(KernelClass::kMla, s);
      mla_->attention<T>(gemm_, ap, s);
    }
    linear(attn_, N_, w.o_proj, delta_, s);
  }

  // out (+)= down(silu(gate x) * up x), gate and up from one GEMM (gate_up: [2 inter, hidden]).
  void dense_ffn(const DenseFfnWeights& w, const WeightView& gate_up, const T* x, T* out,
                 bool accumulate, CudaStream s) {
    const int64_t inter = w.gate_proj.rows;
    KL_CHECK(gate_up.rows == 2 * inter, "fused gate/up projection has {} rows, expected {}",
             gate_up.rows, 2 * inter);
    linear(x, N_, gate_up, ffn_gate_up_, s);
    {
      auto scope = prof_.scope(KernelClass::kOther, s);
      silu_mul_cuda<T>({.gate = ffn_gate_up_,
                        .up = ffn_gate_up_ + inter,
                        .rows = N_,
                        .cols = inter,
                        .in_stride = 2 * inter,
                        .out = ffn_gate_up_,
                        .out_stride = 2 * inter},
                       s);
    }
    linear(ffn_gate_up_, N_, w.down_proj, out, s, accumulate, 2 * inter);
  }

  void moe_ffn(const LayerSpec& layer, const MoeWeights& w, CudaStream s) {
    const DeviceMoeLayer& experts = m_.moe(layer.index);
    MoeCudaParams<T> p;
    p.x = normed_;
    p.router_x = normed_f32_;
    p.num_tokens = N_;
    p.router = static_cast<const float*>(w.router.data);
    p.correction_bias = w.correction_bias;
    p.w1 = experts.w1;
    p.w3 = experts.w3;
    p.w2 = experts.w2;
    p.out = delta_;
    {
      auto scope = prof_.scope(KernelClass::kMoe, s);
      moe_->run<T>(gemm_, p, s);
    }
    if (w.has_shared)
      dense_ffn(w.shared, m_.fused(layer.index).gate_up_proj, normed_, delta_, true, s);
  }

  const ModelConfig& c_;
  const DeviceModel& m_;
  const ModelWeights& w_;
  ForwardLimits limits_;
  GemmRunner gemm_;
  KernelProfiler prof_;
  std::unique_ptr<MlaAttentionRunner> mla_;
  std::unique_ptr<MoeRunner> moe_;
  std::vector<DeviceArray> arrays_;
  int64_t N_ = 0;
  float* h_ = nullptr;
  T *normed_ = nullptr, *delta_ = nullptr;
  float* normed_f32_ = nullptr;
  T* kda_in_ = nullptr;
  int64_t kda_in_cols_ = 0;
  T* conv_[3] = {};
  T *fz_ = nullptr, *braw_ = nullptr, *o_ = nullptr;
  float *g_ = nullptr, *beta_ = nullptr;
  T *q_ = nullptr, *kv_ = nullptr, *attn_ = nullptr;
  T* ffn_gate_up_ = nullptr;
  float* rows_h_ = nullptr;
  T *rows_d_ = nullptr, *logits_t_ = nullptr;
  float* logits_ = nullptr;
};

}  // namespace

std::unique_ptr<CudaForward> CudaForward::create(const ModelConfig& config,
                                                 const DeviceModel& model,
                                                 const ForwardLimits& limits) {
  if (model.activation() == DType::kF32)
    return std::make_unique<Forward<float>>(config, model, limits);
  return std::make_unique<Forward<__nv_bfloat16>>(config, model, limits);
}

}  // namespace kl
