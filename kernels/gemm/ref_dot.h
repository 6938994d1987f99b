// Shared fp32 helpers of the CPU reference kernels: a dot product with a fixed summation order and
// the conversion of stored weight rows to fp32. Header-only, internal to kernels/.
#pragma once

#include <cstdint>
#include <cstring>

#include "engine/core/weight_view.h"

namespace kl::kernels::detail {

// Number of independent partial sums of dot_f32. Fixed (never derived from the problem size or
// the machine), so the summation order of a dot product depends only on its length.
inline constexpr int kDotLanes = 16;

// sum_i a[i] * b[i] in fp32. Element i goes to partial sum i % kDotLanes; the partial sums are
// combined by a fixed pairwise tree. The lanes are independent, so GCC vectorises the main loop at
// -O2 without reassociating anything (the result is the same with or without vectorisation).
inline float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[kDotLanes] = {};
  int64_t i = 0;
  for (; i + kDotLanes <= n; i += kDotLanes) {
    // Fully unrolled so that the partial sums live in registers (GCC keeps them in memory at -O2
    // otherwise, at about half the speed).
#pragma GCC unroll 16
    for (int l = 0; l < kDotLanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i];
  for (int width = kDotLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  }
  return acc[0];
}

// dst[r * w.cols + c] = w[row0 + r, c] as fp32, for r in [0, num_rows).
inline void weight_rows_to_f32(const WeightView& w, int64_t row0, int64_t num_rows, float* dst) {
  const int64_t n = num_rows * w.cols;
  const int64_t base = row0 * w.cols;
  switch (w.dtype) {
    case DType::kF32:
      std::memcpy(dst, static_cast<const float*>(w.data) + base, n * sizeof(float));
      return;
    case DType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + base;
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
      return;
    }
    case DType::kF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + base;
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
      return;
    }
  }
}

}  // namespace kl::kernels::detail
