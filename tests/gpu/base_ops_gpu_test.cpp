// The small base kernels against their CPU twins: embedding lookup, SwiGLU (silu_mul), dtype
// conversion (bit-exact against the host's round-to-nearest-even), row gathers and KDA's gated
// per-head RMSNorm, at the model's widths (hidden 2304, heads 32 x 128, FFN 1024 / 9216).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include <cuda_bf16.h>

#include "engine/core/error.h"
#include "kernels/activation/silu_mul.h"
#include "kernels/activation/silu_mul_cuda.h"
#include "kernels/cuda/copy_cuda.h"
#include "kernels/embedding/embedding.h"
#include "kernels/embedding/embedding_cuda.h"
#include "kernels/norm/rmsnorm.h"
#include "kernels/norm/rmsnorm_cuda.h"
#include "tests/gpu/base_test_util.h"
#include "tests/gpu/device_buffer.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;

namespace {

using Bf16 = __nv_bfloat16;

Bf16* bf(const DeviceBuffer<uint16_t>& b) {
  return reinterpret_cast<Bf16*>(b.get());
}

float bits_to_f32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Random normal f16 values (exponent field in [5, 25]: magnitudes ~2^-10 .. 2^10), raw bits.
std::vector<uint16_t> random_f16(size_t n, uint64_t seed) {
  const auto u = fast_uniform(3 * n, seed, 1.f);
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) {
    const auto sign = static_cast<uint16_t>(u[3 * i] < 0 ? 0x8000 : 0);
    const auto exp = static_cast<uint16_t>(5 + static_cast<int>((u[3 * i + 1] + 1.f) * 10.49f));
    const auto mant = static_cast<uint16_t>(static_cast<int>((u[3 * i + 2] + 1.f) * 511.9f));
    h[i] = sign | static_cast<uint16_t>(exp << 10) | mant;
  }
  return h;
}

}  // namespace

TEST_CASE("gpu embedding matches embedding_ref for each table dtype", "[gpu][base]") {
  // The real vocab for bf16 (ids at both ends); a smaller table for f32 / f16.
  for (DType dt : {DType::kBF16, DType::kF32, DType::kF16}) {
    const int64_t vocab = dt == DType::kBF16 ? 163840 : 3000, hidden = 2304;
    std::vector<uint16_t> t16;
    std::vector<float> t32;
    if (dt == DType::kF32) t32 = fast_uniform(vocab * hidden, 81, 1.f);
    if (dt == DType::kBF16) t16 = make_bf16(fast_uniform(vocab * hidden, 82, 1.f)).bits;
    if (dt == DType::kF16) t16 = random_f16(vocab * hidden, 83);
    const void* host_table = dt == DType::kF32 ? static_cast<const void*>(t32.data()) : t16.data();
    std::vector<int32_t> ids = {0, static_cast<int32_t>(vocab - 1), 5, 5};
    const auto r = fast_uniform(297, 84, 1.f);
    for (float v : r) ids.push_back(static_cast<int32_t>((v + 1.f) * 0.5f * (vocab - 1)));
    const int64_t num = static_cast<int64_t>(ids.size());
    std::vector<float> want(num * hidden);
    embedding_ref({.token_ids = ids.data(),
                   .num_tokens = num,
                   .table = {host_table, dt, vocab, hidden},
                   .out = want.data()});
    DeviceBuffer<float> d32(t32.empty() ? std::vector<float>(1) : t32);
    DeviceBuffer<uint16_t> d16(t16.empty() ? std::vector<uint16_t>(1) : t16);
    DeviceBuffer<int32_t> dids(ids);
    const void* dev_table = dt == DType::kF32 ? static_cast<const void*>(d32.get()) : d16.get();
    INFO("table " << dtype_name(dt));
    {
      DeviceBuffer<float> out(num * hidden);
      embedding_cuda<float>({dids.get(), num, {dev_table, dt, vocab, hidden}, out.get()}, nullptr);
      CHECK(rel_l2(out.to_host(), want) == 0.0);  // a copy: exact
    }
    {
      DeviceBuffer<uint16_t> out(num * hidden);
      embedding_cuda<Bf16>({dids.get(), num, {dev_table, dt, vocab, hidden}, bf(out)}, nullptr);
      std::vector<float> want_bf(want.size());
      for (size_t i = 0; i < want.size(); ++i) want_bf[i] = round_to_bf16(want[i]);
      // One rounding of an exact value to bf16 (RNE on both sides): exact.
      CHECK(rel_l2(bf16_bits_to_f32(out.to_host()), want_bf) == 0.0);
    }
  }
  // An id outside the vocab is never read: its row is NaN (the device cannot throw).
  const std::vector<float> table = fast_uniform(10 * 64, 85, 1.f);
  const std::vector<int32_t> ids = {3, 10, -1};
  DeviceBuffer<float> dt(table), out(3 * 64);
  DeviceBuffer<int32_t> dids(ids);
  embedding_cuda<float>({dids.get(), 3, {dt.get(), DType::kF32, 10, 64}, out.get()}, nullptr);
  const auto got = out.to_host();
  CHECK(got[0] == table[3 * 64]);
  CHECK(std::isnan(got[64]));
  CHECK(std::isnan(got[2 * 64 + 63]));
}

