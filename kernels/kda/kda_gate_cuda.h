// KDA per-token scalars on the GPU, same semantics as kda_gate.h: the log-space forget gate g and
// the write strength beta (fp32 outputs from T inputs, DESIGN numerics contract) and the per-head
// L2 normalisation of q and k (in place, in T).
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"
#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

template <typename T>
struct KdaGateCudaParams {
  const T* f = nullptr;  // [num_tokens, H*K] device, output of f_b_proj
  WeightView a_log;      // [H] device, f32
  WeightView dt_bias;    // [H*K] device, f32
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  bool has_lower_bound = false;
  float lower_bound = 0.f;
  float* g = nullptr;  // [num_tokens, H*K] device fp32
};

template <typename T>
void kda_gate_cuda(const KdaGateCudaParams<T>& p, CudaStream stream);

// beta[i] = sigmoid(b[i]) in fp32, i < n.
template <typename T>
void kda_beta_cuda(const T* b, int64_t n, float* beta, CudaStream stream);

// x[r] <- x[r] / sqrt(sum(x[r]^2) + eps) * scale for each row of `dim`, computed in fp32 and
// stored in T.
template <typename T>
void l2norm_rows_cuda(T* x, int64_t num_rows, int64_t dim, float eps, float scale,
                      CudaStream stream);

}  // namespace kl::kernels
