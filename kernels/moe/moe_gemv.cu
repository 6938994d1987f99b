// The MoE's GEMMs for decode-sized steps (small tiles: an expert gets a few rows; the router
// for a few tokens): memory-bound, so each weight row is read once per tile with 16-byte loads,
// several in flight, and applied to every row the tile holds. One warp per output column; the
// tile's rows are a prefix of it (the scatter fills each expert's segment from its start), the rest
// is padding (row_pair -1) and is neither read nor written. Same data layout as the tiled kernels
// of moe_grouped_gemm.cu: act by permuted row, y by pair.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/gemm/gemv.cuh"
#include "kernels/moe/moe_cuda_internal.cuh"

namespace kl::kernels::moe_detail {

template <typename T>
void launch_gate_up_gemv(const T* x, const Permutation& perm, int64_t top_k, const T* w1,
                         const T* w3, int64_t inter, int64_t hidden, int64_t max_tiles,
                         bool few_rows, T* act, cudaStream_t stream) {
  gemv::GemvArgs<T, T, T> g;
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
  gemv::launch<T, T, T, kSmallTileM, gemv::Mode::kSwiglu>(g, max_tiles, few_rows, stream,
                                                          "moe gate_up (decode)");
}

template <typename T>
void launch_down_gemv(const T* act, const Permutation& perm, const T* w2, int64_t hidden,
                      int64_t inter, int64_t max_tiles, bool few_rows, T* y, cudaStream_t stream) {
  gemv::GemvArgs<T, T, T> g;
  g.a = act;
  g.row_pair = perm.row_pair;
  g.b0 = w2;
  g.b_expert_stride = hidden * inter;
  g.tile_expert = perm.tile_expert;
  g.num_tiles = perm.num_tiles;
  g.n = hidden;
  g.k = inter;
  g.out = y;
  gemv::launch<T, T, T, kSmallTileM, gemv::Mode::kDown>(g, max_tiles, few_rows, stream,
                                                        "moe down (decode)");
}

template <typename T>
void launch_router_logits_gemv(const T* x, int64_t num_tokens, int64_t hidden, const float* router,
                               int64_t num_experts, float* logits, cudaStream_t stream) {
  if (num_tokens == 0) return;
  gemv::GemvArgs<T, float, float> g;
  g.a = x;
  g.a_stride = hidden;
  g.m = num_tokens;
  g.b0 = router;
  g.n = num_experts;
  g.k = hidden;
  g.out = logits;
  g.out_stride = num_experts;
  gemv::launch<T, float, float, kSmallTileM, gemv::Mode::kRows>(
      g, cuda::ceil_div(num_tokens, kSmallTileM), num_tokens <= 2, stream,
      "moe router_logits (decode)");
}

#define KL_MOE_GEMV_INSTANTIATE(T)                                                                \
  template void launch_gate_up_gemv<T>(const T*, const Permutation&, int64_t, const T*, const T*, \
                                       int64_t, int64_t, int64_t, bool, T*, cudaStream_t);        \
  template void launch_down_gemv<T>(const T*, const Permutation&, const T*, int64_t, int64_t,     \
                                    int64_t, bool, T*, cudaStream_t);                             \
  template void launch_router_logits_gemv<T>(const T*, int64_t, int64_t, const float*, int64_t,   \
                                             float*, cudaStream_t);
KL_MOE_GEMV_INSTANTIATE(float)
KL_MOE_GEMV_INSTANTIATE(__nv_bfloat16)
#undef KL_MOE_GEMV_INSTANTIATE

}  // namespace kl::kernels::moe_detail
