// The CUDA varlen short conv (+ SiLU, window carried in the state blocks) against short_conv_ref
// per sequence: the model's width (4096 channels, W = 4), ragged prefill chunks and decode batches
// on non-contiguous state blocks, strided input rows (q/k/v slices of one fused projection),
// windows carried in and checked on the way out, and a prefill -> decode handoff over several
// steps.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>

#include "kernels/conv/short_conv.h"
#include "kernels/conv/short_conv_cuda.h"
#include "tests/gpu/kda_gpu_util.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;
using namespace kl::test::kda;

namespace {

// The input is the middle third ("k") of a fused [tokens, 3 * dim] projection, and each state block
// holds three windows (q, k, v) plus padding: the kernel must touch only the k window of the
// blocks it is given.
struct ConvLayout {
  int64_t dim = kConvDim;
  int W = kConvWidth;
  int64_t hist() const { return W - 1; }
  int64_t x_stride() const { return 3 * dim; }
  int64_t block_stride() const { return 3 * hist() * dim + 40; }
  int64_t window_offset() const { return hist() * dim; }  // the k window inside a block
};

// CPU side: short_conv_ref per sequence on the same values, windows updated in `windows`.
void conv_cpu(const ConvLayout& L, const std::vector<float>& x_fused, const std::vector<int>& lens,
              const std::vector<int32_t>& blocks, bool silu, const std::vector<float>& weight,
              std::vector<float>& windows, std::vector<float>& out) {
  const int64_t dim = L.dim;
  const auto cu = cu_seqlens_of(lens);
  out.assign(cu.back() * dim, 0.f);
  for (size_t s = 0; s < lens.size(); ++s) {
    std::vector<float> xs(lens[s] * dim);
    for (int t = 0; t < lens[s]; ++t) {
      for (int64_t c = 0; c < dim; ++c) {
        xs[t * dim + c] = x_fused[(cu[s] + t) * L.x_stride() + dim + c];
      }
    }
    float* window = windows.data() + blocks[s] * L.block_stride() + L.window_offset();
    short_conv_ref({.x = xs.data(),
                    .num_tokens = lens[s],
                    .dim = dim,
                    .kernel_size = L.W,
                    .weight = {weight.data(), DType::kF32, dim, L.W},
                    .window = window,
                    .apply_silu = silu,
                    .out = out.data() + cu[s] * dim});
  }
}

// GPU side on device buffers (windows updated in place); returns the output rows.
template <typename T>
std::vector<float> conv_gpu(const ConvLayout& L, const std::vector<float>& x_fused,
                            const std::vector<int>& lens, const std::vector<int32_t>& blocks,
                            bool silu, const DeviceBuffer<uint16_t>& weight_bf16,
                            ActBuffer<T>& windows) {
  const auto cu = cu_seqlens_of(lens);
  ActBuffer<T> dx(x_fused), dout(static_cast<size_t>(cu.back() * L.dim));
  DeviceBuffer<int32_t> dcu(cu), dblocks(blocks);
  ShortConvCudaParams<T> p;
  p.x = dx.get() + L.dim;
  p.x_stride = L.x_stride();
  p.num_tokens = cu.back();
  p.dim = L.dim;
  p.num_seqs = static_cast<int>(lens.size());
  p.cu_seqlens = dcu.get();
  p.state_blocks = dblocks.get();
  p.max_seqlen = max_of(lens);
  p.kernel_size = L.W;
  p.weight = {weight_bf16.get(), DType::kBF16, L.dim, L.W};
  p.windows = windows.get() + L.window_offset();
  p.window_block_stride = L.block_stride();
  p.apply_silu = silu;
  p.out = dout.get();
  short_conv_cuda<T>(p, nullptr);
  return dout.to_host();
}

// out: fp32 against the twin (the pre-activation sum uses the same order and roundings as the twin,
// so only SiLU's expf vs std::exp ulps differ: 1e-5 is far above them); bf16: the same twin
// rounded to bf16, one-ulp flips only (the SiLU ulps can cross a rounding boundary; its output is
// never a cancellation, so no absolute floor is needed).
template <typename T>
void check_conv_out(const std::vector<float>& got, const std::vector<float>& want_f32) {
  if constexpr (kIsBf16<T>) {
    check_bf16_close(got, as_t<T>(want_f32), 0.0, 0.01);
  } else {
    const double err = rel_l2(got, want_f32);
    std::printf("  conv fp32: rel_l2 %.3g over %zu outputs\n", err, got.size());
    INFO("fp32 conv rel_l2 " << err << ", max abs diff "
                             << max_abs_diff(got.data(), want_f32.data(), got.size()));
    CHECK(err <= 1e-5);
  }
}

template <typename T>
void check_conv_batch(const std::vector<int>& lens, const std::vector<int32_t>& blocks,
                      int num_blocks, int W, bool silu, uint64_t seed) {
  ConvLayout L;
  L.W = W;
  const int64_t num_tokens = cu_seqlens_of(lens).back();
  const auto x = as_t<T>(random_normal(num_tokens * L.x_stride(), seed, 1.f));
  const auto w_bf16 = to_bf16(random_normal(L.dim * W, seed + 1, 0.5f));
  std::vector<float> w(w_bf16.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = bf16_to_f32(w_bf16[i]);
  // Non-zero windows everywhere (padding included), so what is carried in is checked.
  std::vector<float> windows = as_t<T>(random_normal(num_blocks * L.block_stride(), seed + 2));

  ActBuffer<T> dwindows(windows);
  DeviceBuffer<uint16_t> dw(w_bf16);
  const auto got = conv_gpu<T>(L, x, lens, blocks, silu, dw, dwindows);
  std::vector<float> want;
  conv_cpu(L, x, lens, blocks, silu, w, windows, want);

  check_conv_out<T>(got, want);
  // The window is a copy of inputs in T: bit-exact, and every byte outside the named k windows
  // of the named blocks is untouched.
  CHECK(rel_l2(dwindows.to_host(), windows) == 0.0);
}

std::vector<int32_t> permuted_blocks(int num_seqs, int num_blocks, uint64_t seed) {
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  ids.resize(num_seqs);
  return ids;
}

std::vector<int> random_lengths(int n, int lo, int hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int> lens(n);
  for (int& l : lens) l = d(rng);
  return lens;
}

template <typename T>
void conv_batches() {
  SECTION("ragged prefill chunks, one empty, non-contiguous blocks") {
    check_conv_batch<T>({1, 2, 5, 0, 64, 65, 130}, {5, 0, 9, 2, 11, 7, 4}, 12, kConvWidth, true,
                        11);
  }
  SECTION("all-decode batch of 37 sequences") {
    check_conv_batch<T>(std::vector<int>(37, 1), permuted_blocks(37, 40, 3), 40, kConvWidth, true,
                        12);
  }
  SECTION("40 short chunks of 1-3 rows (decode rows and chunks shorter than the window)") {
    check_conv_batch<T>(random_lengths(40, 1, 3, 4), permuted_blocks(40, 41, 5), 41, kConvWidth,
                        true, 13);
  }
  SECTION("one long prefill chunk") {
    check_conv_batch<T>({1000}, {3}, 4, kConvWidth, true, 14);
  }
  SECTION("other widths, no SiLU") {
    check_conv_batch<T>({3, 1, 40, 2}, {2, 0, 3, 1}, 4, 2, false, 15);
    check_conv_batch<T>({3, 1, 40, 2}, {2, 0, 3, 1}, 4, 1, true, 16);
    check_conv_batch<T>({3, 1, 40, 2, 7}, {4, 0, 3, 1, 2}, 5, 8, true, 17);
  }
}

// Three sequences advance over five steps with different chunkings (prefill chunks, then decode
// tokens, mixed in one batch); each sequence's outputs and final window must equal one CPU call
// over the whole sequence.
template <typename T>
void conv_handoff() {
  const ConvLayout L;
  const int num_blocks = 12;
  const std::vector<int32_t> seq_block = {5, 0, 9};
  // (sequence, rows) per step.
  const std::vector<std::vector<std::pair<int, int>>> steps = {
      {{0, 70}, {1, 5}},        {{2, 130}, {0, 1}, {1, 64}},
      {{1, 1}, {2, 2}, {0, 1}}, {{0, 1}, {1, 1}, {2, 1}},
      {{2, 1}, {0, 1}},
  };
  std::map<int, int> total;
  for (const auto& step : steps) {
    for (auto [s, n] : step) total[s] += n;
  }
  std::vector<std::vector<float>> seq_x(3);  // [total rows, 3 * dim] per sequence
  for (int s = 0; s < 3; ++s) {
    seq_x[s] = as_t<T>(random_normal(total[s] * L.x_stride(), 100 + s));
  }
  const auto w_bf16 = to_bf16(random_normal(L.dim * L.W, 7, 0.5f));
  std::vector<float> w(w_bf16.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = bf16_to_f32(w_bf16[i]);
  const std::vector<float> windows0 = as_t<T>(random_normal(num_blocks * L.block_stride(), 8));

  // GPU: step by step on persistent windows.
  ActBuffer<T> dwindows(windows0);
  DeviceBuffer<uint16_t> dw(w_bf16);
  std::vector<std::vector<float>> got(3);
  std::vector<int> done(3, 0);
  for (const auto& step : steps) {
    std::vector<float> x;
    std::vector<int> lens;
    std::vector<int32_t> blocks;
    for (auto [s, n] : step) {
      x.insert(x.end(), seq_x[s].begin() + done[s] * L.x_stride(),
               seq_x[s].begin() + (done[s] + n) * L.x_stride());
      lens.push_back(n);
      blocks.push_back(seq_block[s]);
    }
    const auto out = conv_gpu<T>(L, x, lens, blocks, true, dw, dwindows);
    int64_t row = 0;
    for (auto [s, n] : step) {
      got[s].insert(got[s].end(), out.begin() + row * L.dim, out.begin() + (row + n) * L.dim);
      row += n;
      done[s] += n;
    }
  }

  // CPU: each sequence in one call.
  std::vector<float> windows = windows0;
  for (int s = 0; s < 3; ++s) {
    std::vector<float> want;
    conv_cpu(L, seq_x[s], {total[s]}, {seq_block[s]}, true, w, windows, want);
    INFO("sequence " << s << " (" << total[s] << " rows)");
    check_conv_out<T>(got[s], want);
  }
  CHECK(rel_l2(dwindows.to_host(), windows) == 0.0);
}

}  // namespace

TEST_CASE("gpu short conv fp32 matches short_conv_ref per sequence", "[gpu][kda][conv]") {
  conv_batches<float>();
}

TEST_CASE("gpu short conv bf16 matches a twin rounding its output to bf16",
          "[gpu][kda][conv][bf16]") {
  conv_batches<__nv_bfloat16>();
}

TEST_CASE("gpu short conv fp32: prefill chunks then decode steps equal one pass",
          "[gpu][kda][conv]") {
  conv_handoff<float>();
}

TEST_CASE("gpu short conv bf16: prefill chunks then decode steps equal one pass",
          "[gpu][kda][conv][bf16]") {
  conv_handoff<__nv_bfloat16>();
}

TEST_CASE("gpu short conv rejects bad parameters", "[gpu][kda][conv]") {
  ShortConvCudaParams<float> p;
  p.dim = kConvDim;
  p.kernel_size = 9;
  CHECK_THROWS_WITH(short_conv_cuda<float>(p, nullptr), Catch::Contains("kernel_size"));
  p.kernel_size = 4;
  p.weight = {nullptr, DType::kBF16, kConvDim, 3};
  CHECK_THROWS_WITH(short_conv_cuda<float>(p, nullptr), Catch::Contains("weight"));
}
