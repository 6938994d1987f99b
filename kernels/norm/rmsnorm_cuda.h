// CUDA RMSNorm (optionally fused with the residual add), templated on the activation type (float
// or __nv_bfloat16). Same semantics as rmsnorm_ref (kernels/norm/rmsnorm.h) on device pointers.
// No CUDA header is needed to include this: the stream and bf16 types are forward-declared.
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"

#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

// The residual stream may be stored in T or in float (R): bf16 runs keep it in fp32 so that the
// twelve residual adds of a forward pass do not each round the hidden state to bf16.
//
// If residual != nullptr: residual[r] += x[r] (stored in R; x == nullptr adds nothing, for the
// first layer whose residual is the embedding), then out[r] = norm(residual[r]) * w; otherwise
// out[r] = norm(x[r]) * w, with norm(v) = v / sqrt(mean(v^2) + eps) in fp32. As in the reference
// model the normalised value is rounded to T before the multiply by the weight (a no-op for
// T = float, where the result matches rmsnorm_ref's formula). out_f32, if given, receives
// norm(v) * w in fp32 without any rounding to T (the MoE router's input).
template <typename T, typename R = T>
struct RmsNormCudaParams {
  const T* x = nullptr;   // [num_rows, dim] device
  R* residual = nullptr;  // [num_rows, dim] device, in/out, optional
  WeightView weight;      // [dim] device data; f32, bf16 or f16
  float eps = 1e-5f;
  int64_t num_rows = 0;
  int64_t dim = 0;
  T* out = nullptr;          // [num_rows, dim] device; may alias x
  float* out_f32 = nullptr;  // [num_rows, dim] device, optional
};

// Checks the parameters (throws kl::Error naming the problem) and enqueues the kernel on
// `stream` (nullptr = the legacy default stream). Instantiated for float and __nv_bfloat16.
template <typename T, typename R>
void rmsnorm_cuda(const RmsNormCudaParams<T, R>& p, CUstream_st* stream);

// Gated RMSNorm of KDA's output on the GPU (same semantics as gated_rmsnorm_ref, per row of
// `dim` = one head): out = bf16/fp32(x / sqrt(mean(x^2) + eps) * w * sigmoid(gate)), all in fp32
// from the T inputs, rounded to T once.
template <typename T>
struct GatedRmsNormCudaParams {
  const T* x = nullptr;     // [num_rows, dim] device
  const T* gate = nullptr;  // [num_rows, dim] device
  WeightView weight;        // [dim] device, shared by all heads; f32, bf16 or f16
  float eps = 1e-5f;
  int64_t num_rows = 0;  // tokens x heads
  int64_t dim = 0;       // head dim
  T* out = nullptr;      // [num_rows, dim] device; may alias x
};

template <typename T>
void gated_rmsnorm_cuda(const GatedRmsNormCudaParams<T>& p, CUstream_st* stream);

extern template void rmsnorm_cuda<float, float>(const RmsNormCudaParams<float, float>&,
                                                CUstream_st*);
extern template void rmsnorm_cuda<__nv_bfloat16, __nv_bfloat16>(
    const RmsNormCudaParams<__nv_bfloat16, __nv_bfloat16>&, CUstream_st*);
extern template void rmsnorm_cuda<__nv_bfloat16, float>(
    const RmsNormCudaParams<__nv_bfloat16, float>&, CUstream_st*);

}  // namespace kl::kernels
