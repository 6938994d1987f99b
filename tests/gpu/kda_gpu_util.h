// Helpers of the KDA decode-side GPU tests: activation buffers in T (float or bf16) filled from
// fp32 values, varlen batch layouts, the model's gate parameterisation, and the bf16 comparison.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <type_traits>
#include <vector>

#include <cuda_bf16.h>

#include "engine/core/dtype.h"
#include "kernels/kda/kda_gate.h"
#include "tests/gpu/device_buffer.h"
#include "tests/support/test_support.h"

namespace kl::test::kda {

// Kimi-Linear-48B-A3B: 32 KDA heads of 128 (q/k/v conv width 4096), conv kernel 4.
constexpr int64_t kHeads = 32;
constexpr int64_t kHeadDim = 128;
constexpr int64_t kConvDim = kHeads * kHeadDim;
constexpr int kConvWidth = 4;
constexpr float kL2Eps = 1e-6f;

template <typename T>
constexpr bool kIsBf16 = std::is_same_v<T, __nv_bfloat16>;

// The values as a kernel reading T sees them (rounded to bf16 for T = bf16).
template <typename T>
std::vector<float> as_t(std::vector<float> v) {
  if constexpr (kIsBf16<T>) {
    for (float& x : v) x = round_to_bf16(x);
  }
  return v;
}

// A device buffer of T holding fp32 values (rounded to bf16 for T = bf16).
template <typename T>
class ActBuffer {
  using Raw = std::conditional_t<kIsBf16<T>, uint16_t, float>;

 public:
  explicit ActBuffer(const std::vector<float>& v) : buf_(encode(v)) {}
  explicit ActBuffer(size_t n) : buf_(n) {}
  T* get() const { return reinterpret_cast<T*>(buf_.get()); }
  std::vector<float> to_host() const {
    if constexpr (kIsBf16<T>) {
      std::vector<float> out;
      for (uint16_t b : buf_.to_host()) out.push_back(bf16_to_f32(b));
      return out;
    } else {
      return buf_.to_host();
    }
  }

 private:
  static std::vector<Raw> encode(const std::vector<float>& v) {
    if constexpr (kIsBf16<T>) {
      return to_bf16(v);
    } else {
      return v;
    }
  }
  DeviceBuffer<Raw> buf_;
};

inline std::vector<int32_t> cu_seqlens_of(const std::vector<int>& lens) {
  std::vector<int32_t> cu{0};
  for (int n : lens) cu.push_back(cu.back() + n);
  return cu;
}

inline int64_t max_of(const std::vector<int>& lens) {
  return lens.empty() ? 0 : *std::max_element(lens.begin(), lens.end());
}

// The model's gate parameterisation: A_log = log(uniform(1, 16)) per head, dt_bias ~ N(0, 0.5),
// f ~ N(0, 1) projections; g = -exp(A_log) softplus(f + dt_bias) by the CPU twin. Per-token log
// decays of about -0.05 .. -30, so cumulative gates get very negative within a few tokens.
struct GateParamsF32 {
  std::vector<float> a_log;    // [H]
  std::vector<float> dt_bias;  // [H*K]
};

inline GateParamsF32 model_gate_params(uint64_t seed) {
  GateParamsF32 gp;
  gp.a_log = random_uniform(kHeads, seed, 1.f, 16.f);
  for (float& a : gp.a_log) a = std::log(a);
  gp.dt_bias = random_normal(kHeads * kHeadDim, seed + 1, 0.5f);
  return gp;
}

inline std::vector<float> model_gates(int64_t num_tokens, uint64_t seed) {
  const GateParamsF32 gp = model_gate_params(seed);
  const std::vector<float> f = random_normal(num_tokens * kHeads * kHeadDim, seed + 2);
  std::vector<float> g(f.size());
  kernels::kda_gate_ref({.f = f.data(),
                         .a_log = {gp.a_log.data(), DType::kF32, 1, kHeads},
                         .dt_bias = {gp.dt_bias.data(), DType::kF32, 1, kHeads * kHeadDim},
                         .num_tokens = num_tokens,
                         .num_heads = kHeads,
                         .head_dim = kHeadDim,
                         .g = g.data()});
  return g;
}

// bf16 output of a kernel against a twin that rounds the same fp32 function to bf16. The fp32
// values of the two sides differ by evaluation order / libm ulps only, so an element may round the
// other way (one bf16 ulp, <= 2^-7 of its magnitude); `abs_floor` covers outputs so close to zero
// that the fp32 difference itself is several bf16 ulps (stated by the caller). Few such flips.
inline void check_bf16_close(const std::vector<float>& got, const std::vector<float>& want,
                             double abs_floor, double max_flip_fraction) {
  REQUIRE(got.size() == want.size());
  size_t flips = 0, bad = 0, first_bad = got.size();
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = std::ldexp(std::fabs(want[i]), -7) + abs_floor;
    if (!(std::fabs(double(got[i]) - want[i]) <= tol)) {
      if (bad++ == 0) first_bad = i;
    }
    flips += got[i] != want[i];
  }
  std::ostringstream msg;
  msg << "bf16: " << flips << " of " << got.size() << " elements differ, " << bad
      << " beyond tolerance; rel_l2 " << rel_l2(got, want);
  if (bad) {
    msg << "; first bad element " << first_bad << ": got " << got[first_bad] << " want "
        << want[first_bad];
  }
  std::printf("  %s\n", msg.str().c_str());
  INFO(msg.str());
  CHECK(bad == 0);
  CHECK(static_cast<double>(flips) <= max_flip_fraction * static_cast<double>(got.size()));
}

}  // namespace kl::test::kda
