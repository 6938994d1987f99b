// Unit tests of the CPU sampler: each logits processor on hand-computed rows, the top-k / top-p /
// min-p kept sets, the inverse CDF against the counter-based uniform, determinism, a statistical
// check of the draws, and raw logprobs. Expected values are computed independently in double.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <set>
#include <utility>
#include <vector>

#include "kernels/sampling/sampling.h"
#include "tests/support/test_support.h"

namespace kl::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The documented stream, written out again: two splitmix64 steps, seed first, then position.
uint64_t splitmix64_step(uint64_t state) {
  uint64_t z = state + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
double expected_uniform(uint64_t seed, uint64_t position) {
  const uint64_t x = splitmix64_step(splitmix64_step(seed) ^ position);
  return double(x >> 11) / 9007199254740992.0;  // 2^53
}

std::vector<double> softmax_d(const std::vector<float>& l, double temperature = 1.0) {
  double m = -std::numeric_limits<double>::infinity();
  for (float x : l) m = std::max(m, double(x));
  std::vector<double> p(l.size());
  double s = 0;
  for (size_t i = 0; i < l.size(); ++i) s += p[i] = std::exp((double(l[i]) - m) / temperature);
  for (double& x : p) x /= s;
  return p;
}

std::vector<double> log_softmax_d(const std::vector<float>& l) {
  double m = -std::numeric_limits<double>::infinity();
  for (float x : l) m = std::max(m, double(x));
  double s = 0;
  for (float x : l) s += std::exp(double(x) - m);
  std::vector<double> out(l.size());
  for (size_t i = 0; i < l.size(); ++i) out[i] = double(l[i]) - m - std::log(s);
  return out;
}

// Inverse CDF over a normalised distribution in the canonical order (prob desc, id asc).
// Returns -1 when u lies within `margin` of a boundary, where float rounding could go either way.
int32_t expected_pick(const std::vector<double>& probs, double u, double margin = 1e-6) {
  std::vector<int32_t> order(probs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
  double cum = 0;
  for (int32_t id : order) {
    if (probs[id] == 0) continue;
    if (std::abs(u - cum) < margin) return -1;
    cum += probs[id];
    if (u < cum) return std::abs(u - cum) < margin ? -1 : id;
  }
  return -1;
}

std::vector<float> processed(const std::vector<float>& l, const SamplingRowParams& p,
                             const SamplingHistory& h) {
  std::vector<float> out(l.size());
  apply_logits_processors_ref(l.data(), int64_t(l.size()), p, h, out.data());
  return out;
}

std::vector<float> probs_of(const std::vector<float>& l, const SamplingRowParams& p) {
  std::vector<float> out(l.size());
  sampling_probs_ref(l.data(), int64_t(l.size()), p, out.data());
  return out;
}

SampleOutput sample(const std::vector<float>& l, const SamplingRowParams& p,
                    const SamplingHistory& h = {}) {
  return sample_row_ref(l.data(), int64_t(l.size()), p, h);
}

// Probabilities 0.1, 0.4, 0.2, 0.3: canonical order 1, 3, 2, 0.
std::vector<float> four_token_logits() {
  return {float(std::log(0.1)), float(std::log(0.4)), float(std::log(0.2)), float(std::log(0.3))};
}

void check_probs(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("token " << i);
    CHECK(std::abs(double(got[i]) - want[i]) < 1e-6);
  }
}

}  // namespace

TEST_CASE("sampling_uniform is the documented splitmix64 stream in [0, 1)", "[sampling]") {
  // The published first output of splitmix64 from state 0 pins the mixing constants.
  CHECK(splitmix64_step(0) == 0xE220A8397B1DCDAFull);
  for (uint64_t seed : {0ull, 1ull, 42ull, 0xFFFFFFFFFFFFFFFFull}) {
    for (uint64_t pos : {0ull, 1ull, 2ull, 1000ull, 1ull << 40}) {
      CHECK(sampling_uniform(seed, pos) == expected_uniform(seed, pos));
    }
  }
  std::set<double> seen;
  for (uint64_t pos = 0; pos < 10000; ++pos) {
    const double u = sampling_uniform(7, pos);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    seen.insert(u);
  }
  CHECK(seen.size() == 10000);  // a bijection of 64-bit words: no repeats expected in 53 bits
  CHECK(sampling_uniform(1, 5) != sampling_uniform(2, 5));
}

