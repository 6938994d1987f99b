// CUDA twins of KDA's per-token scalars (kda_gate_ref.cpp): the log-space forget gate g, the
// write strength beta (fp32 from T inputs) and the per-head L2 normalisation of q and k (in T).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/kda/kda_gate_cuda.h"

namespace kl::kernels {
namespace {

using cuda::ceil_div;
using cuda::from_f32;
using cuda::kWarp;
using cuda::to_f32;

constexpr int kThreads = 256;
// Elementwise grids stop growing here and stride instead (a few waves of 132 SMs).
constexpr int64_t kMaxElementwiseBlocks = 132 * 16;

unsigned elementwise_blocks(int64_t n) {
  const int64_t b = ceil_div(n, kThreads);
  return static_cast<unsigned>(b < kMaxElementwiseBlocks ? b : kMaxElementwiseBlocks);
}

// torch softplus(x, beta=1, threshold=20), as kda_gate_ref.
__device__ __forceinline__ float softplus(float x) {
  return x > 20.f ? x : log1pf(expf(x));
}

__device__ __forceinline__ float sigmoid(float x) {
  return 1.f / (1.f + expf(-x));
}

template <typename T>
__global__ void kda_gate_kernel(KdaGateCudaParams<T> p) {
  const int64_t width = p.num_heads * p.head_dim;
  const int64_t n = p.num_tokens * width;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t col = i % width;
    const int64_t h = col / p.head_dim;
    const float rate = expf(cuda::load_weight(p.a_log.data, p.a_log.dtype, h));  // A_log is a log
    const float x = to_f32(p.f[i]) + cuda::load_weight(p.dt_bias.data, p.dt_bias.dtype, col);
    p.g[i] = p.has_lower_bound ? p.lower_bound * sigmoid(rate * x) : -rate * softplus(x);
  }
}

template <typename T>
__global__ void kda_beta_kernel(const T* b, int64_t n, float* beta) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    beta[i] = sigmoid(to_f32(b[i]));
  }
}

// One warp per row (rows are one head, 128 wide in the model): fp32 sum of squares by shuffles.
// Each lane rewrites only the elements it read, so the update is in place without a barrier.
template <typename T>
__global__ void l2norm_rows_kernel(T* x, int64_t num_rows, int64_t dim, float eps, float scale) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= num_rows) return;  // whole warps leave together: the shuffles below stay full-warp
  T* r = x + row * dim;
  float ss = 0.f;
  for (int64_t i = lane; i < dim; i += kWarp) {
    const float v = to_f32(r[i]);
    ss = fmaf(v, v, ss);
  }
  ss = cuda::warp_sum(ss);
  // IEEE sqrt and division (not rsqrtf), as l2norm_rows_ref.
  const float inv = 1.f / sqrtf(ss + eps);
  for (int64_t i = lane; i < dim; i += kWarp) r[i] = from_f32<T>(to_f32(r[i]) * inv * scale);
}

}  // namespace

template <typename T>
void kda_gate_cuda(const KdaGateCudaParams<T>& p, CudaStream stream) {
  KL_CHECK(p.num_heads > 0 && p.head_dim > 0, "kda_gate_cuda: bad shape H={} K={}", p.num_heads,
           p.head_dim);
  KL_CHECK(p.num_tokens >= 0, "kda_gate_cuda: num_tokens {} < 0", p.num_tokens);
  KL_CHECK(p.a_log.numel() == p.num_heads, "kda_gate_cuda: A_log has {} values, expected {} heads",
           p.a_log.numel(), p.num_heads);
  KL_CHECK(p.dt_bias.numel() == p.num_heads * p.head_dim,
           "kda_gate_cuda: dt_bias has {} values, expected {}", p.dt_bias.numel(),
           p.num_heads * p.head_dim);
  if (p.num_tokens == 0) return;
  KL_CHECK(p.f && p.g && p.a_log.data && p.dt_bias.data,
           "kda_gate_cuda: null device pointer (f, g, A_log or dt_bias)");
  const int64_t n = p.num_tokens * p.num_heads * p.head_dim;
  kda_gate_kernel<T><<<elementwise_blocks(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  KL_CUDA_CHECK_LAUNCH("kda_gate_cuda");
}

template <typename T>
void kda_beta_cuda(const T* b, int64_t n, float* beta, CudaStream stream) {
  KL_CHECK(n >= 0, "kda_beta_cuda: n {} < 0", n);
  if (n == 0) return;
  KL_CHECK(b && beta, "kda_beta_cuda: null device pointer (b or beta)");
  kda_beta_kernel<T>
      <<<elementwise_blocks(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(b, n, beta);
  KL_CUDA_CHECK_LAUNCH("kda_beta_cuda");
}

template <typename T>
void l2norm_rows_cuda(T* x, int64_t num_rows, int64_t dim, float eps, float scale,
                      CudaStream stream) {
  constexpr int kRowsPerBlock = kThreads / kWarp;
  KL_CHECK(num_rows >= 0 && ceil_div(num_rows, kRowsPerBlock) <= 0x7fffffff,
           "l2norm_rows_cuda: num_rows {} out of range", num_rows);
  KL_CHECK(dim > 0, "l2norm_rows_cuda: dim {} must be positive", dim);
  KL_CHECK(eps >= 0.f, "l2norm_rows_cuda: eps {} < 0", eps);
  if (num_rows == 0) return;
  KL_CHECK(x, "l2norm_rows_cuda: null device pointer");
  const auto blocks = static_cast<unsigned>(ceil_div(num_rows, kRowsPerBlock));
  l2norm_rows_kernel<T>
      <<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, num_rows, dim, eps, scale);
  KL_CUDA_CHECK_LAUNCH("l2norm_rows_cuda");
}

template void kda_gate_cuda<float>(const KdaGateCudaParams<float>&, CudaStream);
template void kda_gate_cuda<__nv_bfloat16>(const KdaGateCudaParams<__nv_bfloat16>&, CudaStream);
template void kda_beta_cuda<float>(const float*, int64_t, float*, CudaStream);
template void kda_beta_cuda<__nv_bfloat16>(const __nv_bfloat16*, int64_t, float*, CudaStream);
template void l2norm_rows_cuda<float>(float*, int64_t, int64_t, float, float, CudaStream);
template void l2norm_rows_cuda<__nv_bfloat16>(__nv_bfloat16*, int64_t, int64_t, float, float,
                                              CudaStream);

}  // namespace kl::kernels
