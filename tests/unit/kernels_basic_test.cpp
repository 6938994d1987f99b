// Unit tests of the element-wise and row-wise CPU kernels: embedding, RMSNorm (plain, fused
// residual, gated), GEMM (f32/bf16/f16 weights, strides, batch invariance), SwiGLU activation,
// short causal conv with a carried window, and greedy sampling. References are naive double math.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/activation/silu_mul.h"
#include "kernels/conv/short_conv.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/norm/rmsnorm.h"
#include "kernels/sampling/greedy.h"
#include "tests/support/test_support.h"

namespace kl::kernels {
namespace {

using test::random_normal;
using test::rel_l2;

double sigmoid_d(double x) {
  return 1 / (1 + std::exp(-x));
}

// Naive [m, n] = x [m, k] . w[n, k]^T in double, weights given as exact fp32 values.
std::vector<float> matmul_d(const std::vector<float>& x, int64_t m, int64_t x_stride,
                            const std::vector<float>& w, int64_t n, int64_t k) {
  std::vector<float> out(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t c = 0; c < k; ++c) s += double(x[i * x_stride + c]) * w[j * k + c];
      out[i * n + j] = float(s);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("embedding_ref copies table rows exactly, bf16 and f32") {
  const int64_t vocab = 10, hidden = 7;
  const std::vector<float> table = random_normal(vocab * hidden, 1);
  const std::vector<uint16_t> table_bf16 = test::to_bf16(table);
  const std::vector<int32_t> ids = {3, 0, 9, 3};
  std::vector<float> out(ids.size() * hidden);
  EmbeddingParams p{ids.data(),
                    int64_t(ids.size()),
                    {table_bf16.data(), DType::kBF16, vocab, hidden},
                    out.data()};
  embedding_ref(p);
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t c = 0; c < hidden; ++c)
      CHECK(out[t * hidden + c] == bf16_to_f32(table_bf16[ids[t] * hidden + c]));  // exact

  p.table = {table.data(), DType::kF32, vocab, hidden};
  embedding_ref(p);
  CHECK(std::vector<float>(out.begin() + 2 * hidden, out.begin() + 3 * hidden) ==
        std::vector<float>(table.begin() + 9 * hidden, table.end()));

  const int32_t bad = 10;
  p.token_ids = &bad;
  p.num_tokens = 1;
  CHECK_THROWS_WITH(embedding_ref(p), Catch::Contains("token id 10"));
}

TEST_CASE("rmsnorm_ref matches naive math; eps matters; fused residual; in place") {
  const int64_t rows = 3, dim = 40;
  std::vector<float> x = random_normal(rows * dim, 2);
  for (int64_t i = 0; i < dim; ++i) x[i] *= 1e-3f;  // row 0: mean(x^2) ~ 1e-6, comparable to eps
  const std::vector<float> w = random_normal(dim, 3, 0.5f, 1.f);
  const std::vector<uint16_t> w_bf16 = test::to_bf16(w);
  const float eps = 1e-6f;

  auto naive = [&](const std::vector<float>& in, bool bf16w) {
    std::vector<float> out(rows * dim);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += double(in[r * dim + i]) * in[r * dim + i];
      const double inv = 1 / std::sqrt(ss / dim + eps);
      for (int64_t i = 0; i < dim; ++i) {
        const double wi = bf16w ? bf16_to_f32(w_bf16[i]) : w[i];
        out[r * dim + i] = float(in[r * dim + i] * inv * wi);
      }
    }
    return out;
  };

  std::vector<float> out(rows * dim);
  RmsNormParams p;
  p.x = x.data();
  p.weight = {w.data(), DType::kF32, 1, dim};
  p.eps = eps;
  p.num_rows = rows;
  p.dim = dim;
  p.out = out.data();
  rmsnorm_ref(p);
  const std::vector<float> want = naive(x, false);
  // fp32 sum of squares over 40 values and a few products: ~1e-7 relative; 1e-6 bounds it.
  CHECK(rel_l2(out, want) < 1e-6);
  // eps is used: ignoring it would scale row 0 by sqrt(1 + eps / mean(x^2)), far from 1e-6.
  const float ms0 = [&] {
    double s = 0;
    for (int64_t i = 0; i < dim; ++i) s += double(x[i]) * x[i];
    return float(s / dim);
  }();
  REQUIRE(eps / ms0 > 0.1f);
  CHECK(rel_l2(out.data(), want.data(), dim) < 1e-6);