TEST_CASE("gpu silu_mul fp32 matches silu_mul_ref on fused gate|up rows", "[gpu][base]") {
  for (int64_t cols : {1024, 9216, 5}) {
    for (int64_t rows : {1, 37, 300}) {
      // The fused gate_up output [rows, 2 * cols]: gate = columns [0, cols), up = [cols, 2 cols).
      auto gu = fast_uniform(rows * 2 * cols, 91 + rows + cols, 6.f);
      gu[0] = -1000.f;  // exp(1000) overflows: the result must be -0 * up, not NaN
      gu[1 % cols] = 1000.f;
      std::vector<float> want(rows * cols);
      for (int64_t r = 0; r < rows; ++r) {
        silu_mul_ref({.gate = &gu[r * 2 * cols],
                      .up = &gu[r * 2 * cols + cols],
                      .n = cols,
                      .out = &want[r * cols]});
      }
      DeviceBuffer<float> dgu(gu), dout(rows * cols);
      SiluMulCudaParams<float> p;
      p.gate = dgu.get();
      p.up = dgu.get() + cols;
      p.rows = rows;
      p.cols = cols;
      p.in_stride = 2 * cols;
      p.out = dout.get();
      silu_mul_cuda(p, nullptr);
      const auto got = dout.to_host();
      INFO("rows " << rows << " cols " << cols);
      // expf on the device is within 2 ulp of the host's exp: ~1e-7 relative per element.
      CHECK(rel_l2(got, want) <= 1e-5);
      bool finite = true;
      for (float v : got) finite &= std::isfinite(v);
      CHECK(finite);
      // In place (out = gate, the fused buffer's stride): the same values.
      p.out = dgu.get();
      p.out_stride = 2 * cols;
      silu_mul_cuda(p, nullptr);
      const auto inplace = dgu.to_host();
      std::vector<float> got2(rows * cols);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) got2[r * cols + c] = inplace[r * 2 * cols + c];
      CHECK(rel_l2(got2, got) == 0.0);
    }
  }
}

TEST_CASE("gpu silu_mul bf16 matches a twin rounding once", "[gpu][base][bf16]") {
  const int64_t rows = 77, cols = 1024;
  const Bf16Data g = make_bf16(fast_uniform(rows * cols, 95, 6.f));
  const Bf16Data u = make_bf16(fast_uniform(rows * cols, 96, 2.f));
  std::vector<float> want(rows * cols);
  for (size_t i = 0; i < want.size(); ++i)
    want[i] = round_to_bf16(g.f32[i] / (1.f + std::exp(-g.f32[i])) * u.f32[i]);
  DeviceBuffer<uint16_t> dg(g.bits), du(u.bits), dout(rows * cols);
  SiluMulCudaParams<Bf16> p;
  p.gate = bf(dg);
  p.up = bf(du);
  p.rows = rows;
  p.cols = cols;
  p.out = bf(dout);
  silu_mul_cuda(p, nullptr);
  // Device expf vs host exp (<= 2 ulp of fp32) can flip the final bf16 rounding by one ulp.
  const double frac = check_bf16_close(bf16_bits_to_f32(dout.to_host()), want, {}, "silu_mul");
  std::printf("[base] bf16 silu_mul: %.4f%% differ by 1 ulp\n", 100 * frac);
  CHECK(frac <= 0.01);  // a flip needs the value within ~2^-22 relative of a tie: rare
}

