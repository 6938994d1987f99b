// GemmRunner (cuBLASLt) against its CPU twins at the model's real shapes: fp32 linear against
// gemm_ref (no TF32: 1e-5), bf16 linear against an exact twin rounded to bf16 once, strided views
// and accumulation, and the per-head batched GEMMs of MLA's absorb / un-absorb in both B layouts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <utility>
#include <vector>

#include <cuda_bf16.h>

#include "engine/core/error.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_cuda.h"
#include "tests/gpu/base_test_util.h"
#include "tests/gpu/device_buffer.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;

namespace {

using Bf16 = __nv_bfloat16;

const Bf16* as_bf16(const DeviceBuffer<uint16_t>& b) {
  return reinterpret_cast<const Bf16*>(b.get());
}
Bf16* as_bf16_mut(const DeviceBuffer<uint16_t>& b) {
  return reinterpret_cast<Bf16*>(b.get());
}

// sum_i a[i] * b[i] in double (4 chains, for speed) and sum_i |a[i] * b[i]| (error scale).
std::pair<double, double> dot_exact(const float* a, const float* b, int64_t k, int64_t b_step = 1) {
  double s[4] = {0, 0, 0, 0}, abs_sum = 0;
  int64_t i = 0;
  for (; i + 4 <= k; i += 4) {
    for (int l = 0; l < 4; ++l) {
      const double t = double(a[i + l]) * b[(i + l) * b_step];
      s[l] += t;
      abs_sum += std::fabs(t);
    }
  }
  for (; i < k; ++i) {
    const double t = double(a[i]) * b[i * b_step];
    s[0] += t;
    abs_sum += std::fabs(t);
  }
  return {(s[0] + s[1]) + (s[2] + s[3]), abs_sum};
}

// fp32 accumulation-error allowance for a bf16 output, per element: 2^-16 * sum|x w|. The kernel's
// fp32 sum of k products is off the exact one by about u * sqrt(k) * |partial sums| (u = 2^-24),
// i.e. ~2^-18 * sum|x w| at k = 9216; 2^-16 leaves a 4x margin and is still 2^-8 of a bf16 ulp
// of the typical |result| (~ sum|x w| / sqrt(k)), so it cannot hide a wrong product.
constexpr double kBf16AccSlack = 1.0 / 65536.0;

struct LinearShape {
  int64_t k, n;
  const char* what;
};

// The model's Linear shapes (spec: hidden 2304, KDA/MLA heads 32 x 128, dense FFN 9216, experts
// 1024, KDA gate rank 128, kv_lora 512).
const LinearShape kShapes[] = {
    {2304, 4096, "q/k/v/g proj 2304->4096"},
    {2304, 9216, "dense gate/up 2304->9216"},
    {2304, 256, "router 2304->256"},
    {2304, 32 * 192, "MLA q_proj 2304->6144"},
    {9216, 2304, "dense down 9216->2304"},
    {2304, 128, "f_a 2304->128"},
    {128, 4096, "f_b 128->4096"},
    {512, 32 * 256, "kv_b 512->8192"},
    {2304, 576, "kv_a 2304->576"},
    {1024, 2304, "expert down 1024->2304"},
};

}  // namespace

TEST_CASE("gpu linear fp32 matches gemm_ref at the model's shapes", "[gpu][gemm]") {
  GemmRunner runner;
  double worst = 0;
  for (const LinearShape& s : kShapes) {
    const auto w = fast_uniform(s.n * s.k, 100 + s.n + s.k, 0.05f);
    DeviceBuffer<float> dw(w);
    for (int64_t m : {1, 3, 64, 257}) {
      const auto x = fast_uniform(m * s.k, 7 * m + s.k, 1.f);
      std::vector<float> want(m * s.n);
      const WeightView wv_host{w.data(), DType::kF32, s.n, s.k};
      gemm_ref({.x = x.data(), .m = m, .w = wv_host, .out = want.data()});
      DeviceBuffer<float> dx(x), dout(m * s.n);
      LinearCudaParams<float> p;
      p.x = dx.get();
      p.m = m;
      p.w = {dw.get(), DType::kF32, s.n, s.k};
      p.out = dout.get();
      runner.linear(p, nullptr);
      const double err = rel_l2(dout.to_host(), want);
      worst = std::max(worst, err);
      INFO(s.what << " m=" << m);
      // fp32 products, fp32 sums in another order: the difference is ~u * sqrt(k) relative
      // (u = 2^-24; ~6e-6 at k = 9216 even in the worst, sequential order); TF32 would give ~1e-3.
      CHECK(err <= 1e-5);
    }
  }
  std::printf("[gemm] fp32 linear, %zu shapes x m in {1,3,64,257}: worst rel_l2 %.3g\n",
              std::size(kShapes), worst);
}

