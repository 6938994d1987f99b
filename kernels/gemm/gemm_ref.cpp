// CPU twin of the weight GEMM: out[m, n] = sum_k x[m, k] * w[n, k] in fp32.
// Every output element is one call of the same out-of-line dot product (detail::dot_f32's fixed
// order), so a row's result does not depend on m, on x_stride or on the tiling.
#include "kernels/gemm/gemm.h"

#include <algorithm>
#include <vector>

#include "engine/core/error.h"
#include "kernels/gemm/ref_dot.h"

namespace kl::kernels {
namespace {

// Target size of the fp32 weight tile: small enough to stay in a per-core L2 cache while every x
// row of the batch is multiplied by it (the x row itself stays in L1 across the tile).
constexpr int64_t kTileBytes = 192 * 1024;

// noinline: a single code path computes every output element, so no compiler decision (inlining,
// FMA contraction) can differ between calls made for different m or tiles.
[[gnu::noinline]] float gemm_dot(const float* x, const float* w, int64_t k) {
  return detail::dot_f32(x, w, k);
}

}  // namespace

void gemm_ref(const GemmParams& p) {
  const WeightView& w = p.w;
  const int64_t n = w.rows;
  const int64_t k = w.cols;
  const int64_t x_stride = p.x_stride ? p.x_stride : k;
  const int64_t out_stride = p.out_stride ? p.out_stride : n;
  KL_CHECK(p.m >= 0 && n >= 0 && k >= 0, "gemm_ref: negative shape m={} n={} k={}", p.m, n, k);
  KL_CHECK(x_stride >= k && out_stride >= n, "gemm_ref: strides x={} out={} below k={} n={}",
           x_stride, out_stride, k, n);
  if (p.m == 0 || n == 0) return;
  KL_CHECK(p.x && p.out && (w.data || k == 0), "gemm_ref: null pointer");

  const int64_t row_bytes = std::max<int64_t>(1, k * int64_t(sizeof(float)));
  const int64_t tile_rows = std::clamp<int64_t>(kTileBytes / row_bytes, 1, n);

  // f32 weights are read in place; bf16/f16 rows are converted once per tile (and so once per
  // call): converting inside the dot product would redo it for every x row.
  const bool convert = w.dtype != DType::kF32;
  std::vector<float> tile(convert ? size_t(tile_rows * k) : 0);

  for (int64_t n0 = 0; n0 < n; n0 += tile_rows) {
    const int64_t nt = std::min(tile_rows, n - n0);
    const float* wt = static_cast<const float*>(w.data) + n0 * k;
    if (convert) {
      detail::weight_rows_to_f32(w, n0, nt, tile.data());
      wt = tile.data();
    }
    for (int64_t r = 0; r < p.m; ++r) {
      const float* xr = p.x + r * x_stride;
      float* outr = p.out + r * out_stride + n0;
      if (p.accumulate) {
        for (int64_t j = 0; j < nt; ++j) outr[j] += gemm_dot(xr, wt + j * k, k);
      } else {
        for (int64_t j = 0; j < nt; ++j) outr[j] = gemm_dot(xr, wt + j * k, k);
      }
    }
  }
}

}  // namespace kl::kernels