TEST_CASE("gpu convert_cuda is bit-exact round-to-nearest-even in every direction", "[gpu][base]") {
  // Random fp32 over a wide range plus the edge cases of RNE: exact ties (lower 16 bits 0x8000
  // with even and odd kept bits), just below/above ties, +-0, subnormals, inf, max float.
  const int64_t n_random = (int64_t(1) << 22) + 3;  // more than one grid-stride pass
  std::vector<float> src = fast_uniform(n_random, 101, 1.f);
  for (int64_t i = 0; i < n_random; ++i) src[i] = std::ldexp(src[i], static_cast<int>(i % 61) - 30);
  for (uint32_t bits : {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x00000000u,
                        0x80000000u, 0x00000001u, 0x00018000u, 0x7f800000u, 0xff800000u,
                        0x7f7fffffu, 0xbf7f8000u, 0x477fe000u, 0x38800000u, 0x33800000u})
    src.push_back(bits_to_f32(bits));
  const int64_t n = static_cast<int64_t>(src.size());
  DeviceBuffer<float> d32(src), d32b(n);
  DeviceBuffer<uint16_t> dbf(n), dbf2(n), dh(n), dh2(n);

  // f32 -> bf16 == f32_to_bf16, bf16 -> f32 exact, f32 -> bf16 -> f32 == round_to_bf16.
  convert_cuda(d32.get(), DType::kF32, dbf.get(), DType::kBF16, n, nullptr);
  const auto bf = dbf.to_host();
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += bf[i] != f32_to_bf16(src[i]);
  CHECK(bad == 0);
  convert_cuda(dbf.get(), DType::kBF16, d32b.get(), DType::kF32, n, nullptr);
  const auto back = d32b.to_host();
  bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float want = round_to_bf16(src[i]);
    bad += std::memcmp(&back[i], &want, 4) != 0;  // bitwise: keeps -0 and inf honest
  }
  CHECK(bad == 0);

  // f32 -> f16: the nearest f16 (ties to even mantissa), checked against both neighbours.
  convert_cuda(d32.get(), DType::kF32, dh.get(), DType::kF16, n, nullptr);
  const auto h = dh.to_host();
  bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = src[i];
    if (std::isinf(v) || std::fabs(v) >= 65520.f) {  // rounds to f16 inf
      bad += !std::isinf(f16_to_f32(h[i])) || std::signbit(f16_to_f32(h[i])) != std::signbit(v);
      continue;
    }
    const float hv = f16_to_f32(h[i]);
    const uint16_t mag = h[i] & 0x7fff;
    const float up = f16_to_f32(static_cast<uint16_t>((h[i] & 0x8000) | (mag + 1)));
    const float down = mag ? f16_to_f32(static_cast<uint16_t>((h[i] & 0x8000) | (mag - 1))) : -hv;
    const double e = std::fabs(double(v) - hv);
    const bool nearest = e <= std::fabs(double(v) - up) && e <= std::fabs(double(v) - down);
    const bool tie = e == std::fabs(double(v) - up) || (mag && e == std::fabs(double(v) - down));
    bad += !nearest || (tie && e != 0 && (h[i] & 1)) ||
           (hv != 0 && std::signbit(hv) != std::signbit(v));
  }
  CHECK(bad == 0);

  // f16 -> f32 exact and f16 -> f32 -> f16 identity; f16 -> bf16 == f32_to_bf16(f16 value);
  // bf16 -> f16 -> bf16 identity for bf16 values inside f16's normal range.
  const auto h16 = random_f16(n, 102);
  DeviceBuffer<uint16_t> dh16(h16);
  convert_cuda(dh16.get(), DType::kF16, d32b.get(), DType::kF32, n, nullptr);
  const auto h32 = d32b.to_host();
  convert_cuda(d32b.get(), DType::kF32, dh2.get(), DType::kF16, n, nullptr);
  const auto h_back = dh2.to_host();
  convert_cuda(dh16.get(), DType::kF16, dbf2.get(), DType::kBF16, n, nullptr);
  const auto h_bf = dbf2.to_host();
  bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    bad += h32[i] != f16_to_f32(h16[i]);
    bad += h_back[i] != h16[i];
    bad += h_bf[i] != f32_to_bf16(f16_to_f32(h16[i]));
  }
  CHECK(bad == 0);
  convert_cuda(dbf2.get(), DType::kBF16, dh2.get(), DType::kF16, n, nullptr);
  convert_cuda(dh2.get(), DType::kF16, dbf.get(), DType::kBF16, n, nullptr);
  CHECK(dbf.to_host() == h_bf);

  // Same dtype: a copy.
  convert_cuda(dbf2.get(), DType::kBF16, dbf.get(), DType::kBF16, n, nullptr);
  CHECK(dbf.to_host() == h_bf);
  // NaN stays NaN (the payload may be canonicalised).
  const std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN()};
  DeviceBuffer<float> dnan(nan);
  convert_cuda(dnan.get(), DType::kF32, dbf.get(), DType::kBF16, 1, nullptr);
  CHECK(std::isnan(bf16_to_f32(dbf.to_host()[0])));
  CHECK_THROWS_AS(convert_cuda(nullptr, DType::kF32, dbf.get(), DType::kBF16, 4, nullptr),
                  kl::Error);
}

