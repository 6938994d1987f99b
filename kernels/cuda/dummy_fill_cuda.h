// Seeded random weights generated directly in GPU memory (the `dummy` load format with
// --device cuda: the full-size model never exists on the host). Element i is the same value the
// host generator (engine/checkpoint/dummy_weights.h) gives, through the shared counter-based
// stream of engine/core/counter_random.h.
#pragma once

#include <cstdint>

#include "engine/core/dtype.h"
#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

enum class DummyDist : uint8_t {
  kUniform,     // offset + uniform (norm weights: 0.5 + U)
  kLogUniform,  // log(1 + 15 U) (A_log)
  kNormal,      // N(0, 1) * scale
};

struct DummyFillCudaParams {
  DummyDist dist = DummyDist::kNormal;
  uint64_t key = 0;
  float scale = 1.f;   // kNormal
  float offset = 0.f;  // kUniform
  int64_t n = 0;
  DType stored = DType::kBF16;  // the checkpoint dtype the value is rounded to first
  DType target = DType::kBF16;  // the dtype written
  void* out = nullptr;          // [n] device
};

void dummy_fill_cuda(const DummyFillCudaParams& p, CudaStream stream);

}  // namespace kl::kernels
