// CPU twin of greedy sampling: the arg-max of each logits row, the lowest id on ties.
#include "kernels/sampling/greedy.h"

namespace kl::kernels {

void greedy_ref(const float* logits, int64_t num_rows, int64_t vocab, int32_t* out_ids) {
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* row = logits + r * vocab;
    int64_t best = 0;
    // Strictly greater: an equal value later in the row never replaces the earlier (lower) id.
    for (int64_t i = 1; i < vocab; ++i) {
      if (row[i] > row[best]) best = i;
    }
    out_ids[r] = static_cast<int32_t>(best);
  }
}

}  // namespace kl::kernels
