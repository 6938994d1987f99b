// The GPU sampler (GpuSampler) against its CPU twin sample_row_ref on seeded batches of mixed rows:
// greedy, temperature, top-k, top-p, min-p and their combinations, penalties with histories,
// logit_bias, bans, NaN / -inf / +inf rows, at the model's vocab (163840) and small vocabs, several
// seeds and positions; plus repeatability, batch invariance and a timing report.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <cuda_runtime.h>

#include "kernels/sampling/sampling.h"
#include "kernels/sampling/sampling_cuda.h"
#include "tests/gpu/device_buffer.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int32_t kMaxLogprobs = 20;

struct RowCase {
  SamplingRowParams p;
  std::vector<int32_t> prompt, output, banned;
  std::vector<std::pair<int32_t, float>> bias;
};

struct Batch {
  int64_t vocab = 0;
  int64_t stride = 0;
  std::vector<float> logits;  // [rows, stride]
  std::vector<RowCase> rows;
};

struct GpuOut {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<int32_t> top_tokens;  // [rows, kMaxLogprobs]
  std::vector<float> top_logprobs;  // [rows, kMaxLogprobs]
};

// Row i's logits: mostly normal (two scales), some with integer values (many exact ties), NaN and
// -inf sprinkled, all -inf, all NaN, and +inf entries.
std::vector<float> make_logits(int64_t vocab, int64_t i, uint64_t seed) {
  const uint64_t s = seed * 1000003 + uint64_t(i);
  std::vector<float> l = random_normal(size_t(vocab), s, i % 3 == 0 ? 4.f : 2.f);
  std::mt19937_64 g(s);
  switch (i % 23) {
    case 2:
    case 13:
      for (float& x : l) x = std::round(x);
      break;
    case 5:
      std::fill(l.begin(), l.end(), -kInf);
      break;
    case 11:
      std::fill(l.begin(), l.end(), kNaN);
      break;
    case 17:
      l[size_t(g() % vocab)] = kInf;
      l[size_t(g() % vocab)] = kInf;
      l[size_t(g() % vocab)] = kNaN;
      break;
    case 19:
      for (float& x : l) {
        const uint64_t r = g() % 10;
        if (r == 0) x = kNaN;
        if (r == 1) x = -kInf;
      }
      break;
    default:
      break;
  }
  return l;
}

