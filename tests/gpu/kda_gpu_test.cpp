// The CUDA recurrent KDA delta rule against kda_recurrent_ref per sequence, at the model's dims
// (32 heads, K = V = 128): ragged chunks and all-decode batches on non-contiguous state blocks with
// non-zero initial states (checked on the way out, untouched blocks bit-identical), the model's
// gates (cumulative gates very negative) and slow gates (long memory), and a prefill -> decode
// handoff over several steps equal to one pass over each sequence.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <set>

#include "kernels/kda/kda.h"
#include "kernels/kda/kda_cuda.h"
#include "tests/gpu/kda_gpu_util.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;
using namespace kl::test::kda;

namespace {

constexpr int64_t H = kHeads;
constexpr int64_t K = kHeadDim;
constexpr int64_t V = kHeadDim;
constexpr int64_t kStateSize = H * V * K;  // floats per state block
const float kScale = 1.f / std::sqrt(static_cast<float>(K));

enum class Gates { kModel, kSlow };

// Per-token inputs of the core as the kernel receives them: q, k L2-normalised then stored in T,
// v in T, g and beta fp32.
struct KdaInputs {
  std::vector<float> q, k, v, g, beta;  // [N, H, K], [N, H, K], [N, H, V], [N, H, K], [N, H]
};

template <typename T>
KdaInputs make_inputs(int64_t n, Gates gates, uint64_t seed) {
  KdaInputs in;
  in.q = random_normal(n * H * K, seed);
  in.k = random_normal(n * H * K, seed + 1);
  l2norm_rows_ref(in.q.data(), n * H, K, kL2Eps, 1.f);
  l2norm_rows_ref(in.k.data(), n * H, K, kL2Eps, 1.f);
  in.q = as_t<T>(in.q);
  in.k = as_t<T>(in.k);
  in.v = as_t<T>(random_normal(n * H * V, seed + 2));
  // Slow gates: per-token decay in (e^-0.05, 1], so the initial state and early tokens still
  // matter after 130 tokens.
  in.g = gates == Gates::kModel ? model_gates(n, seed + 3)
                                : random_uniform(n * H * K, seed + 3, -0.05f, 0.f);
  const auto b = random_normal(n * H, seed + 4, 2.f);
  in.beta.resize(b.size());
  kda_beta_ref(b.data(), n * H, in.beta.data());
  return in;
}

// Rows [row0, row0 + n) of every input.
KdaInputs slice(const KdaInputs& in, int64_t row0, int64_t n) {
  auto rows = [&](const std::vector<float>& v, int64_t width) {
    return std::vector<float>(v.begin() + row0 * width, v.begin() + (row0 + n) * width);
  };
  return {rows(in.q, H * K), rows(in.k, H * K), rows(in.v, H * V), rows(in.g, H * K),
          rows(in.beta, H)};
}

void append(KdaInputs& dst, const KdaInputs& src) {
  auto cat = [](std::vector<float>& a, const std::vector<float>& b) {
    a.insert(a.end(), b.begin(), b.end());
  };
  cat(dst.q, src.q);
  cat(dst.k, src.k);
  cat(dst.v, src.v);
  cat(dst.g, src.g);
  cat(dst.beta, src.beta);
}

// CPU: kda_recurrent_ref per sequence on its state block of `states`.
void recurrent_cpu(const KdaInputs& in, const std::vector<int>& lens,
                   const std::vector<int32_t>& blocks, std::vector<float>& states,
                   std::vector<float>& out) {
  const auto cu = cu_seqlens_of(lens);
  out.assign(cu.back() * H * V, 0.f);
  for (size_t s = 0; s < lens.size(); ++s) {
    const int64_t r = cu[s];
    kda_recurrent_ref({.q = in.q.data() + r * H * K,
                       .k = in.k.data() + r * H * K,
                       .v = in.v.data() + r * H * V,
                       .g = in.g.data() + r * H * K,
                       .beta = in.beta.data() + r * H,
                       .num_tokens = lens[s],
                       .num_heads = H,
                       .head_k = K,
                       .head_v = V,
                       .scale = kScale,
                       .state = states.data() + blocks[s] * kStateSize,
                       .out = out.data() + r * H * V});
  }
}

// GPU: one kda_recurrent_cuda call over the batch on the device states; returns the output rows.
template <typename T>
std::vector<float> recurrent_gpu(const KdaInputs& in, const std::vector<int>& lens,
                                 const std::vector<int32_t>& blocks, DeviceBuffer<float>& states) {
  const auto cu = cu_seqlens_of(lens);
  ActBuffer<T> dq(in.q), dk(in.k), dv(in.v), dout(static_cast<size_t>(cu.back() * H * V));
  DeviceBuffer<float> dg(in.g), dbeta(in.beta);
  DeviceBuffer<int32_t> dcu(cu), dblocks(blocks);
  KdaCudaParams<T> p;
  p.q = dq.get();
  p.k = dk.get();
  p.v = dv.get();
  p.g = dg.get();
  p.beta = dbeta.get();
  p.num_tokens = cu.back();
  p.num_seqs = static_cast<int>(lens.size());
  p.cu_seqlens = dcu.get();
  p.state_blocks = dblocks.get();
  p.max_seqlen = max_of(lens);
  p.num_heads = H;
  p.head_k = K;
  p.head_v = V;
  p.scale = kScale;
  p.states = states.get();
  p.out = dout.get();
  kda_recurrent_cuda<T>(p, nullptr);
  return dout.to_host();
}

double rms(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return v.empty() ? 0.0 : std::sqrt(s / v.size());
}

// Outputs. fp32: the two sides differ only in the order of the 128-term dot products (r and o),
// carried through the recurrence, which is contractive (decay <= 1, |k| = 1, beta in (0, 1)):
// a few fp32 ulps, so 1e-5 relative L2 holds with a margin. bf16: the twin is the same fp32
// function rounded to bf16 (inputs already bf16); an element may round the other way (one bf16
// ulp) and outputs near zero (o is a dot product, so cancellation happens) may differ by the fp32
// evaluation-order error itself, bounded by 1e-5 of the outputs' RMS as in the fp32 check.
template <typename T>
void check_outputs(const std::vector<float>& got, const std::vector<float>& want_f32) {
  if constexpr (kIsBf16<T>) {
    check_bf16_close(got, as_t<T>(want_f32), 1e-5 * rms(want_f32), 0.01);
  } else {
    const double err = rel_l2(got, want_f32);
    std::printf("  recurrent fp32 out: rel_l2 %.3g over %zu (max abs diff %.3g, rms %.3g)\n", err,
                got.size(), max_abs_diff(got.data(), want_f32.data(), got.size()), rms(want_f32));
    INFO("fp32 output rel_l2 " << err << ", max abs diff "
                               << max_abs_diff(got.data(), want_f32.data(), got.size())
                               << ", output rms " << rms(want_f32));
    CHECK(err <= 1e-5);
  }
}

// States: fp32 in both modes, same argument as the fp32 outputs; blocks no sequence (or only an
// empty chunk) names must be bit-identical.
void check_states(const std::vector<float>& got, const std::vector<float>& want,
                  const std::vector<float>& before, const std::set<int32_t>& written) {
  const double err = rel_l2(got, want);
  std::printf("  recurrent final states: rel_l2 %.3g\n", err);
  INFO("final state rel_l2 " << err);
  CHECK(err <= 1e-5);
  const int64_t num_blocks = static_cast<int64_t>(got.size()) / kStateSize;
  for (int32_t b = 0; b < num_blocks; ++b) {
    if (written.count(b)) continue;
    INFO("untouched state block " << b);
    CHECK(std::equal(got.begin() + b * kStateSize, got.begin() + (b + 1) * kStateSize,
                     before.begin() + b * kStateSize));
  }
}

template <typename T>
void check_recurrent_batch(const std::vector<int>& lens, const std::vector<int32_t>& blocks,
                           int num_blocks, Gates gates, uint64_t seed) {
  const int64_t n = cu_seqlens_of(lens).back();
  const KdaInputs in = make_inputs<T>(n, gates, seed);
  const std::vector<float> states0 = random_normal(num_blocks * kStateSize, seed + 9, 0.5f);

  DeviceBuffer<float> dstates(states0);
  const auto got = recurrent_gpu<T>(in, lens, blocks, dstates);
  std::vector<float> states = states0, want;
  recurrent_cpu(in, lens, blocks, states, want);

  check_outputs<T>(got, want);
  std::set<int32_t> written;
  for (size_t s = 0; s < lens.size(); ++s) {
    if (lens[s] > 0) written.insert(blocks[s]);
  }
  check_states(dstates.to_host(), states, states0, written);
}

std::vector<int32_t> permuted_blocks(int num_seqs, int num_blocks, uint64_t seed) {
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  ids.resize(num_seqs);
  return ids;
}

template <typename T>
void recurrent_batches() {
  SECTION("ragged chunks (one empty), model gates, blocks {5, 0, 9, 2, 11, 7, 4} of 12") {
    check_recurrent_batch<T>({1, 2, 5, 64, 0, 65, 130}, {5, 0, 9, 2, 4, 11, 7}, 12, Gates::kModel,
                             21);
  }
  SECTION("ragged chunks, slow gates (long memory)") {
    check_recurrent_batch<T>({1, 2, 5, 64, 65, 130}, {5, 0, 9, 2, 11, 7}, 12, Gates::kSlow, 22);
  }
  SECTION("all-decode batch of 37 sequences, model gates") {
    check_recurrent_batch<T>(std::vector<int>(37, 1), permuted_blocks(37, 40, 23), 40,
                             Gates::kModel, 24);
  }
  SECTION("all-decode batch of 37 sequences, slow gates") {
    check_recurrent_batch<T>(std::vector<int>(37, 1), permuted_blocks(37, 40, 25), 40, Gates::kSlow,
                             26);
  }
}

// Three sequences advance over five steps with different chunkings (prefill chunks, then decode
// tokens, mixed in one batch) on persistent device states; each sequence's outputs and final
// state must match one CPU pass over the whole sequence from the same initial state.
template <typename T>
void recurrent_handoff(Gates gates) {
  const int num_blocks = 12;
  const std::vector<int32_t> seq_block = {5, 0, 9};
  const std::vector<std::vector<std::pair<int, int>>> steps = {
      {{0, 70}, {1, 5}},        {{2, 130}, {0, 1}, {1, 64}},
      {{1, 1}, {2, 2}, {0, 1}}, {{0, 1}, {1, 1}, {2, 1}},
      {{2, 1}, {0, 1}},
  };
  std::vector<int> total(3, 0);
  for (const auto& step : steps) {
    for (auto [s, n] : step) total[s] += n;
  }
  std::vector<KdaInputs> seq_in;
  for (int s = 0; s < 3; ++s) seq_in.push_back(make_inputs<T>(total[s], gates, 200 + 10 * s));
  const std::vector<float> states0 = random_normal(num_blocks * kStateSize, 9, 0.5f);

  DeviceBuffer<float> dstates(states0);
  std::vector<std::vector<float>> got(3);
  std::vector<int> done(3, 0);
  for (const auto& step : steps) {
    KdaInputs batch;
    std::vector<int> lens;
    std::vector<int32_t> blocks;
    for (auto [s, n] : step) {
      append(batch, slice(seq_in[s], done[s], n));
      lens.push_back(n);
      blocks.push_back(seq_block[s]);
    }
    const auto out = recurrent_gpu<T>(batch, lens, blocks, dstates);
    int64_t row = 0;
    for (auto [s, n] : step) {
      got[s].insert(got[s].end(), out.begin() + row * H * V, out.begin() + (row + n) * H * V);
      row += n;
      done[s] += n;
    }
  }

  std::vector<float> states = states0;
  for (int s = 0; s < 3; ++s) {
    std::vector<float> want;
    recurrent_cpu(seq_in[s], {total[s]}, {seq_block[s]}, states, want);
    INFO("sequence " << s << " (" << total[s] << " tokens)");
    check_outputs<T>(got[s], want);
  }
  check_states(dstates.to_host(), states, states0, {seq_block.begin(), seq_block.end()});
}

}  // namespace

