// Shared helpers for the test tiers.
#include "tests/support/test_support.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "engine/core/dtype.h"
#include "engine/core/error.h"

namespace kl::test {

std::optional<std::string> golden_dir() {
  if (const char* env = std::getenv("KL_GOLDEN_DIR"); env && *env) return std::string(env);
  std::filesystem::path p = std::filesystem::path(KL_SOURCE_DIR) / ".." / "shared" / "golden";
  if (std::filesystem::is_directory(p)) return std::filesystem::canonical(p).string();
  return std::nullopt;
}

double rel_l2(const float* a, const float* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = static_cast<double>(a[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  if (den == 0) return num == 0 ? 0.0 : INFINITY;
  return std::sqrt(num / den);
}

double max_abs_diff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

std::vector<float> random_normal(size_t n, uint64_t seed, float stddev, float mean) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<float> random_uniform(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "kltest-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) fail("cannot create a temporary directory from {}", tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace kl::test
