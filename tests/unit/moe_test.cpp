// Unit tests of the MoE kernels: the grouped sigmoid router on a hand-computed example, on ties
// and against an independent brute-force selection; the routed experts and the dense SwiGLU FFN
// against naive double math; and batch invariance of the expert sum.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/moe/moe.h"
#include "tests/support/test_support.h"

namespace kl::kernels {
namespace {

using test::random_normal;
using test::rel_l2;

float logit(double s) {
  return float(std::log(s / (1 - s)));
}

struct RouterOut {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

RouterOut route(const std::vector<float>& logits, const std::vector<float>& bias, int64_t E,
                int64_t top_k, int64_t groups, int64_t topk_groups, float scaling,
                bool renorm = true) {
  const int64_t T = logits.size() / E;
  RouterOut r{std::vector<int32_t>(T * top_k, -1), std::vector<float>(T * top_k, NAN)};
  MoeRouterParams p;
  p.logits = logits.data();
  p.bias = {bias.data(), DType::kF32, 1, E};
  p.num_tokens = T;
  p.num_experts = E;
  p.top_k = top_k;
  p.num_groups = groups;
  p.topk_groups = topk_groups;
  p.renormalize = renorm;
  p.routed_scaling = scaling;
  p.expert_ids = r.ids.data();
  p.weights = r.w.data();
  moe_router_ref(p);
  return r;
}

double silu_d(double x) {
  return x / (1 + std::exp(-x));
}

}  // namespace

TEST_CASE("moe_router_ref: grouped top-k on a hand-computed example") {
  // 8 experts in 4 groups of 2; keep 2 groups, pick 3 experts, scaling 2.5.
  //   s    = .90 .10 | .60 .55 | .95 .05 | .70 .40
  //   bias =  0   0  |  0  .10 |  0   0  |  0  .35
  //   sel  = .90 .10 | .60 .65 | .95 .05 | .70 .75
  //   group scores (sum of top 2): 1.00, 1.25, 1.00, 1.45 -> keep groups 3 and 1
  //   candidates 2 (.60), 3 (.65), 6 (.70), 7 (.75) -> experts 7, 6, 3
  //   weights from the unbiased s: (.40, .70, .55) / 1.65 * 2.5 = .606061, 1.060606, .833333
  // Without grouping the choice would be 4, 0, 7: the grouping is what is being tested.
  const std::vector<double> s = {.90, .10, .60, .55, .95, .05, .70, .40};
  const std::vector<float> bias = {0, 0, 0, .10f, 0, 0, 0, .35f};
  std::vector<float> logits;
  for (double v : s) logits.push_back(logit(v));
  const RouterOut r = route(logits, bias, 8, 3, 4, 2, 2.5f);
  CHECK(r.ids == std::vector<int32_t>{7, 6, 3});
  // fp32 sigmoid of the logit and a division: ~1e-7 relative; 1e-6 bounds it.
  CHECK(r.w[0] == Approx(.40 / 1.65 * 2.5).epsilon(1e-6));
  CHECK(r.w[1] == Approx(.70 / 1.65 * 2.5).epsilon(1e-6));
  CHECK(r.w[2] == Approx(.55 / 1.65 * 2.5).epsilon(1e-6));

  const RouterOut flat = route(logits, bias, 8, 3, 1, 1, 2.5f);
  CHECK(flat.ids == std::vector<int32_t>{4, 0, 7});
  const double sum = .95 + .90 + .40;
  CHECK(flat.w[0] == Approx(.95 / sum * 2.5).epsilon(1e-6));
  CHECK(flat.w[2] == Approx(.40 / sum * 2.5).epsilon(1e-6));

  // Without renormalisation the weights are the scaled unbiased scores.
  const RouterOut raw = route(logits, bias, 8, 3, 4, 2, 2.5f, false);
  CHECK(raw.ids == r.ids);
  CHECK(raw.w[0] == Approx(.40 * 2.5).epsilon(1e-6));
}

TEST_CASE("moe_router_ref: ties go to the lower expert id and the lower group") {
  // Equal logits give bitwise-equal scores, so these are exact ties.
  const std::vector<float> zeros(8, 0.f);
  const RouterOut r = route(zeros, zeros, 8, 3, 1, 1, 1.f);
  CHECK(r.ids == std::vector<int32_t>{0, 1, 2});
  for (float w : r.w) CHECK(w == Approx(1.0 / 3).epsilon(1e-6));
  // 4 groups all tied: groups 0 and 1 are kept, so experts 0..3 only.
  const RouterOut g = route(zeros, zeros, 8, 4, 4, 2, 1.f);
  CHECK(g.ids == std::vector<int32_t>{0, 1, 2, 3});
  // Tie in value between expert 5 and 2 (out of order): 2 first.
  std::vector<float> l(8, -3.f);
  l[5] = 1.f;
  l[2] = 1.f;
  CHECK(route(l, zeros, 8, 2, 1, 1, 1.f).ids == std::vector<int32_t>{2, 5});
}

TEST_CASE("moe_router_ref matches a brute-force grouped selection on random logits") {
  const int64_t E = 64, G = 8, TG = 3, TOPK = 6, T = 20;
  const std::vector<float> logits = random_normal(T * E, 21, 2.f);
  const std::vector<float> bias = random_normal(E, 22, 0.5f);
  const RouterOut r = route(logits, bias, E, TOPK, G, TG, 2.446f);
  for (int64_t t = 0; t < T; ++t) {
    // Independent oracle: repeated arg-max (first index wins) over double scores.
    std::vector<double> s(E), sel(E);
    for (int64_t e = 0; e < E; ++e) {
      s[e] = 1 / (1 + std::exp(-double(logits[t * E + e])));
      sel[e] = s[e] + bias[e];
    }
    auto argmax = [](const std::vector<double>& v, const std::vector<bool>& ok) {
      int64_t best = -1;
      for (int64_t i = 0; i < int64_t(v.size()); ++i)
        if (ok[i] && (best < 0 || v[i] > v[best])) best = i;
      return best;
    };
    std::vector<double> gs(G);
    for (int64_t g = 0; g < G; ++g) {
      std::vector<double> m(sel.begin() + g * (E / G), sel.begin() + (g + 1) * (E / G));
      std::sort(m.rbegin(), m.rend());
      gs[g] = m[0] + m[1];
    }
    std::vector<bool> gok(G, true), ok(E, false);
    for (int64_t i = 0; i < TG; ++i) {
      const int64_t g = argmax(gs, gok);
      gok[g] = false;
      for (int64_t e = g * (E / G); e < (g + 1) * (E / G); ++e) ok[e] = true;
    }
    std::vector<int32_t> want;
    double sum = 0;
    for (int64_t i = 0; i < TOPK; ++i) {
      const int64_t e = argmax(sel, ok);
      ok[e] = false;
      want.push_back(int32_t(e));
      sum += s[e];
    }
    INFO("token " << t);
    // Random continuous scores: no near-ties at fp32 resolution, so the selection is exact.
    CHECK(std::vector<int32_t>(r.ids.begin() + t * TOPK, r.ids.begin() + (t + 1) * TOPK) == want);
    for (int64_t i = 0; i < TOPK; ++i)
      CHECK(r.w[t * TOPK + i] == Approx(s[want[i]] / sum * 2.446).epsilon(2e-6));
  }
}

TEST_CASE("moe_experts_ref and swiglu_ffn_ref match naive SwiGLU math; batch invariant") {
  const int64_t E = 5, hidden = 24, inter = 10, T = 6, TOPK = 2;
  std::vector<std::vector<uint16_t>> w1(E), w2(E), w3(E);
  std::vector<WeightView> v1(E), v2(E), v3(E);
  for (int64_t e = 0; e < E; ++e) {
    w1[e] = test::to_bf16(random_normal(inter * hidden, 30 + e, 0.3f));
    w3[e] = test::to_bf16(random_normal(inter * hidden, 40 + e, 0.3f));
    w2[e] = test::to_bf16(random_normal(hidden * inter, 50 + e, 0.3f));
    v1[e] = {w1[e].data(), DType::kBF16, inter, hidden};
    v3[e] = {w3[e].data(), DType::kBF16, inter, hidden};
    v2[e] = {w2[e].data(), DType::kBF16, hidden, inter};
  }
  const std::vector<float> x = random_normal(T * hidden, 60);
  const std::vector<int32_t> ids = {3, 0, 1, 3, 4, 2, 0, 1, 3, 3 /* unusual but legal */, 2, 4};
  const std::vector<float> wts = random_normal(T * TOPK, 61, 0.5f, 1.f);

  // Naive expert in double: w2 (silu(w1 x) * (w3 x)).
  auto expert = [&](int64_t e, const float* xr) {
    std::vector<double> h(inter), y(hidden, 0.0);
    for (int64_t i = 0; i < inter; ++i) {
      double a = 0, b = 0;
      for (int64_t c = 0; c < hidden; ++c) {
        a += double(bf16_to_f32(w1[e][i * hidden + c])) * xr[c];
        b += double(bf16_to_f32(w3[e][i * hidden + c])) * xr[c];
      }
      h[i] = silu_d(a) * b;
    }
    for (int64_t c = 0; c < hidden; ++c)
      for (int64_t i = 0; i < inter; ++i) y[c] += double(bf16_to_f32(w2[e][c * inter + i])) * h[i];
    return y;
  };
  std::vector<float> want(T * hidden, 0.f);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> acc(hidden, 0.0);
    for (int64_t i = 0; i < TOPK; ++i) {
      const std::vector<double> y = expert(ids[t * TOPK + i], x.data() + t * hidden);
      for (int64_t c = 0; c < hidden; ++c) acc[c] += wts[t * TOPK + i] * y[c];
    }
    for (int64_t c = 0; c < hidden; ++c) want[t * hidden + c] = float(acc[c]);
  }