TEST_CASE("logits processors: bans, bias, repetition, frequency, presence", "[sampling]") {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f};
  const std::vector<int32_t> prompt = {0, 1, 1};
  const std::vector<int32_t> output = {1, 2, 2, 2};
  const std::vector<std::pair<int32_t, float>> bias = {{4, 1.5f}, {3, 100.f}};
  const std::vector<int32_t> banned = {3};
  SamplingRowParams p;
  p.repetition_penalty = 2.f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  SamplingHistory h{prompt.data(), 3, output.data(), 4, bias.data(), 2, banned.data(), 1};

  // By hand: token 0 (prompt, > 0): 2 / 2 = 1. Token 1 (prompt x2 + output x1, < 0): once
  // -1 * 2 = -2, then -0.5 * 1 - 0.25 = -2.75. Token 2 (output x3): 0.5 / 2 = 0.25, then
  // -0.5 * 3 - 0.25 = -1.5. Token 3: banned, its bias ignored. Token 4: -2 + 1.5, no history.
  const std::vector<float> want = {1.0f, -2.75f, -1.5f, -kInf, -0.5f};
  CHECK(processed(logits, p, h) == want);  // every step is exact in fp32 here

  SECTION("each penalty alone") {
    SamplingRowParams only_rep;
    only_rep.repetition_penalty = 2.f;
    SamplingHistory hist{prompt.data(), 3, output.data(), 4};
    CHECK(processed(logits, only_rep, hist) == std::vector<float>{1.f, -2.f, 0.25f, 3.f, -2.f});
    SamplingRowParams only_freq;
    only_freq.frequency_penalty = 0.5f;
    CHECK(processed(logits, only_freq, hist) == std::vector<float>{2.f, -1.5f, -1.f, 3.f, -2.f});
    SamplingRowParams only_pres;
    only_pres.presence_penalty = 0.25f;
    CHECK(processed(logits, only_pres, hist) == std::vector<float>{2.f, -1.25f, 0.25f, 3.f, -2.f});
  }
  SECTION("a ban wins over a +inf bias; NaN becomes -inf; out-of-range ids are ignored") {
    const std::vector<std::pair<int32_t, float>> b = {{0, kInf}, {9, 1.f}, {-3, 1.f}};
    const std::vector<int32_t> ban = {0, 7, -1};
    const std::vector<int32_t> hist = {5, -2, 1};
    SamplingRowParams q;
    q.repetition_penalty = 3.f;
    SamplingHistory hh{hist.data(), 3, hist.data(), 3, b.data(), 3, ban.data(), 3};
    const std::vector<float> in = {1.f, 6.f, kNaN, -kInf};
    CHECK(processed(in, q, hh) == std::vector<float>{-kInf, 2.f, -kInf, -kInf});
  }
  SECTION("duplicate bias entries accumulate") {
    const std::vector<std::pair<int32_t, float>> b = {{2, 1.f}, {2, 0.25f}};
    SamplingHistory hh;
    hh.logit_bias = b.data();
    hh.num_logit_bias = 2;
    CHECK(processed(logits, SamplingRowParams{}, hh)[2] == 1.75f);
  }
}

TEST_CASE("greedy: arg-max of the processed logits, lowest id on ties, no randomness",
          "[sampling]") {
  const std::vector<float> logits = {1.f, 3.f, 3.f, 0.f};
  for (float t : {0.f, kGreedyTemperature, kNaN}) {
    SamplingRowParams p;
    p.temperature = t;
    p.top_k = 1;  // ignored by greedy rows
    for (uint64_t seed = 0; seed < 5; ++seed) {
      for (uint64_t pos = 0; pos < 20; ++pos) {
        p.seed = seed;
        p.position = pos;
        CHECK(sample(logits, p).token == 1);
      }
    }
    const std::vector<int32_t> banned = {1};
    SamplingHistory h;
    h.banned_tokens = banned.data();
    h.num_banned_tokens = 1;
    CHECK(sample(logits, p, h).token == 2);
  }
}

TEST_CASE("temperature: softmax of logits / T", "[sampling]") {
  const std::vector<float> logits = {1.f, 2.f, 3.f, 0.5f};
  SamplingRowParams p;
  p.temperature = 0.7f;
  check_probs(probs_of(logits, p), softmax_d(logits, 0.7f));
  p.temperature = 2.5f;
  check_probs(probs_of(logits, p), softmax_d(logits, 2.5f));
}

