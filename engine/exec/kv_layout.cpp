// Cache sizes derived from the config, and the split of a memory budget between the cache kinds.
#include "engine/exec/kv_layout.h"

#include <algorithm>

#include <fmt/format.h>

#include "engine/core/error.h"

namespace kl {

CacheSpec cache_spec(const ModelConfig& c) {
  CacheSpec s;
  s.num_mla_layers = c.plan.num_mla_layers;
  s.num_kda_layers = c.plan.num_kda_layers;
  s.mla_values_per_token = c.mla_cache_dim();
  s.kda_state_values = c.kda_num_heads * c.kda_head_dim * c.kda_head_dim;
  s.kda_conv_values = 3 * int64_t{c.short_conv_kernel_size - 1} * c.kda_dim();
  return s;
}

CacheBudget split_cache_budget(const CacheSpec& spec, int64_t bytes, size_t act_bytes,
                               int64_t max_num_seqs) {
  const int64_t block = std::max<int64_t>(spec.state_block_bytes(act_bytes), 1);
  const int64_t page = std::max<int64_t>(spec.page_bytes(act_bytes), 1);
  CacheBudget b;
  // State blocks for every admissible sequence, but never more than half the budget: the rest
  // must hold their tokens.
  b.num_state_blocks = std::min<int64_t>(std::max<int64_t>(max_num_seqs, 1), bytes / 2 / block);
  b.num_state_blocks = std::max<int64_t>(b.num_state_blocks, 1);
  b.num_pages = (bytes - b.num_state_blocks * block) / page;
  if (b.num_pages < 1 || b.num_state_blocks * block > bytes)
    fail("cache budget of {} bytes holds neither one page ({} B) and one state block ({} B)", bytes,
         page, block);
  return b;
}

std::string describe_cache_budget(const CacheSpec& spec, const CacheBudget& b, size_t act_bytes) {
  const double mib = 1024.0 * 1024.0;
  return fmt::format(
      "{} pages = {} tokens ({:.1f} MiB), {} state blocks = {} sequences ({:.1f} MiB)", b.num_pages,
      b.num_pages * kPageSize, b.num_pages * spec.page_bytes(act_bytes) / mib, b.num_state_blocks,
      b.num_state_blocks, b.num_state_blocks * spec.state_block_bytes(act_bytes) / mib);
}

}  // namespace kl