  MoeExpertsParams p{x.data(),  T,         TOPK,      ids.data(), wts.data(),
                     v1.data(), v3.data(), v2.data(), nullptr,    false};
  std::vector<float> out(T * hidden, NAN);
  p.out = out.data();
  moe_experts_ref(p);
  // Three chained fp32 GEMMs of <= 24 terms vs double: ~1e-7 relative; 2e-6 bounds it.
  CHECK(rel_l2(out, want) < 2e-6);

  // Token 4 alone gives bitwise the same row as inside the batch of 6 (principle 11).
  std::vector<float> one(hidden);
  MoeExpertsParams p1 = p;
  p1.x = x.data() + 4 * hidden;
  p1.num_tokens = 1;
  p1.expert_ids = ids.data() + 4 * TOPK;
  p1.weights = wts.data() + 4 * TOPK;
  p1.out = one.data();
  moe_experts_ref(p1);
  CHECK(one == std::vector<float>(out.begin() + 4 * hidden, out.begin() + 5 * hidden));

  // accumulate adds onto the existing output.
  std::vector<float> acc_out = out;
  p.out = acc_out.data();
  p.accumulate = true;
  moe_experts_ref(p);
  for (int64_t i = 0; i < T * hidden; ++i) CHECK(acc_out[i] == Approx(2 * out[i]).epsilon(1e-6));

  // The dense FFN with expert 2's weights equals the naive expert.
  std::vector<float> ffn(T * hidden);
  swiglu_ffn_ref({x.data(), T, v1[2], v3[2], v2[2], ffn.data(), false});
  std::vector<float> want_ffn;
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<double> y = expert(2, x.data() + t * hidden);
    for (double v : y) want_ffn.push_back(float(v));
  }
  CHECK(rel_l2(ffn, want_ffn) < 2e-6);  // same bound as the experts
}

}  // namespace kl::kernels