// Row i's parameters: a cycle of configurations, histories and logprob requests.
RowCase make_case(int64_t vocab, int64_t i, uint64_t seed) {
  std::mt19937_64 g(seed * 7919 + uint64_t(i));
  RowCase c;
  SamplingRowParams& p = c.p;
  p.seed = g();
  p.position = i % 4 == 0 ? g() : g() % 4096;
  const int32_t lp_choices[] = {-1, 0, 5, 20, -1, 1};
  p.num_logprobs = lp_choices[i % 6];
  auto hist = [&](int n) {
    std::vector<int32_t> v;
    for (int k = 0; k < n; ++k) v.push_back(int32_t(g() % uint64_t(std::min<int64_t>(vocab, 64))));
    return v;
  };
  switch (i % 17) {
    case 0:
      p.temperature = 0.f;
      break;
    case 1:
      p.temperature = 1.f;
      break;
    case 2:
      p.temperature = 0.7f, p.top_k = 50;
      break;
    case 3:
      p.temperature = 1.3f, p.top_p = 0.9f;
      break;
    case 4:
      p.temperature = 1.f, p.min_p = 0.05f;
      break;
    case 5:
      p.temperature = 0.8f, p.top_k = 200, p.top_p = 0.95f, p.min_p = 0.01f;
      break;
    case 6:  // penalties over histories of low ids (so they repeat and hit likely tokens)
      p.temperature = 1.f, p.repetition_penalty = 1.3f, p.presence_penalty = 0.5f;
      p.frequency_penalty = 0.3f, c.prompt = hist(200), c.output = hist(100);
      break;
    case 7:  // greedy with everything
      p.temperature = 0.f, p.repetition_penalty = 1.5f, p.frequency_penalty = 0.2f;
      c.prompt = hist(50), c.output = hist(300);
      c.bias = {{int32_t(g() % vocab), 3.f}, {-4, 1.f}, {int32_t(vocab), 2.f}};
      c.banned = {int32_t(g() % vocab), int32_t(g() % vocab), -1, int32_t(vocab + 5)};
      break;
    case 8: {  // bias (duplicates accumulate, +50, -inf, out-of-vocab ids) and bans
      p.temperature = 0.9f, p.top_p = 0.98f;
      const int32_t t = int32_t(g() % vocab);
      c.bias = {{t, 0.7f},
                {int32_t(g() % vocab), 50.f},
                {t, -0.3f},
                {int32_t(g() % vocab), -kInf},
                {int32_t(vocab + 1), 5.f},
                {t, 1e-3f}};
      c.banned = hist(10);
      c.banned.push_back(-3);
      break;
    }
    case 9:
      p.temperature = 1.f, p.top_k = 1;
      break;
    case 10:
      p.temperature = 1.f, p.top_p = 0.f;
      break;
    case 11:
      p.temperature = 1.f, p.min_p = 1.5f;
      break;
    case 12:
      p.temperature = kGreedyTemperature;  // still greedy (not above the threshold)
      break;
    case 13:
      p.temperature = kNaN;  // greedy
      p.presence_penalty = 1.f, c.output = hist(20);
      break;
    case 14:
      p.temperature = 1e30f, p.top_p = 0.5f;  // flat: mass on every finite token
      break;
    case 15:
      p.temperature = 2.f, p.top_k = int32_t(vocab + 10), p.top_p = kNaN, p.min_p = kNaN;
      break;
    case 16:  // small vocabs: every token banned (falls back to the raw arg-max)
      p.temperature = 1.f, p.repetition_penalty = 0.8f, c.prompt = hist(30);
      if (vocab <= 1000)
        for (int32_t t = 0; t < vocab; ++t) c.banned.push_back(t);
      break;
  }
  return c;
}

Batch make_batch(int64_t vocab, int64_t rows, uint64_t seed, int64_t stride = 0) {
  Batch b;
  b.vocab = vocab;
  b.stride = stride ? stride : vocab;
  b.logits.assign(size_t(rows * b.stride), -7.f);  // padding: never read
  for (int64_t i = 0; i < rows; ++i) {
    const auto l = make_logits(vocab, i, seed);
    std::copy(l.begin(), l.end(), b.logits.begin() + i * b.stride);
    b.rows.push_back(make_case(vocab, i, seed));
  }
  return b;
}