TEST_CASE("gpu linear fp32 lm_head 2304->163840 matches gemm_ref", "[gpu][gemm]") {
  const int64_t n = 163840, k = 2304;
  const auto w = fast_uniform(n * k, 555, 0.05f);
  DeviceBuffer<float> dw(w);
  GemmRunner runner;
  for (int64_t m : {1, 4}) {
    const auto x = fast_uniform(m * k, 556 + m, 1.f);
    std::vector<float> want(m * n);
    gemm_ref({.x = x.data(), .m = m, .w = {w.data(), DType::kF32, n, k}, .out = want.data()});
    DeviceBuffer<float> dx(x), dout(m * n);
    LinearCudaParams<float> p;
    p.x = dx.get();
    p.m = m;
    p.w = {dw.get(), DType::kF32, n, k};
    p.out = dout.get();
    runner.linear(p, nullptr);
    const double err = rel_l2(dout.to_host(), want);
    std::printf("[gemm] fp32 lm_head m=%lld: rel_l2 %.3g\n", static_cast<long long>(m), err);
    CHECK(err <= 1e-5);  // as above: fp32 sums of 2304 products in another order
  }
}

TEST_CASE("gpu linear fp32 strided views and accumulate match gemm_ref", "[gpu][gemm]") {
  GemmRunner runner;
  // x: a column window of a wider buffer (stride k + 64); out: columns [24, 24 + n) of a buffer
  // of width n + 40 (a 96-byte offset: not 256-byte aligned), accumulated onto its contents.
  for (int64_t m : {1, 3, 64, 257}) {
    for (bool accumulate : {false, true}) {
      const int64_t k = 2304, n = 576, x_stride = k + 64, out_stride = n + 40, col0 = 24;
      const auto xbuf = fast_uniform(m * x_stride, 31 + m, 1.f);
      const auto w = fast_uniform(n * k, 32, 0.05f);
      const auto out0 = fast_uniform(m * out_stride, 33 + m, 1.f);
      std::vector<float> want = out0;
      gemm_ref({.x = xbuf.data() + 16,
                .m = m,
                .x_stride = x_stride,
                .w = {w.data(), DType::kF32, n, k},
                .out = want.data() + col0,
                .out_stride = out_stride,
                .accumulate = accumulate});
      DeviceBuffer<float> dx(xbuf), dw(w), dout(out0);
      LinearCudaParams<float> p;
      p.x = dx.get() + 16;
      p.m = m;
      p.x_stride = x_stride;
      p.w = {dw.get(), DType::kF32, n, k};
      p.out = dout.get() + col0;
      p.out_stride = out_stride;
      p.accumulate = accumulate;
      runner.linear(p, nullptr);
      const auto got = dout.to_host();
      INFO("m=" << m << (accumulate ? " accumulate" : ""));
      CHECK(rel_l2(got, want) <= 1e-5);  // fp32 sums in another order, as above
      // Columns outside the window are untouched (bit-exact).
      bool outside_same = true;
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < out_stride; ++c)
          if ((c < col0 || c >= col0 + n) && got[r * out_stride + c] != out0[r * out_stride + c])
            outside_same = false;
      CHECK(outside_same);
    }
  }
}

