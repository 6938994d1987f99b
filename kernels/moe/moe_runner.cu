// MoeRunner: owns the routed MoE's scratch (one allocation, carved up front) and chains the
// kernels: router logits -> top-k + counts -> padded segments -> scatter -> gate/up + SwiGLU ->
// down -> weighted combine. All sizes that depend on the routing stay on the device; grids are
// sized from the host-known upper bounds, and tiles past the device's tile count exit at once.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/moe/moe_cuda.h"
#include "kernels/moe/moe_cuda_internal.cuh"

namespace kl::kernels {

using namespace moe_detail;

namespace {

constexpr size_t kAlign = 256;

size_t align_up(size_t v) {
  return (v + kAlign - 1) / kAlign * kAlign;
}

// Padded rows of the permutation: every pair, plus at most tile_m - 1 padding rows per expert.
int64_t padded_rows(int64_t num_tokens, int64_t top_k, int64_t num_experts, int tile_m) {
  return num_tokens * top_k + num_experts * (tile_m - 1);
}

// Small tiles while the experts get few rows each (decode), large ones once they average 16+.
int choose_tile_m(int64_t num_tokens, int64_t top_k, int64_t num_experts) {
  return num_tokens * top_k >= 16 * num_experts ? kLargeTileM : kSmallTileM;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

struct MoeRunner::Impl {
  MoeDims dims;
  int64_t max_tokens = 0;
  bool bf16 = false;
  size_t bytes = 0;
  void* arena = nullptr;
  int64_t max_rows = 0;  // over both tile sizes

  float* logits = nullptr;      // [max_tokens, E] fp32
  int32_t* ids = nullptr;       // [max_tokens, top_k]
  float* weights = nullptr;     // [max_tokens, top_k]
  int32_t* counters = nullptr;  // counts [E], fill [E]: zeroed by one memset per run
  Permutation perm;
  void* act = nullptr;  // [max_rows, inter] T: SwiGLU output, rounded to T
  void* y = nullptr;    // [max_tokens * top_k, hidden] T: expert outputs by pair, rounded to T
};

MoeRunner::MoeRunner(const MoeDims& d, int64_t max_num_tokens, bool bf16)
    : impl_(std::make_unique<Impl>()) {
  KL_CHECK(d.hidden > 0 && d.inter > 0, "MoeRunner: hidden {} / inter {} must be positive",
           d.hidden, d.inter);
  KL_CHECK(d.hidden % kTileK == 0 && d.inter % kTileK == 0,
           "MoeRunner: hidden {} and inter {} must be multiples of {}", d.hidden, d.inter, kTileK);
  KL_CHECK(d.num_experts > 0 && d.num_experts <= kMaxExperts, "MoeRunner: {} experts (1..{})",
           d.num_experts, kMaxExperts);
  KL_CHECK(d.top_k > 0 && d.top_k <= d.num_experts, "MoeRunner: top_k {} of {} experts", d.top_k,
           d.num_experts);
  KL_CHECK(d.num_groups > 0 && d.num_experts % d.num_groups == 0 && d.topk_groups > 0 &&
               d.topk_groups <= d.num_groups &&
               d.topk_groups * (d.num_experts / d.num_groups) >= d.top_k,
           "MoeRunner: groups {} / topk_groups {} do not fit {} experts and top_k {}", d.num_groups,
           d.topk_groups, d.num_experts, d.top_k);
  KL_CHECK(max_num_tokens > 0, "MoeRunner: max_num_tokens {} must be positive", max_num_tokens);
  KL_CHECK(max_num_tokens * d.top_k + d.num_experts * kLargeTileM <= 0x7fffffff,
           "MoeRunner: {} tokens x top_k {} overflow the 32-bit row index", max_num_tokens,
           d.top_k);
  Impl& m = *impl_;
  m.dims = d;
  m.max_tokens = max_num_tokens;
  m.bf16 = bf16;
  const int64_t E = d.num_experts, K = d.top_k;
  const size_t elem = bf16 ? 2 : 4;
  m.max_rows = padded_rows(max_num_tokens, K, E, kLargeTileM);
  const int64_t max_tiles =
      cuda::ceil_div(padded_rows(max_num_tokens, K, E, kSmallTileM), kSmallTileM);
  // Carve the arena: (pointer slot, bytes) in order.
  size_t off = 0;
  auto take = [&](size_t n) {
    const size_t at = off;
    off = align_up(off + n);
    return at;
  };
  const size_t o_logits = take(max_num_tokens * E * sizeof(float));
  const size_t o_ids = take(max_num_tokens * K * sizeof(int32_t));
  const size_t o_weights = take(max_num_tokens * K * sizeof(float));
  const size_t o_counters = take((2 * E + 1) * sizeof(int32_t));
  const size_t o_offsets = take(E * sizeof(int32_t));
  const size_t o_tile_expert = take(max_tiles * sizeof(int32_t));
  const size_t o_row_pair = take(m.max_rows * sizeof(int32_t));
  const size_t o_act = take(m.max_rows * d.inter * elem);
  const size_t o_y = take(max_num_tokens * K * d.hidden * elem);
  m.bytes = off;
  KL_CUDA_CHECK(cudaMalloc(&m.arena, m.bytes));
  char* base = static_cast<char*>(m.arena);
  m.logits = reinterpret_cast<float*>(base + o_logits);
  m.ids = reinterpret_cast<int32_t*>(base + o_ids);
  m.weights = reinterpret_cast<float*>(base + o_weights);
  m.counters = reinterpret_cast<int32_t*>(base + o_counters);
  m.perm.counts = m.counters;
  m.perm.fill = m.counters + E;
  m.perm.num_tiles = m.counters + 2 * E;
  m.perm.offsets = reinterpret_cast<int32_t*>(base + o_offsets);
  m.perm.tile_expert = reinterpret_cast<int32_t*>(base + o_tile_expert);
  m.perm.row_pair = reinterpret_cast<int32_t*>(base + o_row_pair);
  m.act = base + o_act;
  m.y = base + o_y;
}

MoeRunner::~MoeRunner() {
  if (impl_ && impl_->arena) cudaFree(impl_->arena);
}

int64_t MoeRunner::workspace_bytes() const {
  return static_cast<int64_t>(impl_->bytes);
}

template <typename T>
void MoeRunner::run(GemmRunner& /*gemm: the router GEMM is the MoE's own fp32 kernel*/,
                    const MoeCudaParams<T>& p, CudaStream stream) {
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  constexpr DType kDType = kBf16 ? DType::kBF16 : DType::kF32;
  const Impl& m = *impl_;
  const MoeDims& d = m.dims;
  const int64_t E = d.num_experts, K = d.top_k, T_ = p.num_tokens;
  KL_CHECK(kBf16 == m.bf16, "MoeRunner::run: activation type {} but the runner was built for {}",
           kBf16 ? "bf16" : "f32", m.bf16 ? "bf16" : "f32");
  KL_CHECK(T_ >= 0 && T_ <= m.max_tokens, "MoeRunner::run: {} tokens, at most {}", T_,
           m.max_tokens);
  auto check_stack = [&](const StackedWeights& w, int64_t rows, int64_t cols, const char* name) {
    KL_CHECK(w.data && w.num == E && w.rows == rows && w.cols == cols,
             "MoeRunner::run: {} is [{}, {}, {}], expected [{}, {}, {}]", name, w.num, w.rows,
             w.cols, E, rows, cols);
    KL_CHECK(w.dtype == kDType, "MoeRunner::run: {} is {}, expected the activation dtype {}", name,
             dtype_name(w.dtype), dtype_name(kDType));
    KL_CHECK(aligned16(w.data), "MoeRunner::run: {} is not 16-byte aligned", name);
  };
  check_stack(p.w1, d.inter, d.hidden, "w1 (gate)");
  check_stack(p.w3, d.inter, d.hidden, "w3 (up)");
  check_stack(p.w2, d.hidden, d.inter, "w2 (down)");
  KL_CHECK(!p.correction_bias.data || p.correction_bias.numel() == E,
           "MoeRunner::run: correction_bias has {} values, expected {}", p.correction_bias.numel(),
           E);
  if (T_ == 0) return;
  KL_CHECK(p.x && p.router && p.out, "MoeRunner::run: null x, router or out");
  // The GEMMs read 4 consecutive values per load: rows (hidden a multiple of 16) stay aligned.
  KL_CHECK(aligned16(p.x) && aligned16(p.router) && aligned16(p.router_x),
           "MoeRunner::run: x, router_x or router not 16-byte aligned");

  const int tile_m = choose_tile_m(T_, K, E);
  const int64_t rows_bound = padded_rows(T_, K, E, tile_m);
  const int64_t tiles_bound = cuda::ceil_div(rows_bound, tile_m);
  T* act = static_cast<T*>(m.act);
  T* y = static_cast<T*>(m.y);

  if (p.router_x)
    launch_router_logits<float>(p.router_x, T_, d.hidden, p.router, E, m.logits, stream);
  else
    launch_router_logits<T>(p.x, T_, d.hidden, p.router, E, m.logits, stream);
  KL_CUDA_CHECK(cudaMemsetAsync(m.counters, 0, (2 * E + 1) * sizeof(int32_t), stream));
  KL_CUDA_CHECK(cudaMemsetAsync(m.perm.row_pair, 0xff, rows_bound * sizeof(int32_t), stream));
  RouterTopkArgs r;
  r.logits = m.logits;
  r.bias = p.correction_bias;
  r.num_tokens = T_;
  r.num_experts = E;
  r.top_k = K;
  r.num_groups = d.num_groups;
  r.topk_groups = d.topk_groups;
  r.renormalize = d.renormalize;
  r.routed_scaling = d.routed_scaling;
  r.ids = m.ids;
  r.weights = m.weights;
  r.ids_copy = p.expert_ids;
  r.weights_copy = p.expert_weights;
  r.counts = m.perm.counts;
  launch_router_topk(r, stream);
  launch_build_segments(m.perm, E, tile_m, stream);
  launch_scatter_pairs(m.perm, m.ids, T_ * K, stream);
  const T* w1 = static_cast<const T*>(p.w1.data);
  const T* w3 = static_cast<const T*>(p.w3.data);
  const T* w2 = static_cast<const T*>(p.w2.data);
  // Every used tile holds at least one pair: a tighter grid than the padded bound (which counts
  // E partly empty segments: 241 small tiles for one token of the real model, 8 used).
  const int64_t used_bound = std::min<int64_t>(T_ * K, tiles_bound);
  const bool few_rows = T_ * K <= E;  // about one row per used expert
  launch_gate_up<T>(p.x, m.perm, K, w1, w3, d.inter, d.hidden, used_bound, tile_m, few_rows, act,
                    stream);
  launch_down<T>(act, m.perm, w2, d.hidden, d.inter, used_bound, tile_m, few_rows, y, stream);
  launch_combine<T>(y, m.weights, T_, K, d.hidden, p.out, stream);
}

template void MoeRunner::run<float>(GemmRunner&, const MoeCudaParams<float>&, CudaStream);
template void MoeRunner::run<__nv_bfloat16>(GemmRunner&, const MoeCudaParams<__nv_bfloat16>&,
                                            CudaStream);

}  // namespace kl::kernels
