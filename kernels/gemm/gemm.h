// GEMM against a stored weight: out[m, n] = sum_k x[m, k] * w[n, k] (fp32 accumulate).
// The CPU twin computes every output row independently with a fixed summation order, so a row's
// result does not depend on what else is in the batch (DESIGN principle 11).
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"

namespace kl::kernels {

struct GemmParams {
  const float* x = nullptr;  // [m, w.cols], row stride x_stride (0 = w.cols)
  int64_t m = 0;
  int64_t x_stride = 0;
  WeightView w;          // [n, k] = [w.rows, w.cols], bf16/f16/f32
  float* out = nullptr;  // [m, w.rows], row stride out_stride (0 = w.rows)
  int64_t out_stride = 0;
  bool accumulate = false;  // out += result instead of out = result
};

void gemm_ref(const GemmParams& p);

}  // namespace kl::kernels
