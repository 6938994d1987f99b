// The MoE FFN's routed part on the GPU: fp32 router GEMM, sigmoid + correction-bias grouped top-k
// (spec 3.5, same selection and weights as moe_router_ref), token permutation by expert, expert
// SwiGLU GEMMs and the weighted combine. Routing sizes stay on the device (no host sync).
#pragma once

#include <cstdint>
#include <memory>

#include "engine/core/weight_view.h"
#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

class GemmRunner;

struct MoeDims {
  int64_t hidden = 0;
  int64_t inter = 0;  // moe_intermediate_size
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t num_groups = 1;
  int64_t topk_groups = 1;
  bool renormalize = true;
  float routed_scaling = 1.f;
};

// The experts' weights of one layer stacked: expert e's matrix starts e * rows * cols elements in.
struct StackedWeights {
  const void* data = nullptr;  // device
  DType dtype = DType::kBF16;
  int64_t num = 0;  // experts
  int64_t rows = 0;
  int64_t cols = 0;
};

template <typename T>
struct MoeCudaParams {
  const T* x = nullptr;  // [num_tokens, hidden] device (post-attention-normed)
  // Optional: the same normed rows in fp32, before their rounding to T; the router reads them
  // instead of x when given (bf16 runs: router gaps of a few 1e-3 survive the rounding).
  const float* router_x = nullptr;
  int64_t num_tokens = 0;
  const float* router = nullptr;  // [E, hidden] device fp32
  WeightView correction_bias;     // [E] device f32
  StackedWeights w1;              // gate [E, inter, hidden], dtype of T
  StackedWeights w3;              // up   [E, inter, hidden]
  StackedWeights w2;              // down [E, hidden, inter]
  T* out = nullptr;               // [num_tokens, hidden] device: the routed sum (overwritten)
  // Optional (tests): the router's choices, [num_tokens, top_k] device.
  int32_t* expert_ids = nullptr;
  float* expert_weights = nullptr;
};

// Owns the scratch (router logits, permutation, expert activations) for at most max_num_tokens
// tokens per step.
class MoeRunner {
 public:
  MoeRunner(const MoeDims& dims, int64_t max_num_tokens, bool bf16);
  ~MoeRunner();
  MoeRunner(const MoeRunner&) = delete;
  MoeRunner& operator=(const MoeRunner&) = delete;

  int64_t workspace_bytes() const;

  template <typename T>
  void run(GemmRunner& gemm, const MoeCudaParams<T>& p, CudaStream stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kl::kernels
