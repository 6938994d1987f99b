// CPU twin of the KDA delta rule in recurrent form (spec 3.2 step 8, 4.3): token by token, fp32,
// state V-major [H, V, K]. The CPU executor runs every KDA step with it (DESIGN principle 11).
#include <cmath>
#include <vector>

#include "engine/core/error.h"
#include "kernels/gemm/ref_dot.h"
#include "kernels/kda/kda.h"

namespace kl::kernels {

void kda_recurrent_ref(const KdaParams& p) {
  const int64_t H = p.num_heads;
  const int64_t K = p.head_k;
  const int64_t V = p.head_v;
  KL_CHECK(H > 0 && K > 0 && V > 0, "kda_recurrent_ref: bad shape H={} K={} V={}", H, K, V);
  KL_CHECK(p.state, "kda_recurrent_ref: no state");
  std::vector<float> decay(K);
  std::vector<float> qs(K);

  for (int64_t t = 0; t < p.num_tokens; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const float* q = p.q + (t * H + h) * K;
      const float* k = p.k + (t * H + h) * K;
      const float* v = p.v + (t * H + h) * V;
      const float* g = p.g + (t * H + h) * K;
      const float beta = p.beta[t * H + h];
      float* S = p.state + h * V * K;
      float* o = p.out + (t * H + h) * V;
      for (int64_t c = 0; c < K; ++c) {
        decay[c] = std::exp(g[c]);
        qs[c] = p.scale * q[c];
      }
      // Row S[v, :] is column v of the [K, V] state. Every step of the update touches only that
      // row, so the whole token is done row by row: decay, read (r = S^T k), delta write, output.
      for (int64_t j = 0; j < V; ++j) {
        float* row = S + j * K;
        for (int64_t c = 0; c < K; ++c) row[c] *= decay[c];
        const float r = detail::dot_f32(row, k, K);
        const float delta = beta * (v[j] - r);
        for (int64_t c = 0; c < K; ++c) row[c] += k[c] * delta;
        o[j] = detail::dot_f32(row, qs.data(), K);
      }
    }
  }
}

}  // namespace kl::kernels
