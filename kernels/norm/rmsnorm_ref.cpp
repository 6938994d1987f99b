// CPU twins of RMSNorm (optionally fused with the residual add) and of KDA's sigmoid-gated
// per-head RMSNorm. fp32 throughout; one row at a time, so rows are independent of the batch.
#include "kernels/norm/rmsnorm.h"

#include <cmath>
#include <vector>

#include "engine/core/error.h"
#include "kernels/gemm/ref_dot.h"

namespace kl::kernels {
namespace {

// 1 / sqrt(mean(v^2) + eps). The sum of squares uses dot_f32's fixed order.
float inv_rms(const float* v, int64_t dim, float eps) {
  const float mean_sq = detail::dot_f32(v, v, dim) / static_cast<float>(dim);
  return 1.f / std::sqrt(mean_sq + eps);
}

std::vector<float> weight_f32(const WeightView& w, int64_t dim, const char* what) {
  KL_CHECK(w.data && w.numel() == dim, "{}: weight has {} values, expected dim {}", what, w.numel(),
           dim);
  std::vector<float> out(dim);
  for (int64_t i = 0; i < dim; ++i) out[i] = w.at(i);
  return out;
}

}  // namespace

void rmsnorm_ref(const RmsNormParams& p) {
  if (p.num_rows == 0) return;
  const std::vector<float> w = weight_f32(p.weight, p.dim, "rmsnorm_ref");
  for (int64_t r = 0; r < p.num_rows; ++r) {
    const float* x = p.x + r * p.dim;
    float* out = p.out + r * p.dim;
    const float* src = x;
    if (p.residual) {
      float* res = p.residual + r * p.dim;
      for (int64_t i = 0; i < p.dim; ++i) res[i] += x[i];
      src = res;
    }
    // The whole row is read (for the scale) before any of it is written, so out may alias x.
    const float s = inv_rms(src, p.dim, p.eps);
    // (v * s) * w: the normalised value first, then the weight, as the reference rounds r to the
    // activation dtype before multiplying by the weight.
    for (int64_t i = 0; i < p.dim; ++i) out[i] = (src[i] * s) * w[i];
  }
}

void gated_rmsnorm_ref(const GatedRmsNormParams& p) {
  if (p.num_rows == 0) return;
  const std::vector<float> w = weight_f32(p.weight, p.dim, "gated_rmsnorm_ref");
  for (int64_t r = 0; r < p.num_rows; ++r) {
    const float* x = p.x + r * p.dim;
    const float* gate = p.gate + r * p.dim;
    float* out = p.out + r * p.dim;
    const float s = inv_rms(x, p.dim, p.eps);
    for (int64_t i = 0; i < p.dim; ++i) {
      const float sig = 1.f / (1.f + std::exp(-gate[i]));
      out[i] = (x[i] * s) * w[i] * sig;
    }
  }
}

}  // namespace kl::kernels
