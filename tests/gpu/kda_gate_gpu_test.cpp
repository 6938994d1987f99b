// The CUDA KDA per-token scalars against their CPU twins (kda_gate_ref, kda_beta_ref,
// l2norm_rows_ref) at the model's width (32 heads of 128), fp32 and bf16 inputs, with the model's
// gate parameterisation and a wide input range that reaches softplus's linear branch.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>

#include "kernels/kda/kda_gate.h"
#include "kernels/kda/kda_gate_cuda.h"
#include "tests/gpu/kda_gpu_util.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;
using namespace kl::test::kda;

namespace {

// Largest |got - want| / max(|want|, 1e-30) over the elements. The floor only matters for
// results in fp32's subnormal range (a sigmoid of -88 and below), where an ulp of the exp moves
// the few remaining significant bits; such a g or beta is zero for every later use (exp(g) == 1).
double max_rel_elem(const std::vector<float>& got, const std::vector<float>& want) {
  double m = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(double(got[i]) - want[i]);
    m = std::max(m, d / std::max(std::fabs(double(want[i])), 1e-30));
  }
  return m;
}

template <typename T>
void check_gate(const std::vector<float>& f_in, bool lower_bound, uint64_t seed) {
  const int64_t width = kHeads * kHeadDim;
  const int64_t num_tokens = static_cast<int64_t>(f_in.size()) / width;
  const auto f = as_t<T>(f_in);
  const GateParamsF32 gp = model_gate_params(seed);
  std::vector<float> want(f.size());
  KdaGateParams ref{.f = f.data(),
                    .a_log = {gp.a_log.data(), DType::kF32, 1, kHeads},
                    .dt_bias = {gp.dt_bias.data(), DType::kF32, 1, width},
                    .num_tokens = num_tokens,
                    .num_heads = kHeads,
                    .head_dim = kHeadDim,
                    .has_lower_bound = lower_bound,
                    .lower_bound = -5.f,
                    .g = want.data()};
  kda_gate_ref(ref);

  ActBuffer<T> df(f);
  DeviceBuffer<float> da(gp.a_log), dbias(gp.dt_bias), dg(f.size());
  KdaGateCudaParams<T> p;
  p.f = df.get();
  p.a_log = {da.get(), DType::kF32, 1, kHeads};
  p.dt_bias = {dbias.get(), DType::kF32, 1, width};
  p.num_tokens = num_tokens;
  p.num_heads = kHeads;
  p.head_dim = kHeadDim;
  p.has_lower_bound = lower_bound;
  p.lower_bound = -5.f;
  p.g = dg.get();
  kda_gate_cuda<T>(p, nullptr);
  const auto got = dg.to_host();
  // Same fp32 inputs on both sides (bf16 f is exact in fp32); the difference is CUDA's expf /
  // log1pf (<= 2 ulp each) against glibc, a few fp32 ulps (< 1e-6) per element: 1e-5 elementwise.
  const double err = max_rel_elem(got, want);
  std::printf("  gate%s: max rel %.3g, rel_l2 %.3g over %zu\n", lower_bound ? " (lower bound)" : "",
              err, rel_l2(got, want), got.size());
  INFO("gate max relative error " << err << ", rel_l2 " << rel_l2(got, want));
  CHECK(err <= 1e-5);
}

template <typename T>
void gate_cases() {
  SECTION("model parameterisation, f ~ N(0, 1), 267 tokens") {
    check_gate<T>(random_normal(267 * kConvDim, 1), false, 2);
  }
  SECTION("wide range f in (-40, 40): softplus's linear branch and tiny gates") {
    check_gate<T>(random_uniform(64 * kConvDim, 3, -40.f, 40.f), false, 4);
  }
  SECTION("lower-bound variant (lb = -5)") {
    check_gate<T>(random_normal(37 * kConvDim, 5, 2.f), true, 6);
  }
}

