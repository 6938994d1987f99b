// The CUDA RMSNorm against its CPU twin: fp32 activations against rmsnorm_ref, bf16 activations
// against a CPU twin that rounds to bf16 where the kernel does, at the model's real width
// (hidden 2304) and odd widths, with and without the fused residual add, bf16 and f32 weights.
#include <catch2/catch.hpp>

#include <cmath>

#include <cuda_bf16.h>

#include "kernels/norm/rmsnorm.h"
#include "kernels/norm/rmsnorm_cuda.h"
#include "tests/gpu/device_buffer.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;

namespace {

WeightView weight_view(const void* data, DType t, int64_t dim) {
  return {data, t, 1, dim};
}

}  // namespace

TEST_CASE("gpu rmsnorm fp32 matches rmsnorm_ref", "[gpu][norm]") {
  for (int64_t dim : {2304, 512, 7, 4097}) {
    for (bool fused : {false, true}) {
      const int64_t rows = 37;
      auto x = random_normal(rows * dim, 1 + dim, 1.f);
      auto res = random_normal(rows * dim, 2 + dim, 3.f);
      auto w = to_bf16(random_uniform(dim, 3 + dim, 0.5f, 1.5f));
      // CPU twin.
      std::vector<float> want(rows * dim), res_cpu = res;
      rmsnorm_ref({.x = x.data(),
                   .residual = fused ? res_cpu.data() : nullptr,
                   .weight = weight_view(w.data(), DType::kBF16, dim),
                   .eps = 1e-5f,
                   .num_rows = rows,
                   .dim = dim,
                   .out = want.data()});
      // GPU.
      DeviceBuffer<float> dx(x), dres(res), dout(rows * dim);
      DeviceBuffer<uint16_t> dw(w);
      RmsNormCudaParams<float> p;
      p.x = dx.get();
      p.residual = fused ? dres.get() : nullptr;
      p.weight = weight_view(dw.get(), DType::kBF16, dim);
      p.eps = 1e-5f;
      p.num_rows = rows;
      p.dim = dim;
      p.out = dout.get();
      rmsnorm_cuda<float>(p, nullptr);
      const auto got = dout.to_host();
      INFO("dim " << dim << (fused ? " fused" : ""));
      // fp32: the two sides differ only in the order of the mean's reduction (dim terms), a
      // relative error of a few fp32 ulps: 1e-5 leaves a 10x margin over what such orders give.
      CHECK(rel_l2(got, want) <= 1e-5);
      if (fused) CHECK(rel_l2(dres.to_host(), res_cpu) == 0.0);  // the add itself is exact
    }
  }
}

TEST_CASE("gpu rmsnorm bf16 matches a CPU twin rounding to bf16 where the kernel does",
          "[gpu][norm][bf16]") {
  for (int64_t dim : {2304, 128, 9}) {
    const int64_t rows = 64;
    const auto xf = to_bf16(random_normal(rows * dim, 10 + dim, 1.f));
    const auto rf = to_bf16(random_normal(rows * dim, 20 + dim, 2.f));
    const auto w = to_bf16(random_uniform(dim, 30 + dim, 0.5f, 1.5f));
    // Twin: residual' = bf16(residual + x); r = bf16(v / sqrt(mean(v^2) + eps)); out = bf16(r*w).
    std::vector<float> want(rows * dim), want_res(rows * dim);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      std::vector<float> v(dim);
      for (int64_t c = 0; c < dim; ++c) {
        v[c] = round_to_bf16(bf16_to_f32(rf[r * dim + c]) + bf16_to_f32(xf[r * dim + c]));
        want_res[r * dim + c] = v[c];
        ss += double(v[c]) * v[c];
      }
      const float inv = 1.f / std::sqrt(static_cast<float>(ss / dim) + 1e-5f);
      for (int64_t c = 0; c < dim; ++c)
        want[r * dim + c] = round_to_bf16(round_to_bf16(v[c] * inv) * bf16_to_f32(w[c]));
    }
    DeviceBuffer<uint16_t> dx(xf), dres(rf), dout(rows * dim), dw(w);
    RmsNormCudaParams<__nv_bfloat16> p;
    p.x = reinterpret_cast<const __nv_bfloat16*>(dx.get());
    p.residual = reinterpret_cast<__nv_bfloat16*>(dres.get());
    p.weight = weight_view(dw.get(), DType::kBF16, dim);
    p.eps = 1e-5f;
    p.num_rows = rows;
    p.dim = dim;
    p.out = reinterpret_cast<__nv_bfloat16*>(dout.get());
    rmsnorm_cuda<__nv_bfloat16>(p, nullptr);
    std::vector<float> got, got_res;
    for (uint16_t b : dout.to_host()) got.push_back(bf16_to_f32(b));
    for (uint16_t b : dres.to_host()) got_res.push_back(bf16_to_f32(b));
    INFO("dim " << dim);
    CHECK(rel_l2(got_res, want_res) == 0.0);  // one fp32 add, one rounding: bit-exact
    // The only freedom is the fp32 order of the sum of squares; it can move `inv` by an ulp and
    // flip a rounding of r or out by one bf16 ulp (2^-8 relative) on a few elements.
    int flips = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const float tol = std::ldexp(std::fabs(want[i]), -7);
      CHECK(std::fabs(got[i] - want[i]) <= tol);
      flips += got[i] != want[i];
    }
    CHECK(flips <= static_cast<int>(got.size() / 100));
  }
}

