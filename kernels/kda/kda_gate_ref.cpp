// CPU twins of KDA's per-token scalars: the log-space forget gate (spec 3.2 step 6), the write
// strength beta (step 7) and the per-head L2 normalisation of q and k (step 4). fp32 throughout.
#include "kernels/kda/kda_gate.h"

#include <cmath>
#include <vector>

#include "engine/core/error.h"
#include "kernels/gemm/ref_dot.h"

namespace kl::kernels {
namespace {

// torch.nn.functional.softplus(x, beta=1, threshold=20), as FLA's fused_kda_gate uses it.
float softplus(float x) {
  return x > 20.f ? x : std::log1p(std::exp(x));
}

float sigmoid(float x) {
  return 1.f / (1.f + std::exp(-x));
}

}  // namespace

void kda_gate_ref(const KdaGateParams& p) {
  const int64_t H = p.num_heads;
  const int64_t K = p.head_dim;
  KL_CHECK(p.a_log.numel() == H, "kda_gate_ref: A_log has {} values, expected {} heads",
           p.a_log.numel(), H);
  KL_CHECK(p.dt_bias.numel() == H * K, "kda_gate_ref: dt_bias has {} values, expected {}",
           p.dt_bias.numel(), H * K);
  std::vector<float> rate(H);  // exp(A_log[h]): A_log is stored as a log
  for (int64_t h = 0; h < H; ++h) rate[h] = std::exp(p.a_log.at(h));
  std::vector<float> bias(H * K);
  for (int64_t i = 0; i < H * K; ++i) bias[i] = p.dt_bias.at(i);

  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const float* f = p.f + t * H * K;
    float* g = p.g + t * H * K;
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t c = 0; c < K; ++c) {
        const int64_t i = h * K + c;
        const float x = f[i] + bias[i];
        g[i] = p.has_lower_bound ? p.lower_bound * sigmoid(rate[h] * x) : -rate[h] * softplus(x);
      }
    }
  }
}

void kda_beta_ref(const float* b, int64_t n, float* beta) {
  for (int64_t i = 0; i < n; ++i) beta[i] = sigmoid(b[i]);
}

void l2norm_rows_ref(float* x, int64_t num_rows, int64_t dim, float eps, float scale) {
  for (int64_t r = 0; r < num_rows; ++r) {
    float* row = x + r * dim;
    const float inv = 1.f / std::sqrt(detail::dot_f32(row, row, dim) + eps);
    for (int64_t i = 0; i < dim; ++i) row[i] = row[i] * inv * scale;
  }
}

}  // namespace kl::kernels