TEST_CASE("gpu linear bf16 matches a twin rounding the fp32-accumulated sum", "[gpu][gemm][bf16]") {
  GemmRunner runner;
  struct Case {
    int64_t k, n, m;
    bool accumulate;
    int64_t x_stride, out_stride;
  };
  const Case cases[] = {
      {2304, 4096, 64, false, 0, 0},  {9216, 2304, 3, false, 0, 0},
      {128, 4096, 257, false, 0, 0},  {512, 8192, 64, false, 0, 0},
      {1024, 2304, 257, true, 0, 0},  {2304, 576, 33, true, 2304 + 64, 576 + 8},
      {2304, 163840, 2, false, 0, 0},  // lm_head
  };
  for (const Case& c : cases) {
    const int64_t x_stride = c.x_stride ? c.x_stride : c.k;
    const int64_t out_stride = c.out_stride ? c.out_stride : c.n;
    const Bf16Data w = make_bf16(fast_uniform(c.n * c.k, 200 + c.n + c.k, 0.05f));
    const Bf16Data x = make_bf16(fast_uniform(c.m * x_stride, 300 + c.m, 1.f));
    const Bf16Data out0 = make_bf16(fast_uniform(c.m * out_stride, 400 + c.m, 1.f));
    // Twin: exact sum of the bf16 products rounded to bf16 once. With accumulate, cuBLASLt's
    // epilogue rounds the product to bf16 before adding the old output (bf16(bf16(acc) + old),
    // measured on H100: 28% of outputs differ from bf16(acc + old), 0.01% from this), which is
    // what the reference model's `residual + linear(x)` in bf16 computes.
    std::vector<float> want = out0.f32, slack(want.size(), 0.f);
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) {
        const auto [dot, abs_sum] = dot_exact(&x.f32[i * x_stride], &w.f32[j * c.k], c.k);
        const int64_t o = i * out_stride + j;
        const float acc = round_to_bf16(static_cast<float>(dot));
        want[o] = c.accumulate ? round_to_bf16(acc + out0.f32[o]) : acc;
        slack[o] = static_cast<float>(kBf16AccSlack * abs_sum);
        // A flip of the inner rounding moves the sum by one ulp of acc, not of the result.
        if (c.accumulate) slack[o] += bf16_ulp(acc);
      }
    }
    DeviceBuffer<uint16_t> dw(w.bits), dx(x.bits), dout(out0.bits);
    LinearCudaParams<Bf16> p;
    p.x = as_bf16(dx);
    p.m = c.m;
    p.x_stride = c.x_stride;
    p.w = {dw.get(), DType::kBF16, c.n, c.k};
    p.out = as_bf16_mut(dout);
    p.out_stride = c.out_stride;
    p.accumulate = c.accumulate;
    runner.linear(p, nullptr);
    const auto got = bf16_bits_to_f32(dout.to_host());
    INFO("k=" << c.k << " n=" << c.n << " m=" << c.m << (c.accumulate ? " accumulate" : ""));
    const double frac = check_bf16_close(got, want, slack, "bf16 linear");
    std::printf("[gemm] bf16 linear k=%lld n=%lld m=%lld%s: rel_l2 %.3g, %.4f%% differ by 1 ulp\n",
                static_cast<long long>(c.k), static_cast<long long>(c.n),
                static_cast<long long>(c.m), c.accumulate ? " acc" : "", rel_l2(got, want),
                100 * frac);
    // A flip needs the exact value within the fp32 accumulation error (~2^-18 of sum|x w|) of a
    // bf16 rounding boundary: ~0.1% of elements at k = 9216. A rounding the twin lacks (bf16
    // split-K partials, or single vs double rounding of accumulate) flips ~25%; 1% separates them.
    CHECK(frac <= 0.01);
    // Padding columns (out_stride > n) are untouched.
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = c.n; j < out_stride; ++j)
        REQUIRE(got[i * out_stride + j] == out0.f32[i * out_stride + j]);
  }
}