GpuOut run_gpu(GpuSampler& sampler, const Batch& b) {
  const int64_t n = int64_t(b.rows.size());
  std::vector<GpuSamplingRow> rows;
  std::vector<int32_t> tokens{0}, bias_tokens{0};  // never empty (cudaMalloc of 0 bytes)
  std::vector<float> bias_values{0.f};
  auto append = [&](const std::vector<int32_t>& v, int32_t& begin, int32_t& count) {
    begin = int32_t(tokens.size());
    count = int32_t(v.size());
    tokens.insert(tokens.end(), v.begin(), v.end());
  };
  for (const RowCase& c : b.rows) {
    GpuSamplingRow r;
    r.temperature = c.p.temperature;
    r.top_k = c.p.top_k;
    r.top_p = c.p.top_p;
    r.min_p = c.p.min_p;
    r.repetition_penalty = c.p.repetition_penalty;
    r.presence_penalty = c.p.presence_penalty;
    r.frequency_penalty = c.p.frequency_penalty;
    r.num_logprobs = c.p.num_logprobs;
    r.seed = c.p.seed;
    r.position = c.p.position;
    append(c.prompt, r.prompt_begin, r.prompt_count);
    append(c.output, r.output_begin, r.output_count);
    append(c.banned, r.banned_begin, r.banned_count);
    r.bias_begin = int32_t(bias_tokens.size());
    r.bias_count = int32_t(c.bias.size());
    for (const auto& [t, v] : c.bias) bias_tokens.push_back(t), bias_values.push_back(v);
    rows.push_back(r);
  }
  DeviceBuffer<float> d_logits(b.logits);
  DeviceBuffer<GpuSamplingRow> d_rows(rows);
  DeviceBuffer<int32_t> d_tokens(tokens), d_bias_tokens(bias_tokens);
  DeviceBuffer<float> d_bias_values(bias_values);
  DeviceBuffer<int32_t> d_out(static_cast<size_t>(n)), d_top(static_cast<size_t>(n * kMaxLogprobs));
  DeviceBuffer<float> d_lp(static_cast<size_t>(n)), d_top_lp(static_cast<size_t>(n * kMaxLogprobs));
  SamplingCudaParams p;
  p.logits = d_logits.get();
  p.logits_stride = b.stride;
  p.num_rows = n;
  p.vocab = b.vocab;
  p.rows = d_rows.get();
  p.tokens = d_tokens.get();
  p.bias_tokens = d_bias_tokens.get();
  p.bias_values = d_bias_values.get();
  p.out_tokens = d_out.get();
  p.out_logprobs = d_lp.get();
  p.out_top_tokens = d_top.get();
  p.out_top_logprobs = d_top_lp.get();
  sampler.run(p, nullptr);
  return {d_out.to_host(), d_lp.to_host(), d_top.to_host(), d_top_lp.to_host()};
}

SamplingHistory history_of(const RowCase& c) {
  SamplingHistory h;
  h.prompt_tokens = c.prompt.data();
  h.num_prompt_tokens = int64_t(c.prompt.size());
  h.output_tokens = c.output.data();
  h.num_output_tokens = int64_t(c.output.size());
  h.logit_bias = c.bias.data();
  h.num_logit_bias = int64_t(c.bias.size());
  h.banned_tokens = c.banned.data();
  h.num_banned_tokens = int64_t(c.banned.size());
  return h;
}

// The CPU draw re-derived in the test (same formulas as sampling_ref.cpp) to measure how close
// each of its decisions came to flipping: the relative distance of the draw target u * S to the
// cumulative boundaries around the chosen token, of the top-p target to the cut's boundaries, and
// of the kept w to the min-p threshold. `token` must equal sample_row_ref's.
struct DrawMargins {
  int32_t token = -1;
  double margin = std::numeric_limits<double>::infinity();
};

