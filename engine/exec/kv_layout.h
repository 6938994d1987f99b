// Sizes of the two cache kinds a model declares (principle 4): the paged MLA latent cache and the
// fixed-size KDA state blocks (recurrent state + conv windows), and how a memory budget splits.
#pragma once

#include <cstdint>
#include <string>

#include "models/model_config.h"

namespace kl {

inline constexpr int kPageSize = 64;  // tokens per MLA page

struct CacheSpec {
  int num_mla_layers = 0;
  int num_kda_layers = 0;
  int64_t mla_values_per_token = 0;  // per layer: kv_lora + rope (576)
  int64_t kda_state_values = 0;      // per layer: H * V * K (fp32)
  int64_t kda_conv_values = 0;       // per layer: 3 (q, k, v) * (W - 1) * H * K
  int64_t page_bytes(size_t act_bytes) const {
    return int64_t{num_mla_layers} * kPageSize * mla_values_per_token * act_bytes;
  }
  // Recurrent state is always fp32; the conv window takes the activation dtype.
  int64_t state_block_bytes(size_t act_bytes) const {
    return int64_t{num_kda_layers} * (kda_state_values * 4 + kda_conv_values * act_bytes);
  }
};

CacheSpec cache_spec(const ModelConfig& config);

struct CacheBudget {
  int64_t num_pages = 0;
  int64_t num_state_blocks = 0;
};

// Splits `bytes` so that `max_num_seqs` sequences get state blocks (at least one) and the rest
// becomes pages; throws kl::Error when not even one block and one page fit.
CacheBudget split_cache_budget(const CacheSpec& spec, int64_t bytes, size_t act_bytes,
                               int64_t max_num_seqs);

// "N pages = T tokens, S state blocks (X MiB)" for the startup log.
std::string describe_cache_budget(const CacheSpec& spec, const CacheBudget& b, size_t act_bytes);

}  // namespace kl
