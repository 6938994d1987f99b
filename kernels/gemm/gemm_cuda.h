// GEMMs on the GPU through cuBLASLt, templated on the activation type (float or __nv_bfloat16).
// Weights are in the activation dtype (the executor converts them at load: fp32 runs use fp32
// weights; bf16 runs the checkpoint's bf16). Accumulation is always fp32; fp32 GEMMs never use
// TF32 (the fp32 path proves the kernels against the golden data at 1e-4). With bf16 and
// `accumulate`, cuBLASLt rounds the product to bf16 before the add: out = bf16(bf16(acc) + out),
// as the reference model's bf16 `residual + linear(x)`.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/core/weight_view.h"
#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

// out[m, n] = x[m, :] . w[n, :] (+ out[m, n] when accumulate): a Linear layer, y = x W^T.
template <typename T>
struct LinearCudaParams {
  const T* x = nullptr;  // [m, w.cols] device, row stride x_stride (0 = w.cols)
  int64_t m = 0;
  int64_t x_stride = 0;
  WeightView w;      // [n, k] device, dtype of T
  T* out = nullptr;  // [m, w.rows] device, row stride out_stride (0 = w.rows)
  int64_t out_stride = 0;
  bool accumulate = false;
};

// A strided-batched row-major GEMM: for b in [0, batch):
//   C_b[m, n] = sum_k A_b[m, k] * B_b(k, n)   (+ C_b when accumulate)
// with B_b(k, n) = B_b[n, k] when b_transposed (a [n, k] weight, as in Linear) and B_b[k, n]
// otherwise. Every matrix is row-major with the given leading (row) stride, and matrix b starts
// `batch_stride` elements after matrix b-1. Used per head by MLA (absorb / un-absorb).
template <typename T>
struct BatchedGemmCudaParams {
  int64_t m = 0, n = 0, k = 0, batch = 1;
  const T* a = nullptr;
  int64_t lda = 0, a_batch_stride = 0;
  const T* b = nullptr;
  int64_t ldb = 0, b_batch_stride = 0;
  bool b_transposed = true;
  T* c = nullptr;
  int64_t ldc = 0, c_batch_stride = 0;
  bool accumulate = false;
};

// Owns a cuBLASLt handle and its workspace. Not thread-safe: one per executor thread.
class GemmRunner {
 public:
  GemmRunner();
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // Check the parameters (throw kl::Error naming the problem) and enqueue on `stream`.
  template <typename T>
  void linear(const LinearCudaParams<T>& p, CudaStream stream);
  template <typename T>
  void batched(const BatchedGemmCudaParams<T>& p, CudaStream stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kl::kernels
