// MlaAttentionRunner at the tiny-grouped golden model's head geometry (kv_lora 256, nope 64,
// rope 32, v 64, page 64; tests/data/golden/tiny-grouped) with its 2 heads and with 8: the same
// mixed ragged decode + prefill batch and checks as mla_gpu_test.cpp (fp32 against the CPU chain
// mla_absorb_q_ref -> mla_attention_ref -> mla_unabsorb_ref, bf16 against the rounding twin), a
// decode-only batch large enough for one key split per row, and the clear error for a head
// geometry without compiled kernels.
#include <catch2/catch.hpp>

#include "engine/core/error.h"
#include "kernels/mla/mla_cuda.h"
#include "tests/gpu/mla_test_util.h"

using namespace kl::test::mla_test;

namespace {

MlaTestDims tiny_dims(int64_t heads) {
  MlaTestDims d = kTinyDims;
  d.heads = heads;
  return d;
}

const Expected& expected_2_heads() {
  static const Expected e = make_expected(tiny_dims(2), kMixed, 5151);
  return e;
}

const Expected& expected_8_heads() {
  static const Expected e = make_expected(tiny_dims(8), kMixed, 6161);
  return e;
}

}  // namespace

TEST_CASE("cpu mla twin matches the reference chain in fp32 at tiny-grouped dims", "[gpu][mla]") {
  check_twin_vs_chain(expected_2_heads(), "tiny dims, 2 heads");
  check_twin_vs_chain(expected_8_heads(), "tiny dims, 8 heads");
}

TEST_CASE("gpu mla attention fp32 matches the CPU chain at tiny-grouped dims", "[gpu][mla]") {
  check_gpu_fp32(expected_2_heads(), "tiny dims, 2 heads");
  check_gpu_fp32(expected_8_heads(), "tiny dims, 8 heads");
}

TEST_CASE("gpu mla attention bf16 matches the rounding twin at tiny-grouped dims",
          "[gpu][mla][bf16]") {
  check_gpu_bf16(expected_2_heads(), "tiny dims, 2 heads");
  check_gpu_bf16(expected_8_heads(), "tiny dims, 8 heads");
}

TEST_CASE("gpu mla attention over many decode rows at tiny-grouped dims", "[gpu][mla]") {
  // 300 rows x 1 head block is more than two waves of an H100 (2 x 132 blocks): no key split.
  check_decode_only(tiny_dims(8), 300, 31, "tiny dims, 8 heads");
}

TEST_CASE("mla runner names a head geometry it has no kernels for", "[gpu][mla]") {
  kl::kernels::MlaDims d = tiny_dims(2).runner_dims();
  d.nope = 96;
  CHECK_THROWS_AS(kl::kernels::MlaAttentionRunner(d, 16, false), kl::Error);
  CHECK_THROWS_WITH(kl::kernels::MlaAttentionRunner(d, 16, false),
                    Catch::Contains("nope 96 rope 32 v 64 kv_lora 256"));
}
