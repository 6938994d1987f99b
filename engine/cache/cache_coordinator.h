// CacheCoordinator: admits, grows, forks and releases a sequence's caches of both kinds together
// (MLA pages and one KDA state block), so a sequence never holds one without the other.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/cache/block_pool.h"
#include "engine/exec/kv_layout.h"
#include "engine/exec/step_plan.h"

namespace kl {

// The caches one sequence owns. Page tables are append-only while the sequence lives.
struct SeqCache {
  std::vector<int32_t> pages;
  int32_t state_block = -1;
  bool empty() const { return pages.empty() && state_block < 0; }
};

inline int64_t pages_for_tokens(int64_t tokens) {
  return (tokens + kPageSize - 1) / kPageSize;
}

class CacheCoordinator {
 public:
  CacheCoordinator(int64_t num_pages, int64_t num_state_blocks);

  // A state block plus pages for `tokens` tokens; all or nothing.
  bool can_admit(int64_t tokens) const;
  bool admit(SeqCache& c, int64_t tokens);
  // Appends pages so that `tokens` tokens fit; all or nothing.
  bool grow(SeqCache& c, int64_t tokens);
  int64_t pages_needed(const SeqCache& c, int64_t tokens) const;
  // Drops every reference the sequence holds, at once.
  void release(SeqCache& c);

  // `child` shares the parent's pages holding `num_tokens` tokens: full pages by refcount, the
  // partially filled last page copied into a fresh page (copy-on-write, appended to `copies`);
  // the child's state block is a copy of the parent's (appended to `block_ops`). All or nothing.
  bool fork(const SeqCache& parent, int64_t num_tokens, SeqCache& child,
            std::vector<PageCopy>& copies, std::vector<StateBlockOp>& block_ops);

  // Refcounts equal the number of owners among `owners` for every page and state block, and
  // exactly the unowned ones are free. Throws kl::Error on a violation.
  void check_invariants(const std::vector<const SeqCache*>& owners) const;

  const BlockPool& pages() const { return pages_; }
  const BlockPool& state_blocks() const { return blocks_; }

 private:
  BlockPool pages_;
  BlockPool blocks_;
};

}  // namespace kl
