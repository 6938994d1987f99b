// Token embedding lookup on the GPU: out[t] = table[token_ids[t]], converted to the activation type.
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"
#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

template <typename T>
struct EmbeddingCudaParams {
  const int32_t* token_ids = nullptr;  // [num_tokens] device, each in [0, table.rows)
  int64_t num_tokens = 0;
  WeightView table;  // [vocab, hidden] device; f32, bf16 or f16
  T* out = nullptr;  // [num_tokens, hidden] device
};

template <typename T>
void embedding_cuda(const EmbeddingCudaParams<T>& p, CudaStream stream);

}  // namespace kl::kernels
