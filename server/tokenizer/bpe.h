// Byte-level BPE over tiktoken ranks: the byte-string -> rank table and the rank-ordered merge of
// one pre-tokenized piece (tiktoken's algorithm: repeatedly merge the lowest-ranked adjacent pair,
// leftmost first).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kl::tok {

using TokenId = int32_t;

class BpeRanks {
 public:
  // Adds one token; throws kl::Error on a duplicate byte string or rank, or a negative rank.
  void add(std::string bytes, TokenId rank);

  std::optional<TokenId> rank(std::string_view bytes) const {
    const auto it = ranks_.find(bytes);
    if (it == ranks_.end()) return std::nullopt;
    return it->second;
  }
  // Bytes of a rank, or nullptr when no token has it (tiktoken files may have gaps).
  const std::string* bytes(TokenId rank) const {
    if (rank < 0 || static_cast<size_t>(rank) >= by_rank_.size() || !present_[rank]) return nullptr;
    return &by_rank_[rank];
  }
  size_t size() const { return ranks_.size(); }
  // One past the highest rank.
  TokenId rank_end() const { return static_cast<TokenId>(by_rank_.size()); }
  // Every single byte must have a rank or some inputs could not be encoded.
  bool has_all_bytes() const;

  // Appends the tokens of `piece` (a whole pre-tokenized piece; any bytes) to `out`.
  void encode_piece(std::string_view piece, std::vector<TokenId>& out) const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept;
  };
  struct Eq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  };
  static constexpr TokenId kNoRank = INT32_MAX;
  TokenId rank_or_none(std::string_view s) const {
    const auto it = ranks_.find(s);
    return it == ranks_.end() ? kNoRank : it->second;
  }
  void merge_small(std::string_view piece, std::vector<TokenId>& out) const;
  void merge_large(std::string_view piece, std::vector<TokenId>& out) const;

  std::unordered_map<std::string, TokenId, Hash, Eq> ranks_;
  std::vector<std::string> by_rank_;
  std::vector<bool> present_;
};

}  // namespace kl::tok
