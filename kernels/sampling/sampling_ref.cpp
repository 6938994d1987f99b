// CPU twin of per-row sampling: logits processors, greedy or temperature / min-p / top-k / top-p
// sampling with a counter-based uniform, and log-probabilities of the raw logits. This file is the
// specification of the order of operations that the GPU sampler replicates.
//
// The procedure of sample_row_ref (vLLM v1 semantics):
//  1. Copy the logits; NaN becomes -inf (a NaN token can never be drawn and gets logprob -inf).
//  2. Banned tokens become -inf.
//  3. logit_bias entries are added (duplicate ids accumulate); a ban wins over any bias (the
//     code applies the bans after the bias, which gives the same result).
//  4. Repetition penalty over the set of distinct tokens of prompt + output, each once:
//     l > 0 ? l / p : l * p.
//  5. Frequency then presence penalty over the output counts: l -= f * count; l -= pres.
//     Any NaN produced by 3-5 (inf - inf, -inf * 0) becomes -inf again.
//     Token ids outside [0, vocab) in the history, bias or bans are ignored.
//  6. temperature <= kGreedyTemperature (or NaN): the arg-max, lowest id on ties; no randomness.
//     Otherwise weights w_i = exp((l_i - max) / T) in double (w = 0 for -inf; if the max is +inf,
//     the +inf tokens get w = 1 and the rest 0). Tokens with w = 0 are not candidates.
//  7. The candidates in the canonical order: w descending, then id ascending. Filters keep a
//     prefix of that order, and always at least its first token:
//       min_p: drop w < min_p * w_max (w_max = w of the first token). It runs first as in vLLM
//              v1 (an argmax-invariant processor before the top-k/top-p sampler); because it is
//              relative to the maximum, it commutes with top-k.
//       top_k: keep the first k (so boundary ties keep the lower ids); <= 0 or >= count: off.
//       top_p: over the prefix left so far with mass M (summed in canonical order), keep token j
//              iff the mass of the tokens before it is < top_p * M (the smallest prefix whose
//              mass is >= top_p * M, i.e. top-p of the renormalised distribution); >= 1: off.
//     A NaN min_p or top_p is off; top_p <= 0 or min_p > 1 keep the first token only.
//  8. u = sampling_uniform(seed, position); target = u * S where S is the kept mass summed in
//     canonical order; walk the kept tokens in canonical order accumulating w and pick the first
//     whose inclusive sum is > target (the last kept token if rounding leaves none). Scaling the
//     target by S is the renormalisation. The uniform: u = (x >> 11) * 2^-53 with
//     x = sm(sm(seed) ^ position), sm = one splitmix64 step (add 0x9E3779B97F4A7C15, finalize).
// If step 5 leaves no token above -inf, the row falls back to the arg-max of the raw logits
// (NaN as -inf; token 0 if those are all -inf too): processors that remove every token are a
// caller error, and the model's own choice is the least surprising answer.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/sampling/sampling.h"

namespace kl::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

float nan_to_neg_inf(float x) {
  return std::isnan(x) ? -kInf : x;
}

bool in_vocab(int64_t t, int64_t vocab) {
  return t >= 0 && t < vocab;
}