TEST_CASE("gpu gather_rows copies the selected rows exactly", "[gpu][base]") {
  const int64_t src_rows = 300, cols = 2304, stride = 2304 + 32;
  const auto src = fast_uniform(src_rows * stride, 111, 1.f);
  const std::vector<int32_t> rows = {299, 0, 17, 17, 150, 3, 298};
  const int64_t num = static_cast<int64_t>(rows.size());
  DeviceBuffer<int32_t> drows(rows);
  {
    DeviceBuffer<float> dsrc(src), ddst(num * cols);
    gather_rows_cuda<float>({dsrc.get(), stride, drows.get(), num, cols, ddst.get()}, nullptr);
    const auto got = ddst.to_host();
    bool same = true;
    for (int64_t i = 0; i < num; ++i)
      for (int64_t c = 0; c < cols; ++c) same &= got[i * cols + c] == src[rows[i] * stride + c];
    CHECK(same);
  }
  {
    const auto src_bf = make_bf16(src).bits;
    DeviceBuffer<uint16_t> dsrc(src_bf), ddst(num * cols);
    gather_rows_cuda<Bf16>({bf(dsrc), stride, drows.get(), num, cols, bf(ddst)}, nullptr);
    const auto got = ddst.to_host();
    bool same = true;
    for (int64_t i = 0; i < num; ++i)
      for (int64_t c = 0; c < cols; ++c) same &= got[i * cols + c] == src_bf[rows[i] * stride + c];
    CHECK(same);
  }
}