namespace {

// MLA's per-head products on a kv_b weight [H * 256, 512] (rows h*256 + [0, 128) = W_UK(h),
// h*256 + [128, 256) = W_UV(h)), computed by the twin per head with exact sums:
//   absorb:   q_lat[t, h, :] = q_nope[t, h, 0:128] . W_UK(h)          (B not transposed)
//   unabsorb: out[t, h, :]   = out_lat[t, h, :] . W_UV(h)^T           (B transposed)
struct MlaBatched {
  static constexpr int64_t kH = 32, kNope = 128, kQk = 192, kLat = 512, kV = 128;
};

template <typename T>
BatchedGemmCudaParams<T> absorb_params(int64_t t, const T* q, const T* kv_b, T* q_lat) {
  using M = MlaBatched;
  BatchedGemmCudaParams<T> p;
  p.m = t, p.n = M::kLat, p.k = M::kNope, p.batch = M::kH;
  p.a = q, p.lda = M::kH * M::kQk, p.a_batch_stride = M::kQk;  // q [t, H, 192], nope = [0, 128)
  p.b = kv_b, p.ldb = M::kLat, p.b_batch_stride = 256 * M::kLat, p.b_transposed = false;
  p.c = q_lat, p.ldc = M::kH * M::kLat, p.c_batch_stride = M::kLat;  // [t, H, 512]
  return p;
}

template <typename T>
BatchedGemmCudaParams<T> unabsorb_params(int64_t t, const T* out_lat, const T* kv_b, T* out) {
  using M = MlaBatched;
  BatchedGemmCudaParams<T> p;
  p.m = t, p.n = M::kV, p.k = M::kLat, p.batch = M::kH;
  p.a = out_lat, p.lda = M::kH * M::kLat, p.a_batch_stride = M::kLat;  // [t, H, 512]
  p.b = kv_b + 128 * M::kLat, p.ldb = M::kLat, p.b_batch_stride = 256 * M::kLat;
  p.b_transposed = true;
  p.c = out, p.ldc = M::kH * M::kV, p.c_batch_stride = M::kV;  // [t, H, 128]
  return p;
}

// The twin of a batched GEMM with the same parameters, on host copies; returns (C, slack).
template <typename T>
std::pair<std::vector<float>, std::vector<float>> batched_twin(const BatchedGemmCudaParams<T>& p,
                                                               const float* a, const float* b,
                                                               std::vector<float> c,
                                                               bool round_bf16) {
  std::vector<float> slack(c.size(), 0.f);
  std::vector<float> col(p.k);
  for (int64_t g = 0; g < p.batch; ++g) {
    for (int64_t j = 0; j < p.n; ++j) {
      const float* bg = b + g * p.b_batch_stride;
      for (int64_t kk = 0; kk < p.k; ++kk)
        col[kk] = p.b_transposed ? bg[j * p.ldb + kk] : bg[kk * p.ldb + j];
      for (int64_t i = 0; i < p.m; ++i) {
        const auto [dot, abs_sum] =
            dot_exact(a + g * p.a_batch_stride + i * p.lda, col.data(), p.k);
        float& o = c[g * p.c_batch_stride + i * p.ldc + j];
        const double v = dot + (p.accumulate ? o : 0.0);
        o = round_bf16 ? round_to_bf16(static_cast<float>(v)) : static_cast<float>(v);
        slack[&o - c.data()] = static_cast<float>(kBf16AccSlack * abs_sum);
      }
    }
  }
  return {std::move(c), std::move(slack)};
}

}  // namespace

TEST_CASE("gpu batched fp32 MLA absorb / unabsorb match a per-head CPU loop", "[gpu][gemm]") {
  using M = MlaBatched;
  GemmRunner runner;
  const auto kv_b = fast_uniform(M::kH * 256 * M::kLat, 61, 0.05f);
  DeviceBuffer<float> dkv(kv_b);
  for (int64_t t : {1, 7, 130}) {
    for (bool accumulate : {false, true}) {
      const auto q = fast_uniform(t * M::kH * M::kQk, 62 + t, 1.f);
      const auto lat0 = fast_uniform(t * M::kH * M::kLat, 63 + t, 1.f);
      const auto out0 = fast_uniform(t * M::kH * M::kV, 64 + t, 1.f);
      DeviceBuffer<float> dq(q), dlat(lat0), dout(out0), dlat_in(lat0);
      auto pa = absorb_params<float>(t, dq.get(), dkv.get(), dlat.get());
      auto pu = unabsorb_params<float>(t, dlat_in.get(), dkv.get(), dout.get());
      pa.accumulate = pu.accumulate = accumulate;
      runner.batched(pa, nullptr);
      runner.batched(pu, nullptr);
      auto ha = absorb_params<float>(t, q.data(), kv_b.data(), nullptr);
      auto hu = unabsorb_params<float>(t, lat0.data(), kv_b.data(), nullptr);
      ha.accumulate = hu.accumulate = accumulate;
      const auto want_lat = batched_twin(ha, q.data(), kv_b.data(), lat0, false).first;
      const auto want_out =
          batched_twin(hu, lat0.data(), kv_b.data() + 128 * M::kLat, out0, false).first;
      const double ea = rel_l2(dlat.to_host(), want_lat), eu = rel_l2(dout.to_host(), want_out);
      std::printf("[gemm] fp32 batched t=%lld%s: absorb rel_l2 %.3g, unabsorb %.3g\n",
                  static_cast<long long>(t), accumulate ? " acc" : "", ea, eu);
      INFO("t=" << t << (accumulate ? " accumulate" : ""));
      // fp32 sums of 128 / 512 products against exact sums: ~u * sqrt(k) relative, << 1e-5.
      CHECK(ea <= 1e-5);
      CHECK(eu <= 1e-5);
    }
  }
}

