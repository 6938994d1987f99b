// Sampling on the GPU: the same function as sample_row_ref (kernels/sampling/sampling.h) per row
// of fp32 logits: logits processors (NaN, bans, bias, repetition / presence / frequency penalties),
// temperature, top-k, top-p, min-p and the counter-based uniform sampling_uniform(seed,
// position), plus the raw-distribution logprob of the chosen token and the top-n alternatives.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

// One row's parameters (uploaded per step). Offsets index the step's history arrays.
struct GpuSamplingRow {
  float temperature = 1.f;  // <= kGreedyTemperature: greedy
  int32_t top_k = 0;
  float top_p = 1.f;
  float min_p = 0.f;
  float repetition_penalty = 1.f;
  float presence_penalty = 0.f;
  float frequency_penalty = 0.f;
  int32_t num_logprobs = -1;  // -1: none; else chosen token + top num_logprobs (<= max_logprobs)
  uint64_t seed = 0;
  uint64_t position = 0;
  // [begin, begin + count) ranges of SamplingCudaParams' history arrays.
  int32_t prompt_begin = 0, prompt_count = 0;  // tokens: repetition penalty
  int32_t output_begin = 0, output_count = 0;  // tokens: all penalties
  int32_t bias_begin = 0, bias_count = 0;      // bias_tokens / bias_values
  int32_t banned_begin = 0, banned_count = 0;  // tokens
};

struct SamplingCudaParams {
  const float* logits = nullptr;  // [num_rows, vocab] device, row stride logits_stride (0 = vocab)
  int64_t logits_stride = 0;
  int64_t num_rows = 0;
  int64_t vocab = 0;
  const GpuSamplingRow* rows = nullptr;  // [num_rows] device
  const int32_t* tokens = nullptr;       // device: prompt / output / banned token ranges
  const int32_t* bias_tokens = nullptr;  // device
  const float* bias_values = nullptr;    // device
  int32_t* out_tokens = nullptr;         // [num_rows] device
  float* out_logprobs = nullptr;         // [num_rows] device (rows with num_logprobs >= 0)
  int32_t* out_top_tokens = nullptr;     // [num_rows, max_logprobs] device
  float* out_top_logprobs = nullptr;     // [num_rows, max_logprobs] device
};

// Owns the scratch for at most max_rows rows of `vocab` logits.
class GpuSampler {
 public:
  GpuSampler(int64_t max_rows, int64_t vocab, int32_t max_logprobs);
  ~GpuSampler();
  GpuSampler(const GpuSampler&) = delete;
  GpuSampler& operator=(const GpuSampler&) = delete;

  int64_t workspace_bytes() const;
  int32_t max_logprobs() const;
  void run(const SamplingCudaParams& p, CudaStream stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kl::kernels
