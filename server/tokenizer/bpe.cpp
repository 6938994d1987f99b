// Rank-ordered BPE merge (see bpe.h). Two implementations with identical results: a linear scan
// for short pieces (what tiktoken does; fastest there) and a heap over a linked list for long
// ones, where the scan would be quadratic (e.g. a 25,000-space run).
#include "server/tokenizer/bpe.h"

#include <cstring>
#include <queue>

#include "engine/core/error.h"

namespace kl::tok {

namespace {
constexpr size_t kLargePiece = 256;  // bytes; above this the heap merge wins
}

size_t BpeRanks::Hash::operator()(std::string_view s) const noexcept {
  // 64-bit multiply-xorshift over 8-byte words; tokens are short, so this is mostly one round.
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xC2B2AE3D27D4EB4Full);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 29;
  }
  uint64_t w = 0;
  std::memcpy(&w, s.data() + i, s.size() - i);
  h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 32;
  return static_cast<size_t>(h);
}

void BpeRanks::add(std::string bytes, TokenId rank) {
  if (rank < 0) fail("BPE: negative rank {}", rank);
  if (bytes.empty()) fail("BPE: empty token at rank {}", rank);
  if (static_cast<size_t>(rank) >= by_rank_.size()) {
    by_rank_.resize(rank + 1);
    present_.resize(rank + 1, false);
  }
  if (present_[rank]) fail("BPE: rank {} appears twice", rank);
  auto [it, inserted] = ranks_.emplace(bytes, rank);
  if (!inserted) fail("BPE: the same token bytes have ranks {} and {}", it->second, rank);
  by_rank_[rank] = std::move(bytes);
  present_[rank] = true;
}

bool BpeRanks::has_all_bytes() const {
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    if (!ranks_.count(std::string_view(&c, 1))) return false;
  }
  return true;
}

void BpeRanks::encode_piece(std::string_view piece, std::vector<TokenId>& out) const {
  if (piece.empty()) return;
  const TokenId whole = rank_or_none(piece);
  if (whole != kNoRank) {
    out.push_back(whole);
    return;
  }
  if (piece.size() > kLargePiece) {
    merge_large(piece, out);
  } else {
    merge_small(piece, out);
  }
}

void BpeRanks::merge_small(std::string_view piece, std::vector<TokenId>& out) const {
  // parts[i] = (start of part i, rank of the merge of parts i and i+1); one sentinel at the end.
  struct Part {
    uint32_t start;
    TokenId rank;
  };
  Part local[kLargePiece + 1];
  const size_t n = piece.size();
  size_t len = n + 1;
  Part* parts = local;
  for (size_t i = 0; i < len; ++i) parts[i] = {static_cast<uint32_t>(i), kNoRank};
  for (size_t i = 0; i + 1 < n; ++i) parts[i].rank = rank_or_none(piece.substr(i, 2));
  auto pair_rank = [&](size_t i) {
    if (i + 3 < len)
      return rank_or_none(piece.substr(parts[i].start, parts[i + 3].start - parts[i].start));
    return kNoRank;
  };
  while (len > 1) {
    TokenId best = kNoRank;
    size_t at = 0;
    for (size_t i = 0; i + 1 < len; ++i) {
      if (parts[i].rank < best) {
        best = parts[i].rank;
        at = i;
      }
    }
    if (best == kNoRank) break;
    if (at > 0) parts[at - 1].rank = pair_rank(at - 1);
    parts[at].rank = pair_rank(at);
    std::memmove(parts + at + 1, parts + at + 2, (len - at - 2) * sizeof(Part));
    --len;
  }
  for (size_t i = 0; i + 1 < len; ++i) {
    const TokenId r =
        rank_or_none(piece.substr(parts[i].start, parts[i + 1].start - parts[i].start));
    if (r == kNoRank) fail("BPE: a byte of the input has no rank (incomplete vocabulary)");
    out.push_back(r);
  }
}

void BpeRanks::merge_large(std::string_view piece, std::vector<TokenId>& out) const {
  const uint32_t n = static_cast<uint32_t>(piece.size());
  constexpr uint32_t kEnd = UINT32_MAX;
  // Node i covers [i, end_[i]); next_/prev_ link the live nodes. A heap entry (rank, i, right)
  // stands for "merge node i with its successor, which ends at `right`"; it is stale when node i
  // is gone or its successor no longer ends there. Ties pop by smallest start = leftmost pair,
  // which is exactly tiktoken's choice.
  std::vector<uint32_t> end(n), next(n), prev(n);
  std::vector<bool> alive(n, true);
  for (uint32_t i = 0; i < n; ++i) {
    end[i] = i + 1;
    next[i] = i + 1 < n ? i + 1 : kEnd;
    prev[i] = i > 0 ? i - 1 : kEnd;
  }
  struct Entry {
    TokenId rank;
    uint32_t start;
    uint32_t right;
    bool operator>(const Entry& o) const {
      return rank != o.rank ? rank > o.rank : start > o.start;
    }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push_pair = [&](uint32_t i) {
    if (i == kEnd || next[i] == kEnd) return;
    const uint32_t right = end[next[i]];
    const TokenId r = rank_or_none(piece.substr(i, right - i));
    if (r != kNoRank) heap.push({r, i, right});
  };
  for (uint32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    if (!alive[e.start] || next[e.start] == kEnd || end[next[e.start]] != e.right) continue;
    const uint32_t j = next[e.start];
    end[e.start] = end[j];
    alive[j] = false;
    next[e.start] = next[j];
    if (next[j] != kEnd) prev[next[j]] = e.start;
    push_pair(prev[e.start]);
    push_pair(e.start);
  }
  for (uint32_t i = 0; i != kEnd; i = next[i]) {
    const TokenId r = rank_or_none(piece.substr(i, end[i] - i));
    if (r == kNoRank) fail("BPE: a byte of the input has no rank (incomplete vocabulary)");
    out.push_back(r);
  }
}

}  // namespace kl::tok
