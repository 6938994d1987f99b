// Mapping between the klserve.v1 protobuf messages and the serving core: request fields ->
// SamplingParams + GenerationOptions (field-naming errors), ChoiceUpdate -> ChoiceDelta.
// Included only by the gRPC front end's own .cpp files (it pulls in the generated headers).
#pragma once

#include <string>

#include "klserve/v1/klserve.pb.h"
#include "server/serving/generation.h"

namespace kl::grpcfe {

// Bounds of request fields that the engine does not bound itself (serving.md §6: bounded
// everything): stop strings per request and bytes per stop string.
inline constexpr int kMaxStopStrings = 64;
inline constexpr size_t kMaxStopStringBytes = 1024;

// Fills `params` and `options` from `in`; returns an error message naming the field, or "".
// Range checks that SamplingParams::validate does are left to the engine's submit().
std::string to_sampling(const ::klserve::v1::SamplingParams& in, SamplingParams& params,
                        GenerationOptions& options);

// Appends one update as a ChoiceDelta.
void add_delta(const ChoiceUpdate& u, ::klserve::v1::GenerateResponse& out);

// The vLLM wording for a prompt + completion over the context length ("" when it fits or
// max_tokens is unset: the engine then caps the completion at the context length).
std::string context_length_error(int64_t max_model_len, int64_t prompt_tokens,
                                 const SamplingParams& params);

}  // namespace kl::grpcfe
