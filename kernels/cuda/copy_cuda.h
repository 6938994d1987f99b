// Data movement on the GPU: dtype conversion (weights at load, logits to fp32) and row gathers
// (the rows that need logits).
#pragma once

#include <cstdint>

#include "engine/core/dtype.h"
#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

// dst[i] = src[i] converted from src_dtype to dst_dtype (round to nearest even), i < n.
void convert_cuda(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n,
                  CudaStream stream);

// dst[i, :] = src[rows[i], :] for i < num_rows; rows is a device array.
template <typename T>
struct GatherRowsCudaParams {
  const T* src = nullptr;  // row stride src_stride
  int64_t src_stride = 0;
  const int32_t* rows = nullptr;  // [num_rows] device
  int64_t num_rows = 0;
  int64_t cols = 0;
  T* dst = nullptr;  // [num_rows, cols] dense
};

template <typename T>
void gather_rows_cuda(const GatherRowsCudaParams<T>& p, CudaStream stream);

}  // namespace kl::kernels
