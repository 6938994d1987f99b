// CUDA RMSNorm with the fused residual add, templated on the activation type (float, bf16) and the
// stored weight type. One block per row; fp32 sum of squares reduced with warp shuffles.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "engine/core/error.h"
#include "kernels/norm/rmsnorm_cuda.h"

namespace kl::kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 256;  // per row; rows of 2304 give 9 elements per thread

__device__ __forceinline__ float to_f32(float v) {
  return v;
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float to_f32(__half v) {
  return __half2float(v);
}

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);  // round to nearest even, as f32_to_bf16 on the host
}

// Sum of `v` over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v) {
  __shared__ float partial[kWarp];
  __shared__ float total;
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int num_warps = blockDim.x / kWarp;
    v = lane < num_warps ? partial[lane] : 0.f;
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

template <typename T, typename W>
__global__ void rmsnorm_kernel(const T* x, T* residual, const W* weight, float eps, int64_t dim,
                               T* out) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * dim;
  T* rr = residual ? residual + row * dim : nullptr;
  T* outr = out + row * dim;

  // Pass 1: the residual add (stored in T: the norm sees what the residual stream holds) and the
  // fp32 sum of squares.
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = to_f32(xr[i]);
    if (rr) {
      const T s = from_f32<T>(to_f32(rr[i]) + v);
      rr[i] = s;
      v = to_f32(s);
    }
    ss += v * v;
  }
  ss = block_sum(ss);
  // IEEE sqrt and division (not rsqrtf) to stay within an ulp of rmsnorm_ref.
  const float inv = 1.f / sqrtf(ss / static_cast<float>(dim) + eps);

  // Pass 2: each thread revisits only the elements it read in pass 1, so out may alias x.
  const T* src = rr ? rr : xr;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float normed = to_f32(from_f32<T>(to_f32(src[i]) * inv));
    outr[i] = from_f32<T>(normed * to_f32(weight[i]));
  }
}

template <typename T, typename W>
void launch(const RmsNormCudaParams<T>& p, cudaStream_t stream) {
  int threads = static_cast<int>((p.dim + kWarp - 1) / kWarp * kWarp);
  threads = threads > kMaxThreads ? kMaxThreads : threads;
  rmsnorm_kernel<T, W><<<static_cast<unsigned>(p.num_rows), threads, 0, stream>>>(
      p.x, p.residual, static_cast<const W*>(p.weight.data), p.eps, p.dim, p.out);
}

}  // namespace

template <typename T>
void rmsnorm_cuda(const RmsNormCudaParams<T>& p, CUstream_st* stream) {
  KL_CHECK(p.num_rows >= 0 && p.num_rows <= 0x7fffffff, "rmsnorm_cuda: num_rows {} out of range",
           p.num_rows);
  KL_CHECK(p.dim > 0, "rmsnorm_cuda: dim {} must be positive", p.dim);
  KL_CHECK(p.weight.numel() == p.dim, "rmsnorm_cuda: weight has {} values, expected dim {}",
           p.weight.numel(), p.dim);
  if (p.num_rows == 0) return;
  KL_CHECK(p.x && p.out && p.weight.data, "rmsnorm_cuda: null device pointer");
  switch (p.weight.dtype) {
    case DType::kF32:
      launch<T, float>(p, stream);
      break;
    case DType::kBF16:
      launch<T, __nv_bfloat16>(p, stream);
      break;
    case DType::kF16:
      launch<T, __half>(p, stream);
      break;
  }
  const cudaError_t err = cudaGetLastError();
  KL_CHECK(err == cudaSuccess, "rmsnorm_cuda: launch failed: {}", cudaGetErrorString(err));
}

template void rmsnorm_cuda<float>(const RmsNormCudaParams<float>&, CUstream_st*);
template void rmsnorm_cuda<__nv_bfloat16>(const RmsNormCudaParams<__nv_bfloat16>&, CUstream_st*);

}  // namespace kl::kernels
