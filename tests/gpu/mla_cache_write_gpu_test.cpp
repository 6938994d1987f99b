// MlaAttentionRunner::cache_write (fused kv_a_layernorm + paged cache write) against its CPU
// twins rmsnorm_ref + mla_cache_write_ref (fp32) and a twin rounding to bf16 where the kernel
// does (bf16), at the model's dims (kv_lora 512, rope 64, page 64) and the tiny-grouped test
// model's (kv_lora 256, rope 32), with a padded kv row stride, scattered slots and padding tokens
// (slot -1) that must leave the cache untouched.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <type_traits>

#include <cuda_bf16.h>

#include "kernels/mla/mla.h"
#include "kernels/mla/mla_cuda.h"
#include "kernels/norm/rmsnorm.h"
#include "tests/gpu/device_buffer.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;

namespace {

constexpr int64_t kPage = 64, kTokens = 150, kPages = 7;
constexpr float kEps = 1e-6f;

struct CacheWriteCase {
  MlaDims dims;  // the head geometry (kv_lora, rope; nope and v to match)
  int64_t lora = 0, rope = 0, width = 0, kv_stride = 0;
  std::vector<float> kv;            // [kTokens, kv_stride], bf16-representable
  std::vector<uint16_t> weight;     // [lora] bf16
  std::vector<int64_t> slots;       // [kTokens]; every 10th token is padding (-1)
  std::vector<float> cache_before;  // [kPages, kPage, width]
};

// The model's geometry, or the tiny-grouped test model's (nope 64, rope 32, v 64, kv_lora 256).
CacheWriteCase make_case(bool tiny) {
  CacheWriteCase c;
  if (tiny) {
    c.dims.nope = 64;
    c.dims.rope = 32;
    c.dims.v_dim = 64;
    c.dims.kv_lora = 256;
    c.dims.num_heads = 2;
  }
  c.dims.kv_norm_eps = kEps;
  c.lora = c.dims.kv_lora;
  c.rope = c.dims.rope;
  c.width = c.lora + c.rope;
  c.kv_stride = c.width + 8;
  const int64_t lora = c.lora, width = c.width, kv_stride = c.kv_stride;
  c.kv = random_normal(kTokens * kv_stride, 7001, 2.f, 0.3f);
  for (float& v : c.kv) v = round_to_bf16(v);
  c.weight = to_bf16(random_uniform(lora, 7002, 0.5f, 1.5f));
  std::vector<int64_t> perm(kPages * kPage);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(7003));
  for (int64_t t = 0; t < kTokens; ++t) c.slots.push_back(t % 10 == 9 ? -1 : perm[t]);
  c.cache_before = random_normal(kPages * kPage * width, 7004, 1.f);
  for (float& v : c.cache_before) v = round_to_bf16(v);
  return c;
}

template <typename T>
std::vector<float> run_gpu(const CacheWriteCase& c) {
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  using Raw = std::conditional_t<kBf16, uint16_t, float>;
  auto to_raw = [](const std::vector<float>& v) {
    if constexpr (kBf16) {
      return to_bf16(v);
    } else {
      return v;
    }
  };
  DeviceBuffer<Raw> kv(to_raw(c.kv)), cache(to_raw(c.cache_before));
  DeviceBuffer<uint16_t> w(c.weight);
  DeviceBuffer<int64_t> slots(c.slots);
  MlaAttentionRunner runner(c.dims, kTokens, kBf16);
  MlaCacheWriteCudaParams<T> p;
  p.kv = reinterpret_cast<const T*>(kv.get());
  p.kv_stride = c.kv_stride;
  p.norm_weight = {w.get(), DType::kBF16, 1, c.lora};
  p.slot_mapping = slots.get();
  p.num_tokens = kTokens;
  p.cache = reinterpret_cast<T*>(cache.get());
  runner.cache_write<T>(p, nullptr);
  std::vector<float> got;
  for (Raw v : cache.to_host()) {
    if constexpr (kBf16) {
      got.push_back(bf16_to_f32(v));
    } else {
      got.push_back(v);
    }
  }
  return got;
}