DrawMargins cpu_draw_margins(const float* logits, const RowCase& c, int64_t vocab) {
  DrawMargins m;
  std::vector<float> l(static_cast<size_t>(vocab));
  apply_logits_processors_ref(logits, vocab, c.p, history_of(c), l.data());
  const float max_l = *std::max_element(l.begin(), l.end());
  if (max_l == -kInf) return m;  // the raw arg-max fallback: no margin to measure
  std::vector<std::pair<double, int32_t>> w;
  for (int64_t i = 0; i < vocab; ++i) {
    const double x = l[size_t(i)];
    const double wi = max_l == kInf           ? (l[size_t(i)] == kInf ? 1.0 : 0.0)
                      : l[size_t(i)] == -kInf ? 0.0
                                              : std::exp((x - double(max_l)) / c.p.temperature);
    if (wi > 0) w.push_back({wi, int32_t(i)});
  }
  std::sort(w.begin(), w.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  size_t keep = w.size();
  if (c.p.top_k > 0 && size_t(c.p.top_k) < keep) keep = size_t(c.p.top_k);
  auto rel = [](double a, double b, double scale) { return std::abs(a - b) / scale; };
  if (c.p.min_p > 0) {
    const double thr = double(c.p.min_p) * w[0].first;
    size_t j = 1;
    while (j < keep && !(w[j].first < thr)) ++j;
    if (j < keep) m.margin = std::min(m.margin, rel(w[j].first, thr, thr));
    if (j > 1) m.margin = std::min(m.margin, rel(w[j - 1].first, thr, thr));
    keep = j;
  }
  if (c.p.top_p < 1) {
    double mass = 0;
    for (size_t j = 0; j < keep; ++j) mass += w[j].first;
    const double target = double(c.p.top_p) * mass;
    double before = 0, prev = 0;
    size_t j = 0;
    do {
      prev = before;
      before += w[j].first;
      ++j;
    } while (j < keep && before < target);
    if (before >= target) m.margin = std::min(m.margin, rel(before, target, mass));
    if (j > 1) m.margin = std::min(m.margin, rel(prev, target, mass));
    keep = j;
  }
  double mass = 0;
  for (size_t j = 0; j < keep; ++j) mass += w[j].first;
  const double target = sampling_uniform(c.p.seed, c.p.position) * mass;
  double cum = 0, prev = 0;
  m.token = w[keep - 1].second;
  for (size_t j = 0; j < keep; ++j) {
    prev = cum;
    cum += w[j].first;
    if (target < cum) {
      m.token = w[j].second;
      break;
    }
  }
  m.margin = std::min({m.margin, rel(target, cum, mass), rel(target, prev, mass)});
  return m;
}

bool lp_close(float a, float b) {
  // Both sides compute float(x - lse) with lse from a double sum in different orders: the values
  // differ by at most an fp32 ulp of |lp| (< 1e-5 for |lp| < 128).
  return a == b || std::abs(a - b) <= 1e-5f;
}

struct Tally {
  int rows = 0, sampled = 0, boundary_flips = 0, top_swaps = 0;
  double max_lp_err = 0;
};

// Compares every row of the batch with sample_row_ref.
void check_against_cpu(const Batch& b, const GpuOut& got, Tally& tally) {
  const int64_t V = b.vocab;
  for (size_t i = 0; i < b.rows.size(); ++i) {
    const RowCase& c = b.rows[i];
    const float* logits = b.logits.data() + int64_t(i) * b.stride;
    const SampleOutput want = sample_row_ref(logits, V, c.p, history_of(c));
    INFO("vocab " << V << " row " << i << " T " << c.p.temperature << " top_k " << c.p.top_k
                  << " top_p " << c.p.top_p << " min_p " << c.p.min_p << " seed " << c.p.seed
                  << " position " << c.p.position << " gpu token " << got.tokens[i] << " cpu token "
                  << want.token);
    ++tally.rows;
    const bool greedy = !(c.p.temperature > kGreedyTemperature);
    tally.sampled += !greedy;
    if (got.tokens[i] != want.token) {
      // Only a sampled row may differ, and only where the CPU's own decision was within 1e-6
      // (relative) of flipping: the two sides sum the same doubles in different orders, which
      // moves a cumulative sum by ~1e-16 relative, so anything wider is a real disagreement.
      REQUIRE(!greedy);
      const DrawMargins m = cpu_draw_margins(logits, c, V);
      REQUIRE(m.token == want.token);  // the test's re-derivation is faithful
      CHECK(m.margin <= 1e-6);
      ++tally.boundary_flips;
      continue;  // the logprobs below are of a different token
    }
    if (c.p.num_logprobs < 0) continue;
    std::vector<float> lp(static_cast<size_t>(V));
    log_softmax_ref(logits, V, lp.data());
    CHECK(lp_close(got.logprobs[i], want.logprob));
    if (std::isfinite(want.logprob))
      tally.max_lp_err =
          std::max(tally.max_lp_err, double(std::abs(got.logprobs[i] - want.logprob)));
    const size_t k = want.top.size();
    for (size_t r = 0; r < size_t(kMaxLogprobs); ++r) {
      const int32_t gt = got.top_tokens[i * kMaxLogprobs + r];
      const float gl = got.top_logprobs[i * kMaxLogprobs + r];
      if (r >= k) {  // slots past the request: token -1, -inf
        CHECK(gt == -1);
        CHECK(gl == -kInf);
        continue;
      }
      INFO("top rank " << r);
      CHECK(lp_close(gl, want.top[r].logprob));
      if (std::isfinite(gl))
        tally.max_lp_err = std::max(tally.max_lp_err, double(std::abs(gl - want.top[r].logprob)));
      if (gt != want.top[r].token) {
        // Order between two values equal to within the lse noise: the GPU's token must carry the
        // same logprob on the CPU.
        REQUIRE(gt >= 0);
        REQUIRE(gt < V);
        CHECK(lp_close(lp[size_t(gt)], want.top[r].logprob));
        ++tally.top_swaps;
      }
    }
  }
}

// Rows whose candidates include a long run of distinct logits with one double w: tiny values
// (|l| <= 1e-17, in random order of value vs id) next to a max of exactly 1.0, where l - max rounds
// to -1.0 for all of them, so the twin orders the run by id while the logits order it otherwise.
// The rest: a few tokens in (0.25, 0.75) and some near -2. Temperatures 1 and 0.7 (logit keys), 1e6
// (logit keys, the run's w within 1e-6 of 1) and 1e30 (weight keys); filters cutting inside the
// run.
Batch make_tied_weight_batch(int64_t vocab, int64_t rows, uint64_t seed) {
  Batch b;
  b.vocab = b.stride = vocab;
  for (int64_t i = 0; i < rows; ++i) {
    std::mt19937_64 g(seed * 104729 + uint64_t(i));
    for (int64_t t = 0; t < vocab; ++t) {
      const uint64_t r = g() % 10;
      float x;
      if (r < 6)
        x = float(int(g() % 2001) - 1000) * 1e-20f;  // |x| <= 1e-17 < 2^-54: x - 1.0 == -1.0
      else if (r < 8)
        x = -2.f - float(g() % 1000) * 1e-3f;
      else
        x = 0.25f + float(g() % 500) * 1e-3f;
      b.logits.push_back(x);
    }
    b.logits[size_t(i * vocab + int64_t(g() % uint64_t(vocab)))] = 1.f;
    RowCase c;
    SamplingRowParams& p = c.p;
    p.seed = g();
    p.position = g() % 100000;
    p.num_logprobs = i % 4 == 0 ? 5 : -1;
    const float temps[] = {1.f, 0.7f, 1e6f, 1e30f};
    p.temperature = temps[i % 4];
    switch ((i / 4) % 5) {
      case 0:
        break;
      case 1:
        p.top_p = 0.7f;
        break;
      case 2:
        p.top_k = int32_t(vocab / 3 + 1);
        break;
      case 3:
        p.min_p = 0.3f;  // keeps the run (w ratio exp(-1 / T) >= 0.37), drops the -2 tokens at T 1
        break;
      case 4:
        p.top_k = int32_t(vocab / 2), p.top_p = 0.8f, p.min_p = 0.01f;
        break;
    }
    b.rows.push_back(c);
  }
  return b;
}

}  // namespace