// One splitmix64 step: add the golden-ratio increment, then the finalizer.
uint64_t splitmix64(uint64_t x) {
  x += kGolden;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Arg-max with the lowest id on ties; token 0 when every value is -inf.
int32_t argmax_lowest_id(const float* v, int64_t n) {
  int64_t best = 0;
  float best_v = nan_to_neg_inf(v[0]);
  for (int64_t i = 1; i < n; ++i) {
    const float x = nan_to_neg_inf(v[i]);
    if (x > best_v) {  // strictly greater: a later equal value never replaces a lower id
      best = i;
      best_v = x;
    }
  }
  return static_cast<int32_t>(best);
}

struct Candidate {
  double w;  // unnormalised probability, exp((l - max) / T)
  int32_t id;
};

// The canonical order: probability descending, id ascending.
bool canonical_before(const Candidate& a, const Candidate& b) {
  return a.w > b.w || (a.w == b.w && a.id < b.id);
}

// Steps 6-7 for a non-greedy row: the kept tokens in canonical order (empty if no candidate).
std::vector<Candidate> kept_candidates(const float* l, int64_t vocab, const SamplingRowParams& p) {
  float max_l = -kInf;
  for (int64_t i = 0; i < vocab; ++i) max_l = std::max(max_l, nan_to_neg_inf(l[i]));
  std::vector<Candidate> c;
  if (max_l == -kInf) return c;

  const double t = p.temperature;
  for (int64_t i = 0; i < vocab; ++i) {
    const float x = nan_to_neg_inf(l[i]);
    double w;
    if (max_l == kInf) {
      w = x == kInf ? 1.0 : 0.0;  // +inf tokens share the mass; inf - inf must not reach exp
    } else {
      // -inf is tested explicitly: (-inf - max) / T would be NaN for T = +inf.
      w = x == -kInf ? 0.0 : std::exp((double(x) - double(max_l)) / t);
    }
    if (w > 0) c.push_back({w, static_cast<int32_t>(i)});
  }
  // c is non-empty: the max token has w = exp(0) = 1.

  const size_t n = c.size();
  size_t keep = n;
  if (p.top_k > 0 && size_t(p.top_k) < n) {
    // Only the first top_k can survive (min_p and top_p only shorten the prefix further).
    keep = size_t(p.top_k);
    std::partial_sort(c.begin(), c.begin() + keep, c.end(), canonical_before);
  } else {
    std::sort(c.begin(), c.end(), canonical_before);
  }

  if (p.min_p > 0) {
    const double threshold = double(p.min_p) * c[0].w;
    size_t j = 1;
    while (j < keep && !(c[j].w < threshold)) ++j;
    keep = j;
  }

  if (p.top_p < 1) {
    double mass = 0;
    for (size_t j = 0; j < keep; ++j) mass += c[j].w;
    const double target = double(p.top_p) * mass;
    double before = 0;  // mass of the tokens ahead of c[j]
    size_t j = 0;
    do {
      before += c[j].w;
      ++j;
    } while (j < keep && before < target);
    keep = j;
  }

  c.resize(keep);
  return c;
}

bool is_greedy(const SamplingRowParams& p) {
  // Written as "not above" so that a NaN temperature is greedy rather than a NaN distribution.
  return !(p.temperature > kGreedyTemperature);
}

}  // namespace

double sampling_uniform(uint64_t seed, uint64_t position) {
  // Round 1 keys the stream by the seed; round 2 mixes the position into that key. For one seed
  // the map position -> value is a bijection of 64-bit words, and two seeds' streams would only
  // coincide at positions whose XOR equals the XOR of their round-1 keys (a random 64-bit word).
  const uint64_t key = splitmix64(seed);
  const uint64_t x = splitmix64(key ^ position);
  return double(x >> 11) * 0x1.0p-53;  // top 53 bits: exact in a double, < 1
}

void apply_logits_processors_ref(const float* logits, int64_t vocab, const SamplingRowParams& p,
                                 const SamplingHistory& h, float* out) {
  for (int64_t i = 0; i < vocab; ++i) out[i] = nan_to_neg_inf(logits[i]);

  // The bans go in after the bias: the same result as bans first for any finite bias, and a ban
  // also wins over a +inf bias (-inf + inf would be NaN).
  for (int64_t i = 0; i < h.num_logit_bias; ++i) {
    const auto [t, bias] = h.logit_bias[i];
    if (in_vocab(t, vocab)) out[t] += bias;
  }
  for (int64_t i = 0; i < h.num_banned_tokens; ++i) {
    const int32_t t = h.banned_tokens[i];
    if (in_vocab(t, vocab)) out[t] = -kInf;
  }

  if (p.repetition_penalty != 1.f) {
    // Each distinct token once, however often it occurs in prompt and output.
    std::vector<int32_t> seen;
    seen.reserve(size_t(h.num_prompt_tokens + h.num_output_tokens));
    for (int64_t i = 0; i < h.num_prompt_tokens; ++i) seen.push_back(h.prompt_tokens[i]);
    for (int64_t i = 0; i < h.num_output_tokens; ++i) seen.push_back(h.output_tokens[i]);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    const float rp = p.repetition_penalty;
    for (const int32_t t : seen) {
      if (!in_vocab(t, vocab)) continue;
      out[t] = out[t] > 0 ? out[t] / rp : out[t] * rp;
    }
  }

  if (p.frequency_penalty != 0.f || p.presence_penalty != 0.f) {
    std::vector<int32_t> outs(h.output_tokens, h.output_tokens + h.num_output_tokens);
    std::sort(outs.begin(), outs.end());
    for (size_t i = 0; i < outs.size();) {
      size_t j = i;
      while (j < outs.size() && outs[j] == outs[i]) ++j;
      const int32_t t = outs[i];
      if (in_vocab(t, vocab)) {
        out[t] -= p.frequency_penalty * float(j - i);
        out[t] -= p.presence_penalty;
      }
      i = j;
    }
  }

  for (int64_t i = 0; i < vocab; ++i) out[i] = nan_to_neg_inf(out[i]);
}

