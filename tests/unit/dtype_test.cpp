// Unit tests of engine/core/dtype.h and WeightView: exact bf16/f16 decoding, bf16 rounding to
// nearest even, special values, and element access through a view.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/weight_view.h"

namespace kl {
namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

}  // namespace

TEST_CASE("dtype sizes and names") {
  CHECK(dtype_size(DType::kF32) == 4);
  CHECK(dtype_size(DType::kBF16) == 2);
  CHECK(dtype_size(DType::kF16) == 2);
  CHECK(dtype_name(DType::kBF16) == "BF16");
  CHECK(dtype_name(DType::kF16) == "F16");
  CHECK(dtype_name(DType::kF32) == "F32");
}

TEST_CASE("bf16 <-> f32: exact decode, round to nearest even, specials") {
  CHECK(bf16_to_f32(0x3f80) == 1.f);
  CHECK(bf16_to_f32(0xc000) == -2.f);
  CHECK(bf16_to_f32(0x3f81) == 1.f + 1.f / 128);  // 7 mantissa bits
  // Exactly half way between 1 and 1 + 2^-7: ties to the even mantissa (1.0).
  CHECK(f32_to_bf16(from_bits(0x3f808000u)) == 0x3f80);
  // Half way between 1 + 2^-7 (odd) and 1 + 2^-6: ties up to the even one.
  CHECK(f32_to_bf16(from_bits(0x3f818000u)) == 0x3f82);
  // Just above / below half way.
  CHECK(f32_to_bf16(from_bits(0x3f808001u)) == 0x3f81);
  CHECK(f32_to_bf16(from_bits(0x3f807fffu)) == 0x3f80);
  // Rounding can carry into the exponent; the largest finite values overflow to inf.
  CHECK(f32_to_bf16(from_bits(0x3fffffffu)) == 0x4000);
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);
  CHECK(f32_to_bf16(INFINITY) == 0x7f80);
  CHECK(f32_to_bf16(-INFINITY) == 0xff80);
  // NaN stays NaN (the quiet bit is forced so truncation cannot produce inf).
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001u)))));
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  CHECK(f32_to_bf16(-0.f) == 0x8000);
  CHECK(round_to_bf16(3.14159265f) == 3.140625f);
  // Every bf16 value survives the round trip.
  int bad = 0;
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const float f = bf16_to_f32(uint16_t(b));
    if (!std::isnan(f) && f32_to_bf16(f) != b) ++bad;
  }
  CHECK(bad == 0);
}

TEST_CASE("f16 -> f32: normals, subnormals, zero, inf, NaN") {
  CHECK(f16_to_f32(0x3c00) == 1.f);
  CHECK(f16_to_f32(0xc000) == -2.f);
  CHECK(f16_to_f32(0x3555) == Approx(0.333251953125).epsilon(0));  // 0x3555 = 1365/4096
  CHECK(f16_to_f32(0x7bff) == 65504.f);                            // largest finite
  CHECK(f16_to_f32(0x0400) == std::ldexp(1.f, -14));               // smallest normal
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.f, -24));               // smallest subnormal
  CHECK(f16_to_f32(0x03ff) == std::ldexp(1023.f, -24));            // largest subnormal
  CHECK(f16_to_f32(0x8001) == -std::ldexp(1.f, -24));
  CHECK(f16_to_f32(0x0000) == 0.f);
  CHECK(std::signbit(f16_to_f32(0x8000)));
  CHECK(f16_to_f32(0x7c00) == INFINITY);
  CHECK(f16_to_f32(0xfc00) == -INFINITY);
  CHECK(std::isnan(f16_to_f32(0x7e00)));
  // Exhaustive against the definition value = (-1)^s * 2^(e-15) * (1 + m/1024), subnormal
  // 2^-14 * m/1024.
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 31) continue;
    const double mag =
        e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, int(e) - 15);
    if (double(f16_to_f32(uint16_t(h))) != ((h & 0x8000) ? -mag : mag)) ++bad;
  }
  CHECK(bad == 0);
}

TEST_CASE("load_as_f32 and WeightView read every dtype by index and (row, col)") {
  const std::vector<float> f = {1.f, 2.5f, -3.f, 4.f, 5.f, 6.f};
  const std::vector<uint16_t> bf = {0x3f80, 0x4020, 0xc040, 0x4080, 0x40a0, 0x40c0};
  const std::vector<uint16_t> hf = {0x3c00, 0x4100, 0xc200, 0x4400, 0x4500, 0x4600};
  for (const WeightView& w :
       {WeightView{f.data(), DType::kF32, 2, 3}, WeightView{bf.data(), DType::kBF16, 2, 3},
        WeightView{hf.data(), DType::kF16, 2, 3}}) {
    INFO(dtype_name(w.dtype));
    CHECK(w.numel() == 6);
    CHECK(w.at(0, 1) == 2.5f);
    CHECK(w.at(1, 0) == 4.f);
    CHECK(w.at(2) == -3.f);
    CHECK(w.at(1, 2) == 6.f);
    CHECK(load_as_f32(w.data, w.dtype, 4) == 5.f);
  }
}

}  // namespace kl