TEST_CASE("gpu sampling orders distinct logits of equal weight by id", "[gpu][sampling]") {
  for (const int64_t vocab : {int64_t(1000), int64_t(163840)}) {
    const int64_t rows = vocab > 100000 ? 20 : 120;
    GpuSampler sampler(rows, vocab, kMaxLogprobs);
    Tally tally;
    const Batch b = make_tied_weight_batch(vocab, rows, 7);
    const GpuOut got = run_gpu(sampler, b);
    check_against_cpu(b, got, tally);
    int in_run = 0;  // draws that landed in the tied run: the case this test is about
    for (size_t i = 0; i < b.rows.size(); ++i) {
      const int32_t t = got.tokens[i];
      in_run += t >= 0 && t < vocab && std::abs(b.logits[i * size_t(vocab) + size_t(t)]) <= 1e-17f;
    }
    std::printf("sampling equal-w runs, vocab %lld: %d rows, %d draws inside the run, flips %d\n",
                (long long)vocab, tally.rows, in_run, tally.boundary_flips);
    CHECK(in_run >= rows / 4);  // the run holds most of the mass at every temperature
    // As in the mixed batches: only summation-order noise may flip a draw (margin <= 1e-6 checked).
    CHECK(tally.boundary_flips <= 2);
    CHECK(tally.top_swaps <= 2);
  }
}

