// SwiGLU on the GPU: out = silu(gate) * up element-wise, in fp32 from the T inputs, rounded once.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "engine/core/error.h"
#include "kernels/activation/silu_mul_cuda.h"
#include "kernels/cuda/cuda_common.cuh"

namespace kl::kernels {
namespace {

using cuda::from_f32;
using cuda::to_f32;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 8192;  // grid-stride beyond: enough to fill an H100 many times

template <typename T>
__global__ void silu_mul_kernel(const T* gate, const T* up, int64_t rows, int64_t cols,
                                int64_t in_stride, T* out, int64_t out_stride) {
  const int64_t total = rows * cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i - r * cols;
    const float g = to_f32(gate[r * in_stride + c]);
    const float u = to_f32(up[r * in_stride + c]);
    // g / (1 + exp(-g)) as silu_mul_ref (expf, not __expf: within 2 ulp of the host's exp); for
    // very negative g exp overflows to inf and the result is -0, not NaN.
    out[r * out_stride + c] = from_f32<T>(g / (1.f + expf(-g)) * u);
  }
}

}  // namespace

template <typename T>
void silu_mul_cuda(const SiluMulCudaParams<T>& p, CudaStream stream) {
  const int64_t in_stride = p.in_stride ? p.in_stride : p.cols;
  const int64_t out_stride = p.out_stride ? p.out_stride : p.cols;
  KL_CHECK(p.rows >= 0 && p.cols >= 0, "silu_mul_cuda: bad shape [{}, {}]", p.rows, p.cols);
  KL_CHECK(in_stride >= p.cols && out_stride >= p.cols,
           "silu_mul_cuda: strides in={} out={} below cols={}", in_stride, out_stride, p.cols);
  if (p.rows == 0 || p.cols == 0) return;
  KL_CHECK(p.gate && p.up && p.out, "silu_mul_cuda: null device pointer");
  const int64_t blocks = std::min(cuda::ceil_div(p.rows * p.cols, kThreads), kMaxBlocks);
  silu_mul_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      p.gate, p.up, p.rows, p.cols, in_stride, p.out, out_stride);
  KL_CUDA_CHECK_LAUNCH("silu_mul_cuda");
}

template void silu_mul_cuda<float>(const SiluMulCudaParams<float>&, CudaStream);
template void silu_mul_cuda<__nv_bfloat16>(const SiluMulCudaParams<__nv_bfloat16>&, CudaStream);

}  // namespace kl::kernels
