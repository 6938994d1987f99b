// Device helpers shared by the CUDA kernels: activation-type conversions (float, bf16, f16), warp
// and block reductions, and the launch check. Include only from .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/dtype.h"
#include "engine/core/error.h"

namespace kl::kernels::cuda {

constexpr int kWarp = 32;

__host__ __device__ constexpr int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

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
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}

// v rounded to T and back (a no-op for float): where a kernel stores an intermediate in T.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_f32(from_f32<T>(v));
}

// Host side: calls f(W{}) with W the device type of `dtype` (float, __nv_bfloat16 or __half), so
// that a launcher instantiates its kernel per stored type (weights, conversions):
//   with_weight_type(p.weight.dtype, [&](auto w) { launch<T, decltype(w)>(p, stream); });
template <typename F>
void with_weight_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kF32:
      f(float{});
      break;
    case DType::kBF16:
      f(__nv_bfloat16{});
      break;
    case DType::kF16:
      f(__half{});
      break;
  }
}

// Element i of a weight stored as `dtype` (f32, bf16 or f16), as fp32.
__device__ __forceinline__ float load_weight(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i]);
    case DType::kF16:
      return __half2float(static_cast<const __half*>(data)[i]);
    default:
      return static_cast<const float*>(data)[i];
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum of `v` over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// Contains __syncthreads(): call it from every thread of the block.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[kWarp];
  __shared__ float total;
  v = warp_sum(v);
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int num_warps = blockDim.x / kWarp;
    v = lane < num_warps ? partial[lane] : 0.f;
    v = warp_sum(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();  // so that a second call may reuse `partial` and `total`
  return result;
}

}  // namespace kl::kernels::cuda

// Throws kl::Error naming `what` if the last launch failed (a configuration error; asynchronous
// faults surface at the next synchronising call, where the executor treats them as fatal).
#define KL_CUDA_CHECK_LAUNCH(what)                                                                \
  do {                                                                                            \
    const cudaError_t kl_err_ = cudaGetLastError();                                               \
    KL_CHECK(kl_err_ == cudaSuccess, "{}: launch failed: {}", what, cudaGetErrorString(kl_err_)); \
  } while (0)

// Throws kl::Error if a CUDA runtime call fails.
#define KL_CUDA_CHECK(call)                                                                \
  do {                                                                                     \
    const cudaError_t kl_err_ = (call);                                                    \
    KL_CHECK(kl_err_ == cudaSuccess, "{} failed: {}", #call, cudaGetErrorString(kl_err_)); \
  } while (0)