template <typename T>
void check_beta() {
  const int64_t n = 267 * kHeads + 5;
  const auto b = as_t<T>(random_normal(n, 7, 4.f));
  std::vector<float> want(n);
  kda_beta_ref(b.data(), n, want.data());
  ActBuffer<T> db(b);
  DeviceBuffer<float> dbeta(n);
  kda_beta_cuda<T>(db.get(), n, dbeta.get(), nullptr);
  const auto got = dbeta.to_host();
  // sigmoid from identical fp32 inputs: expf ulps only.
  const double err = max_rel_elem(got, want);
  std::printf("  beta: max rel %.3g over %zu\n", err, got.size());
  INFO("beta max relative error " << err);
  CHECK(err <= 1e-5);
}

}  // namespace

TEST_CASE("gpu kda gate fp32 matches kda_gate_ref", "[gpu][kda][gate]") {
  gate_cases<float>();
}

TEST_CASE("gpu kda gate from bf16 f matches kda_gate_ref", "[gpu][kda][gate][bf16]") {
  gate_cases<__nv_bfloat16>();
}

TEST_CASE("gpu kda beta fp32 matches kda_beta_ref", "[gpu][kda][gate]") {
  check_beta<float>();
}

TEST_CASE("gpu kda beta from bf16 matches kda_beta_ref", "[gpu][kda][gate][bf16]") {
  check_beta<__nv_bfloat16>();
}

namespace {

template <typename T>
void check_l2norm(int64_t num_rows, int64_t dim, float scale, uint64_t seed) {
  auto x = as_t<T>(random_normal(num_rows * dim, seed, 3.f));
  for (int64_t i = 0; i < dim; ++i) x[i] = 0.f;  // a zero row: eps keeps it finite (and zero)
  std::vector<float> want = x;
  l2norm_rows_ref(want.data(), num_rows, dim, kL2Eps, scale);
  ActBuffer<T> dx(x);
  l2norm_rows_cuda<T>(dx.get(), num_rows, dim, kL2Eps, scale, nullptr);
  const auto got = dx.to_host();
  INFO("rows " << num_rows << " dim " << dim << " scale " << scale);
  if constexpr (kIsBf16<T>) {
    // The twin stores the fp32 result rounded to bf16, as the kernel. The sum of squares is
    // reduced in another order (an ulp or two of `inv`), which can flip a rounding; the output is
    // a product (no cancellation), so no absolute floor.
    check_bf16_close(got, as_t<T>(want), 0.0, 0.01);
  } else {
    // fp32: a dim-term sum of squares in another order, a few ulps: 1e-5 leaves a wide margin.
    const double err = rel_l2(got, want);
    std::printf("  l2norm fp32 rows %lld dim %lld: rel_l2 %.3g\n", (long long)num_rows,
                (long long)dim, err);
    INFO("l2norm fp32 rel_l2 " << err);
    CHECK(err <= 1e-5);
  }
}

template <typename T>
void l2norm_cases() {
  check_l2norm<T>(267 * kHeads, kHeadDim, 1.f, 11);                     // k
  check_l2norm<T>(267 * kHeads, kHeadDim, 1.f / std::sqrt(128.f), 12);  // q, pre-scaled
  check_l2norm<T>(301, 7, 1.f, 13);
  check_l2norm<T>(33, 200, 0.5f, 14);
}

}  // namespace

TEST_CASE("gpu l2norm rows fp32 matches l2norm_rows_ref", "[gpu][kda][gate]") {
  l2norm_cases<float>();
}

TEST_CASE("gpu l2norm rows bf16 matches a twin rounding to bf16", "[gpu][kda][gate][bf16]") {
  l2norm_cases<__nv_bfloat16>();
}

TEST_CASE("gpu kda gate rejects bad parameters", "[gpu][kda][gate]") {
  KdaGateCudaParams<float> p;
  p.num_heads = kHeads;
  p.head_dim = kHeadDim;
  p.num_tokens = 1;
  CHECK_THROWS_WITH(kda_gate_cuda<float>(p, nullptr), Catch::Contains("A_log"));
  CHECK_THROWS_WITH(l2norm_rows_cuda<float>(nullptr, 4, 0, kL2Eps, 1.f, nullptr),
                    Catch::Contains("dim"));
}
