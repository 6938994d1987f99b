// Helpers of the base-kernel GPU tests: a fast seeded generator (the lm_head weight alone has 377M
// values; std::normal_distribution would take ~10 s), bf16 buffers, and the bf16 comparison.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "engine/core/dtype.h"

namespace kl::test {

// Uniform in [-scale, scale) from splitmix64 of (seed, i): seeded and platform-independent.
inline std::vector<float> fast_uniform(size_t n, uint64_t seed, float scale = 1.f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + i * 0xbf58476d1ce4e5b9ull + 0x94d049bb133111ebull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    v[i] = scale * (static_cast<float>(z >> 40) * (2.f / 16777216.f) - 1.f);
  }
  return v;
}

// The values rounded to bf16 (raw bits) and the same values as fp32.
struct Bf16Data {
  std::vector<uint16_t> bits;
  std::vector<float> f32;
};
inline Bf16Data make_bf16(const std::vector<float>& v) {
  Bf16Data d;
  d.bits.resize(v.size());
  d.f32.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    d.bits[i] = f32_to_bf16(v[i]);
    d.f32[i] = bf16_to_f32(d.bits[i]);
  }
  return d;
}

inline std::vector<float> bf16_bits_to_f32(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = bf16_to_f32(bits[i]);
  return out;
}

// One bf16 ulp at v: 2^(exponent - 7), between 2^-8 and 2^-7 of |v| (a tiny value at 0).
inline float bf16_ulp(float v) {
  return v == 0.f ? std::ldexp(1.f, -133) : std::ldexp(1.f, std::ilogb(v) - 7);
}

// Compares a bf16 kernel output with a twin that computed the exact (double) value and rounded it
// to bf16 once. The kernel accumulates in fp32 in its own order, so its pre-rounding value differs
// from the exact one by the fp32 accumulation error; that can move the final bf16 by one ulp
// (2^-8 relative) where the exact value lies near a rounding boundary. Allowed per element: one
// bf16 ulp of the result, plus abs_slack[i] (the accumulation-error bound of element i; 0 if none).
// Returns the fraction of elements that differ at all (reported by the caller).
inline double check_bf16_close(const std::vector<float>& got, const std::vector<float>& want,
                               const std::vector<float>& abs_slack, const char* what) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0, diff = 0, first_bad = want.size();
  for (size_t i = 0; i < want.size(); ++i) {
    const float slack = abs_slack.empty() ? 0.f : abs_slack[i];
    const float tol = bf16_ulp(want[i]) + slack;
    const bool ok = std::fabs(got[i] - want[i]) <= tol;  // false for NaN too
    if (!ok && bad++ == 0) first_bad = i;
    diff += got[i] != want[i];
  }
  const double frac = want.empty() ? 0.0 : static_cast<double>(diff) / want.size();
  INFO(what << ": " << bad << " elements beyond 1 bf16 ulp + slack; first at " << first_bad
            << (first_bad < want.size() ? " got " + std::to_string(got[first_bad]) + " want " +
                                              std::to_string(want[first_bad])
                                        : std::string()));
  CHECK(bad == 0);
  return frac;
}

}  // namespace kl::test