TEST_CASE("top_k keeps the k most probable, boundary ties by lower id", "[sampling]") {
  SamplingRowParams p;
  p.top_k = 2;
  check_probs(probs_of({1.f, 2.f, 2.f, 0.f, 2.f}, p), {0, 0.5, 0.5, 0, 0});
  p.top_k = 3;
  check_probs(probs_of({1.f, 2.f, 2.f, 0.f, 2.f}, p), {0, 1. / 3, 1. / 3, 0, 1. / 3});
  p.top_k = 2;
  check_probs(probs_of(four_token_logits(), p), {0, 4. / 7, 0, 3. / 7});
  p.top_k = 100;  // more than the vocabulary: off
  check_probs(probs_of(four_token_logits(), p), softmax_d(four_token_logits()));
}

TEST_CASE("top_p keeps the smallest prefix whose mass reaches top_p", "[sampling]") {
  SamplingRowParams p;
  p.top_p = 0.6f;  // 0.4 < 0.6 <= 0.4 + 0.3
  check_probs(probs_of(four_token_logits(), p), {0, 4. / 7, 0, 3. / 7});
  p.top_p = 0.85f;  // 0.7 < 0.85 <= 0.9
  check_probs(probs_of(four_token_logits(), p), {0, 4. / 9, 2. / 9, 3. / 9});
  p.top_p = 0.05f;  // the first token alone
  check_probs(probs_of(four_token_logits(), p), {0, 1, 0, 0});
  p.top_p = 0.f;  // still at least one token
  check_probs(probs_of(four_token_logits(), p), {0, 1, 0, 0});
  p.top_p = 0.5f;  // equal probabilities: the lower ids form the prefix; 2 * 0.25 reaches 0.5
  check_probs(probs_of({0.f, 0.f, 0.f, 0.f}, p), {0.5, 0.5, 0, 0});
}

TEST_CASE("min_p drops tokens below min_p times the largest probability", "[sampling]") {
  SamplingRowParams p;
  p.min_p = 0.6f;  // threshold 0.24: keeps 0.4 and 0.3
  check_probs(probs_of(four_token_logits(), p), {0, 4. / 7, 0, 3. / 7});
  p.min_p = 0.2f;  // threshold 0.08: keeps all
  check_probs(probs_of(four_token_logits(), p), softmax_d(four_token_logits()));
  p.min_p = 1.f;  // only tokens equal to the maximum
  check_probs(probs_of({1.f, 2.f, 2.f, 0.f}, p), {0, 0.5, 0.5, 0});
}

TEST_CASE("top_p sees the distribution renormalised after top_k and min_p (vLLM v1)",
          "[sampling]") {
  // Applied to the full distribution top_p = 0.75 would keep three tokens (0.7 < 0.75); after
  // top_k = 3 or min_p = 0.4 the kept mass is 0.9 and 0.7 / 0.9 >= 0.75 keeps two.
  SamplingRowParams p;
  p.top_p = 0.75f;
  p.top_k = 3;
  check_probs(probs_of(four_token_logits(), p), {0, 4. / 7, 0, 3. / 7});
  p.top_k = 0;
  p.min_p = 0.4f;
  check_probs(probs_of(four_token_logits(), p), {0, 4. / 7, 0, 3. / 7});
}

TEST_CASE("inverse CDF picks the token of u in the canonical order", "[sampling]") {
  const std::vector<float> logits = four_token_logits();
  struct Case {
    SamplingRowParams p;
    std::vector<double> dist;
  };
  std::vector<Case> cases(2);
  cases[0].dist = softmax_d(logits);  // cumulative 0.4 (id 1), 0.7 (3), 0.9 (2), 1 (0)
  cases[1].p.top_p = 0.6f;
  cases[1].dist = {0, 4. / 7, 0, 3. / 7};
  for (Case& c : cases) {
    c.p.seed = 1234;
    std::set<int32_t> hit;
    int checked = 0;
    for (uint64_t pos = 0; pos < 2000; ++pos) {
      c.p.position = pos;
      const int32_t want = expected_pick(c.dist, expected_uniform(1234, pos));
      if (want < 0) continue;
      ++checked;
      INFO("position " << pos << " u " << expected_uniform(1234, pos));
      CHECK(sample(logits, c.p).token == want);
      hit.insert(want);
    }
    CHECK(checked > 1900);
    CHECK(hit.size() ==
          size_t(std::count_if(c.dist.begin(), c.dist.end(), [](double x) { return x > 0; })));
  }
}

