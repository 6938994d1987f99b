// A pool of fixed-size cache blocks (MLA pages or KDA state blocks) addressed by id, with
// refcounts and a FIFO free list (deterministic ids, so tests can assert exact allocations).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace kl {

class BlockPool {
 public:
  BlockPool(int64_t num_blocks, std::string what);

  int64_t num_blocks() const { return static_cast<int64_t>(refcounts_.size()); }
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_used() const { return num_blocks() - num_free(); }

  // Takes `n` blocks (refcount 1 each) and appends their ids to `out`, or takes none and returns
  // false when fewer than `n` are free.
  bool allocate(int64_t n, std::vector<int32_t>& out);
  void incref(int32_t id);
  // Drops one reference; the block returns to the back of the free list at zero.
  void decref(int32_t id);
  int32_t refcount(int32_t id) const;

  // Every block's refcount equals `expected[id]` and exactly the zero-count blocks are free, each
  // once. Throws kl::Error describing the first violation.
  void check_invariants(const std::vector<int32_t>& expected) const;

 private:
  void check_id(int32_t id) const;

  std::string what_;  // "page" or "state block", for messages
  std::vector<int32_t> refcounts_;
  std::deque<int32_t> free_;
};

}  // namespace kl
