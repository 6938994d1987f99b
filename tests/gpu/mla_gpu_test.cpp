// MlaAttentionRunner::attention against the CPU chain mla_absorb_q_ref -> mla_attention_ref ->
// mla_unabsorb_ref, at the model's dims (32 heads, kv_lora 512, rope 64, nope 128, v 128, page 64)
// on one ragged batch mixing decode rows (short and long contexts) with prefill chunks over
// cached prefixes, in shuffled non-contiguous pages; bf16 against a twin of the kernels' form
// that rounds to bf16 where they do. Both key-chunk sizes (several chunks, one chunk) run. The
// helpers and the bounds (with their justification) are in mla_test_util.cpp; the same checks at
// the tiny-grouped model's dims are in mla_dims_gpu_test.cpp.
#include <catch2/catch.hpp>

#include "tests/gpu/mla_test_util.h"

using namespace kl::test::mla_test;

namespace {

const Expected& expected() {
  static const Expected e = make_expected(kModelDims, kMixed, 4242);
  return e;
}

}  // namespace

TEST_CASE("cpu mla twin of the kernels' form matches the reference chain in fp32", "[gpu][mla]") {
  check_twin_vs_chain(expected(), "model dims");
}

TEST_CASE("gpu mla attention fp32 matches the CPU chain on a mixed ragged batch", "[gpu][mla]") {
  check_gpu_fp32(expected(), "model dims");
}

TEST_CASE("gpu mla attention bf16 matches a twin rounding where the kernels do",
          "[gpu][mla][bf16]") {
  check_gpu_bf16(expected(), "model dims");
}

TEST_CASE("gpu mla attention fp32 and bf16 over many decode rows (no key split)", "[gpu][mla]") {
  // 160 decode rows x 2 head blocks fill two waves of an H100 (132 SMs): one split per row.
  check_decode_only(kModelDims, 160, 99, "model dims");
}
