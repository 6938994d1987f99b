// CPU twin of the chunkwise-parallel KDA form (spec 4.1), the oracle of the GPU chunked kernel.
// Same function as kda_recurrent_ref, evaluated chunk by chunk with intra-chunk matrices; the state
// is V-major [H, V, K], fp32, carried across chunks and calls.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/error.h"
#include "kernels/gemm/ref_dot.h"
#include "kernels/kda/kda.h"

// Notation (spec 4.1, per head, rows r, j of one chunk of L <= C tokens, channel c):
//   D(r, j)[c] = G_r[c] - G_j[c] = sum_{j < i <= r} g_i[c]      (<= 0, for r >= j)
//   A_kk[r, j] = beta_r sum_c k_r[c] k_j[c] exp(D(r, j)[c])      (j < r)
//   A_qk[r, j] = sum_c qs_r[c] k_j[c] exp(D(r, j)[c])            (j <= r)
//   V'_r = beta_r (v_r - S^T (gamma_r . k_r)) - sum_{j<r} A_kk[r, j] V'_j   (forward substitution:
//          the rows of (I + A_kk)^-1 (U - W S) without forming T, W or U)
//   o_r  = S^T (gamma_r . qs_r) + sum_{j<=r} A_qk[r, j] V'_j
//   S   <- diag(gamma_L) S + sum_j (k_j . exp(G_L - G_j)) V'_j^T
// with gamma_r = exp(G_r) and S the chunk's initial state. Every exponent is a sum of gates over
// tokens inside the chunk, so every factor is <= 1; exp(-G) is never formed. The differences are
// accumulated directly from the g_i rather than subtracted from the cumulative sums: with real
// gates G reaches -1e3 within a chunk, where an fp32 cumsum carries an absolute error of ~1e-4 that
// a difference G_r - G_j passes into exp() as relative error (measured against the recurrent form:
// 6e-7 with cumsum differences, 1.7e-7 with direct sums).