TEST_CASE("gpu batched bf16 MLA absorb / unabsorb match a twin rounding once",
          "[gpu][gemm][bf16]") {
  using M = MlaBatched;
  GemmRunner runner;
  const Bf16Data kv_b = make_bf16(fast_uniform(M::kH * 256 * M::kLat, 71, 0.05f));
  DeviceBuffer<uint16_t> dkv(kv_b.bits);
  for (int64_t t : {1, 7, 130}) {
    const Bf16Data q = make_bf16(fast_uniform(t * M::kH * M::kQk, 72 + t, 1.f));
    const Bf16Data lat0 = make_bf16(fast_uniform(t * M::kH * M::kLat, 73 + t, 1.f));
    DeviceBuffer<uint16_t> dq(q.bits), dlat(t * M::kH * M::kLat), dout(t * M::kH * M::kV),
        dlat_in(lat0.bits);
    runner.batched(absorb_params<Bf16>(t, as_bf16(dq), as_bf16(dkv), as_bf16_mut(dlat)), nullptr);
    runner.batched(unabsorb_params<Bf16>(t, as_bf16(dlat_in), as_bf16(dkv), as_bf16_mut(dout)),
                   nullptr);
    const auto ha = absorb_params<float>(t, nullptr, nullptr, nullptr);
    const auto hu = unabsorb_params<float>(t, nullptr, nullptr, nullptr);
    const auto [want_lat, slack_lat] =
        batched_twin(ha, q.f32.data(), kv_b.f32.data(), std::vector<float>(dlat.bytes() / 2), true);
    const auto [want_out, slack_out] =
        batched_twin(hu, lat0.f32.data(), kv_b.f32.data() + 128 * M::kLat,
                     std::vector<float>(dout.bytes() / 2), true);
    INFO("t=" << t);
    const auto got_lat = bf16_bits_to_f32(dlat.to_host());
    const auto got_out = bf16_bits_to_f32(dout.to_host());
    const double fa = check_bf16_close(got_lat, want_lat, slack_lat, "absorb");
    const double fu = check_bf16_close(got_out, want_out, slack_out, "unabsorb");
    CHECK(fa <= 0.01);  // as for linear: one rounding flips ~0.1%, two ~25%
    CHECK(fu <= 0.01);
    std::printf("[gemm] bf16 batched t=%lld: absorb %.4f%% / unabsorb %.4f%% differ by 1 ulp\n",
                static_cast<long long>(t), 100 * fa, 100 * fu);
  }
}

TEST_CASE("gpu GemmRunner checks its parameters", "[gpu][gemm]") {
  GemmRunner runner;
  DeviceBuffer<uint16_t> w(64 * 32);
  DeviceBuffer<float> x(4 * 32), out(4 * 64);
  LinearCudaParams<float> p;
  p.x = x.get();
  p.m = 4;
  p.w = {w.get(), DType::kBF16, 64, 32};  // bf16 weight under fp32 activations
  p.out = out.get();
  CHECK_THROWS_AS(runner.linear(p, nullptr), kl::Error);
  p.w.dtype = DType::kF32;
  p.x_stride = 16;  // below k
  CHECK_THROWS_AS(runner.linear(p, nullptr), kl::Error);
  // m == 0 is a no-op, even without buffers.
  LinearCudaParams<float> empty;
  empty.w = {nullptr, DType::kF32, 64, 32};
  CHECK_NOTHROW(runner.linear(empty, nullptr));
  BatchedGemmCudaParams<float> b;
  b.m = 2, b.n = 8, b.k = 8, b.batch = 2, b.a = x.get(), b.b = x.get(), b.c = out.get();
  b.lda = 8, b.ldb = 4, b.ldc = 8;  // ldb below k (B transposed)
  CHECK_THROWS_AS(runner.batched(b, nullptr), kl::Error);
}
