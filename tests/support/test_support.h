// Shared helpers for the test tiers: where the golden data lives, error metrics, seeded inputs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kl::test {

// KL_GOLDEN_DIR if set, else <source>/../shared/golden if it exists, else nullopt.
std::optional<std::string> golden_dir();

// ||a - ref||_2 / ||ref||_2 (0 when both are zero).
double rel_l2(const float* a, const float* ref, size_t n);
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  return rel_l2(a.data(), ref.data(), ref.size());
}
double max_abs_diff(const float* a, const float* b, size_t n);

// Seeded inputs (std::mt19937_64; the same seed gives the same values on every platform).
std::vector<float> random_normal(size_t n, uint64_t seed, float stddev = 1.f, float mean = 0.f);
std::vector<float> random_uniform(size_t n, uint64_t seed, float lo, float hi);
// The values rounded to bf16 and stored as raw bf16 bits.
std::vector<uint16_t> to_bf16(const std::vector<float>& v);

// A temporary directory removed (recursively) when the object goes out of scope.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kl::test