namespace kl::kernels {
namespace {

struct ChunkScratch {
  std::vector<float> akk, aqk;    // [L, L] row-major, lower triangles used
  std::vector<float> vnew;        // [L, V] V' (FLA's v_new)
  std::vector<float> gamma;       // [L, K] exp(G_r), G cumulative from the chunk start
  std::vector<float> kg;          // [L, K] k_r . exp(G_L - G_r)
  std::vector<float> qs;          // [L, K] scale * q
  std::vector<float> d, kd, tmp;  // [K] per-pair work rows
};

// One chunk of one head: rows t0 .. t0+L-1 of the sequence; S is the head's [V, K] state.
void kda_chunk(const KdaParams& p, int64_t h, int64_t t0, int64_t L, float* S, ChunkScratch& w) {
  const int64_t H = p.num_heads;
  const int64_t K = p.head_k;
  const int64_t V = p.head_v;
  auto q_row = [&](int64_t r) { return p.q + ((t0 + r) * H + h) * K; };
  auto k_row = [&](int64_t r) { return p.k + ((t0 + r) * H + h) * K; };
  auto v_row = [&](int64_t r) { return p.v + ((t0 + r) * H + h) * V; };
  auto g_row = [&](int64_t r) { return p.g + ((t0 + r) * H + h) * K; };
  auto beta = [&](int64_t r) { return p.beta[(t0 + r) * H + h]; };

  // gamma_r and qs_r.
  for (int64_t c = 0; c < K; ++c) w.d[c] = 0.f;
  for (int64_t r = 0; r < L; ++r) {
    const float* g = g_row(r);
    const float* q = q_row(r);
    for (int64_t c = 0; c < K; ++c) {
      w.d[c] += g[c];
      w.gamma[r * K + c] = std::exp(w.d[c]);
      w.qs[r * K + c] = p.scale * q[c];
    }
  }
  // kg_r = k_r . exp(G_L - G_r), the suffix sums taken from the chunk's end.
  for (int64_t c = 0; c < K; ++c) w.d[c] = 0.f;
  for (int64_t r = L - 1; r >= 0; --r) {
    const float* k = k_row(r);
    for (int64_t c = 0; c < K; ++c) w.kg[r * K + c] = k[c] * std::exp(w.d[c]);
    const float* g = g_row(r);
    for (int64_t c = 0; c < K; ++c) w.d[c] += g[c];  // now sum over rows r .. L-1
  }

  // A_kk and A_qk, column j at a time, with D(r, j) accumulated as r walks down from j.
  for (int64_t j = 0; j < L; ++j) {
    const float* kj = k_row(j);
    for (int64_t c = 0; c < K; ++c) w.d[c] = 0.f;
    for (int64_t r = j; r < L; ++r) {
      if (r > j) {
        const float* g = g_row(r);
        for (int64_t c = 0; c < K; ++c) w.d[c] += g[c];
      }
      for (int64_t c = 0; c < K; ++c) w.kd[c] = kj[c] * std::exp(w.d[c]);
      w.aqk[r * L + j] = detail::dot_f32(w.qs.data() + r * K, w.kd.data(), K);
      if (r > j) w.akk[r * L + j] = beta(r) * detail::dot_f32(k_row(r), w.kd.data(), K);
    }
  }

  // V' by forward substitution; row r needs the rows j < r, which are final by then.
  for (int64_t r = 0; r < L; ++r) {
    const float* k = k_row(r);
    const float* v = v_row(r);
    const float b = beta(r);
    for (int64_t c = 0; c < K; ++c) w.tmp[c] = w.gamma[r * K + c] * k[c];
    float* vn = w.vnew.data() + r * V;
    for (int64_t e = 0; e < V; ++e)
      vn[e] = b * (v[e] - detail::dot_f32(S + e * K, w.tmp.data(), K));
    for (int64_t j = 0; j < r; ++j) {
      const float a = w.akk[r * L + j];
      const float* vj = w.vnew.data() + j * V;
      for (int64_t e = 0; e < V; ++e) vn[e] -= a * vj[e];
    }
  }

  // Outputs: inter-chunk term from the initial state, then the intra-chunk term in row order.
  for (int64_t r = 0; r < L; ++r) {
    for (int64_t c = 0; c < K; ++c) w.tmp[c] = w.gamma[r * K + c] * w.qs[r * K + c];
    float* o = p.out + ((t0 + r) * H + h) * V;
    for (int64_t e = 0; e < V; ++e) o[e] = detail::dot_f32(S + e * K, w.tmp.data(), K);
    for (int64_t j = 0; j <= r; ++j) {
      const float a = w.aqk[r * L + j];
      const float* vj = w.vnew.data() + j * V;
      for (int64_t e = 0; e < V; ++e) o[e] += a * vj[e];
    }
  }

  // State to the next chunk; row e of S is column e of the [K, V] state.
  const float* gamma_last = w.gamma.data() + (L - 1) * K;
  for (int64_t e = 0; e < V; ++e) {
    float* row = S + e * K;
    for (int64_t c = 0; c < K; ++c) row[c] *= gamma_last[c];
    for (int64_t j = 0; j < L; ++j) {
      const float a = w.vnew[j * V + e];
      const float* kg = w.kg.data() + j * K;
      for (int64_t c = 0; c < K; ++c) row[c] += kg[c] * a;
    }
  }
}

}  // namespace

void kda_chunked_ref(const KdaParams& p, int chunk_size) {
  const int64_t H = p.num_heads;
  const int64_t K = p.head_k;
  const int64_t V = p.head_v;
  KL_CHECK(H > 0 && K > 0 && V > 0, "kda_chunked_ref: bad shape H={} K={} V={}", H, K, V);
  KL_CHECK(chunk_size > 0, "kda_chunked_ref: chunk_size {} <= 0", chunk_size);
  KL_CHECK(p.state, "kda_chunked_ref: no state");
  const int64_t C = chunk_size;
  ChunkScratch w;
  w.akk.assign(C * C, 0.f);
  w.aqk.assign(C * C, 0.f);
  w.vnew.resize(C * V);
  w.gamma.resize(C * K);
  w.kg.resize(C * K);
  w.qs.resize(C * K);
  w.d.resize(K);
  w.kd.resize(K);
  w.tmp.resize(K);
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t t0 = 0; t0 < p.num_tokens; t0 += C) {
      const int64_t L = std::min(C, p.num_tokens - t0);  // the last chunk may be partial
      kda_chunk(p, h, t0, L, p.state + h * V * K, w);
    }
  }
}

}  // namespace kl::kernels
