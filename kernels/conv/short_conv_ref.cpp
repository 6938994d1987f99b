// CPU twin of KDA's short causal depthwise convolution (+ SiLU) for one sequence, with the carried
// window of the last W-1 pre-conv inputs (spec 3.2 step 2).
#include "kernels/conv/short_conv.h"

#include <cmath>
#include <vector>

#include "engine/core/error.h"

namespace kl::kernels {

void short_conv_ref(const ShortConvParams& p) {
  const int64_t dim = p.dim;
  const int64_t hist = p.kernel_size - 1;  // rows of the carried window
  KL_CHECK(p.kernel_size >= 1, "short_conv_ref: kernel_size {} < 1", p.kernel_size);
  KL_CHECK(p.weight.numel() == dim * p.kernel_size,
           "short_conv_ref: weight has {} values, expected dim {} x kernel_size {}",
           p.weight.numel(), dim, p.kernel_size);
  KL_CHECK(p.window || hist == 0, "short_conv_ref: no window for kernel_size {}", p.kernel_size);
  if (p.num_tokens == 0) return;

  // Taps as fp32, [dim, W] (the checkpoint's [dim, 1, W] flattened the same way).
  std::vector<float> w(dim * p.kernel_size);
  for (int64_t i = 0; i < dim * p.kernel_size; ++i) w[i] = p.weight.at(i);

  // Input at sequence time j relative to this call: j < 0 reads the carried window (row hist + j),
  // j >= 0 reads x.
  auto input_row = [&](int64_t j) -> const float* {
    return j < 0 ? p.window + (hist + j) * dim : p.x + j * dim;
  };

  for (int64_t t = 0; t < p.num_tokens; ++t) {
    float* out = p.out + t * dim;
    for (int64_t c = 0; c < dim; ++c) out[c] = 0.f;
    // Oldest tap first, so the sum order is tap 0 .. W-1 for every channel.
    for (int64_t i = 0; i < p.kernel_size; ++i) {
      const float* in = input_row(t - hist + i);
      for (int64_t c = 0; c < dim; ++c) out[c] += w[c * p.kernel_size + i] * in[c];
    }
    if (p.apply_silu) {
      for (int64_t c = 0; c < dim; ++c) out[c] = out[c] / (1.f + std::exp(-out[c]));
    }
  }

  // New window = the last W-1 inputs of (old window ++ x). With fewer tokens than W-1 part of it
  // comes from the old window, so it is assembled aside before being written back.
  if (hist > 0) {
    std::vector<float> next(hist * dim);
    for (int64_t r = 0; r < hist; ++r) {
      const float* src = input_row(p.num_tokens - hist + r);
      for (int64_t c = 0; c < dim; ++c) next[r * dim + c] = src[c];
    }
    for (int64_t i = 0; i < hist * dim; ++i) p.window[i] = next[i];
  }
}

}  // namespace kl::kernels
