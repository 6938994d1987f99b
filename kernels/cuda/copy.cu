// Data movement on the GPU: element-wise dtype conversion (f32 / bf16 / f16, any direction, round
// to nearest even through an exact fp32 intermediate) and row gathers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "engine/core/error.h"
#include "kernels/cuda/copy_cuda.h"
#include "kernels/cuda/cuda_common.cuh"

namespace kl::kernels {
namespace {

using cuda::from_f32;
using cuda::to_f32;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 8192;

// Every source value is exact in fp32 (bf16 and f16 are subsets), so S -> f32 -> D rounds once.
template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = from_f32<D>(to_f32(src[i]));
  }
}

template <typename S>
void launch_convert(const S* src, void* dst, DType dst_dtype, int64_t n, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(std::min(cuda::ceil_div(n, kThreads), kMaxBlocks));
  cuda::with_weight_type(dst_dtype, [&](auto d) {
    using D = decltype(d);
    convert_kernel<<<blocks, kThreads, 0, stream>>>(src, static_cast<D*>(dst), n);
  });
}

// One block per gathered row.
template <typename T>
__global__ void gather_rows_kernel(const T* src, int64_t src_stride, const int32_t* rows,
                                   int64_t cols, T* dst) {
  const int64_t i = blockIdx.x;
  const T* s = src + static_cast<int64_t>(rows[i]) * src_stride;
  T* d = dst + i * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

}  // namespace

void convert_cuda(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n,
                  CudaStream stream) {
  KL_CHECK(n >= 0, "convert_cuda: negative count {}", n);
  if (n == 0) return;
  KL_CHECK(src && dst, "convert_cuda: null device pointer");
  if (src_dtype == dst_dtype) {
    KL_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, n * dtype_size(src_dtype), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  cuda::with_weight_type(src_dtype, [&](auto s) {
    launch_convert(static_cast<const decltype(s)*>(src), dst, dst_dtype, n, stream);
  });
  KL_CUDA_CHECK_LAUNCH("convert_cuda");
}

template <typename T>
void gather_rows_cuda(const GatherRowsCudaParams<T>& p, CudaStream stream) {
  const int64_t src_stride = p.src_stride ? p.src_stride : p.cols;
  KL_CHECK(p.num_rows >= 0 && p.num_rows <= 0x7fffffff && p.cols >= 0,
           "gather_rows_cuda: bad shape [{}, {}]", p.num_rows, p.cols);
  KL_CHECK(src_stride >= p.cols, "gather_rows_cuda: src_stride {} below cols {}", src_stride,
           p.cols);
  if (p.num_rows == 0 || p.cols == 0) return;
  KL_CHECK(p.src && p.rows && p.dst, "gather_rows_cuda: null device pointer");
  const int threads =
      static_cast<int>(std::min<int64_t>(cuda::ceil_div(p.cols, 32) * 32, kThreads));
  gather_rows_kernel<T><<<static_cast<unsigned>(p.num_rows), threads, 0, stream>>>(
      p.src, src_stride, p.rows, p.cols, p.dst);
  KL_CUDA_CHECK_LAUNCH("gather_rows_cuda");
}

template void gather_rows_cuda<float>(const GatherRowsCudaParams<float>&, CudaStream);
template void gather_rows_cuda<__nv_bfloat16>(const GatherRowsCudaParams<__nv_bfloat16>&,
                                              CudaStream);

}  // namespace kl::kernels
