// Greedy sampling: the arg-max of each logits row (the lowest id wins a tie).
#pragma once

#include <cstdint>

namespace kl::kernels {

void greedy_ref(const float* logits, int64_t num_rows, int64_t vocab, int32_t* out_ids);

}  // namespace kl::kernels