  // bf16 weight, fused residual add, output in place over x.
  std::vector<float> residual = random_normal(rows * dim, 4);
  std::vector<float> summed(rows * dim);
  for (int64_t i = 0; i < rows * dim; ++i) summed[i] = residual[i] + x[i];
  std::vector<float> xo = x;
  p.x = xo.data();
  p.out = xo.data();
  p.residual = residual.data();
  p.weight = {w_bf16.data(), DType::kBF16, 1, dim};
  rmsnorm_ref(p);
  CHECK(residual == summed);  // the fp32 sum is exact element-wise, so bitwise
  CHECK(rel_l2(xo, naive(summed, true)) < 1e-6);
}

TEST_CASE("gated_rmsnorm_ref matches x * rsqrt(mean(x^2) + eps) * w * sigmoid(gate)") {
  const int64_t rows = 4, dim = 16;
  std::vector<float> x = random_normal(rows * dim, 5, 3e-4f);  // KDA outputs are tiny: eps matters
  const std::vector<float> gate = random_normal(rows * dim, 6, 2.f);
  const std::vector<float> w = random_normal(dim, 7, 0.3f, 1.f);
  const float eps = 1e-5f;
  std::vector<float> want(rows * dim);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i)
      want[r * dim + i] = float(x[r * dim + i] * inv * w[i] * sigmoid_d(gate[r * dim + i]));
  }
  GatedRmsNormParams p{x.data(), gate.data(), {w.data(), DType::kF32, 1, dim}, eps, rows,
                       dim,      x.data()};
  gated_rmsnorm_ref(p);  // in place
  // A few fp32 roundings per element (sum, rsqrt, exp): 1e-6 relative bounds them.
  CHECK(rel_l2(x, want) < 1e-6);
}

TEST_CASE("gemm_ref matches double math for f32, bf16 and f16 weights, with strides") {
  const int64_t m = 5, n = 19, k = 37;  // k not a multiple of the 16 lanes: the tail path runs
  const int64_t x_stride = 41, out_stride = 23;
  const std::vector<float> x = random_normal(m * x_stride, 8);
  std::vector<float> w = random_normal(n * k, 9);
  const std::vector<uint16_t> w_bf16 = test::to_bf16(w);
  std::vector<uint16_t> w_f16(n * k);
  std::vector<float> w_f16_vals(n * k);
  for (int64_t i = 0; i < n * k; ++i) {
    // Exact f16 encodings of small multiples of 1/64 (sign, exponent and mantissa by hand).
    const int q = int(std::lround(w[i] * 64));
    w_f16_vals[i] = q / 64.f;
    const uint16_t sign = q < 0 ? 0x8000 : 0;
    const int a = std::abs(q);
    if (a == 0) {
      w_f16[i] = sign;
    } else {
      int e = 0;
      while ((a >> e) > 1) ++e;                                 // a in [2^e, 2^(e+1))
      const int mant = (a << (10 - e)) & 0x3ff;                 // exact: a < 2^11
      w_f16[i] = uint16_t(sign | ((e - 6 + 15) << 10) | mant);  // value a * 2^-6
    }
  }
  std::vector<float> w_bf16_vals(n * k);
  for (int64_t i = 0; i < n * k; ++i) w_bf16_vals[i] = bf16_to_f32(w_bf16[i]);

  struct Case {
    const void* data;
    DType dt;
    const std::vector<float>* vals;
  };
  for (const Case& c :
       {Case{w.data(), DType::kF32, &w}, Case{w_bf16.data(), DType::kBF16, &w_bf16_vals},
        Case{w_f16.data(), DType::kF16, &w_f16_vals}}) {
    INFO("dtype " << dtype_name(c.dt));
    const std::vector<float> want = matmul_d(x, m, x_stride, *c.vals, n, k);
    std::vector<float> out(m * out_stride, 7.f);
    GemmParams p{x.data(), m, x_stride, {c.data, c.dt, n, k}, out.data(), out_stride, false};
    gemm_ref(p);
    std::vector<float> got(m * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) got[i * n + j] = out[i * out_stride + j];
    // fp32 accumulation of 37 products of O(1) values vs double: ~1e-7 relative; 1e-6 bounds it.
    CHECK(rel_l2(got, want) < 1e-6);
    CHECK(out[n] == 7.f);  // padding between strided rows untouched

    p.accumulate = true;  // out += x w^T on top of the previous result
    gemm_ref(p);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) CHECK(out[i * out_stride + j] == 2 * got[i * n + j]);
  }
}

TEST_CASE("gemm_ref rows are bitwise independent of m, x_stride and tiling") {
  // DESIGN principle 11: a row's logits must not depend on the batch. n * k * 4 bytes is larger
  // than one weight tile, so the multi-tile path runs too.
  const int64_t n = 300, k = 1000, m = 37;
  const std::vector<float> x = random_normal(m * k, 10);
  const std::vector<uint16_t> w = test::to_bf16(random_normal(n * k, 11, 0.05f));
  std::vector<float> batch(m * n);
  gemm_ref({x.data(), m, 0, {w.data(), DType::kBF16, n, k}, batch.data(), 0, false});
  for (int64_t row : {0, 17, 36}) {
    std::vector<float> single(n);
    gemm_ref({x.data() + row * k, 1, 0, {w.data(), DType::kBF16, n, k}, single.data(), 0, false});
    CHECK(std::vector<float>(batch.begin() + row * n, batch.begin() + (row + 1) * n) == single);
  }
  // The same row placed inside a wider, strided buffer of 3 rows.
  std::vector<float> xs(3 * (k + 5), 0.f);
  std::copy_n(x.data() + 17 * k, k, xs.data() + (k + 5));
  std::vector<float> out3(3 * n);
  gemm_ref({xs.data(), 3, k + 5, {w.data(), DType::kBF16, n, k}, out3.data(), 0, false});
  CHECK(std::vector<float>(out3.begin() + n, out3.begin() + 2 * n) ==
        std::vector<float>(batch.begin() + 17 * n, batch.begin() + 18 * n));
}