TEST_CASE("gpu gated rmsnorm fp32 matches gated_rmsnorm_ref", "[gpu][base][norm]") {
  for (int64_t dim : {128, 64, 7}) {
    for (int64_t tokens : {1, 5, 300}) {
      for (DType wt : {DType::kF32, DType::kBF16}) {
        const int64_t rows = tokens * 32;  // 32 KDA heads
        const auto x = random_normal(rows * dim, 121 + tokens + dim, 2.f);
        const auto gate = random_normal(rows * dim, 122 + tokens + dim, 3.f);
        const auto w32 = random_uniform(dim, 123 + dim, 0.5f, 1.5f);
        const auto w16 = to_bf16(w32);
        const void* hw = wt == DType::kF32 ? static_cast<const void*>(w32.data()) : w16.data();
        std::vector<float> want(rows * dim);
        gated_rmsnorm_ref({.x = x.data(),
                           .gate = gate.data(),
                           .weight = {hw, wt, 1, dim},
                           .eps = 1e-6f,
                           .num_rows = rows,
                           .dim = dim,
                           .out = want.data()});
        DeviceBuffer<float> dx(x), dg(gate), dw32(w32), dout(rows * dim);
        DeviceBuffer<uint16_t> dw16(w16);
        const void* dw = wt == DType::kF32 ? static_cast<const void*>(dw32.get()) : dw16.get();
        GatedRmsNormCudaParams<float> p;
        p.x = dx.get();
        p.gate = dg.get();
        p.weight = {dw, wt, 1, dim};
        p.eps = 1e-6f;
        p.num_rows = rows;
        p.dim = dim;
        p.out = dout.get();
        gated_rmsnorm_cuda(p, nullptr);
        INFO("dim " << dim << " tokens " << tokens << " weight " << dtype_name(wt));
        // fp32: the mean's reduction order (dim terms) and device expf (<= 2 ulp) differ from the
        // twin: a few ulps relative; 1e-5 is a >10x margin.
        const auto got = dout.to_host();
        CHECK(rel_l2(got, want) <= 1e-5);
        p.out = dx.get();  // in place (out aliases x): the same result
        gated_rmsnorm_cuda(p, nullptr);
        CHECK(rel_l2(dx.to_host(), got) == 0.0);
      }
    }
  }
}

TEST_CASE("gpu gated rmsnorm bf16 matches a twin rounding once", "[gpu][base][norm][bf16]") {
  const int64_t dim = 128;
  for (int64_t tokens : {1, 300}) {
    const int64_t rows = tokens * 32;
    const Bf16Data x = make_bf16(random_normal(rows * dim, 131 + tokens, 2.f));
    const Bf16Data g = make_bf16(random_normal(rows * dim, 132 + tokens, 3.f));
    const Bf16Data w = make_bf16(random_uniform(dim, 133, 0.5f, 1.5f));
    // Twin: fp32 from the bf16 inputs, rounded to bf16 once at the end (no intermediate rounding).
    std::vector<float> want(rows * dim);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t c = 0; c < dim; ++c) ss += double(x.f32[r * dim + c]) * x.f32[r * dim + c];
      const float inv = 1.f / std::sqrt(static_cast<float>(ss / dim) + 1e-6f);
      for (int64_t c = 0; c < dim; ++c) {
        const float sig = 1.f / (1.f + std::exp(-g.f32[r * dim + c]));
        want[r * dim + c] = round_to_bf16(x.f32[r * dim + c] * inv * w.f32[c] * sig);
      }
    }
    DeviceBuffer<uint16_t> dx(x.bits), dg(g.bits), dw(w.bits), dout(rows * dim);
    GatedRmsNormCudaParams<Bf16> p;
    p.x = bf(dx);
    p.gate = bf(dg);
    p.weight = {dw.get(), DType::kBF16, 1, dim};
    p.eps = 1e-6f;
    p.num_rows = rows;
    p.dim = dim;
    p.out = bf(dout);
    gated_rmsnorm_cuda(p, nullptr);
    INFO("tokens " << tokens);
    // The fp32 reduction order moves `inv` by an ulp and expf by <= 2 ulp: a final bf16 rounding
    // may flip by one ulp where the fp32 value is within a few ulps of a tie.
    const double frac = check_bf16_close(bf16_bits_to_f32(dout.to_host()), want, {}, "gated");
    std::printf("[base] bf16 gated rmsnorm tokens=%lld: %.4f%% differ by 1 ulp\n",
                static_cast<long long>(tokens), 100 * frac);
    CHECK(frac <= 0.01);
  }
}