TEST_CASE("gpu sampling matches sample_row_ref on mixed batches", "[gpu][sampling]") {
  struct Shape {
    int64_t vocab, rows, stride;
  };
  // The model's vocab (163840), a small and a tiny vocab, a padded row stride; three seeds each
  // for the small vocabs, two for the large one (the CPU twin sorts 163840 candidates a row).
  const Shape shapes[] = {{163840, 96, 163840}, {1000, 300, 1024}, {7, 200, 7}};
  for (const Shape& s : shapes) {
    GpuSampler sampler(s.rows, s.vocab, kMaxLogprobs);
    CHECK(sampler.workspace_bytes() >= s.rows * s.vocab * 16);
    CHECK(sampler.max_logprobs() == kMaxLogprobs);
    Tally tally;
    const int num_seeds = s.vocab > 100000 ? 2 : 3;
    for (uint64_t seed = 1; seed <= uint64_t(num_seeds); ++seed) {
      const Batch b = make_batch(s.vocab, s.rows, seed, s.stride);
      check_against_cpu(b, run_gpu(sampler, b), tally);
    }
    std::printf(
        "sampling vocab %lld: %d rows (%d sampled), token boundary flips %d, top-list swaps %d, "
        "max |logprob err| %.3g, workspace %.1f MiB\n",
        (long long)s.vocab, tally.rows, tally.sampled, tally.boundary_flips, tally.top_swaps,
        tally.max_lp_err, double(sampler.workspace_bytes()) / (1 << 20));
    // Flips need u within ~1e-16 of a boundary (the width of double summation-order noise); with
    // a few hundred draws, even 2 is a 1e-12-probability event, while a systematic error in the
    // order or the filters flips a large fraction of the sampled rows.
    CHECK(tally.boundary_flips <= 2);
    // Top-list swaps need two logprobs equal to within an fp32 rounding of x - lse.
    CHECK(tally.top_swaps <= 2);
  }
}

