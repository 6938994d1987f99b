// Forward declarations that let host-only code include the *_cuda.h kernel headers without any
// CUDA header: the stream type (cudaStream_t is CUstream_st*) and the bf16 activation type.
#pragma once

struct CUstream_st;
struct __nv_bfloat16;  // cuda_bf16.h declares it the same way

namespace kl::kernels {
using CudaStream = CUstream_st*;
}  // namespace kl::kernels

namespace kl {
using kernels::CudaStream;
}  // namespace kl
