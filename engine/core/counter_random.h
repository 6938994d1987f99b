// Counter-based random numbers shared by the host and the GPU (header-only, host and device): the
// dummy-weight generator (engine/checkpoint/dummy_weights.h) computes element i of a tensor from
// (key, i) alone, so the CPU and a CUDA kernel produce the same values in any thread split.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define KL_HOST_DEVICE __host__ __device__
#else
#define KL_HOST_DEVICE
#endif

namespace kl::random {

inline constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
inline constexpr double kTwoPi = 6.283185307179586476925286766559;

KL_HOST_DEVICE inline uint64_t splitmix64(uint64_t x) {
  x += kGolden;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in the open interval (0, 1): 53 random bits, offset by half a step so log() is finite.
KL_HOST_DEVICE inline double uniform(uint64_t key, uint64_t counter) {
  const uint64_t bits = splitmix64(key + counter * kGolden);
  return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53;
}

// Standard normal number i of the stream: Box-Muller over the uniform pair (2*(i/2), 2*(i/2)+1),
// cos for even i, sin for odd i.
KL_HOST_DEVICE inline double normal(uint64_t key, int64_t i) {
  const uint64_t pair = static_cast<uint64_t>(i) >> 1;
  const double rad = sqrt(-2.0 * log(uniform(key, 2 * pair)));
  const double ang = kTwoPi * uniform(key, 2 * pair + 1);
  return (i & 1) ? rad * sin(ang) : rad * cos(ang);
}

}  // namespace kl::random
