// CPU twin of the token embedding lookup: each output row is the fp32 copy of one table row.
#include "kernels/embedding/embedding.h"

#include "engine/core/error.h"
#include "kernels/gemm/ref_dot.h"

namespace kl::kernels {

void embedding_ref(const EmbeddingParams& p) {
  const WeightView& t = p.table;
  for (int64_t i = 0; i < p.num_tokens; ++i) {
    const int32_t id = p.token_ids[i];
    // A bad id is a request error (or a tokenizer/vocab mismatch): name it rather than read
    // outside the table.
    KL_CHECK(id >= 0 && id < t.rows, "embedding_ref: token id {} at position {} outside vocab {}",
             id, i, t.rows);
    detail::weight_rows_to_f32(t, id, 1, p.out + i * t.cols);
  }
}

}  // namespace kl::kernels
