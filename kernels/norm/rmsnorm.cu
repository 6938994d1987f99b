// CUDA RMSNorm with the fused residual add, and KDA's sigmoid-gated per-head RMSNorm, templated on
// the activation type (float, bf16) and the stored weight type. fp32 sums of squares reduced with
// warp shuffles; IEEE sqrt and division (not rsqrtf) to stay within an ulp of the CPU twins.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/norm/rmsnorm_cuda.h"

namespace kl::kernels {
namespace {

using cuda::block_sum;
using cuda::from_f32;
using cuda::kWarp;
using cuda::to_f32;
using cuda::warp_sum;

constexpr int kMaxThreads = 256;    // per row; rows of 2304 give 9 elements per thread
constexpr int kGatedThreads = 256;  // gated norm: one warp per row, 8 rows per block

// One block per row.
template <typename T, typename R, typename W>
__global__ void rmsnorm_kernel(const T* x, R* residual, const W* weight, float eps, int64_t dim,
                               T* out, float* out_f32) {
  const int64_t row = blockIdx.x;
  const T* xr = x ? x + row * dim : nullptr;
  R* rr = residual ? residual + row * dim : nullptr;
  T* outr = out + row * dim;
  float* outr_f32 = out_f32 ? out_f32 + row * dim : nullptr;

  // Pass 1: the residual add (stored in R: the norm sees what the residual stream holds) and the
  // fp32 sum of squares.
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v;
    if (rr) {
      v = to_f32(rr[i]);
      if (xr) {
        const R s = from_f32<R>(v + to_f32(xr[i]));
        rr[i] = s;
        v = to_f32(s);
      }
    } else {
      v = to_f32(xr[i]);
    }
    ss += v * v;
  }
  ss = block_sum(ss);
  const float inv = 1.f / sqrtf(ss / static_cast<float>(dim) + eps);

  // Pass 2: each thread revisits only the elements it read in pass 1, so out may alias x.
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = rr ? to_f32(rr[i]) : to_f32(xr[i]);
    const float w = to_f32(weight[i]);
    const float normed = to_f32(from_f32<T>(v * inv));
    outr[i] = from_f32<T>(normed * w);
    if (outr_f32) outr_f32[i] = v * inv * w;
  }
}

// One warp per row (a KDA head of 128: 4 values per lane); rows are independent.
template <typename T, typename W>
__global__ void gated_rmsnorm_kernel(const T* x, const T* gate, const W* weight, float eps,
                                     int64_t num_rows, int64_t dim, T* out) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (row >= num_rows) return;  // whole warps leave together: the shuffles below stay full
  const int lane = threadIdx.x % kWarp;
  const T* xr = x + row * dim;
  const T* gr = gate + row * dim;
  T* outr = out + row * dim;

  float ss = 0.f;
  for (int64_t i = lane; i < dim; i += kWarp) {
    const float v = to_f32(xr[i]);
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float inv = 1.f / sqrtf(ss / static_cast<float>(dim) + eps);
  // Each lane rewrites only what it read, after the whole warp has read its row: out may alias x.
  for (int64_t i = lane; i < dim; i += kWarp) {
    const float g = to_f32(gr[i]);
    const float sig = 1.f / (1.f + expf(-g));
    outr[i] = from_f32<T>(to_f32(xr[i]) * inv * to_f32(weight[i]) * sig);
  }
}

template <typename T, typename R, typename W>
void launch(const RmsNormCudaParams<T, R>& p, cudaStream_t stream) {
  int threads = static_cast<int>(cuda::ceil_div(p.dim, kWarp) * kWarp);
  threads = threads > kMaxThreads ? kMaxThreads : threads;
  rmsnorm_kernel<T, R, W><<<static_cast<unsigned>(p.num_rows), threads, 0, stream>>>(
      p.x, p.residual, static_cast<const W*>(p.weight.data), p.eps, p.dim, p.out, p.out_f32);
}

template <typename T, typename W>
void launch_gated(const GatedRmsNormCudaParams<T>& p, cudaStream_t stream) {
  const int64_t rows_per_block = kGatedThreads / kWarp;
  const int64_t blocks = cuda::ceil_div(p.num_rows, rows_per_block);
  gated_rmsnorm_kernel<T, W><<<static_cast<unsigned>(blocks), kGatedThreads, 0, stream>>>(
      p.x, p.gate, static_cast<const W*>(p.weight.data), p.eps, p.num_rows, p.dim, p.out);
}

}  // namespace

template <typename T, typename R>
void rmsnorm_cuda(const RmsNormCudaParams<T, R>& p, CUstream_st* stream) {
  KL_CHECK(p.num_rows >= 0 && p.num_rows <= 0x7fffffff, "rmsnorm_cuda: num_rows {} out of range",
           p.num_rows);
  KL_CHECK(p.dim > 0, "rmsnorm_cuda: dim {} must be positive", p.dim);
  KL_CHECK(p.weight.numel() == p.dim, "rmsnorm_cuda: weight has {} values, expected dim {}",
           p.weight.numel(), p.dim);
  if (p.num_rows == 0) return;
  KL_CHECK((p.x || p.residual) && p.out && p.weight.data, "rmsnorm_cuda: null device pointer");
  cuda::with_weight_type(p.weight.dtype, [&](auto w) { launch<T, R, decltype(w)>(p, stream); });
  KL_CUDA_CHECK_LAUNCH("rmsnorm_cuda");
}

template <typename T>
void gated_rmsnorm_cuda(const GatedRmsNormCudaParams<T>& p, CUstream_st* stream) {
  KL_CHECK(p.num_rows >= 0 && p.num_rows <= (int64_t(0x7fffffff) * (kGatedThreads / kWarp)),
           "gated_rmsnorm_cuda: num_rows {} out of range", p.num_rows);
  KL_CHECK(p.dim > 0, "gated_rmsnorm_cuda: dim {} must be positive", p.dim);
  KL_CHECK(p.weight.numel() == p.dim, "gated_rmsnorm_cuda: weight has {} values, expected dim {}",
           p.weight.numel(), p.dim);
  if (p.num_rows == 0) return;
  KL_CHECK(p.x && p.gate && p.out && p.weight.data, "gated_rmsnorm_cuda: null device pointer");
  cuda::with_weight_type(p.weight.dtype, [&](auto w) { launch_gated<T, decltype(w)>(p, stream); });
  KL_CUDA_CHECK_LAUNCH("gated_rmsnorm_cuda");
}

template void rmsnorm_cuda<float, float>(const RmsNormCudaParams<float, float>&, CUstream_st*);
template void rmsnorm_cuda<__nv_bfloat16, __nv_bfloat16>(
    const RmsNormCudaParams<__nv_bfloat16, __nv_bfloat16>&, CUstream_st*);
template void rmsnorm_cuda<__nv_bfloat16, float>(const RmsNormCudaParams<__nv_bfloat16, float>&,
                                                 CUstream_st*);
template void gated_rmsnorm_cuda<float>(const GatedRmsNormCudaParams<float>&, CUstream_st*);
template void gated_rmsnorm_cuda<__nv_bfloat16>(const GatedRmsNormCudaParams<__nv_bfloat16>&,
                                                CUstream_st*);

}  // namespace kl::kernels
