// The dummy-weight generator on the GPU (see dummy_fill_cuda.h): one thread per element,
// double-precision math as on the host, rounded to the stored dtype, then written as the target.
#include "engine/core/counter_random.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/dummy_fill_cuda.h"

namespace kl::kernels {
namespace {

__device__ float round_through(float v, DType t) {
  switch (t) {
    case DType::kBF16:
      return __bfloat162float(__float2bfloat16_rn(v));
    case DType::kF16:
      return __half2float(__float2half_rn(v));
    default:
      return v;
  }
}

__global__ void dummy_fill_kernel(DummyFillCudaParams p) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < p.n;
       i += int64_t{gridDim.x} * blockDim.x) {
    float v;
    switch (p.dist) {
      case DummyDist::kUniform:
        v = static_cast<float>(p.offset + random::uniform(p.key, i));
        break;
      case DummyDist::kLogUniform:
        v = static_cast<float>(log(1.0 + 15.0 * random::uniform(p.key, i)));
        break;
      default:
        v = static_cast<float>(random::normal(p.key, i) * p.scale);
        break;
    }
    v = round_through(v, p.stored);
    switch (p.target) {
      case DType::kBF16:
        static_cast<__nv_bfloat16*>(p.out)[i] = __float2bfloat16_rn(v);
        break;
      case DType::kF16:
        static_cast<__half*>(p.out)[i] = __float2half_rn(v);
        break;
      default:
        static_cast<float*>(p.out)[i] = v;
        break;
    }
  }
}

}  // namespace

void dummy_fill_cuda(const DummyFillCudaParams& p, CudaStream stream) {
  KL_CHECK(p.n >= 0, "dummy_fill_cuda: negative size {}", p.n);
  if (p.n == 0) return;
  KL_CHECK(p.out != nullptr, "dummy_fill_cuda: null output");
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(cuda::ceil_div(p.n, threads), int64_t{1} << 16);
  dummy_fill_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  KL_CUDA_CHECK_LAUNCH("dummy_fill_cuda");
}

}  // namespace kl::kernels