TEST_CASE("gpu sampling is repeatable and independent of the batch", "[gpu][sampling]") {
  const int64_t V = 163840, rows = 64;
  GpuSampler sampler(rows, V, kMaxLogprobs);
  const Batch b = make_batch(V, rows, 42);
  const GpuOut a = run_gpu(sampler, b), again = run_gpu(sampler, b);
  // The same (seed, position) and logits: bit-identical tokens and logprobs on every run.
  CHECK(a.tokens == again.tokens);
  CHECK(std::memcmp(a.logprobs.data(), again.logprobs.data(), a.logprobs.size() * 4) == 0);
  CHECK(a.top_tokens == again.top_tokens);
  CHECK(std::memcmp(a.top_logprobs.data(), again.top_logprobs.data(), a.top_logprobs.size() * 4) ==
        0);
  // Reversed row order (other neighbours, other positions in the batch): the same per-row results.
  Batch r = b;
  for (int64_t i = 0; i < rows; ++i) {
    std::copy_n(b.logits.begin() + (rows - 1 - i) * V, V, r.logits.begin() + i * V);
    r.rows[size_t(i)] = b.rows[size_t(rows - 1 - i)];
  }
  const GpuOut rev = run_gpu(sampler, r);
  for (int64_t i = 0; i < rows; ++i) {
    const size_t j = size_t(rows - 1 - i);
    CHECK(rev.tokens[size_t(i)] == a.tokens[j]);
    CHECK(std::memcmp(&rev.logprobs[size_t(i)], &a.logprobs[j], 4) == 0);
  }
  // The first 16 rows (16 of make_case's 17 kinds) again in batches of 1 (the device-wide sort of
  // single rows, sampling.cu) and of 3, against the 64-row batch (the segmented sort, checked
  // against the CPU twin above): the same tokens and logprobs, bit for bit.
  for (const int64_t n : {int64_t(1), int64_t(3)}) {
    for (int64_t r0 = 0; r0 < 16; r0 += n) {
      Batch part;
      part.vocab = b.vocab;
      part.stride = b.stride;
      part.logits.assign(b.logits.begin() + r0 * V, b.logits.begin() + (r0 + n) * V);
      part.rows.assign(b.rows.begin() + r0, b.rows.begin() + r0 + n);
      GpuSampler small(n, V, kMaxLogprobs);
      const GpuOut got = run_gpu(small, part);
      for (int64_t i = 0; i < n; ++i) {
        INFO("row " << r0 + i << " in a batch of " << n);
        CHECK(got.tokens[size_t(i)] == a.tokens[size_t(r0 + i)]);
        CHECK(std::memcmp(&got.logprobs[size_t(i)], &a.logprobs[size_t(r0 + i)], 4) == 0);
      }
    }
  }
}

TEST_CASE("gpu sampling timing at the model's vocab", "[gpu][sampling][perf]") {
  const int64_t V = 163840;
  for (int64_t rows : {1, 2, 64, 256}) {
    GpuSampler sampler(rows, V, kMaxLogprobs);
    for (int mode = 0; mode < 2; ++mode) {
      Batch b;
      b.vocab = b.stride = V;
      b.logits = random_normal(size_t(rows * V), 5, 2.f);
      for (int64_t i = 0; i < rows; ++i) {
        RowCase c;
        c.p.temperature = mode == 0 ? 0.f : 1.f;
        c.p.top_p = mode == 0 ? 1.f : 0.9f;
        c.p.seed = uint64_t(i);
        c.p.num_logprobs = -1;
        b.rows.push_back(c);
      }
      run_gpu(sampler, b);  // warm-up; run_gpu uploads, so time the run() calls themselves below
      std::vector<GpuSamplingRow> hr(static_cast<size_t>(rows));
      for (int64_t i = 0; i < rows; ++i) {
        hr[size_t(i)].temperature = b.rows[size_t(i)].p.temperature;
        hr[size_t(i)].top_p = b.rows[size_t(i)].p.top_p;
        hr[size_t(i)].seed = uint64_t(i);
        hr[size_t(i)].num_logprobs = -1;
      }
      DeviceBuffer<float> d_logits(b.logits);
      DeviceBuffer<GpuSamplingRow> d_rows(hr);
      DeviceBuffer<int32_t> d_out(static_cast<size_t>(rows));
      SamplingCudaParams p;
      p.logits = d_logits.get();
      p.num_rows = rows;
      p.vocab = V;
      p.rows = d_rows.get();
      p.out_tokens = d_out.get();
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      sampler.run(p, nullptr);
      cudaEventRecord(e0);
      const int iters = 20;
      for (int it = 0; it < iters; ++it) sampler.run(p, nullptr);
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      std::printf("sampling timing: vocab %lld rows %lld %s: %.1f us per step\n", (long long)V,
                  (long long)rows, mode == 0 ? "greedy" : "T=1 top_p=0.9", 1000.0 * ms / iters);
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
      CHECK(cudaGetLastError() == cudaSuccess);
    }
  }
}
