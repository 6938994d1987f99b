// Token embedding lookup on the GPU: one block per token copies (and converts) one table row.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/embedding/embedding_cuda.h"

namespace kl::kernels {
namespace {

using cuda::from_f32;
using cuda::to_f32;

constexpr int kThreads = 256;  // hidden 2304: 9 values per thread

// An id outside the table cannot be reported from the device without a host sync, and must not be
// read: its row is filled with NaN so that it poisons the logits visibly instead of faulting.
// (The engine validates request token ids against the vocab before they reach a step.)
template <typename T, typename W>
__global__ void embedding_kernel(const int32_t* token_ids, const W* table, int64_t vocab,
                                 int64_t hidden, T* out) {
  const int64_t t = blockIdx.x;
  const int32_t id = token_ids[t];
  T* dst = out + t * hidden;
  if (id < 0 || id >= vocab) {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x)
      dst[i] = from_f32<T>(__int_as_float(0x7fc00000));
    return;
  }
  const W* src = table + static_cast<int64_t>(id) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = from_f32<T>(to_f32(src[i]));
}

template <typename T, typename W>
void launch(const EmbeddingCudaParams<T>& p, cudaStream_t stream) {
  embedding_kernel<T, W><<<static_cast<unsigned>(p.num_tokens), kThreads, 0, stream>>>(
      p.token_ids, static_cast<const W*>(p.table.data), p.table.rows, p.table.cols, p.out);
}

}  // namespace

template <typename T>
void embedding_cuda(const EmbeddingCudaParams<T>& p, CudaStream stream) {
  KL_CHECK(p.num_tokens >= 0 && p.num_tokens <= 0x7fffffff,
           "embedding_cuda: num_tokens {} out of range", p.num_tokens);
  KL_CHECK(p.table.rows > 0 && p.table.cols > 0, "embedding_cuda: empty table [{}, {}]",
           p.table.rows, p.table.cols);
  if (p.num_tokens == 0) return;
  KL_CHECK(p.token_ids && p.table.data && p.out, "embedding_cuda: null device pointer");
  cuda::with_weight_type(p.table.dtype, [&](auto w) { launch<T, decltype(w)>(p, stream); });
  KL_CUDA_CHECK_LAUNCH("embedding_cuda");
}

template void embedding_cuda<float>(const EmbeddingCudaParams<float>&, CudaStream);
template void embedding_cuda<__nv_bfloat16>(const EmbeddingCudaParams<__nv_bfloat16>&, CudaStream);

}  // namespace kl::kernels
