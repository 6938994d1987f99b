// CPU twin of the SwiGLU activation silu(gate) * up, element-wise in fp32.
#include "kernels/activation/silu_mul.h"

#include <cmath>

namespace kl::kernels {

void silu_mul_ref(const SiluMulParams& p) {
  for (int64_t i = 0; i < p.n; ++i) {
    const float g = p.gate[i];
    // g / (1 + exp(-g)): for very negative g, exp overflows to inf and the result is -0, not NaN.
    p.out[i] = g / (1.f + std::exp(-g)) * p.up[i];
  }
}

}  // namespace kl::kernels