TEST_CASE("seeded sampling is deterministic per (seed, position) and varies along it",
          "[sampling]") {
  const std::vector<float> logits = test::random_normal(32, 5);
  SamplingRowParams p;
  p.seed = 99;
  std::vector<int32_t> a, b, c;
  for (uint64_t pos = 0; pos < 200; ++pos) {
    p.position = pos;
    a.push_back(sample(logits, p).token);
    b.push_back(sample(logits, p).token);
  }
  CHECK(a == b);
  CHECK(std::set<int32_t>(a.begin(), a.end()).size() >= 10);
  p.seed = 100;
  for (uint64_t pos = 0; pos < 200; ++pos) {
    p.position = pos;
    c.push_back(sample(logits, p).token);
  }
  CHECK(a != c);
}

TEST_CASE("200k draws match the tempered softmax; the uniform has mean 1/2, variance 1/12",
          "[sampling]") {
  const std::vector<float> logits = {0.3f, -0.5f, 1.2f, 0.f};
  const std::vector<double> want = softmax_d(logits, double(0.7f));
  const int64_t n = 200000;
  SamplingRowParams p;
  p.temperature = 0.7f;
  p.seed = 777;
  std::vector<int64_t> counts(4, 0);
  double sum = 0, sum_sq = 0;
  for (int64_t pos = 0; pos < n; ++pos) {
    p.position = uint64_t(pos);
    ++counts[size_t(sample(logits, p).token)];
    const double u = sampling_uniform(777, uint64_t(pos));
    sum += u;
    sum_sq += u * u;
  }
  for (size_t i = 0; i < 4; ++i) {
    const double freq = double(counts[i]) / n;
    const double se = std::sqrt(want[i] * (1 - want[i]) / n);
    INFO("token " << i << " freq " << freq << " want " << want[i]);
    CHECK(std::abs(freq - want[i]) < 4 * se);
  }
  const double mean = sum / n;
  const double var = sum_sq / n - mean * mean;
  CHECK(std::abs(mean - 0.5) < 4 * std::sqrt(1.0 / 12 / n));
  // Var of (u - 1/2)^2 for a uniform: 1/80 - 1/144 = 1/180.
  CHECK(std::abs(var - 1.0 / 12) < 4 * std::sqrt(1.0 / 180 / n));
}

TEST_CASE("logprobs are those of the raw logits, with the top list", "[sampling]") {
  std::vector<float> logits = test::random_normal(50, 3, 3.f);
  const std::vector<double> want = log_softmax_d(logits);

  std::vector<float> lsm(logits.size());
  log_softmax_ref(logits.data(), int64_t(logits.size()), lsm.data());
  for (size_t i = 0; i < logits.size(); ++i) CHECK(std::abs(lsm[i] - want[i]) < 1e-5);

  // Processing changes what is drawn but not what is reported.
  const std::vector<int32_t> banned = {0, 1, 2, 3, 4};
  const std::vector<int32_t> out_tokens = {7, 7, 9};
  SamplingHistory h;
  h.banned_tokens = banned.data();
  h.num_banned_tokens = 5;
  h.output_tokens = out_tokens.data();
  h.num_output_tokens = 3;
  SamplingRowParams p;
  p.temperature = 0.5f;
  p.frequency_penalty = 1.f;
  p.repetition_penalty = 1.3f;
  p.num_logprobs = 5;
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return want[a] > want[b]; });
  for (uint64_t pos = 0; pos < 20; ++pos) {
    p.position = pos;
    const SampleOutput s = sample(logits, p, h);
    REQUIRE(s.token >= 5);
    CHECK(std::abs(s.logprob - want[size_t(s.token)]) < 1e-5);
    REQUIRE(s.top.size() == 5);
    for (size_t i = 0; i < 5; ++i) {
      CHECK(s.top[i].token == order[i]);
      CHECK(std::abs(s.top[i].logprob - want[size_t(order[i])]) < 1e-5);
    }
  }
}

