// Launches shared between the GPU sampler's translation units (sampling.cu owns the GpuSampler and
// the draw; sampling_logprobs.cu the raw-distribution log-probabilities).
#pragma once

#include <cstdint>

#include "kernels/sampling/sampling_cuda.h"

namespace kl::kernels::sampling_detail {

// For every row with num_logprobs >= 0: out_logprobs[row] = log_softmax(raw)[out_tokens[row]] and
// the min(num_logprobs, max_logprobs, vocab) best raw log-probabilities, descending, ties to the
// lower id; the rest of the row's max_logprobs slots get token -1 and -inf. Reads out_tokens, so it
// runs after the draw on the same stream.
void launch_logprobs(const SamplingCudaParams& p, int32_t max_logprobs, CudaStream stream);

}  // namespace kl::kernels::sampling_detail
