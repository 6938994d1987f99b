// CacheCoordinator: both cache kinds of a sequence, acquired and released together.
#include "engine/cache/cache_coordinator.h"

#include <algorithm>

#include "engine/core/error.h"

namespace kl {

CacheCoordinator::CacheCoordinator(int64_t num_pages, int64_t num_state_blocks)
    : pages_(num_pages, "page"), blocks_(num_state_blocks, "state block") {}

int64_t CacheCoordinator::pages_needed(const SeqCache& c, int64_t tokens) const {
  return std::max<int64_t>(0, pages_for_tokens(tokens) - static_cast<int64_t>(c.pages.size()));
}

bool CacheCoordinator::can_admit(int64_t tokens) const {
  return blocks_.num_free() >= 1 && pages_.num_free() >= pages_for_tokens(tokens);
}

bool CacheCoordinator::admit(SeqCache& c, int64_t tokens) {
  KL_CHECK(c.empty(), "admit of a sequence that already holds caches");
  if (!can_admit(tokens)) return false;
  std::vector<int32_t> block;
  blocks_.allocate(1, block);
  c.state_block = block[0];
  pages_.allocate(pages_for_tokens(tokens), c.pages);
  return true;
}

bool CacheCoordinator::grow(SeqCache& c, int64_t tokens) {
  return pages_.allocate(pages_needed(c, tokens), c.pages);
}

void CacheCoordinator::release(SeqCache& c) {
  for (int32_t p : c.pages) pages_.decref(p);
  if (c.state_block >= 0) blocks_.decref(c.state_block);
  c.pages.clear();
  c.state_block = -1;
}

bool CacheCoordinator::fork(const SeqCache& parent, int64_t num_tokens, SeqCache& child,
                            std::vector<PageCopy>& copies, std::vector<StateBlockOp>& block_ops) {
  KL_CHECK(child.empty(), "fork into a sequence that already holds caches");
  const int64_t used = pages_for_tokens(num_tokens);
  KL_CHECK(used <= static_cast<int64_t>(parent.pages.size()) && parent.state_block >= 0,
           "fork of {} tokens from a sequence holding {} pages", num_tokens, parent.pages.size());
  const bool partial = num_tokens % kPageSize != 0;
  if (blocks_.num_free() < 1 || pages_.num_free() < (partial ? 1 : 0)) return false;
  std::vector<int32_t> block;
  blocks_.allocate(1, block);
  child.state_block = block[0];
  block_ops.push_back({StateBlockOp::Kind::kCopy, parent.state_block, child.state_block});
  const int64_t shared = partial ? used - 1 : used;
  for (int64_t i = 0; i < shared; ++i) {
    pages_.incref(parent.pages[i]);
    child.pages.push_back(parent.pages[i]);
  }
  if (partial) {
    pages_.allocate(1, child.pages);
    copies.push_back({parent.pages[used - 1], child.pages.back()});
  }
  return true;
}

void CacheCoordinator::check_invariants(const std::vector<const SeqCache*>& owners) const {
  std::vector<int32_t> page_owners(pages_.num_blocks(), 0), block_owners(blocks_.num_blocks(), 0);
  for (const SeqCache* c : owners) {
    for (int32_t p : c->pages) {
      KL_CHECK(p >= 0 && p < pages_.num_blocks(), "owned page id {} out of range", p);
      ++page_owners[p];
    }
    if (c->state_block >= 0) {
      KL_CHECK(c->state_block < blocks_.num_blocks(), "owned state block {} out of range",
               c->state_block);
      KL_CHECK(++block_owners[c->state_block] == 1, "state block {} owned by two sequences",
               c->state_block);
    }
  }
  pages_.check_invariants(page_owners);
  blocks_.check_invariants(block_owners);
}

}  // namespace kl
