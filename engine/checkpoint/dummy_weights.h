// Seeded random weights in a config's real shapes (the `dummy` load format and the checkpoint
// writer). Counter-based: element i of a tensor depends only on (seed, tensor name, i), so values
// are the same whatever the thread split, and a GPU kernel can reproduce them element-wise.
#pragma once

#include <cstdint>
#include <vector>

#include "models/weight_names.h"

namespace kl {

// How a tensor's values are drawn (picked from its name, spec-realistic magnitudes):
//   kNormWeight  U[0.5, 1.5]            (every *norm.weight: a norm weight that is not ~1 matters)
//   kALog        log(U[1, 16])          (spec 8: decay rates exp(A_log) in [1, 16])
//   kDtBias      N(0, 1)                (spec 8)
//   kRouterBias  N(0, 0.05)             (e_score_correction_bias)
//   kEmbedding   N(0, 1)
//   kLinear      N(0, 1/sqrt(fan_in))   (fan_in = product of shape[1:], so outputs stay O(1))
enum class DummyInit : uint8_t { kNormWeight, kALog, kDtBias, kRouterBias, kEmbedding, kLinear };

struct DummyRecipe {
  DummyInit init = DummyInit::kLinear;
  uint64_t key = 0;    // per-tensor stream key: mix(seed, FNV-1a(name))
  float stddev = 1.f;  // normal draws only
};

DummyRecipe dummy_recipe(const TensorSpec& spec, uint64_t seed);

// Value of element i (before rounding to the stored dtype). Uniforms are splitmix64(key + c*phi)
// mapped to (0, 1); normals are Box-Muller over the uniform pair (2*(i/2), 2*(i/2)+1): cos for
// even i, sin for odd i. Only double-precision log/sqrt/sin/cos of glibc enter, and the result is
// rounded to bf16 (or f32), so values are reproducible across machines.
float dummy_value(const DummyRecipe& r, int64_t i);

// Writes elements [begin, end) of `spec` in spec.dtype into `tensor_base` (the tensor's start).
void fill_dummy_range(const TensorSpec& spec, const DummyRecipe& r, int64_t begin, int64_t end,
                      void* tensor_base);

// Fills whole tensors, outs[t] receiving specs[t].nbytes() bytes, spread over all cores.
void fill_dummy_tensors(const std::vector<TensorSpec>& specs, uint64_t seed,
                        const std::vector<void*>& outs);

}  // namespace kl