TEST_CASE("top logprobs: descending, ties by lower id, clamped to the vocabulary", "[sampling]") {
  const std::vector<float> logits = {0.f, 2.f, 1.f, 2.f, 2.f, -1.f};
  SamplingRowParams p;
  p.temperature = 0.f;
  p.num_logprobs = 4;
  SampleOutput s = sample(logits, p);
  CHECK(s.token == 1);
  const std::vector<int32_t> ids = {1, 3, 4, 2};
  REQUIRE(s.top.size() == 4);
  for (size_t i = 0; i < 4; ++i) CHECK(s.top[i].token == ids[i]);
  CHECK(s.top[0].logprob == s.top[2].logprob);
  CHECK(s.top[2].logprob > s.top[3].logprob);

  p.num_logprobs = 0;  // the chosen token only
  s = sample(logits, p);
  CHECK(s.top.empty());
  CHECK(std::abs(s.logprob - log_softmax_d(logits)[1]) < 1e-6);
  p.num_logprobs = 100;
  CHECK(sample(logits, p).top.size() == logits.size());
  p.num_logprobs = -1;  // none
  s = sample(logits, p);
  CHECK(s.top.empty());
  CHECK(s.logprob == 0.f);
}

TEST_CASE("edge cases: vocab 1, bans, -inf, NaN, +inf, nothing left", "[sampling]") {
  SamplingRowParams p;
  p.num_logprobs = 1;
  SECTION("vocab 1") {
    const SampleOutput s = sample({-3.f}, p);
    CHECK(s.token == 0);
    CHECK(s.logprob == 0.f);
    p.top_k = 5;
    p.top_p = 0.1f;
    CHECK(sample({7.f}, p).token == 0);
  }
  SECTION("all banned but some: only the others are drawn") {
    const std::vector<float> logits = test::random_normal(8, 11);
    const std::vector<int32_t> banned = {0, 1, 2, 4, 5};
    SamplingHistory h;
    h.banned_tokens = banned.data();
    h.num_banned_tokens = 5;
    std::set<int32_t> got;
    for (uint64_t pos = 0; pos < 500; ++pos) {
      p.position = pos;
      got.insert(sample(logits, p, h).token);
    }
    CHECK(got == std::set<int32_t>{3, 6, 7});
  }
  SECTION("-inf and NaN logits are never drawn and report -inf") {
    const std::vector<float> logits = {-kInf, 1.f, kNaN, 0.f};
    p.num_logprobs = 4;
    std::set<int32_t> got;
    for (uint64_t pos = 0; pos < 200; ++pos) {
      p.position = pos;
      const SampleOutput s = sample(logits, p);
      got.insert(s.token);
      REQUIRE(s.top.size() == 4);
      CHECK(s.top[2].token == 0);  // the two -inf entries last, lower id first
      CHECK(s.top[3].token == 2);
      CHECK(s.top[3].logprob == -kInf);
    }
    CHECK(got == std::set<int32_t>{1, 3});
    check_probs(probs_of(logits, SamplingRowParams{}),
                {0, std::exp(1.0) / (std::exp(1.0) + 1), 0, 1 / (std::exp(1.0) + 1)});
    p.temperature = 0.f;
    CHECK(sample({kNaN, 0.f, kNaN, 0.5f}, p).token == 3);
  }
  SECTION("+inf logits share the mass") {
    const std::vector<float> logits = {kInf, 0.f, kInf};
    check_probs(probs_of(logits, p), {0.5, 0, 0.5});
    std::vector<float> lsm(3);
    log_softmax_ref(logits.data(), 3, lsm.data());
    CHECK(std::abs(lsm[0] - std::log(0.5)) < 1e-7);
    CHECK(lsm[1] == -kInf);
  }
  SECTION("nothing left after processing: the raw arg-max; all -inf: token 0") {
    const std::vector<int32_t> banned = {0, 1, 2};
    SamplingHistory h;
    h.banned_tokens = banned.data();
    h.num_banned_tokens = 3;
    const std::vector<float> logits = {0.f, 2.f, 1.f};
    CHECK(probs_of(processed(logits, p, h), p) == std::vector<float>{0, 0, 0});
    CHECK(sample(logits, p, h).token == 1);
    CHECK(sample({kNaN, -kInf}, p).token == 0);
    std::vector<float> lsm(2);
    const std::vector<float> dead = {kNaN, -kInf};
    log_softmax_ref(dead.data(), 2, lsm.data());
    CHECK(lsm == std::vector<float>{-kInf, -kInf});
    p.temperature = 0.f;
    CHECK(sample(logits, p, h).token == 1);
  }
}

}  // namespace kl::kernels