TEST_CASE("silu_mul_ref matches silu(gate) * up, in place, without NaN at the extremes") {
  std::vector<float> gate = random_normal(33, 12, 3.f);
  gate[0] = -200.f;  // exp(200) overflows in fp32; the result must be -0, not NaN
  gate[1] = 100.f;
  const std::vector<float> up = random_normal(33, 13);
  std::vector<float> want(33);
  for (int i = 0; i < 33; ++i) want[i] = float(gate[i] * sigmoid_d(gate[i]) * up[i]);
  silu_mul_ref({gate.data(), up.data(), 33, gate.data()});
  for (int i = 0; i < 33; ++i) CHECK(gate[i] == Approx(want[i]).epsilon(1e-6).margin(1e-30));
}

TEST_CASE("short_conv_ref matches the causal conv; a split sequence equals one piece") {
  const int64_t dim = 6, W = 4, T = 9;
  const std::vector<float> x = random_normal(T * dim, 14);
  const std::vector<float> w = random_normal(dim * W, 15);
  const std::vector<float> win0 = random_normal((W - 1) * dim, 16);  // carried history
  // Naive: history h(j) = win0 for j < 0, x for j >= 0; u_t[c] = sum_i w[c,i] h(t-W+1+i)[c].
  auto h = [&](int64_t j, int64_t c) {
    return j < 0 ? double(win0[(W - 1 + j) * dim + c]) : double(x[j * dim + c]);
  };
  std::vector<float> want(T * dim);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < dim; ++c) {
      double u = 0;
      for (int64_t i = 0; i < W; ++i) u += w[c * W + i] * h(t - W + 1 + i, c);
      want[t * dim + c] = float(u * sigmoid_d(u));
    }

  auto run = [&](int64_t t0, int64_t t1, std::vector<float>& win, std::vector<float>& out) {
    ShortConvParams p;
    p.x = x.data() + t0 * dim;
    p.num_tokens = t1 - t0;
    p.dim = dim;
    p.kernel_size = int(W);
    p.weight = {w.data(), DType::kF32, dim, W};
    p.window = win.data();
    p.out = out.data() + t0 * dim;
    short_conv_ref(p);
  };
  std::vector<float> win = win0, out(T * dim);
  run(0, T, win, out);
  // Four products per output plus SiLU: a few fp32 roundings, 1e-6 relative bounds them.
  CHECK(rel_l2(out, want) < 1e-6);
  const std::vector<float> last3(x.end() - (W - 1) * dim, x.end());
  CHECK(win == last3);  // the window now holds the last W-1 *inputs*, oldest first

  // Pieces of 1, 2 (fewer than W-1: the window must shift, keeping old history), 0 and 6 tokens
  // give bitwise the same outputs and window as one call (same arithmetic per element).
  std::vector<float> win_s = win0, out_s(T * dim, NAN);
  run(0, 1, win_s, out_s);
  run(1, 3, win_s, out_s);
  run(3, 3, win_s, out_s);
  run(3, T, win_s, out_s);
  CHECK(out_s == out);
  CHECK(win_s == win);

  // A fresh (zero) window: the first outputs see only the taps on real tokens.
  std::vector<float> zero((W - 1) * dim, 0.f), out_z(T * dim);
  run(0, 1, zero, out_z);
  for (int64_t c = 0; c < dim; ++c) {
    const double u = double(w[c * W + W - 1]) * x[c];
    CHECK(out_z[c] == Approx(u * sigmoid_d(u)).epsilon(1e-6).margin(1e-30));
  }
  // The window after one token: [0, 0, x0].
  for (int64_t c = 0; c < dim; ++c) {
    CHECK(zero[c] == 0.f);
    CHECK(zero[dim + c] == 0.f);
    CHECK(zero[2 * dim + c] == x[c]);
  }
}

TEST_CASE("greedy_ref picks the arg-max, lowest id on ties") {
  const std::vector<float> logits = {1.f,  3.f,  3.f,  -1.f,   // tie at 1 and 2 -> 1
                                     -5.f, -5.f, -5.f, -5.f,   // all equal -> 0
                                     0.f,  0.f,  0.f,  0.5f};  // last
  std::vector<int32_t> ids(3, -1);
  greedy_ref(logits.data(), 3, 4, ids.data());
  CHECK(ids == std::vector<int32_t>{1, 0, 3});
}

}  // namespace kl::kernels
