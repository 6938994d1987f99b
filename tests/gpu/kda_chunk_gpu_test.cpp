// The CUDA chunked KDA prefill (kda_chunked_cuda) against its CPU twins kda_recurrent_ref and
// kda_chunked_ref at the model's real dimensions (H = 32, K = V = 128) on varlen batches with
// realistic gates, non-contiguous state blocks and non-zero initial states; bf16 against a twin
// rounding where the kernel rounds; the prefill -> decode state handoff; a timing print.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "engine/core/dtype.h"
#include "kernels/kda/kda.h"
#include "kernels/kda/kda_cuda.h"
#include "kernels/kda/kda_gate.h"
#include "tests/gpu/device_buffer.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;

namespace {

constexpr int64_t kH = 32;
constexpr int64_t kK = 128;
constexpr int64_t kV = 128;
constexpr int64_t kStateSize = kH * kV * kK;  // one state block
constexpr int kNumBlocks = 12;

struct KdaBatch {
  std::vector<int32_t> lens, cu, blocks;
  int64_t num_tokens = 0;
  std::vector<float> q, k, v, g, beta;  // q, k L2-normalised per head
  std::vector<float> states;            // [kNumBlocks, H, V, K]
  float scale = 1.f / std::sqrt(static_cast<float>(kK));
};

std::vector<int32_t> prefix_sums(const std::vector<int32_t>& lens) {
  std::vector<int32_t> cu{0};
  for (int32_t n : lens) cu.push_back(cu.back() + n);
  return cu;
}

// Inputs as the model produces them: g = -exp(A_log) softplus(f + dt_bias) with
// A_log = log(U(1, 16)); dt_bias spans slow channels (state carried over many chunks) and fast
// ones (cumulative gate far below -1000 within a chunk).
KdaBatch make_batch(const std::vector<int32_t>& lens, const std::vector<int32_t>& blocks,
                    uint64_t seed) {
  KdaBatch b;
  b.lens = lens;
  b.blocks = blocks;
  b.cu = prefix_sums(lens);
  b.num_tokens = b.cu.back();
  const int64_t T = b.num_tokens;
  b.q = random_normal(T * kH * kK, seed + 1);
  b.k = random_normal(T * kH * kK, seed + 2);
  l2norm_rows_ref(b.q.data(), T * kH, kK, 1e-6f, 1.f);
  l2norm_rows_ref(b.k.data(), T * kH, kK, 1e-6f, 1.f);
  b.v = random_normal(T * kH * kV, seed + 3);
  const auto f = random_normal(T * kH * kK, seed + 4);
  auto a_log = random_uniform(kH, seed + 5, 1.f, 16.f);
  for (float& a : a_log) a = std::log(a);
  const auto dt_bias = random_uniform(kH * kK, seed + 6, -6.f, 2.f);
  b.g.resize(T * kH * kK);
  KdaGateParams gp;
  gp.f = f.data();
  gp.a_log = {a_log.data(), DType::kF32, 1, kH};
  gp.dt_bias = {dt_bias.data(), DType::kF32, 1, kH * kK};
  gp.num_tokens = T;
  gp.num_heads = kH;
  gp.head_dim = kK;
  gp.g = b.g.data();
  kda_gate_ref(gp);
  const auto braw = random_normal(T * kH, seed + 7);
  b.beta.resize(T * kH);
  kda_beta_ref(braw.data(), T * kH, b.beta.data());
  b.states = random_normal(kNumBlocks * kStateSize, seed + 8, 0.5f);
  return b;
}

// The most negative chunk-local cumulative gate of the batch (chunks of 64 per sequence).
float min_chunk_cumulative_gate(const KdaBatch& b) {
  float lowest = 0.f;
  for (size_t s = 0; s < b.lens.size(); ++s) {
    for (int64_t t0 = 0; t0 < b.lens[s]; t0 += 64) {
      std::vector<float> G(kH * kK, 0.f);
      for (int64_t t = t0; t < std::min<int64_t>(t0 + 64, b.lens[s]); ++t) {
        const float* g = b.g.data() + (b.cu[s] + t) * kH * kK;
        for (int64_t i = 0; i < kH * kK; ++i) lowest = std::min(lowest, G[i] += g[i]);
      }
    }
  }
  return lowest;
}

struct KdaResult {
  std::vector<float> out;     // [T, H, V]
  std::vector<float> states;  // [kNumBlocks, H, V, K]
};

// CPU twin per sequence, on the given (possibly bf16-rounded) q, k, v.
KdaResult run_cpu(const KdaBatch& b, bool chunked, const std::vector<float>& q,
                  const std::vector<float>& k, const std::vector<float>& v) {
  KdaResult r{std::vector<float>(b.num_tokens * kH * kV), b.states};
  for (size_t s = 0; s < b.lens.size(); ++s) {
    const int64_t t0 = b.cu[s];
    KdaParams p;
    p.q = q.data() + t0 * kH * kK;
    p.k = k.data() + t0 * kH * kK;
    p.v = v.data() + t0 * kH * kV;
    p.g = b.g.data() + t0 * kH * kK;
    p.beta = b.beta.data() + t0 * kH;
    p.num_tokens = b.lens[s];
    p.num_heads = kH;
    p.head_k = kK;
    p.head_v = kV;
    p.scale = b.scale;
    p.state = r.states.data() + b.blocks[s] * kStateSize;
    p.out = r.out.data() + t0 * kH * kV;
    if (chunked) {
      kda_chunked_ref(p);
    } else {
      kda_recurrent_ref(p);
    }
  }
  return r;
}

// The GPU kernel; S is the host storage of T (float, or uint16_t bf16 bits).
template <typename T, typename S>
KdaResult run_gpu(const KdaBatch& b, const std::vector<S>& q, const std::vector<S>& k,
                  const std::vector<S>& v, int timing_iters = 0, float* ms_per_call = nullptr) {
  DeviceBuffer<S> dq(q), dk(k), dv(v), dout(b.num_tokens * kH * kV);
  DeviceBuffer<float> dg(b.g), dbeta(b.beta), dstates(b.states);
  DeviceBuffer<int32_t> dcu(b.cu), dblocks(b.blocks);
  KdaCudaParams<T> p;
  p.q = reinterpret_cast<const T*>(dq.get());
  p.k = reinterpret_cast<const T*>(dk.get());
  p.v = reinterpret_cast<const T*>(dv.get());
  p.g = dg.get();
  p.beta = dbeta.get();
  p.num_tokens = b.num_tokens;
  p.num_seqs = static_cast<int>(b.lens.size());
  p.cu_seqlens = dcu.get();
  p.state_blocks = dblocks.get();
  p.max_seqlen = *std::max_element(b.lens.begin(), b.lens.end());
  p.num_heads = kH;
  p.head_k = kK;
  p.head_v = kV;
  p.scale = b.scale;
  p.states = dstates.get();
  p.out = reinterpret_cast<T*>(dout.get());
  kda_chunked_cuda<T>(p, nullptr);
  KdaResult r{{}, dstates.to_host()};
  for (const S& x : dout.to_host()) {
    if constexpr (sizeof(S) == 2) {
      r.out.push_back(bf16_to_f32(x));
    } else {
      r.out.push_back(x);
    }
  }
  if (timing_iters > 0) {  // the state keeps evolving; only the time is of interest here
    cudaEvent_t start, stop;
    cuda_ok(cudaEventCreate(&start), "cudaEventCreate");
    cuda_ok(cudaEventCreate(&stop), "cudaEventCreate");
    cuda_ok(cudaEventRecord(start), "cudaEventRecord");
    for (int i = 0; i < timing_iters; ++i) kda_chunked_cuda<T>(p, nullptr);
    cuda_ok(cudaEventRecord(stop), "cudaEventRecord");
    cuda_ok(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0.f;
    cuda_ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    *ms_per_call = ms / timing_iters;
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  return r;
}

std::vector<float> bf16_values(const std::vector<uint16_t>& bits) {
  std::vector<float> f;
  f.reserve(bits.size());
  for (uint16_t x : bits) f.push_back(bf16_to_f32(x));
  return f;
}

double seq_out_err(const KdaBatch& b, size_t s, const KdaResult& got, const KdaResult& want) {
  const size_t off = static_cast<size_t>(b.cu[s]) * kH * kV;
  return rel_l2(got.out.data() + off, want.out.data() + off, b.lens[s] * kH * kV);
}
double seq_state_err(const KdaBatch& b, size_t s, const KdaResult& got, const KdaResult& want) {
  const size_t off = static_cast<size_t>(b.blocks[s]) * kStateSize;
  return rel_l2(got.states.data() + off, want.states.data() + off, kStateSize);
}

// Blocks that no sequence owns must come back bit for bit.
void check_unowned_blocks(const KdaBatch& b, const KdaResult& got) {
  for (int blk = 0; blk < kNumBlocks; ++blk) {
    if (std::find(b.blocks.begin(), b.blocks.end(), blk) != b.blocks.end()) continue;
    const size_t off = static_cast<size_t>(blk) * kStateSize;
    INFO("unowned block " << blk);
    CHECK(std::equal(got.states.begin() + off, got.states.begin() + off + kStateSize,
                     b.states.begin() + off));
  }
}

struct Case {
  std::vector<int32_t> lens, blocks;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all{
      {{1, 63, 64, 65, 200, 300}, {7, 2, 9, 0, 5, 3}},  // ragged chunks, non-contiguous blocks
      {{1000}, {4}},                                    // one long sequence (15 full chunks + 40)
      {{130, 0, 7}, {1, 8, 10}},                        // an empty sequence leaves its block alone
  };
  return all;
}

}  // namespace

TEST_CASE("gpu kda chunked fp32 matches kda_recurrent_ref and kda_chunked_ref",
          "[gpu][kda_chunk]") {
  uint64_t seed = 100;
  for (const Case& c : cases()) {
    const KdaBatch b = make_batch(c.lens, c.blocks, seed += 10);
    const float lowest = min_chunk_cumulative_gate(b);
    if (b.num_tokens >= 64) CHECK(lowest < -1000.f);  // the regime where exp(-G) would overflow
    const KdaResult rec = run_cpu(b, false, b.q, b.k, b.v);
    const KdaResult chk = run_cpu(b, true, b.q, b.k, b.v);
    const KdaResult gpu = run_gpu<float>(b, b.q, b.k, b.v);
    std::printf("fp32 batch of %zu (min chunk cumulative gate %.0f):\n", b.lens.size(), lowest);
    for (size_t s = 0; s < b.lens.size(); ++s) {
      const double out_rec = seq_out_err(b, s, gpu, rec), out_chk = seq_out_err(b, s, gpu, chk);
      const double st_rec = seq_state_err(b, s, gpu, rec), st_chk = seq_state_err(b, s, gpu, chk);
      std::printf(
          "  len %4d: out rel_l2 vs recurrent %.2e, vs chunked %.2e; state vs recurrent %.2e, vs "
          "chunked %.2e\n",
          b.lens[s], out_rec, out_chk, st_rec, st_chk);
      INFO("sequence " << s << " of length " << b.lens[s]);
      // Both sides are fp32 evaluations of the same function in different orders (GPU: chunked,
      // with cumulative-gate differences and __expf; CPU: recurrent or chunked with directly
      // summed gate differences). The delta rule is non-expansive (||k|| = 1, 0 < beta < 1), so
      // rounding does not grow along the sequence; 1e-5 is ~10x what such reorderings give.
      CHECK(out_rec <= 1e-5);
      CHECK(out_chk <= 1e-5);
      CHECK(st_rec <= 1e-5);
      CHECK(st_chk <= 1e-5);
    }
    check_unowned_blocks(b, gpu);
  }
}

TEST_CASE("gpu kda chunked bf16 matches a twin rounding the inputs and the output",
          "[gpu][kda_chunk][bf16]") {
  // The bf16 kernel widens q, k, v exactly to fp32, keeps every intermediate (gates, A_qk, A_kk,
  // the inverse, V', the state) in fp32 and rounds only the output. The twin: kda_recurrent_ref
  // on the bf16 values, its output rounded to bf16; the state is fp32 on both sides.
  uint64_t seed = 500;
  for (const Case& c : cases()) {
    const KdaBatch b = make_batch(c.lens, c.blocks, seed += 10);
    const auto qb = to_bf16(b.q), kb = to_bf16(b.k), vb = to_bf16(b.v);
    KdaResult want = run_cpu(b, false, bf16_values(qb), bf16_values(kb), bf16_values(vb));
    for (float& x : want.out) x = round_to_bf16(x);
    const KdaResult gpu = run_gpu<__nv_bfloat16>(b, qb, kb, vb);
    const double out_err = rel_l2(gpu.out, want.out);
    const double st_err = rel_l2(gpu.states, want.states);
    int flips = 0, beyond = 0;
    for (size_t i = 0; i < want.out.size(); ++i) {
      // One bf16 ulp is at most 2^-7 of the value; the 1e-5 absolute term covers values near
      // zero, where the fp32 difference of the two orders (~1e-6 of the output scale) can move
      // the rounding by more than one of their tiny ulps.
      const float tol = std::ldexp(std::fabs(want.out[i]), -7) + 1e-5f;
      beyond += std::fabs(gpu.out[i] - want.out[i]) > tol;
      flips += gpu.out[i] != want.out[i];
    }
    std::printf(
        "bf16 batch of %zu: out rel_l2 %.2e (%d of %zu elements differ by a rounding), state "
        "rel_l2 %.2e\n",
        b.lens.size(), out_err, flips, want.out.size(), st_err);
    CHECK(beyond == 0);
    // Flips need the fp32 difference (~1e-6 relative) to straddle a rounding boundary (2^-8
    // apart): expect ~1e-3 of the elements, each off by one ulp, so ~1e-4 rel_l2 at most.
    CHECK(flips <= static_cast<int>(want.out.size() / 100));
    CHECK(out_err <= 3e-4);
    CHECK(st_err <= 1e-5);  // fp32 state from identical inputs: as in the fp32 test
    check_unowned_blocks(b, gpu);
  }
}

TEST_CASE("gpu kda chunked prefill hands its state to the CPU recurrent decode",
          "[gpu][kda_chunk]") {
  // Full sequences of 300, 200 and 130 tokens; the GPU prefills the first 200, 64 and 65, the
  // CPU recurrent form continues from the GPU's final state; the whole must equal the CPU
  // recurrent form over all tokens.
  const std::vector<int32_t> full_lens{300, 200, 130}, prefix_lens{200, 64, 65};
  const std::vector<int32_t> blocks{6, 1, 11};
  const KdaBatch full = make_batch(full_lens, blocks, 900);
  const KdaResult want = run_cpu(full, false, full.q, full.k, full.v);

  // The prefix batch: the first prefix_lens[s] rows of each sequence, packed.
  KdaBatch pre = full;
  pre.lens = prefix_lens;
  pre.cu = prefix_sums(prefix_lens);
  pre.num_tokens = pre.cu.back();
  auto pack = [&](const std::vector<float>& x, int64_t width) {
    std::vector<float> y;
    for (size_t s = 0; s < full_lens.size(); ++s) {
      const auto first = x.begin() + full.cu[s] * width;
      y.insert(y.end(), first, first + prefix_lens[s] * width);
    }
    return y;
  };
  pre.q = pack(full.q, kH * kK);
  pre.k = pack(full.k, kH * kK);
  pre.v = pack(full.v, kH * kV);
  pre.g = pack(full.g, kH * kK);
  pre.beta = pack(full.beta, kH);
  const KdaResult gpu = run_gpu<float>(pre, pre.q, pre.k, pre.v);

  std::vector<float> states = gpu.states;  // decode continues from the GPU's final states
  std::vector<float> out(full.num_tokens * kH * kV);
  for (size_t s = 0; s < full_lens.size(); ++s) {
    std::copy_n(gpu.out.begin() + pre.cu[s] * kH * kV, prefix_lens[s] * kH * kV,
                out.begin() + full.cu[s] * kH * kV);
    const int64_t t0 = full.cu[s] + prefix_lens[s];
    KdaParams p;
    p.q = full.q.data() + t0 * kH * kK;
    p.k = full.k.data() + t0 * kH * kK;
    p.v = full.v.data() + t0 * kH * kV;
    p.g = full.g.data() + t0 * kH * kK;
    p.beta = full.beta.data() + t0 * kH;
    p.num_tokens = full_lens[s] - prefix_lens[s];
    p.num_heads = kH;
    p.head_k = kK;
    p.head_v = kV;
    p.scale = full.scale;
    p.state = states.data() + blocks[s] * kStateSize;
    p.out = out.data() + t0 * kH * kV;
    kda_recurrent_ref(p);
  }
  for (size_t s = 0; s < full_lens.size(); ++s) {
    const size_t dec = static_cast<size_t>(full.cu[s] + prefix_lens[s]) * kH * kV;
    const size_t n_dec = static_cast<size_t>(full_lens[s] - prefix_lens[s]) * kH * kV;
    const double dec_err = rel_l2(out.data() + dec, want.out.data() + dec, n_dec);
    const double st_err = rel_l2(states.data() + blocks[s] * kStateSize,
                                 want.states.data() + blocks[s] * kStateSize, kStateSize);
    std::printf("handoff %d + %d tokens: decode out rel_l2 %.2e, final state rel_l2 %.2e\n",
                prefix_lens[s], full_lens[s] - prefix_lens[s], dec_err, st_err);
    INFO("sequence " << s);
    // As the fp32 test: the same function in two fp32 orders, non-expansive recurrence.
    CHECK(dec_err <= 1e-5);
    CHECK(st_err <= 1e-5);
  }
  CHECK(rel_l2(out, want.out) <= 1e-5);
}

TEST_CASE("gpu kda chunked timing of one 4096-token x 32-head call", "[gpu][kda_chunk][perf]") {
  const KdaBatch b = make_batch({4096}, {0}, 1234);
  float ms32 = 0.f, ms16 = 0.f;
  const KdaResult r32 = run_gpu<float>(b, b.q, b.k, b.v, 10, &ms32);
  const auto qb = to_bf16(b.q), kb = to_bf16(b.k), vb = to_bf16(b.v);
  const KdaResult r16 = run_gpu<__nv_bfloat16>(b, qb, kb, vb, 10, &ms16);
  std::printf(
      "kda_chunked_cuda, 1 x 4096 tokens x 32 heads (K = V = 128): fp32 %.3f ms, bf16 "
      "%.3f ms per call\n",
      ms32, ms16);
  CHECK(std::all_of(r32.out.begin(), r32.out.end(), [](float x) { return std::isfinite(x); }));
  CHECK(std::all_of(r16.out.begin(), r16.out.end(), [](float x) { return std::isfinite(x); }));
}