// The form the bf16 forward pass uses: bf16 activations, the residual stream in fp32, and the
// router's fp32 copy of the normed rows. Also the first layer's form (no x: the residual is the
// embedding, normalised as it is).
TEST_CASE("gpu rmsnorm bf16 with an fp32 residual stream and fp32 output", "[gpu][norm][bf16]") {
  for (int64_t dim : {2304, 128, 9}) {
    for (bool with_x : {true, false}) {
      const int64_t rows = 64;
      const auto xf = to_bf16(random_normal(rows * dim, 40 + dim, 1.f));
      const auto res = random_normal(rows * dim, 50 + dim, 2.f);
      const auto w = to_bf16(random_uniform(dim, 60 + dim, 0.5f, 1.5f));
      // Twin: residual' = residual + x in fp32 (no rounding); r = bf16(v * inv); out = bf16(r*w);
      // out_f32 = v * inv * w in fp32.
      std::vector<float> want(rows * dim), want_f32(rows * dim), want_res(rows * dim);
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t c = 0; c < dim; ++c) {
          const int64_t i = r * dim + c;
          want_res[i] = with_x ? res[i] + bf16_to_f32(xf[i]) : res[i];
          ss += double(want_res[i]) * want_res[i];
        }
        const float inv = 1.f / std::sqrt(static_cast<float>(ss / dim) + 1e-5f);
        for (int64_t c = 0; c < dim; ++c) {
          const int64_t i = r * dim + c;
          want[i] = round_to_bf16(round_to_bf16(want_res[i] * inv) * bf16_to_f32(w[c]));
          want_f32[i] = want_res[i] * inv * bf16_to_f32(w[c]);
        }
      }
      DeviceBuffer<uint16_t> dx(xf), dout(rows * dim), dw(w);
      DeviceBuffer<float> dres(res), dout_f32(rows * dim);
      RmsNormCudaParams<__nv_bfloat16, float> p;
      p.x = with_x ? reinterpret_cast<const __nv_bfloat16*>(dx.get()) : nullptr;
      p.residual = dres.get();
      p.weight = weight_view(dw.get(), DType::kBF16, dim);
      p.eps = 1e-5f;
      p.num_rows = rows;
      p.dim = dim;
      p.out = reinterpret_cast<__nv_bfloat16*>(dout.get());
      p.out_f32 = dout_f32.get();
      rmsnorm_cuda(p, nullptr);
      std::vector<float> got;
      for (uint16_t b : dout.to_host()) got.push_back(bf16_to_f32(b));
      INFO("dim " << dim << (with_x ? " with x" : " residual only"));
      CHECK(rel_l2(dres.to_host(), want_res) == 0.0);  // one fp32 add per element: bit-exact
      // out_f32: only the sum of squares' order differs (a few fp32 ulps of inv).
      CHECK(rel_l2(dout_f32.to_host(), want_f32) <= 1e-6);
      // out: as in the bf16 test above, an ulp of inv may flip a bf16 rounding on a few elements.
      int flips = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        CHECK(std::fabs(got[i] - want[i]) <= std::ldexp(std::fabs(want[i]), -7));
        flips += got[i] != want[i];
      }
      CHECK(flips <= static_cast<int>(got.size() / 100));
    }
  }
}