void sampling_probs_ref(const float* processed_logits, int64_t vocab, const SamplingRowParams& p,
                        float* probs) {
  std::fill(probs, probs + vocab, 0.f);
  if (vocab <= 0) return;
  const std::vector<Candidate> kept = kept_candidates(processed_logits, vocab, p);
  double mass = 0;
  for (const Candidate& c : kept) mass += c.w;
  for (const Candidate& c : kept) probs[c.id] = float(c.w / mass);
}

void log_softmax_ref(const float* logits, int64_t vocab, float* out) {
  if (vocab <= 0) return;
  float max_l = -kInf;
  for (int64_t i = 0; i < vocab; ++i) max_l = std::max(max_l, nan_to_neg_inf(logits[i]));
  if (max_l == -kInf) {
    // No token has any probability: report -inf for all rather than NaN.
    std::fill(out, out + vocab, -kInf);
    return;
  }
  if (max_l == kInf) {
    // The limit of softmax: the +inf tokens share the mass equally.
    int64_t num_inf = 0;
    for (int64_t i = 0; i < vocab; ++i) num_inf += logits[i] == kInf;
    const float lp = float(-std::log(double(num_inf)));
    for (int64_t i = 0; i < vocab; ++i) out[i] = logits[i] == kInf ? lp : -kInf;
    return;
  }
  // Double-precision sum and log-sum-exp; exp(-inf - max) = 0 takes care of -inf entries.
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(nan_to_neg_inf(logits[i])) - max_l);
  const double lse = double(max_l) + std::log(sum);
  for (int64_t i = 0; i < vocab; ++i) out[i] = float(double(nan_to_neg_inf(logits[i])) - lse);
}

SampleOutput sample_row_ref(const float* logits, int64_t vocab, const SamplingRowParams& p,
                            const SamplingHistory& h) {
  SampleOutput res;
  if (vocab <= 0) return res;

  std::vector<float> l(static_cast<size_t>(vocab));
  apply_logits_processors_ref(logits, vocab, p, h, l.data());

  if (is_greedy(p)) {
    res.token = argmax_lowest_id(l.data(), vocab);
    if (l[size_t(res.token)] == -kInf) res.token = argmax_lowest_id(logits, vocab);
  } else {
    const std::vector<Candidate> kept = kept_candidates(l.data(), vocab, p);
    if (kept.empty()) {
      res.token = argmax_lowest_id(logits, vocab);
    } else {
      double mass = 0;
      for (const Candidate& c : kept) mass += c.w;
      const double target = sampling_uniform(p.seed, p.position) * mass;
      res.token = kept.back().id;
      double cum = 0;
      for (const Candidate& c : kept) {
        cum += c.w;
        if (target < cum) {
          res.token = c.id;
          break;
        }
      }
    }
  }

  if (p.num_logprobs < 0) return res;
  std::vector<float> lp(static_cast<size_t>(vocab));
  log_softmax_ref(logits, vocab, lp.data());
  res.logprob = lp[size_t(res.token)];

  const int64_t k = std::min<int64_t>(p.num_logprobs, vocab);
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return lp[a] > lp[b] || (lp[a] == lp[b] && a < b);
  });
  res.top.reserve(size_t(k));
  for (int64_t i = 0; i < k; ++i) res.top.push_back({ids[size_t(i)], lp[size_t(ids[size_t(i)])]});
  return res;
}

}  // namespace kl::kernels
