// RMSNorm (optionally fused with the residual add) and the per-head sigmoid-gated RMSNorm of KDA.
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"

namespace kl::kernels {

// If residual != nullptr: residual[r] += x[r] first, then out[r] = norm(residual[r]) * w.
// Otherwise out[r] = norm(x[r]) * w.  norm(v) = v / sqrt(mean(v^2) + eps), computed in fp32.
struct RmsNormParams {
  const float* x = nullptr;   // [num_rows, dim]
  float* residual = nullptr;  // [num_rows, dim] in/out, optional
  WeightView weight;          // [dim] (rows = 1, cols = dim)
  float eps = 1e-5f;
  int64_t num_rows = 0;
  int64_t dim = 0;
  float* out = nullptr;  // [num_rows, dim]; may alias x
};

void rmsnorm_ref(const RmsNormParams& p);

// out = x / sqrt(mean(x^2) + eps) * w * sigmoid(gate), per row of `dim` (one KDA head).
struct GatedRmsNormParams {
  const float* x = nullptr;     // [num_rows, dim]
  const float* gate = nullptr;  // [num_rows, dim]
  WeightView weight;            // [dim], shared by all heads
  float eps = 1e-5f;
  int64_t num_rows = 0;  // tokens x heads
  int64_t dim = 0;       // head dim
  float* out = nullptr;  // [num_rows, dim]; may alias x
};

void gated_rmsnorm_ref(const GatedRmsNormParams& p);

}  // namespace kl::kernels
