// SwiGLU activation on the GPU: out[r, c] = silu(gate[r, c]) * up[r, c], computed in fp32 from
// the T inputs and rounded to T once.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

template <typename T>
struct SiluMulCudaParams {
  const T* gate = nullptr;  // [rows, cols] device, row stride in_stride (0 = cols)
  const T* up = nullptr;    // [rows, cols] device, row stride in_stride
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t in_stride = 0;
  T* out = nullptr;  // [rows, cols] device, row stride out_stride (0 = cols); may alias gate
  int64_t out_stride = 0;
};

template <typename T>
void silu_mul_cuda(const SiluMulCudaParams<T>& p, CudaStream stream);

}  // namespace kl::kernels