void check_fp32(bool tiny) {
  const CacheWriteCase c = make_case(tiny);
  const int64_t lora = c.lora, rope = c.rope, width = c.width, kv_stride = c.kv_stride;
  std::vector<float> ckv(kTokens * lora);
  for (int64_t t = 0; t < kTokens; ++t) std::copy_n(&c.kv[t * kv_stride], lora, &ckv[t * lora]);
  rmsnorm_ref({.x = ckv.data(),
               .residual = nullptr,
               .weight = {c.weight.data(), DType::kBF16, 1, lora},
               .eps = kEps,
               .num_rows = kTokens,
               .dim = lora,
               .out = ckv.data()});
  std::vector<float> want = c.cache_before;
  mla_cache_write_ref({.ckv = ckv.data(),
                       .k_pe = c.kv.data() + lora,
                       .ckv_stride = lora,
                       .k_pe_stride = kv_stride,
                       .slot_mapping = c.slots.data(),
                       .num_tokens = kTokens,
                       .kv_lora = lora,
                       .rope = rope,
                       .cache = want.data()});
  const std::vector<float> got = run_gpu<float>(c);
  std::vector<float> got_lat, want_lat;
  bool rest_exact = true;
  for (int64_t slot = 0; slot < kPages * kPage; ++slot) {
    const bool written = std::find(c.slots.begin(), c.slots.end(), slot) != c.slots.end();
    for (int64_t i = 0; i < width; ++i) {
      const float g = got[slot * width + i], w = want[slot * width + i];
      if (written && i < lora) {
        got_lat.push_back(g);
        want_lat.push_back(w);
      } else {
        rest_exact &= g == w;  // k_pe copies and untouched slots
      }
    }
  }
  const double err = rel_l2(got_lat, want_lat);
  std::printf("mla cache_write fp32 (kv_lora %lld): normalised latents rel_l2 %.3g\n",
              static_cast<long long>(lora), err);
  // Only the fp32 order of the kv_lora-term sum of squares differs: a few ulps; 1e-5 leaves
  // margin.
  CHECK(err <= 1e-5);
  CHECK(rest_exact);
}

void check_bf16(bool tiny) {
  const CacheWriteCase c = make_case(tiny);
  const int64_t lora = c.lora, rope = c.rope, width = c.width, kv_stride = c.kv_stride;
  // Twin: r = bf16(v / sqrt(mean(v^2) + eps)); cache = [bf16(r * w) | k_pe].
  std::vector<float> want = c.cache_before;
  for (int64_t t = 0; t < kTokens; ++t) {
    if (c.slots[t] < 0) continue;
    const float* v = &c.kv[t * kv_stride];
    double ss = 0;
    for (int64_t i = 0; i < lora; ++i) ss += double(v[i]) * v[i];
    const float inv = 1.f / std::sqrt(static_cast<float>(ss / lora) + kEps);
    float* dst = &want[c.slots[t] * width];
    for (int64_t i = 0; i < lora; ++i)
      dst[i] = round_to_bf16(round_to_bf16(v[i] * inv) * bf16_to_f32(c.weight[i]));
    std::copy_n(v + lora, rope, dst + lora);
  }
  const std::vector<float> got = run_gpu<__nv_bfloat16>(c);
  // The only freedom is the fp32 order of the sum of squares: it can move `inv` by an ulp and
  // flip a rounding of r or of the output by one bf16 ulp (2^-8 relative) on a few elements.
  int flips = 0, bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    bad += std::fabs(got[i] - want[i]) > std::ldexp(std::fabs(want[i]), -7);
    flips += got[i] != want[i];
  }
  std::printf(
      "mla cache_write bf16 (kv_lora %lld): %d of %zu values differ by one rounding, %d "
      "beyond\n",
      static_cast<long long>(lora), flips, got.size(), bad);
  CHECK(bad == 0);
  CHECK(flips <= static_cast<int>(kTokens * lora / 100));
}

}  // namespace

TEST_CASE("gpu mla cache_write fp32 matches rmsnorm_ref + mla_cache_write_ref", "[gpu][mla]") {
  check_fp32(false);
}

TEST_CASE("gpu mla cache_write bf16 matches a CPU twin rounding where the kernel does",
          "[gpu][mla][bf16]") {
  check_bf16(false);
}

TEST_CASE("gpu mla cache_write fp32 at tiny-grouped dims (kv_lora 256, rope 32)", "[gpu][mla]") {
  check_fp32(true);
}

TEST_CASE("gpu mla cache_write bf16 at tiny-grouped dims (kv_lora 256, rope 32)",
          "[gpu][mla][bf16]") {
  check_bf16(true);
}
