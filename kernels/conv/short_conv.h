// Short causal depthwise convolution (KDA q/k/v, width W = 4) followed by SiLU, for one sequence.
// The carried window holds the last W-1 *pre-conv* inputs (oldest first), zero for a fresh
// sequence; the kernel reads it as the history before token 0 and leaves the last W-1 inputs in it.
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"

namespace kl::kernels {

struct ShortConvParams {
  const float* x = nullptr;  // [num_tokens, dim] pre-conv projections
  int64_t num_tokens = 0;
  int64_t dim = 0;
  int kernel_size = 4;  // W
  WeightView weight;    // [dim, W] (checkpoint [dim, 1, W]); tap W-1 multiplies the current token
  float* window = nullptr;  // [W-1, dim] in/out, oldest first
  bool apply_silu = true;
  float* out = nullptr;  // [num_tokens, dim]; must not alias x
};

void short_conv_ref(const ShortConvParams& p);

}  // namespace kl::kernels
