// BlockPool: refcounted ids with a FIFO free list.
#include "engine/cache/block_pool.h"

#include "engine/core/error.h"

namespace kl {

BlockPool::BlockPool(int64_t num_blocks, std::string what)
    : what_(std::move(what)), refcounts_(num_blocks, 0) {
  KL_CHECK(num_blocks >= 0 && num_blocks < (int64_t{1} << 31), "{} pool size {} out of range",
           what_, num_blocks);
  for (int32_t i = 0; i < static_cast<int32_t>(num_blocks); ++i) free_.push_back(i);
}

void BlockPool::check_id(int32_t id) const {
  KL_CHECK(id >= 0 && id < num_blocks(), "{} id {} out of range [0, {})", what_, id, num_blocks());
}

bool BlockPool::allocate(int64_t n, std::vector<int32_t>& out) {
  if (n < 0 || n > num_free()) return false;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = free_.front();
    free_.pop_front();
    refcounts_[id] = 1;
    out.push_back(id);
  }
  return true;
}

void BlockPool::incref(int32_t id) {
  check_id(id);
  KL_CHECK(refcounts_[id] > 0, "incref of free {} {}", what_, id);
  ++refcounts_[id];
}

void BlockPool::decref(int32_t id) {
  check_id(id);
  KL_CHECK(refcounts_[id] > 0, "decref of free {} {} (double free)", what_, id);
  if (--refcounts_[id] == 0) free_.push_back(id);
}

int32_t BlockPool::refcount(int32_t id) const {
  check_id(id);
  return refcounts_[id];
}

void BlockPool::check_invariants(const std::vector<int32_t>& expected) const {
  KL_CHECK(expected.size() == refcounts_.size(), "{} invariant: {} expected counts for {} blocks",
           what_, expected.size(), refcounts_.size());
  std::vector<int> on_free_list(refcounts_.size(), 0);
  for (int32_t id : free_) {
    check_id(id);
    KL_CHECK(++on_free_list[id] == 1, "{} {} is on the free list twice", what_, id);
  }
  for (size_t id = 0; id < refcounts_.size(); ++id) {
    KL_CHECK(refcounts_[id] == expected[id], "{} {} has refcount {} but {} owners", what_, id,
             refcounts_[id], expected[id]);
    KL_CHECK((refcounts_[id] == 0) == (on_free_list[id] == 1),
             "{} {} with refcount {} is {}on the free list", what_, id, refcounts_[id],
             on_free_list[id] ? "" : "not ");
  }
}

}  // namespace kl
