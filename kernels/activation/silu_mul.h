// SwiGLU activation: out[i] = silu(gate[i]) * up[i].
#pragma once

#include <cstdint>

namespace kl::kernels {

struct SiluMulParams {
  const float* gate = nullptr;  // [n]
  const float* up = nullptr;    // [n]
  int64_t n = 0;
  float* out = nullptr;  // [n]; may alias gate or up
};

void silu_mul_ref(const SiluMulParams& p);

}  // namespace kl::kernels
