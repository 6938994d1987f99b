// Shared helpers of the MLA attention GPU tests (mla_gpu_test.cpp at the model's dims,
// mla_dims_gpu_test.cpp at the tiny-grouped test model's): a ragged step over shuffled pages for
// any head geometry, the CPU chain mla_absorb_q_ref -> mla_attention_ref -> mla_unabsorb_ref,
// a twin of the kernels' form (optionally rounding to bf16 where they do), a GPU run of
// MlaAttentionRunner::attention, and the checks of a mixed decode + prefill batch.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/mla/mla_cuda.h"

namespace kl::test::mla_test {

struct MlaTestDims {
  int64_t heads = 32;
  int64_t nope = 128;
  int64_t rope = 64;
  int64_t v = 128;
  int64_t lora = 512;
  int64_t page = 64;
  int64_t qdim() const { return nope + rope; }
  int64_t width() const { return lora + rope; }
  int64_t kvb_rows() const { return nope + v; }
  float scale() const { return 1.f / std::sqrt(static_cast<float>(qdim())); }
  kernels::MlaDims runner_dims() const;
};

// Kimi Linear (32 heads) and the tiny-grouped golden model (2 heads; tests also use 8).
inline constexpr MlaTestDims kModelDims{32, 128, 64, 128, 512, 64};
inline constexpr MlaTestDims kTinyDims{2, 64, 32, 64, 256, 64};

struct SeqSpec {
  int num_computed;
  int num_rows;
};

// A step: the spans, a shuffled page pool, and bf16-representable q, cache and kv_b (so that the
// fp32 and bf16 runs see the same values).
struct Step {
  MlaTestDims dims;
  std::vector<kernels::MlaSeqSpan> seqs;
  int64_t num_tokens = 0;
  int64_t num_pages = 0;
  int64_t stride = 0;
  std::vector<int32_t> page_tables;  // [num_seqs, stride], -1 past a sequence's pages
  std::vector<float> q;              // [num_tokens, H, nope + rope]
  std::vector<float> cache;          // [num_pages, page, kv_lora + rope]
  std::vector<float> kv_b;           // [H * (nope + v), kv_lora]
};

Step make_step(const MlaTestDims& dims, const std::vector<SeqSpec>& specs, uint64_t seed);

// The CPU executor's chain (absorbed form for every row): [num_tokens, H * v].
std::vector<float> reference_chain(const Step& st);

// The kernels' form: decode rows absorbed (q_lat, out_lat and the output stored in the activation
// type), prefill rows expanded (k_nope / v up-projected and stored in the activation type, the
// output likewise); `round` = bf16 rounding at those points, identity for fp32.
std::vector<float> kernel_form_twin(const Step& st, bool round);

// MlaAttentionRunner::attention on the GPU (fp32 or bf16 activations), output as fp32.
std::vector<float> run_gpu(const Step& st, int64_t chunk_keys, bool bf16);

// rel_l2 over the rows of the decode (num_rows == 1) or the prefill sequences.
double rel_l2_rows(const Step& st, const std::vector<float>& a, const std::vector<float>& ref,
                   bool decode);

// Decode rows with 1, 70, 500 and 3000 cached tokens (several key splits) between prefill chunks
// 0 + 130, 64 + 65 (a prefix ending on a page boundary) and 1000 + 17.
extern const std::vector<SeqSpec> kMixed;

struct Expected {
  Step step;
  std::vector<float> chain, twin_f32, twin_bf16;
};

Expected make_expected(const MlaTestDims& dims, const std::vector<SeqSpec>& specs, uint64_t seed);

// The checks of a mixed batch (Catch CHECKs with their bounds, printed under `label`): the fp32
// twin against the chain, fp32 GPU runs against the chain, bf16 GPU runs against the bf16 twin,
// each GPU run with key chunks of 256 (several chunks) and the default (one chunk).
void check_twin_vs_chain(const Expected& e, const char* label);
void check_gpu_fp32(const Expected& e, const char* label);
void check_gpu_bf16(const Expected& e, const char* label);

// num_rows decode rows of random contexts < 400: fp32 against the chain, bf16 against the twin.
void check_decode_only(const MlaTestDims& dims, int num_rows, uint64_t seed, const char* label);

}  // namespace kl::test::mla_test