TEST_CASE("gpu kda recurrent fp32 matches kda_recurrent_ref per sequence", "[gpu][kda]") {
  recurrent_batches<float>();
}

TEST_CASE("gpu kda recurrent bf16 matches a twin rounding its output to bf16", "[gpu][kda][bf16]") {
  recurrent_batches<__nv_bfloat16>();
}

TEST_CASE("gpu kda recurrent fp32: prefill chunk then decode steps equal one pass", "[gpu][kda]") {
  SECTION("model gates") {
    recurrent_handoff<float>(Gates::kModel);
  }
  SECTION("slow gates") {
    recurrent_handoff<float>(Gates::kSlow);
  }
}

TEST_CASE("gpu kda recurrent bf16: prefill chunk then decode steps equal one pass",
          "[gpu][kda][bf16]") {
  SECTION("model gates") {
    recurrent_handoff<__nv_bfloat16>(Gates::kModel);
  }
  SECTION("slow gates") {
    recurrent_handoff<__nv_bfloat16>(Gates::kSlow);
  }
}

TEST_CASE("gpu kda recurrent rejects bad parameters", "[gpu][kda]") {
  KdaCudaParams<float> p;
  p.num_heads = H;
  p.head_k = 100;
  p.head_v = V;
  CHECK_THROWS_WITH(kda_recurrent_cuda<float>(p, nullptr), Catch::Contains("head_k"));
  p.head_k = K;
  p.num_tokens = 3;
  p.num_seqs = 1;
  p.max_seqlen = 3;
  CHECK_THROWS_WITH(kda_recurrent_cuda<float>(p, nullptr), Catch::Contains("null device pointer"));
}
